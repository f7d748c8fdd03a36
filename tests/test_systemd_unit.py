"""config/smm-scheduler.service: valid for systemd, hardened, consistent with the daemon.

``systemd-analyze`` checks unit files offline, without systemd running as PID 1. It is part of
the ``systemd`` package; without it these tests skip, except in CI
(``CI`` set), where they must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.config import DaemonSettings
from scheduler.timeutil import parse_duration

REPO_ROOT = Path(__file__).resolve().parent.parent
UNIT = REPO_ROOT / "config" / "smm-scheduler.service"
UNIT_NAME = UNIT.name
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI: apt-get install -y systemd")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


#: Where docs/operations.md ("Installing") puts the venv, hence ``smm``.
DOCS = REPO_ROOT / "docs" / "operations.md"


def documented_smm() -> str:
    found = re.search(r"^python3 -m venv (/\S+)$", DOCS.read_text(encoding="utf-8"), re.M)
    assert found, "docs/operations.md no longer shows where the venv goes"
    return f"{found.group(1)}/bin/smm"


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root directory holding the shipped unit, byte for byte, and what it refers to.

    ``systemd-analyze verify --root`` checks the unit there: that ``ExecStart=`` (the path
    the docs install to) and ``ExecReload=`` are executables, that the units it names exist.
    No file of the machine itself is touched.
    """
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copyfile(UNIT, root / "etc/systemd/system" / UNIT_NAME)
    system_units = Path("/usr/lib/systemd/system")
    if system_units.is_dir():
        shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    smm = Path(sys.executable).with_name("smm")
    for target, source in ((documented_smm(), smm), ("/bin/kill", Path("/bin/kill"))):
        path = root / target.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            shutil.copyfile(source, path)
        else:
            path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.fixture
def checkable_unit(unit_root: Path) -> Path:
    """The shipped unit, in ``unit_root``."""
    return unit_root / "etc/systemd/system" / UNIT_NAME


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def test_verify_accepts_the_unit_as_shipped(analyze: str, unit_root: Path) -> None:
    assert (unit_root / "etc/systemd/system" / UNIT_NAME).read_bytes() == UNIT.read_bytes()
    done = run(analyze, "verify", f"--root={unit_root}", UNIT_NAME)
    # verify exits 0 on unknown keys and bad values, but names the file and line on stderr.
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if UNIT_NAME in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []


def test_security_exposure_is_low(analyze: str, checkable_unit: Path) -> None:
    done = run(analyze, "security", "--offline=yes", "--no-pager", checkable_unit)
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert found, done.stdout[-2000:]
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, done.stdout


def test_unit_matches_the_daemon(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]

    def one(key: str) -> str:
        values = service.get(key, [])
        assert len(values) == 1, f"{key}: {values}"
        return values[0]

    # smm run speaks sd_notify from its main process: READY, STATUS, WATCHDOG, STOPPING.
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert parse_duration(one("WatchdogSec")).total_seconds() >= 10
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("ExecStart") == f"{documented_smm()} run"
    assert one("Restart") == "on-failure"
    # A database outage of any length, or a crash loop while it lasts, never makes systemd
    # give up on the service: no start rate limit, and no start timeout while it waits.
    assert unit["Unit"].get("StartLimitIntervalSec") == ["0"]
    assert "StartLimitBurst" not in unit["Unit"]
    assert one("TimeoutStartSec") == "infinity"
    assert parse_duration(one("RestartSec")).total_seconds() <= 10
    assert "SMM_CONFIG=/etc/smm-scheduler/config.toml" in service["Environment"]
    # SIGTERM lets in-flight work finish within shutdown_deadline: systemd must wait longer.
    deadline = DaemonSettings().shutdown_deadline
    assert parse_duration(one("TimeoutStopSec")) >= deadline + parse_duration("10s")
    # The SQLite database lives in $STATE_DIRECTORY (scheduler/db/engine.py).
    assert one("StateDirectory") == "smm-scheduler"
    assert one("ConfigurationDirectory") == "smm-scheduler"
    assert one("DynamicUser") == "yes" or one("User") not in ("", "root")
    assert one("UMask") == "0077"
    assert one("MemoryDenyWriteExecute") == "yes"
    assert one("RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert one("CapabilityBoundingSet") == ""
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_every_credential_example_is_a_comment() -> None:
    """A LoadCredential= for a file that does not exist stops the service from starting, so
    the shipped unit only shows them; operators add theirs in a drop-in."""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        assert not line.startswith(("LoadCredential", "LoadCredentialEncrypted")), line


def test_the_documentation_the_unit_names_is_installed_by_the_documented_steps(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    """``systemctl help smm-scheduler`` opens a page the install steps put there."""
    (doc,) = unit["Unit"]["Documentation"]
    assert doc.startswith("file:")
    target = doc.removeprefix("file:")
    steps = DOCS.read_text(encoding="utf-8")
    installed = re.search(rf"^install -D -m 0644 (\S+) {re.escape(target)}\b", steps, re.M)
    assert installed, f"docs/operations.md does not install {target}"
    assert (REPO_ROOT / installed.group(1)).is_file()
