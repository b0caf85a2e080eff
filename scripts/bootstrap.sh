#!/usr/bin/env bash
# Make .venv and install mealworker into it (with the test tools when given --test).
# Works on a fresh machine: where the venv module is missing (Debian, Ubuntu 24.04), it installs
# python3-venv first, since those systems refuse pip outside a virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

target="."
if [ "${1:-}" = "--test" ]; then target=".[test]"; fi
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "bootstrap: $python not found; install Python 3.11 or newer" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: mealworker needs Python 3.11 or newer, $python is $("$python" --version 2>&1)" >&2
  echo "bootstrap: set PYTHON=/path/to/python3.11 (or newer) and run again" >&2
  exit 1
fi

if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  if ! "$python" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: '$python -m venv' failed; install your system's venv package" >&2
      exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "bootstrap: installing python3-venv with apt-get" >&2
    $sudo apt-get install -y python3-venv >/dev/null 2>&1 \
      || { $sudo apt-get update >/dev/null && $sudo apt-get install -y python3-venv >/dev/null; }
    "$python" -m venv .venv
  fi
fi

.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
echo "bootstrap: mealworker installed in .venv ($(.venv/bin/mealworker --version))" >&2
