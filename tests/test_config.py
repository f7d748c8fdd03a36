"""The TOML config: what a valid file gives, and how each mistake is reported.

Every problem must name the file, the line and the key path, and say how to fix it; a secret
written in the file must never be echoed back.
"""

from __future__ import annotations

import textwrap
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.config import (
    Config,
    CredentialError,
    CredentialRef,
    Policies,
    load_config,
    parse_config,
)
from scheduler.errors import InvalidInput, Problem

FILE = "smm.toml"

FULL_CONFIG = """\
[database]
url = "postgresql+psycopg://smm@/smm?host=/var/run/postgresql"

[logging]
level = "DEBUG"

[policies]
misfire_grace = "30m"
max_attempts = 3
backoff_base = "10s"
backoff_max = "2h"

[daemon]
tick = "2s"
lease = "90s"
batch_size = 50
shutdown_deadline = "10s"
publish_timeout = "45s"
concurrency = 8
reconcile = "2m"

[er]
half_life = "7d"
floor = 0.05
ceiling = 0.5
max_change = 0.2
min_posts = 3
frozen = true
ages = ["6h", "24h"]

[metrics]
listen = "127.0.0.1:9464"

[plugins.webhook]
retries = 2

[accounts.riga_news]
platform = "mastodon"
timezone = "Europe/Riga"
enabled = false
[accounts.riga_news.options]
instance = "https://mastodon.example"
[accounts.riga_news.credentials]
access_token = { env = "RIGA_TOKEN" }
[accounts.riga_news.slots]
weekdays = ["09:00", "17:30"]
[accounts.riga_news.policies]
max_attempts = 7
"""


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), FILE)


def problems_in(text: str) -> list[Problem]:
    with pytest.raises(InvalidInput) as err:
        parse(text)
    return err.value.problems


def the_problem(text: str) -> Problem:
    problems = problems_in(text)
    assert len(problems) == 1, problems
    return problems[0]


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the first line of ``text`` that contains ``needle``."""
    lines = textwrap.dedent(text).splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def account(body: str, name: str = "riga") -> str:
    """A valid account table with ``body`` appended (sub-tables or keys)."""
    return f'[accounts.{name}]\nplatform = "mastodon"\ntimezone = "Europe/Riga"\n{body}'


# --------------------------------------------------------------------------------- valid input


def test_full_config_gives_every_setting() -> None:
    config = parse(FULL_CONFIG)

    assert config.database_url == "postgresql+psycopg://smm@/smm?host=/var/run/postgresql"
    assert config.log_level == "debug"
    assert config.policies == Policies(
        misfire_grace=timedelta(minutes=30),
        max_attempts=3,
        backoff_base=timedelta(seconds=10),
        backoff_max=timedelta(hours=2),
    )
    assert (config.daemon.tick, config.daemon.lease) == (
        timedelta(seconds=2),
        timedelta(seconds=90),
    )
    assert (config.daemon.batch_size, config.daemon.concurrency) == (50, 8)
    assert config.daemon.shutdown_deadline == timedelta(seconds=10)
    assert config.daemon.publish_timeout == timedelta(seconds=45)
    assert config.daemon.reconcile == timedelta(minutes=2)
    assert config.er.half_life == timedelta(days=7)
    assert (config.er.floor, config.er.ceiling, config.er.max_change) == (0.05, 0.5, 0.2)
    assert (config.er.min_posts, config.er.frozen) == (3, True)
    assert config.er.ages == (timedelta(hours=6), timedelta(hours=24))
    assert config.metrics_listen == "127.0.0.1:9464"
    assert config.plugins == {"webhook": {"retries": 2}}


def test_full_config_gives_the_account() -> None:
    riga = parse(FULL_CONFIG).accounts["riga_news"]

    assert (riga.name, riga.platform, riga.timezone) == ("riga_news", "mastodon", "Europe/Riga")
    assert riga.tz.key == "Europe/Riga"
    assert riga.enabled is False
    assert riga.options == {"instance": "https://mastodon.example"}
    assert riga.credentials == {"access_token": CredentialRef("env", "RIGA_TOKEN")}
    assert riga.slots == {day: (time(9, 0), time(17, 30)) for day in range(5)}
    assert riga.policies.max_attempts == 7


def test_empty_config_gives_the_defaults() -> None:
    config = parse("")

    assert config.accounts == {}
    assert config.policies == Policies()
    assert config.database_url is None
    assert config.log_level == "info"


def test_load_config_reads_the_file_and_keeps_its_path(
    config_file: Any,
) -> None:
    path = config_file(account(""))

    config = load_config(path)

    assert config.path == path
    assert config.source == str(path)
    assert list(config.accounts) == ["riga"]


def test_example_config_is_valid(example_config: Config) -> None:
    assert example_config.accounts


def test_slot_shorthands_merge_into_sorted_days() -> None:
    config = parse(
        account(
            """
            [accounts.riga.slots]
            sat = ["08:00", "09:00"]
            daily = ["21:00", "09:00"]
            weekdays = ["12:00"]
            weekend = ["10:00"]
            mon = ["07:15"]
            """
        )
    )

    slots = config.accounts["riga"].slots
    assert slots[0] == (time(7, 15), time(9, 0), time(12, 0), time(21, 0))
    assert slots[2] == (time(9, 0), time(12, 0), time(21, 0))
    assert slots[5] == (time(8, 0), time(9, 0), time(10, 0), time(21, 0))
    assert slots[6] == (time(9, 0), time(10, 0), time(21, 0))
    assert list(slots) == list(range(7))


def test_slot_times_may_be_toml_times() -> None:
    config = parse(account("[accounts.riga.slots]\nmon = [09:30:00]\n"))

    assert config.accounts["riga"].slots == {0: (time(9, 30),)}


def test_account_policies_inherit_the_top_level_ones() -> None:
    config = parse(
        """
        [policies]
        misfire_grace = "45m"
        backoff_max = "3h"
        """
        + account('[accounts.riga.policies]\nmax_attempts = 2\nbackoff_max = "10m"\n')
    )

    assert config.accounts["riga"].policies == Policies(
        misfire_grace=timedelta(minutes=45),
        max_attempts=2,
        backoff_base=Policies().backoff_base,
        backoff_max=timedelta(minutes=10),
    )


def test_account_without_policies_takes_the_top_level_ones() -> None:
    config = parse("[policies]\nmax_attempts = 9\n" + account(""))

    assert config.accounts["riga"].policies == config.policies


# --------------------------------------------------------------------------------- problems


def test_unknown_key_is_reported_with_a_did_you_mean() -> None:
    text = '[daemon]\ntick = "5s"\ntikc = "5s"\n'

    problem = the_problem(text)

    assert (problem.file, problem.line, problem.field) == (FILE, 3, "daemon.tikc")
    assert problem.message == "unknown key 'tikc'"
    assert problem.hint == "did you mean 'tick'?"


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    problem = the_problem("[metrics]\nport = 9464\n")

    assert (problem.line, problem.field) == (2, "metrics.port")
    assert problem.hint == "known keys: listen"


def test_unknown_account_key_is_reported_at_its_line() -> None:
    text = account('time_zone = "Europe/Riga"\n')

    problem = the_problem(text)

    assert (problem.line, problem.field) == (line_of(text, "time_zone"), "accounts.riga.time_zone")
    assert problem.hint == "did you mean 'timezone'?"


def test_unknown_time_zone_is_reported_with_a_hint() -> None:
    text = '[accounts.riga]\nplatform = "mastodon"\ntimezone = "Europe/Rgia"\n'

    problem = the_problem(text)

    assert (problem.line, problem.field) == (3, "accounts.riga.timezone")
    assert problem.message == "unknown time zone 'Europe/Rgia'"
    assert "IANA" in problem.hint


def test_missing_time_zone_is_reported() -> None:
    problem = the_problem('[accounts.riga]\nplatform = "mastodon"\n')

    assert (problem.line, problem.field) == (1, "accounts.riga.timezone")
    assert problem.message == "missing time zone"


def test_bad_slot_time_is_reported_with_its_index() -> None:
    text = account('[accounts.riga.slots]\nmon = ["09:00", "25:00"]\n')

    problem = the_problem(text)

    assert (problem.line, problem.field) == (line_of(text, "mon ="), "accounts.riga.slots.mon[1]")
    assert "25:00" in problem.message
    assert "HH:MM" in problem.hint


def test_unknown_weekday_is_reported_with_a_did_you_mean() -> None:
    text = account('[accounts.riga.slots]\nmonday = ["09:00"]\n')

    problem = the_problem(text)

    assert (problem.line, problem.field) == (line_of(text, "monday"), "accounts.riga.slots.monday")
    assert problem.message == "unknown day 'monday'"
    assert problem.hint == "did you mean 'mon'?"


SECRET = "glpat-Zq8XvN3mK2pL9wR4tY7u"


def test_secret_written_in_credentials_is_refused_without_echoing_it() -> None:
    text = account(f'[accounts.riga.credentials]\naccess_token = "{SECRET}"\n')

    with pytest.raises(InvalidInput) as err:
        parse(text)

    (problem,) = err.value.problems
    assert problem.field == "accounts.riga.credentials.access_token"
    assert problem.line == line_of(text, "access_token")
    assert problem.message == "a secret must not be written in the config"
    assert '{ env = "VAR" }' in problem.hint
    assert SECRET not in str(err.value)
    assert SECRET not in repr(problem.as_dict())


def test_secret_looking_inline_option_is_refused_without_echoing_it() -> None:
    text = account(f'[accounts.riga.options]\napi_key = "{SECRET}"\n')

    with pytest.raises(InvalidInput) as err:
        parse(text)

    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (
        line_of(text, "api_key"),
        "accounts.riga.options.api_key",
    )
    assert "[accounts.riga.credentials]" in problem.hint
    assert SECRET not in str(err.value)


def test_unknown_credential_source_is_reported() -> None:
    text = account('[accounts.riga.credentials]\naccess_token = { vault = "riga" }\n')

    problem = the_problem(text)

    assert problem.field == "accounts.riga.credentials.access_token"
    assert problem.message == "unknown credential source 'vault'"


def test_bad_duration_is_reported_with_examples() -> None:
    problem = the_problem('[policies]\nmisfire_grace = "15 minutes"\n')

    assert (problem.file, problem.line, problem.field) == (FILE, 2, "policies.misfire_grace")
    assert "15 minutes" in problem.message
    assert problem.hint == "examples: 90s, 15m, 1h30m, 2d"
    assert "examples" not in problem.message  # said once, in the hint


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ("[accounts]\n".encode("utf-16"), 1),  # an editor's "Unicode": UTF-16 with its BOM
        ('[logging]\nlevel = "info"\n# café\n'.encode("latin-1"), 3),
    ],
    ids=["utf-16", "latin-1"],
)
def test_a_config_that_is_not_utf8_says_where_and_what_to_do(
    tmp_path: Path, data: bytes, line: int
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    with pytest.raises(InvalidInput) as err:
        load_config(path)
    (problem,) = err.value.problems
    assert (problem.line, problem.message) == (line, "not UTF-8 text")
    assert "save the file as UTF-8" in problem.hint
    assert "codec" not in str(err.value)


def test_concurrency_is_auto_unless_a_number_is_given() -> None:
    assert parse("").daemon.concurrency == 0  # "auto": what the networks take at once
    assert parse('[daemon]\nconcurrency = "auto"\n').daemon.concurrency == 0
    assert parse("[daemon]\nconcurrency = 0\n").daemon.concurrency == 0
    assert parse("[daemon]\nconcurrency = 300\n").daemon.concurrency == 300
    problem = the_problem('[daemon]\nconcurrency = "fast"\n')
    assert (problem.line, problem.field) == (2, "daemon.concurrency")


def test_number_out_of_range_is_reported() -> None:
    problem = the_problem("[daemon]\nbatch_size = 0\n")

    assert (problem.line, problem.field) == (2, "daemon.batch_size")
    assert "out of range" in problem.message


def test_floor_above_ceiling_is_reported() -> None:
    problem = the_problem("[er]\nfloor = 0.7\nceiling = 0.5\n")

    assert (problem.line, problem.field) == (2, "er.floor")
    assert problem.message == "floor is above ceiling"
    assert problem.hint == "keep floor <= ceiling"


def test_invalid_toml_is_reported_with_its_line() -> None:
    problem = the_problem('[daemon]\ntick = "5s"\nlease = \n')

    assert (problem.file, problem.line) == (FILE, 3)
    assert problem.message.startswith("not valid TOML")


def test_all_problems_are_reported_together() -> None:
    text = (
        '[daemon]\ntick = "soon"\n[er]\nfloor = 0.9\nceiling = 0.1\n'
        + '[accounts.riga]\nplatform = "mastodon"\ntimezone = "Mars/Olympus"\n'
        + '[accounts.riga.slots]\nfunday = ["09:00"]\n'
    )

    with pytest.raises(InvalidInput) as err:
        parse(text)

    assert [(p.line, p.field) for p in err.value.problems] == [
        (2, "daemon.tick"),
        (4, "er.floor"),
        (8, "accounts.riga.timezone"),
        (10, "accounts.riga.slots.funday"),
    ]
    assert str(err.value).startswith(f"config {FILE} has 4 problems:")


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="file not found"):
        load_config(tmp_path / "nope.toml")


# --------------------------------------------------------------------------------- credentials


def test_credential_resolves_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIGA_TOKEN", SECRET)

    assert CredentialRef("env", "RIGA_TOKEN").resolve() == SECRET


def test_credential_resolves_from_a_file_without_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n", encoding="utf-8")

    assert CredentialRef("file", str(path)).resolve() == SECRET


def test_credential_resolves_from_the_systemd_credentials_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "riga_token").write_text(SECRET, encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    assert CredentialRef("credential", "riga_token").resolve() == SECRET


def test_unavailable_credential_is_reported_as_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RIGA_TOKEN", raising=False)

    assert not CredentialRef("env", "RIGA_TOKEN").available()


@pytest.fixture
def secret_nearby(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The secret is in the environment and in a credentials directory, under other names."""
    monkeypatch.setenv("RIGA_TOKEN", SECRET)
    monkeypatch.setenv("EMPTY_TOKEN", "")
    (tmp_path / "riga_token").write_text(SECRET, encoding="utf-8")
    (tmp_path / "a_directory").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (CredentialRef("env", "RIGA_TOKN"), "environment variable RIGA_TOKN is not set"),
        (CredentialRef("env", "EMPTY_TOKEN"), "environment variable EMPTY_TOKEN is not set"),
        (CredentialRef("file", "/nonexistent/riga_token"), "No such file or directory"),
        (CredentialRef("credential", "riga_tokn"), "systemd credential riga_tokn"),
        (CredentialRef("credential", "a_directory"), "Is a directory"),
    ],
    ids=["env-unset", "env-empty", "file-missing", "credential-missing", "not-a-file"],
)
def test_credential_errors_say_what_is_wrong_without_the_secret(
    secret_nearby: Path, ref: CredentialRef, message: str
) -> None:
    with pytest.raises(CredentialError, match=message) as err:
        ref.resolve()

    assert SECRET not in str(err.value)


def test_systemd_credential_outside_systemd_says_how_to_provide_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    with pytest.raises(CredentialError, match="LoadCredential="):
        CredentialRef("credential", "riga_token").resolve()


def test_credential_file_that_is_not_text_is_a_credential_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())

    with pytest.raises(CredentialError):
        CredentialRef("file", str(path)).resolve()


def test_trusted_proxies_are_addresses_written_as_requests_show_them() -> None:
    """The web app compares a request's peer address with these as text: a host name, a
    network or a mistyped address would never match and is refused; an IPv6 address is
    kept in its short form, the one a connection's peer address has."""
    web = parse('[web]\ntrusted_proxies = ["10.0.0.5", "0:0:0:0:0:0:0:1"]\n').web
    assert web.trusted_proxies == ("10.0.0.5", "::1")
    for bad in ("proxy.internal", "10.0.0.0/8", "10.0.0.256"):
        problem = the_problem(f'[web]\ntrusted_proxies = ["::1", "{bad}"]\n')
        assert (problem.line, problem.field) == (2, "web.trusted_proxies")
        assert bad in problem.message


@pytest.mark.parametrize(
    "text",
    [
        '[web]\nauth = "{long}"\n',
        '[web]\nlisten = "{long}"\n',
        '[web]\nproxy_header = "{long}:"\n',
        '[media]\nroots = ["/{long}/.."]\n',
        '[accounts."{long}"]\nplatform = "sim"\ntimezone = "UTC"\n',
        '[accounts.a]\nplatform = "sim"\ntimezone = "UTC"\napproval = "{long}"\n',
        '[accounts.a]\nplatform = "sim"\ntimezone = "UTC"\nslots = {{ "{long}" = [] }}\n',
        '[policies]\n"{long}" = 1\n',
    ],
)
def test_a_long_bad_value_or_key_is_quoted_cut_short(text: str) -> None:
    problem = the_problem(text.format(long="z" * 5000))
    assert "zzzz" in problem.message
    assert len(str(problem)) < 600, problem
    assert len(str(problem.as_dict())) < 600, problem
