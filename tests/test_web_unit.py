"""config/smm-scheduler-web.service: valid for systemd and hardened like the daemon's unit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_systemd_unit import REPO_ROOT, UNIT, analyze, parse_unit, run  # noqa: F401

WEB_UNIT = REPO_ROOT / "config" / "smm-scheduler-web.service"
#: The daemon's unit keys that are not about hardening (the web app differs there).
NOT_HARDENING = {
    "Type", "NotifyAccess", "ExecStart", "ExecReload", "Environment", "SyslogIdentifier",
    "WatchdogSec", "Restart", "RestartSec", "TimeoutStopSec", "TimeoutStartSec",
    # the daemon reaches the networks; the web app only localhost (checked below)
    "IPAddressDeny", "IPAddressAllow",
}  # fmt: skip


def test_the_web_unit_is_hardened_like_the_daemon() -> None:
    daemon = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    web = parse_unit(WEB_UNIT.read_text(encoding="utf-8"))["Service"]
    for key, values in daemon.items():
        if key not in NOT_HARDENING:
            assert web.get(key) == values, key
    assert web["ExecStart"] == ["/usr/bin/smm web"]
    # it calls no network: loopback only, for the proxy in front and a local database
    assert web["IPAddressDeny"] == ["any"]
    assert web["IPAddressAllow"] == ["localhost"]


def test_verify_accepts_the_web_unit(analyze: str, tmp_path: Path) -> None:  # noqa: F811
    smm = Path(sys.executable).with_name("smm")
    if not smm.exists():
        pytest.skip("no smm script beside this interpreter")
    text = WEB_UNIT.read_text(encoding="utf-8")
    copy = tmp_path / WEB_UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/bin/smm web", f"ExecStart={smm} web"))
    result = run(analyze, "verify", copy)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values, but names the file and line
    assert [ln for ln in (result.stdout + result.stderr).splitlines() if copy.name in ln] == []
