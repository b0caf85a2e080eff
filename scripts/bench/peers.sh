#!/usr/bin/env bash
# mealworker against the peer queues, side by side, in one command:
#
#   scripts/bench/peers.sh                                  # every peer (about 25 min)
#   PEERS="mealworker graphile-worker" scripts/bench/peers.sh   # the two that matter most
#
# Runs the shared peer harness (bench-peers/run_all.sh, found beside the checkout or named by
# PEERS_HARNESS) on this checkout (MEALWORKER_SRC=the repository root), with its results in a
# fresh temporary folder (PEERS_RESULTS, kept and named at the end), and prints the table.
# The harness's environments live in PEERS_TMP: by default a folder of this checkout's own, so
# two checkouts benchmarked at once do not reinstall each other's mealworker.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

harness="${PEERS_HARNESS:-}"
if [[ -z "$harness" ]]; then
  for candidate in "$root/../shared/bench-peers" "$root/../../shared/bench-peers"; do
    if [[ -x "$candidate/run_all.sh" ]]; then harness="$(cd "$candidate" && pwd)"; break; fi
  done
fi
if [[ -z "$harness" || ! -x "$harness/run_all.sh" ]]; then
  echo "peers.sh: no run_all.sh in ${harness:-../shared/bench-peers or ../../shared/bench-peers}:" \
       "set PEERS_HARNESS to the bench-peers folder (the one with run_all.sh)" >&2
  exit 1
fi

checkout_id="$(printf '%s' "$root" | sha256sum | cut -c1-10)"
export PEERS_TMP="${PEERS_TMP:-${TMPDIR:-/tmp}/peers-$checkout_id}"
export PEERS_RESULTS="${PEERS_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/peers-results-XXXXXX")}"
export MEALWORKER_SRC="$root"

# The harness's mealworker adapter may import the module paths of mealworker 0.1 (before the
# package was sorted into layers): run a copy of the harness whose adapter names today's paths.
if grep -q '^from mealplan_cli\.\(config\|db\.connect\|generation\|queue\|worker\) import' \
     "$harness/peer_mealworker.py"; then
  copy="$PEERS_TMP/harness"
  rm -rf "$copy" && mkdir -p "$PEERS_TMP" && cp -a "$harness" "$copy"
  sed -i \
    -e 's/^from mealplan_cli\.config import/from mealplan_cli.settings.config import/' \
    -e 's/^from mealplan_cli\.db\.connect import/from mealplan_cli.core.db.connect import/' \
    -e 's/^from mealplan_cli\.generation import/from mealplan_cli.mealplans.generation.services import/' \
    -e 's/^from mealplan_cli\.queue import/from mealplan_cli.core.queue import/' \
    -e 's/^from mealplan_cli\.worker import/from mealplan_cli.core.worker import/' \
    "$copy/peer_mealworker.py"
  harness="$copy"
fi

cd "$root"
"$harness/run_all.sh"
echo
echo "results: $PEERS_RESULTS (summary.md, per-peer JSON, worker logs)"
