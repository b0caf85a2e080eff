#!/usr/bin/env bash
# Set up an Ubuntu 24.04 VPS to run the mealworker worker, under systemd (default) or PM2.
#
#   sudo scripts/setup-vps.sh [--systemd | --pm2] [--dry-run] [--upgrade] [--source DIR_OR_PIP_SPEC]
#
# Every step checks the machine first and acts only when something is missing, so running it
# again changes nothing (and says so). --dry-run prints the commands it would run ("+ ...")
# given the machine as it is now, changes nothing, and does not need root. See --help.
set -euo pipefail

readonly APP_USER=mealworker
readonly APP_DIR=/opt/meal-plan-worker
readonly VENV=$APP_DIR/.venv
readonly ENV_FILE=$APP_DIR/.env
readonly UNIT_DIR=/etc/systemd/system
readonly AUTO_UPGRADES_FILE=/etc/apt/apt.conf.d/20auto-upgrades
readonly UFW_DEFAULTS=/etc/default/ufw
readonly PROG=setup-vps.sh

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
readonly SCRIPT_DIR REPO_DIR

mode=systemd
dry_run=0
upgrade=0
source_spec=$REPO_DIR
changes=0
upgraded=0 # the package was (re)installed in this run
env_created=0 # .env was (or, in a dry run, would be) created from env.example in this run

usage() {
  cat <<EOF
Usage: sudo scripts/$PROG [--systemd | --pm2] [--dry-run] [--upgrade] [--source DIR_OR_PIP_SPEC]

Set up this Ubuntu 24.04 machine to run the mealworker worker ("mealworker work"):
  1. apt packages: python3-venv, python3-pip, ufw, unattended-upgrades
     (with --pm2 also nodejs and npm, then "npm install -g pm2")
  2. the system user $APP_USER (no login shell, home $APP_DIR)
  3. $APP_DIR owned by $APP_USER, with logs/ and data/
  4. a virtual environment in $VENV with mealworker installed (pip install SOURCE)
  5. $ENV_FILE from env.example if it is absent (mode 600; never overwritten)
  6. the firewall: ufw default deny incoming, allow OpenSSH, enable
  7. unattended-upgrades enabled
  8. --systemd: the unit scripts/mealworker.service in $UNIT_DIR, enabled, and
     started once .env has database credentials
     --pm2: ecosystem.config.js started as $APP_USER, "pm2 save", and
     "pm2 startup systemd -u $APP_USER --hp $APP_DIR"

Options:
  --systemd        run the worker as a systemd service (the default)
  --pm2            run the worker under PM2 instead
  --dry-run, -n    print the commands it would run, prefixed "+ ", and change nothing
                   (root not needed; run it with sudo for an exact plan)
  --upgrade        reinstall the package from SOURCE even if it is installed, and
                   restart the worker if it is running
  --source SOURCE  a source directory or anything pip installs (a requirement such as
                   mealworker==0.1.0, a wheel, a git URL); default: this repository,
                   $REPO_DIR
  -h, --help       show this help

Each step checks first and does nothing when it is already done, so the script can be
run again safely, for instance after editing .env or with --upgrade after an update.
EOF
}

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}
usage_error() {
  printf '%s: %s\nTry "%s --help".\n' "$PROG" "$*" "$PROG" >&2
  exit 2
}

# Run a command that changes the machine: print it ("+ ..."), then run it unless --dry-run.
run() {
  changes=$((changes + 1))
  local quoted
  quoted=$(printf '%q ' "$@")
  printf '+ %s\n' "${quoted% }"
  if [ "$dry_run" -eq 1 ]; then
    return 0
  fi
  "$@"
}

# Write a small root-owned file: print it (like run), then write it unless --dry-run.
write_file() {
  local path=$1 mode=$2 content=$3 tmp
  changes=$((changes + 1))
  printf '+ write %s (mode %s):\n' "$path" "$mode"
  printf '%s\n' "$content" | sed 's/^/+     /'
  if [ "$dry_run" -eq 1 ]; then
    return 0
  fi
  tmp=$(mktemp "$path.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
}

have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

package_installed() {
  local status
  # shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not a shell expansion
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
  [ "$status" = "install ok installed" ]
}

unit_enabled() {
  local state
  state=$(systemctl is-enabled "$1" 2>/dev/null || true)
  [ "$state" = enabled ]
}

unit_active() { systemctl is-active --quiet "$1" 2>/dev/null; }

# Whether .env sets NAME to something (not empty, not commented out).
env_sets() {
  grep -Eq "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*[\"']?[^[:space:]#\"']" \
    "$ENV_FILE"
}

# Database credentials in .env: yes, no, or unknown (unreadable without root).
env_credentials() {
  if [ "$env_created" -eq 1 ]; then
    say no # a fresh copy of env.example has every secret commented out
  elif [ ! -e "$ENV_FILE" ] && { is_root || [ -x "$APP_DIR" ]; }; then
    say no
  elif [ ! -r "$ENV_FILE" ]; then
    say unknown
  elif env_sets DATABASE_URL || { env_sets SUPABASE_URL && env_sets SUPABASE_SERVICE_ROLE_KEY; }; then
    say yes
  else
    say no
  fi
}

explain_missing_credentials() {
  info "NOT starting the worker: $ENV_FILE has no database credentials yet."
  info "Edit it (sudo -e $ENV_FILE): set DATABASE_URL, or SUPABASE_URL and"
  info "SUPABASE_SERVICE_ROLE_KEY; add OPENAI_API_KEY for AI-written plans. Then run:"
  info "  $1"
  if [ $# -gt 1 ]; then
    info "  $2"
  fi
}

# Ensure a folder exists with owner APP_USER and the given mode.
ensure_dir() {
  local path=$1 mode=$2 owner current_mode
  if [ ! -d "$path" ]; then
    run install -d -m "$mode" -o "$APP_USER" -g "$APP_USER" "$path"
    return
  fi
  owner=$(stat -c '%U:%G' "$path")
  current_mode=$(stat -c '%a' "$path")
  if [ "$owner" != "$APP_USER:$APP_USER" ]; then
    run chown "$APP_USER:$APP_USER" "$path"
  fi
  if [ "$current_mode" != "$mode" ]; then
    run chmod "$mode" "$path"
  fi
  if [ "$owner" = "$APP_USER:$APP_USER" ] && [ "$current_mode" = "$mode" ]; then
    ok "$path ($owner, mode $mode)"
  fi
}

# ---------------------------------------------------------------------------------- options

orig_args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --systemd) mode=systemd ;;
    --pm2) mode=pm2 ;;
    -n | --dry-run) dry_run=1 ;;
    --upgrade) upgrade=1 ;;
    --source)
      [ $# -ge 2 ] || usage_error "--source needs a directory or a pip requirement"
      source_spec=$2
      shift
      ;;
    --source=*) source_spec=${1#--source=} ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) usage_error "unknown option: $1" ;;
  esac
  shift
done
[ -n "$source_spec" ] || usage_error "--source needs a directory or a pip requirement"

# ------------------------------------------------------------------------------- preflight

if [ "$dry_run" -eq 0 ] && ! is_root; then
  die "this sets up the machine and must run as root: sudo $0 ${orig_args[*]}
(or add --dry-run to see what it would do)"
fi

if [ "$dry_run" -eq 1 ]; then
  say "Dry run ($mode): the commands below are printed, not run; nothing is changed."
  if ! is_root; then
    say "Running as $(id -un), not root: what only root can see (the firewall rules, .env, the"
    say "inside of $APP_DIR) is shown as missing or unknown. Use sudo for an exact plan."
  fi
fi

os_name=$(
  # shellcheck source=/dev/null
  . /etc/os-release 2>/dev/null && printf '%s %s' "${ID:-?}" "${VERSION_ID:-?}"
) || os_name=unknown
if [ "$os_name" != "ubuntu 24.04" ]; then
  warn "written for Ubuntu 24.04; this is ${os_name}: carrying on, check each step"
fi
if ! have apt-get || ! have dpkg-query; then
  if [ "$dry_run" -eq 0 ]; then
    die "apt-get and dpkg-query are needed (Ubuntu or Debian)"
  fi
  warn "apt-get or dpkg-query is missing: every package is taken as absent"
fi

for needed in env.example scripts/mealworker.service ecosystem.config.js; do
  [ -f "$REPO_DIR/$needed" ] || die "$REPO_DIR/$needed is missing: run the script from a copy of the repository"
done

if [ -d "$source_spec" ]; then
  source_spec=$(cd "$source_spec" && pwd)
  [ -f "$source_spec/pyproject.toml" ] || die "--source $source_spec: no pyproject.toml there"
elif [[ "$source_spec" == /* || "$source_spec" == ./* || "$source_spec" == ../* ]] \
  && [[ "$source_spec" != *.whl && "$source_spec" != *.tar.gz && "$source_spec" != *.zip ]]; then
  die "--source $source_spec: no such directory"
fi

# ---------------------------------------------------------------------------------- 1. apt

step "1. apt packages"
packages=(python3-venv python3-pip ufw unattended-upgrades)
if [ "$mode" = pm2 ]; then
  packages+=(nodejs npm)
fi
missing=()
for package in "${packages[@]}"; do
  package_installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  ok "installed: ${packages[*]}"
else
  info "missing: ${missing[*]}"
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
if [ "$mode" = pm2 ]; then
  if have pm2; then
    ok "pm2 is installed ($(command -v pm2))"
  else
    run npm install -g pm2
  fi
fi

# --------------------------------------------------------------------------------- 2. user

step "2. system user $APP_USER"
if id -u "$APP_USER" >/dev/null 2>&1; then
  home=$(getent passwd "$APP_USER" | cut -d: -f6)
  ok "user $APP_USER exists (home $home)"
  [ "$home" = "$APP_DIR" ] || warn "the home of $APP_USER is $home, not $APP_DIR"
else
  run useradd --system --user-group --home-dir "$APP_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment mealworker "$APP_USER"
fi

# ------------------------------------------------------------------------------ 3. folders

step "3. folders in $APP_DIR"
if [ "$dry_run" -eq 1 ] && ! is_root && [ -d "$APP_DIR" ] && [ ! -x "$APP_DIR" ]; then
  warn "cannot look inside $APP_DIR as $(id -un): its contents are shown as missing"
fi
ensure_dir "$APP_DIR" 750
ensure_dir "$APP_DIR/logs" 750 # LOG_DIR: the worker's own log files, and PM2's
ensure_dir "$APP_DIR/data" 750 # MEALWORKER_DATA_DIR for the embedded database (systemd unit)

# ------------------------------------------------------------------ 4. virtual environment

step "4. virtual environment $VENV and the mealworker package"
if [ -x "$VENV/bin/python" ]; then
  ok "virtual environment $VENV ($("$VENV/bin/python" --version 2>&1))"
else
  if have python3 && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    die "mealworker needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)"
  fi
  # Owned by root: the worker can run its code but not change it.
  run python3 -m venv "$VENV"
fi
installed_version=""
if [ -x "$VENV/bin/python" ]; then
  installed_version=$("$VENV/bin/python" -c \
    'from importlib.metadata import version; print(version("mealworker"))' 2>/dev/null || true)
fi
if [ -n "$installed_version" ] && [ "$upgrade" -eq 0 ]; then
  ok "mealworker $installed_version installed (--upgrade reinstalls it from $source_spec)"
else
  if [ -n "$installed_version" ]; then
    info "mealworker $installed_version installed; --upgrade: reinstalling from $source_spec"
    run "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade "$source_spec"
  else
    run "$VENV/bin/pip" install --quiet --disable-pip-version-check "$source_spec"
  fi
  upgraded=1
fi

# ---------------------------------------------------------------------------------- 5. .env

step "5. settings file $ENV_FILE"
if [ -f "$ENV_FILE" ]; then
  ok "$ENV_FILE exists and is kept as it is (never overwritten)"
  if [ "$(stat -c '%U:%G' "$ENV_FILE")" != "$APP_USER:$APP_USER" ]; then
    run chown "$APP_USER:$APP_USER" "$ENV_FILE"
  fi
  if [ "$(stat -c '%a' "$ENV_FILE")" != 600 ]; then
    run chmod 600 "$ENV_FILE"
  fi
else
  run install -m 600 -o "$APP_USER" -g "$APP_USER" "$REPO_DIR/env.example" "$ENV_FILE"
  env_created=1
fi
credentials=$(env_credentials)
case "$credentials" in
  yes) ok "database credentials are set" ;;
  no) info "no database credentials yet: the worker is not started until you add them" ;;
  *) info "cannot read $ENV_FILE as $(id -un): credentials unknown" ;;
esac

# ----------------------------------------------------------------------------- 6. firewall

step "6. firewall (ufw)"
ufw_known=0
ufw_status=""
ufw_added=""
if ! have ufw; then
  info "ufw is not installed yet: every firewall step is planned"
elif ! is_root; then
  info "the firewall's state needs root to read: every firewall step is planned"
else
  ufw_known=1
  ufw_status=$(ufw status 2>/dev/null || true)
  ufw_added=$(ufw show added 2>/dev/null || true)
fi

default_input=""
if [ -r "$UFW_DEFAULTS" ]; then
  default_input=$(sed -n 's/^DEFAULT_INPUT_POLICY="\(.*\)"$/\1/p' "$UFW_DEFAULTS")
fi
if [ "$default_input" = DROP ]; then
  ok "default policy: deny incoming"
else
  run ufw default deny incoming
fi

# The SSH port(s) must be open before the firewall goes up, or this session is the last one.
ssh_rules=(OpenSSH)
if [ "$ufw_known" -eq 1 ] && ! ufw app info OpenSSH >/dev/null 2>&1; then
  ssh_rules=(22/tcp) # no OpenSSH application profile (openssh-server missing?)
fi
if is_root && have sshd; then
  while read -r port; do
    if [ -n "$port" ] && [ "$port" != 22 ]; then
      ssh_rules+=("$port/tcp")
    fi
  done < <(sshd -T 2>/dev/null | awk '$1 == "port" { print $2 }' || true)
fi
for rule in "${ssh_rules[@]}"; do
  pattern="^ufw (allow|limit) (in )?${rule}\$"
  if [ "$rule" = OpenSSH ] || [ "$rule" = 22/tcp ]; then
    pattern='^ufw (allow|limit) (in )?(OpenSSH|22/tcp|22)$'
  fi
  if [ "$ufw_known" -eq 1 ] && grep -Eq "$pattern" <<<"$ufw_added"; then
    ok "SSH allowed ($rule)"
  else
    run ufw allow "$rule"
  fi
done

if [ "$ufw_known" -eq 1 ] && grep -q '^Status: active' <<<"$ufw_status"; then
  ok "ufw is active"
else
  run ufw --force enable
fi

# ------------------------------------------------------------------- 7. unattended-upgrades

step "7. unattended-upgrades"
apt_settings=""
if have apt-config; then
  apt_settings=$(apt-config dump 2>/dev/null || true)
fi
if grep -q '^APT::Periodic::Update-Package-Lists "1";' <<<"$apt_settings" \
  && grep -q '^APT::Periodic::Unattended-Upgrade "1";' <<<"$apt_settings"; then
  ok "daily package lists and unattended upgrades are on"
else
  write_file "$AUTO_UPGRADES_FILE" 644 'APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";'
fi
if unit_enabled unattended-upgrades.service; then
  ok "unattended-upgrades.service is enabled"
else
  run systemctl enable --now unattended-upgrades.service
fi

# ---------------------------------------------------------------------- 8. process manager

if [ "$mode" = systemd ]; then
  unit=mealworker.service
  step "8. systemd service $unit"
  unit_changed=0
  if cmp -s "$REPO_DIR/scripts/mealworker.service" "$UNIT_DIR/$unit"; then
    ok "$UNIT_DIR/$unit is up to date"
  else
    run install -m 644 -o root -g root "$REPO_DIR/scripts/mealworker.service" "$UNIT_DIR/$unit"
    run systemctl daemon-reload
    unit_changed=1
  fi
  if unit_enabled "$unit"; then
    ok "$unit starts at boot"
  else
    run systemctl enable "$unit"
  fi
  if unit_active "$unit"; then
    if [ "$unit_changed" -eq 1 ] || [ "$upgraded" -eq 1 ]; then
      info "restarting it for the new unit or package (running jobs get their grace period)"
      run systemctl restart "$unit"
    else
      ok "$unit is running"
    fi
  elif [ "$credentials" = yes ]; then
    run systemctl start "$unit"
  elif [ "$credentials" = unknown ]; then
    info "would run \"systemctl start $unit\" if $ENV_FILE has database credentials"
  else
    explain_missing_credentials "sudo systemctl start $unit"
  fi
  if unit_enabled "pm2-$APP_USER.service"; then
    warn "PM2 is set up too (pm2-$APP_USER.service): run one of them only, e.g." \
      "sudo systemctl disable --now pm2-$APP_USER"
  fi
else
  step "8. PM2"
  ecosystem=$APP_DIR/ecosystem.config.js
  pm2_home=$APP_DIR/.pm2
  pm2_bin=$(command -v pm2 || printf '/usr/local/bin/pm2')
  as_app=(runuser -u "$APP_USER" -- env -C "$APP_DIR" HOME="$APP_DIR" PM2_HOME="$pm2_home"
    "$pm2_bin")

  ecosystem_changed=0
  if [ -r "$ecosystem" ] && cmp -s "$REPO_DIR/ecosystem.config.js" "$ecosystem"; then
    ok "$ecosystem is up to date"
  else
    run install -m 644 -o root -g root "$REPO_DIR/ecosystem.config.js" "$ecosystem"
    ecosystem_changed=1
  fi

  # The app's PM2 status (online, stopped, errored...), or nothing when PM2 does not know it.
  # Asked only of a PM2 daemon already running, so that looking starts nothing.
  app_status=""
  daemon_pid=$(cat "$pm2_home/pm2.pid" 2>/dev/null || true)
  if is_root && [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    app_status=$("${as_app[@]}" jlist 2>/dev/null | python3 -c '
import json, sys
try:
    apps = json.load(sys.stdin)
except ValueError:
    apps = []
print(next((a["pm2_env"]["status"] for a in apps if a.get("name") == "mealworker"), ""))
' || true)
  fi

  started=0
  if [ "$app_status" = online ] && [ "$ecosystem_changed" -eq 0 ] && [ "$upgraded" -eq 0 ]; then
    ok "mealworker is online under PM2"
  elif [ -n "$app_status" ] && [ "$ecosystem_changed" -eq 1 ]; then
    info "reloading mealworker with the new ecosystem file (running jobs get their grace period)"
    run "${as_app[@]}" delete mealworker
    run "${as_app[@]}" start "$ecosystem" --env production
    started=1
  elif [ -n "$app_status" ]; then
    info "mealworker is $app_status under PM2: restarting it"
    run "${as_app[@]}" restart mealworker
    started=1
  elif [ "$credentials" = yes ]; then
    run "${as_app[@]}" start "$ecosystem" --env production
    started=1
  elif [ "$credentials" = unknown ]; then
    info "would start $ecosystem under PM2 (and pm2 save) if $ENV_FILE has database credentials"
  else
    explain_missing_credentials "sudo $0 --pm2" \
      "(which runs \"pm2 start $ecosystem --env production\" as $APP_USER, then \"pm2 save\")"
  fi
  if [ "$started" -eq 1 ]; then
    run "${as_app[@]}" save
  fi

  if unit_enabled "pm2-$APP_USER.service"; then
    ok "pm2-$APP_USER.service brings PM2 and its saved processes back at boot"
  else
    run "$pm2_bin" startup systemd -u "$APP_USER" --hp "$APP_DIR"
  fi
  if unit_enabled mealworker.service; then
    warn "the systemd unit mealworker.service is enabled too: run one of them only, e.g." \
      "sudo systemctl disable --now mealworker"
  fi
fi

# --------------------------------------------------------------------------------- summary

say ""
if [ "$dry_run" -eq 1 ]; then
  if [ "$changes" -eq 0 ]; then
    say "Dry run: nothing to do, this machine is already set up."
  else
    say "Dry run: $changes command(s) would run; nothing was changed."
  fi
elif [ "$changes" -eq 0 ]; then
  say "Nothing changed: this machine was already set up."
else
  say "Done: $changes command(s) run."
fi
if [ "$dry_run" -eq 0 ]; then
  say "Logs: $APP_DIR/logs/; $(
    if [ "$mode" = systemd ]; then
      printf 'journalctl -u mealworker -f'
    else
      printf 'sudo -u %s PM2_HOME=%s pm2 logs mealworker' "$APP_USER" "$APP_DIR/.pm2"
    fi
  )"
  if [ ! -f /etc/cron.d/mealworker ]; then
    say "Optional maintenance jobs (requeue, alerts): sudo install -m 644" \
      "$REPO_DIR/scripts/mealworker.cron /etc/cron.d/mealworker"
  fi
fi
