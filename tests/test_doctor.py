"""``smm doctor``: each check's OK and FAIL path, and the command's output and exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfoNotFoundError

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, text

from scheduler import plugins
from scheduler.adapter import Adapter, Capabilities
from scheduler.cli import cli, doctor
from scheduler.cli.doctor import Check, Level
from scheduler.config import Config, parse_config
from scheduler.db.engine import make_engine
from scheduler.hookspecs import hookimpl

SIM = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
"""


def levels(checks: Sequence[Check]) -> dict[str, Level]:
    return {c.name: c.level for c in checks}


def config(text: str) -> Config:
    return parse_config(text, "config.toml")


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


# ----------------------------------------------------------------------------- config


def test_a_valid_config_is_ok(config_file: Callable[..., Path]) -> None:
    path = config_file(SIM)
    (check,), loaded = doctor.check_config(path)
    assert check == Check("config", Level.OK, f"{path}: valid, 1 account(s)")
    assert loaded is not None
    assert list(loaded.accounts) == ["riga"]


def test_no_config_fails_with_where_to_put_one() -> None:
    (check,), loaded = doctor.check_config(None)
    assert (check.level, loaded) == (Level.FAIL, None)
    assert "SMM_CONFIG" in check.fix


def test_an_invalid_config_fails_naming_the_problem(config_file: Callable[..., Path]) -> None:
    path = config_file('[accounts.riga]\nplatform = "sim"\ntimezone = "Mars/Olympus"\n')
    (check,), loaded = doctor.check_config(path)
    assert (check.level, loaded) == (Level.FAIL, None)
    assert "accounts.riga.timezone" in check.message


def test_metrics_without_prometheus_client_warn(
    config_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    checks, _ = doctor.check_config(config_file(SIM + '[metrics]\nlisten = "127.0.0.1:9464"\n'))
    assert levels(checks) == {"config": Level.OK, "metrics": Level.WARN}
    assert checks[1].fix == "pip install 'smm-scheduler[metrics]'"


# ----------------------------------------------------------------------------- database


def test_a_reachable_database_is_ok(engine: Engine) -> None:
    assert doctor.check_database(engine).level == Level.OK


def test_an_unreachable_database_fails(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}")  # a directory, not a database file
    try:
        check = doctor.check_database(engine)
    finally:
        engine.dispose()
    assert check.level == Level.FAIL
    assert "unable to open database file" in check.message


def test_a_schema_at_head_is_ok(engine: Engine) -> None:
    assert doctor.check_schema(engine).level == Level.OK


def test_an_empty_database_needs_init(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        check = doctor.check_schema(engine)
    finally:
        engine.dispose()
    assert (check.level, check.fix) == (Level.FAIL, "run `smm init`")


def test_an_older_schema_needs_an_upgrade(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "head_revision", lambda: "0099")
    check = doctor.check_schema(sqlite_engine)
    assert check.level == Level.FAIL
    assert "smm db upgrade" in check.fix


def test_a_schema_from_a_newer_version_says_to_upgrade_the_software(
    sqlite_engine: Engine,
) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    check = doctor.check_schema(sqlite_engine)
    assert check.level == Level.FAIL
    assert check.fix == "upgrade smm-scheduler, not the database"


def test_sqlite_in_wal_mode_with_room_is_ok(sqlite_engine: Engine, sqlite_url: str) -> None:
    path = doctor.sqlite_file(sqlite_url)
    assert path is not None
    assert {c.level for c in doctor.check_sqlite(sqlite_engine, path)} == {Level.OK}


def test_sqlite_without_wal_warns(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    engine = create_engine(f"sqlite:///{path}")  # no project settings: rollback journal
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        checks = doctor.check_sqlite(engine, path)
    finally:
        engine.dispose()
    assert levels(checks)["sqlite wal"] == Level.WARN


def test_an_unwritable_sqlite_file_fails(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = doctor.sqlite_file(sqlite_url)
    assert path is not None
    real_access = os.access
    # Tests may run as root, who can write anything: pretend the file is read-only.
    monkeypatch.setattr(os, "access", lambda p, mode: p != path and real_access(p, mode))
    check = levels(doctor.check_sqlite(sqlite_engine, path))
    assert check["sqlite writable"] == Level.FAIL


@pytest.mark.parametrize(
    ("free_mb", "level"), [(10, Level.FAIL), (100, Level.WARN), (10_000, Level.OK)]
)
def test_free_disk_space_is_checked(
    sqlite_engine: Engine,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    free_mb: int,
    level: Level,
) -> None:
    path = doctor.sqlite_file(sqlite_url)
    assert path is not None
    usage = shutil.disk_usage(path.parent)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=free_mb * 1024**2))
    assert levels(doctor.check_sqlite(sqlite_engine, path))["disk space"] == level


def test_a_missing_sqlite_file_fails_without_creating_it(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    db = tmp_path / "nowhere" / "smm.db"
    result = CliRunner().invoke(
        cli, ["--db", f"sqlite:///{db}", "--config", str(config_file(SIM)), "doctor", "--json"]
    )
    assert result.exit_code == 1
    (check,) = [c for c in json.loads(result.output)["checks"] if c["name"] == "database"]
    assert check["level"] == "fail"
    assert "smm init" in check["fix"]
    assert not db.parent.exists()


# ----------------------------------------------------------------------------- credentials

CREDENTIALS = """
[accounts.masto]
platform = "mastodon"
timezone = "UTC"
options = { instance = "https://example.social" }
credentials.access_token = { env = "DOCTOR_TEST_TOKEN" }
"""


def test_present_credentials_are_ok_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCTOR_TEST_TOKEN", "s3cr3t-value-123")
    (check,) = doctor.check_credentials(config(CREDENTIALS))
    assert check == Check("credentials masto", Level.OK, "present: access_token")


def test_missing_credentials_fail_naming_where_they_should_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCTOR_TEST_TOKEN", raising=False)
    (check,) = doctor.check_credentials(config(CREDENTIALS))
    assert check.level == Level.FAIL
    assert check.message == (
        "access_token missing: environment variable DOCTOR_TEST_TOKEN is not set"
    )
    assert check.fix.startswith("set DOCTOR_TEST_TOKEN in the daemon's environment")


def test_a_missing_credential_file_fails(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    text_ = CREDENTIALS.replace('{ env = "DOCTOR_TEST_TOKEN" }', f'{{ file = "{secret}" }}')
    (check,) = doctor.check_credentials(config(text_))
    assert check.level == Level.FAIL
    assert f"create {secret}" in check.fix
    secret.write_text("abc-token-xyz\n")
    (check,) = doctor.check_credentials(config(text_))
    assert check.level == Level.OK


def test_systemd_credentials_outside_the_service_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text_ = CREDENTIALS.replace('{ env = "DOCTOR_TEST_TOKEN" }', '{ credential = "masto" }')
    (check,) = doctor.check_credentials(config(text_))
    assert check.level == Level.WARN
    assert "readable only inside the service" in check.message


def test_the_doctor_command_never_prints_a_secret(
    sqlite_url: str, config_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCTOR_TEST_TOKEN", "s3cr3t-value-123")
    path = config_file(CREDENTIALS)
    for args in ([], ["--json"]):
        result = CliRunner().invoke(
            cli, ["--db", sqlite_url, "--config", str(path), "doctor", *args]
        )
        assert "s3cr3t-value-123" not in result.output
        assert "present: access_token" in result.output


# ----------------------------------------------------------------------------- plugins


def test_plugins_that_load_and_cover_every_platform_are_ok() -> None:
    checks = doctor.check_plugins(config(SIM))
    assert levels(checks) == {"plugins": Level.OK}
    assert "sim" in checks[0].message


def test_an_account_whose_platform_has_no_plugin_fails() -> None:
    checks = doctor.check_plugins(config('[accounts.a]\nplatform = "myspace"\ntimezone = "UTC"\n'))
    assert levels(checks) == {"plugins": Level.OK, "platform myspace": Level.FAIL}
    assert "used by a" in checks[1].message


def test_an_account_its_plugin_finds_unusable_fails_as_config_check_says() -> None:
    bare = config('[accounts.toots]\nplatform = "mastodon"\ntimezone = "UTC"\n')
    checks = doctor.check_plugins(bare)
    assert levels(checks) == {"plugins": Level.OK, "account toots": Level.FAIL}
    assert "options.instance: missing" in checks[1].message
    assert "credentials.access_token: missing" in checks[1].message
    assert "smm config check" in checks[1].fix
    disabled = config(
        '[accounts.toots]\nplatform = "mastodon"\ntimezone = "UTC"\nenabled = false\n'
    )
    assert levels(doctor.check_plugins(disabled)) == {"plugins": Level.OK}


def test_a_plugin_that_failed_to_load_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = {"smm_broken": "ImportError: No module named 'smm_broken'"}
    monkeypatch.setattr(plugins, "load_failures", lambda: failures)
    (check,) = doctor.check_plugins(None)
    assert check.level == Level.FAIL
    assert "smm_broken: ImportError" in check.message


class DuplicateSim:
    class Adapter(Adapter):
        platform: ClassVar[str] = "sim"
        capabilities: ClassVar[Capabilities] = Capabilities(text_limit=10)

        async def publish(self, *args: Any) -> Any:
            raise NotImplementedError

    @staticmethod
    @hookimpl
    def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
        register(DuplicateSim.Adapter)


def test_two_plugins_claiming_one_platform_fail() -> None:
    plugins.register_plugin(DuplicateSim, name="duplicate-sim")
    try:
        (check,) = doctor.check_plugins(config(SIM))
    finally:
        plugins.unregister_plugin("duplicate-sim")
    assert check.level == Level.FAIL
    assert "platform 'sim' is registered by both" in check.message


# ----------------------------------------------------------------------------- time


def test_time_zone_data_for_every_account_is_ok() -> None:
    check = doctor.check_timezones(config(SIM))
    assert check.level == Level.OK


def test_missing_time_zone_data_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_data(name: str) -> Any:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(doctor, "ZoneInfo", no_data)
    check = doctor.check_timezones(config(SIM))
    assert check.level == Level.FAIL
    assert "Europe/Riga" in check.message
    assert "tzdata" in check.fix


def timedatectl(stdout: str = "", returncode: int = 0, missing: bool = False) -> Any:
    def run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if missing:
            raise FileNotFoundError(cmd[0])
        return subprocess.CompletedProcess(cmd, returncode, stdout, "")

    return run


@pytest.mark.parametrize(
    ("run", "level"),
    [
        (timedatectl("yes\n"), Level.OK),
        (timedatectl("no\n"), Level.WARN),
        (timedatectl(returncode=1), Level.SKIP),  # no systemd (containers)
        (timedatectl(missing=True), Level.SKIP),
    ],
)
def test_ntp_sync_is_read_from_timedatectl_when_there_is_one(run: Any, level: Level) -> None:
    checks = doctor.check_clock(None, run=run)
    assert levels(checks) == {"clock": Level.OK, "time sync": level}


def test_a_clock_in_1970_fails() -> None:
    checks = doctor.check_clock(
        None, now=lambda: datetime(1970, 1, 1, tzinfo=UTC), run=timedatectl("yes")
    )
    assert levels(checks)["clock"] == Level.FAIL


@pytest.mark.parametrize(
    ("offset", "level"),
    [
        (timedelta(0), Level.OK),
        (timedelta(seconds=10), Level.WARN),
        (timedelta(minutes=5), Level.FAIL),
    ],
)
def test_the_clock_is_compared_with_postgresql(
    postgres_url: str, offset: timedelta, level: Level
) -> None:
    engine = make_engine(postgres_url)
    try:
        checks = doctor.check_clock(
            engine, now=lambda: datetime.now(UTC) - offset, run=timedatectl("yes")
        )
    finally:
        engine.dispose()
    assert levels(checks)["clock skew"] == level


def test_sqlite_has_no_server_clock_to_compare(sqlite_engine: Engine) -> None:
    assert "clock skew" not in levels(doctor.check_clock(sqlite_engine, run=timedatectl("yes")))


# ----------------------------------------------------------------------------- the command


def test_a_healthy_installation_exits_0(
    db_url: str, config_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "_run", timedatectl("yes"))
    args = ["--db", db_url, "--config", str(config_file(SIM)), "doctor"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert {c["level"] for c in report["checks"]} == {"ok"}
    text_ = CliRunner().invoke(cli, args).output
    assert text_.splitlines()[0].startswith("OK    config")
    assert text_.rstrip().endswith("all good")


def test_any_failure_exits_1_and_prints_the_fix(
    sqlite_url: str, config_file: Callable[..., Path]
) -> None:
    path = config_file('[accounts.a]\nplatform = "myspace"\ntimezone = "UTC"\n')
    result = CliRunner().invoke(cli, ["--db", sqlite_url, "--config", str(path), "doctor"])
    assert result.exit_code == 1
    assert "FAIL  platform myspace" in result.output
    assert "fix: install the plugin for myspace" in result.output
    assert "1 failed" in result.output


def test_an_unreadable_database_url_fails_and_the_other_checks_still_run(
    config_file: Callable[..., Path],
) -> None:
    path = config_file(SIM)
    result = CliRunner().invoke(
        cli, ["--db", "nonsense", "--config", str(path), "doctor", "--json"]
    )
    assert result.exit_code == 1
    checks = levels([Check(**c) for c in json.loads(result.output)["checks"]])
    assert checks["database"] == "fail"
    assert checks["plugins"] == checks["time zones"] == "ok"
