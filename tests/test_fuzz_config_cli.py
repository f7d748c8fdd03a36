"""Fuzzing the TOML config and the command line: no input ends in a traceback, every refusal
is exit 1 naming the file (2 for a usage error), and the database stays byte-for-byte the same.

Generated with hypothesis, derandomised (the same cases on every run, so a failure reproduces):
300 configs (structured ones built from the real keys with hostile values, and raw text) through
``smm config check``, and 250 argument vectors through the commands that read or move posts,
against a database holding the example plan. Every table's rows are hashed before and after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.cli import cli

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "example.toml"
PLAN = REPO / "config" / "example-plan.yaml"

CONFIG_CASES = 300
CLI_CASES = 250
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ------------------------------------------------------------------------------ the values

LONG_ZONE = "Z" * 10_000
#: Values from the issue's reproductions and their neighbours.
NASTY_STRINGS = [
    "",
    " ",
    "15m",
    "1h30m",
    "-5s",
    "1e300s",
    "99999999999999999999d",
    "inf",
    "nan",
    "09:00",
    "25:61",
    "Europe/Riga",
    "Europe/Rига",
    LONG_ZONE,
    "../../etc/passwd",
    "/dev/zero",
    "/proc/self/environ",
    "not a url",
    "postgresql+psycopg://smm@db:abc/smm",
    "postgresql+psycopg://smm:pw@db/smm",
    "sqlite:///",
    "mysql://x/y",
    "[::]:x",
    ":9464",
    "0.0.0.0:99999",
    "Bearer abc/def",
    "https://u:pw@h.example/x?token=abc",
    "http://hooks.example.com/x",
    "sim",
    "webhook",
    "debug",
    "\x1b]0;title\x07",
    "\u202e",
    "０１",
    "١",
    "\x00",
]
KEYS = [
    "database", "url", "logging", "level", "policies", "misfire_grace", "max_attempts",
    "backoff_base", "backoff_max", "daemon", "tick", "lease", "batch_size", "concurrency",
    "shutdown_deadline", "publish_timeout", "reconcile", "er", "half_life", "floor", "ceiling",
    "max_change", "min_posts", "frozen", "ages", "metrics", "listen", "media", "roots",
    "allow_hosts", "allow_networks", "fetch_timeout", "fetch_max_bytes", "max_redirects",
    "plugins", "accounts", "platform", "timezone", "options", "credentials", "slots", "enabled",
    "env", "file", "credential", "headers", "Authorization", "daily", "mon", "weekend",
    "hmac_secret", "bearer_token",
]  # fmt: skip

text = st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=30
)  # TOML cannot hold lone surrogates
scalars = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -0.0, 5e-324]),
    st.booleans(),
    st.times(),
)
keys = st.one_of(st.sampled_from(KEYS), text.filter(bool))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=10,
)
account = st.dictionaries(
    st.sampled_from(
        ["platform", "timezone", "options", "credentials", "slots", "policies", "enabled"]
    ),
    values,
    max_size=6,
)
config_tree = st.fixed_dictionaries(
    {},
    optional={
        "database": st.dictionaries(st.sampled_from(["url", "x"]), values, max_size=2),
        "logging": st.dictionaries(st.just("level"), values, max_size=1),
        "policies": st.dictionaries(st.sampled_from(KEYS[5:9]), values, max_size=3),
        "daemon": st.dictionaries(st.sampled_from(KEYS[10:17]), values, max_size=4),
        "er": st.dictionaries(st.sampled_from(KEYS[18:25]), values, max_size=4),
        "metrics": st.dictionaries(st.just("listen"), values, max_size=1),
        "media": st.dictionaries(st.sampled_from(KEYS[28:34]), values, max_size=3),
        "plugins": st.dictionaries(keys, values, max_size=2),
        "accounts": st.dictionaries(
            st.sampled_from(["a", "b.c", "-x", "shop"]), account, max_size=2
        ),
        "zzz": values,
    },
)


def toml_key(key: str) -> str:
    return toml_string(key)


def toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_document(tree: dict[str, Any]) -> str:
    lines = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"[{toml_key(key)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        else:
            lines.insert(0, f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


raw_configs = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda base, cut, junk: base[:cut] + junk + base[cut:],
        st.just(CONFIG.read_text(encoding="utf-8")),
        st.integers(min_value=0, max_value=2000),
        st.sampled_from(["[", "]", '"', "=", "\n[accounts]\n", "\x00", "{", "'''", "\ud7ff"]),
    ),
)

# ------------------------------------------------------------------------------ the database


def table_hashes(path: Path) -> dict[str, str]:
    """Every table's rows, hashed (sorted, so the order rows come back in does not count)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            t: hashlib.sha256(
                repr(sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"')))).encode()
            ).hexdigest()
            for t in tables
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A database with the example plan, its hashes, and a scratch working directory."""
    root = tmp_path_factory.mktemp("fuzz")
    db = root / "smm.db"
    url = f"sqlite:///{db}"
    result = CliRunner().invoke(
        cli, ["--config", str(CONFIG), "--db", url, "plan", "import", str(PLAN)]
    )
    assert result.exit_code == 0, result.output
    work = root / "cwd"
    work.mkdir()
    old = Path.cwd()
    os.chdir(work)  # whatever a case writes by a relative name lands here
    try:
        yield root, url, table_hashes(db)
    finally:
        os.chdir(old)


def check(result: Result, *, located: str | None = None, verdict: bool = False) -> None:
    """No traceback; 0, 1 or 2; a 1 is an error message (naming ``located``) unless the
    command's exit code is a verdict (``smm status``: 1 means it needs attention)."""
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in ((0, 1, 2, 3) if verdict else (0, 1, 2)), result.output
    if result.exit_code == 1 and not verdict:
        assert result.output.lstrip().startswith("error:"), result.output
        if located is not None:
            assert located in result.output, result.output
    if result.exit_code == 2:
        assert "Error:" in result.output


# ------------------------------------------------------------------------------ config


@settings(FUZZ, max_examples=CONFIG_CASES // 2)
@given(tree=config_tree)
def test_fuzzed_configs_end_in_ok_or_a_located_error(
    world: tuple[Path, str, dict[str, str]], tree: dict[str, Any]
) -> None:
    root, url, hashes = world
    path = root / "fuzz.toml"
    path.write_text(toml_document(tree), encoding="utf-8")

    result = CliRunner().invoke(cli, ["--config", str(path), "--db", url, "config", "check"])

    check(result, located=f"{path}, ")
    assert table_hashes(root / "smm.db") == hashes


@settings(FUZZ, max_examples=CONFIG_CASES // 2)
@given(source=raw_configs)
def test_fuzzed_config_text_ends_in_ok_or_a_located_error(
    world: tuple[Path, str, dict[str, str]], source: str
) -> None:
    root, url, hashes = world
    path = root / "raw.toml"
    path.write_bytes(source.encode("utf-8", "surrogatepass"))

    result = CliRunner().invoke(cli, ["--config", str(path), "--db", url, "config", "check"])

    check(result, located=str(path))
    assert table_hashes(root / "smm.db") == hashes


# ------------------------------------------------------------------------------ command line

#: Arguments that never name a stored post or account: the database must stay as it is.
hostile_args = st.one_of(
    st.sampled_from(
        [
            "99999999999999999999999",
            "-1",
            "0",
            "1.5",
            "1e3",
            "０１",
            "１",
            "١",
            "۱",
            "\udcff",
            "--",
            "-",
            "--json",
            "",
            " 1",
            "x" * 10_000,
            "riga-001\x00",
            "RIGA-001",
            "2027-01-15 10:00",
            "9999-12-31 23:59",
            "0001-01-01 00:00",
            "\x1b[31m",
            "'; DROP TABLE posts; --",
        ]
    ),
    st.integers(min_value=10**6).map(str),
    st.text(st.characters(exclude_characters="\n"), max_size=20).filter(
        lambda s: not s.strip().isascii() or not s.strip().isdigit() or int(s) > 10**6
    ),
).filter(lambda s: s not in cli.commands)  # a command name would run that command
db_urls = st.sampled_from(
    [
        None,
        "garbage",
        "postgresql+psycopg://smm@db:abc/smm",
        "postgresql+psycopg://smm:pw@db:99999999/smm",
        "mysql://x/y",
        "sqlite://",
        "sqlite:////nonexistent/dir/x.db",
    ]
)


def _commands(x: str, y: str, report: str) -> list[list[str]]:
    return [
        ["queue", "list", "--limit", x],
        ["queue", "list", "--state", x],
        ["queue", "list", "--account", x, "--type", y, "--json"],
        ["queue", "show", x],
        ["queue", "show", x, "--json"],
        ["queue", "cancel", x, y],
        ["queue", "retry", x],
        ["queue", "reschedule", x, "--at", y],
        ["queue", "pause", "--account", x],
        ["queue", "resume", "--account", x],
        ["accounts", "list"],
        ["status", "--json"],
        ["er", "--decisions", x],
        ["er", "history", "--limit", x, "--account", y],
        ["report", "--html", report, "--days", x],
        ["report", "--html", report, "--account", x],
        ["db", "current"],
        [x],
        ["queue", x],
    ]


@settings(FUZZ, max_examples=CLI_CASES)
@given(
    which=st.integers(min_value=0, max_value=18),
    x=hostile_args,
    y=hostile_args,
    db_url=db_urls,
)
def test_fuzzed_command_lines_never_trace_back_or_change_the_database(
    world: tuple[Path, str, dict[str, str]], which: int, x: str, y: str, db_url: str | None
) -> None:
    root, url, hashes = world
    argv = ["--db", db_url or url, *_commands(x, y, str(root / "report.html"))[which]]

    result = CliRunner().invoke(cli, argv)

    check(result, verdict="status" in argv)
    assert table_hashes(root / "smm.db") == hashes, f"{argv} changed the database"
