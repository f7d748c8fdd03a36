"""The config as hostile input: secrets written inline, credential names that leave their
directory, values that would fail only when used. Each is refused at load (and so by
``smm config check``) with the file, the line and the key path, and never echoes a secret."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.config import CredentialError, CredentialRef, parse_config
from scheduler.errors import InvalidInput

ACCOUNT = """
[accounts.hook]
platform = "webhook"
timezone = "UTC"
"""


def problems(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(InvalidInput) as caught:
        parse_config(text, "c.toml")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def only_problem(text: str) -> tuple[int | None, str | None, str]:
    (found,) = problems(text)
    return found


# ---------------------------------------------------------------------- inline secrets


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "authorization",
        "X-Api-Key",
        "X-Auth-Token",
        "Proxy-Authorization",
        "Cookie",
    ],
)
def test_a_header_named_like_a_credential_is_refused(header: str) -> None:
    text = ACCOUNT + (
        f'options.url = "https://h.example"\n'
        f'[accounts.hook.options.headers]\n{header} = "Bearer abc123xyz"\n'
    )

    line, field, message = only_problem(text)

    assert (line, field) == (7, f"accounts.hook.options.headers.{header}")
    assert "secret written inline" in message
    assert "abc123xyz" not in message


def test_ordinary_options_and_headers_pass() -> None:
    text = ACCOUNT + (
        'options.url = "https://h.example/in?lang=en&page=2"\n'
        'options.headers = { "X-Request-Source" = "smm", "Idempotency-Key" = "k" }\n'
        'options.author = "urn:li:organization:1"\n'
    )

    assert parse_config(text, "c.toml").accounts["hook"].options["author"]


def test_a_url_with_a_password_is_refused() -> None:
    line, field, message = only_problem(
        ACCOUNT + 'options.url = "https://u:hunter2pw@h.example/x"\n'
    )

    assert (line, field) == (5, "accounts.hook.options.url")
    assert "password" in message
    assert "hunter2pw" not in message


@pytest.mark.parametrize(
    "param", ["token", "access_token", "api_key", "key", "secret", "sig", "signature", "password"]
)
def test_a_url_with_a_secret_query_parameter_is_refused(param: str) -> None:
    _, field, message = only_problem(
        ACCOUNT + f'options.url = "https://h.example/x?a=1&{param}=s3cr3tv4lue"\n'
    )

    assert field == "accounts.hook.options.url"
    assert f"parameter {param!r}" in message
    assert "s3cr3tv4lue" not in message


def test_a_credential_name_leaving_the_credentials_directory_is_refused() -> None:
    text = ACCOUNT + 'credentials.bearer_token = { credential = "../../x" }\n'

    line, field, message = only_problem(text)

    assert (line, field) == (5, "accounts.hook.credentials.bearer_token")
    assert "leaves $CREDENTIALS_DIRECTORY" in message


@pytest.mark.parametrize("name", ["../../etc/shadow", "a/b", "/etc/shadow", "..", "."])
def test_a_credential_reference_never_reads_outside_its_directory(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "outside").write_text("not for you", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))

    with pytest.raises(CredentialError, match="leaves"):
        CredentialRef("credential", name).resolve()


def test_a_bearer_token_to_a_plain_http_url_is_refused() -> None:
    text = ACCOUNT + (
        'options.url = "http://hooks.example.com/in"\n'
        'credentials.bearer_token = { env = "HOOK_TOKEN" }\n'
    )

    line, field, message = only_problem(text)

    assert (line, field) == (5, "accounts.hook.options.url")
    assert "clear text" in message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.1", "[::1]"])
def test_a_bearer_token_to_this_machine_over_http_is_allowed(host: str) -> None:
    text = ACCOUNT + (
        f'options.url = "http://{host}:8080/in"\n'
        'credentials.bearer_token = { env = "HOOK_TOKEN" }\n'
    )

    assert parse_config(text, "c.toml").accounts["hook"].options["url"].startswith("http://")


def test_a_signing_secret_alone_may_go_to_plain_http() -> None:
    # The HMAC key signs the request and never leaves the machine.
    text = (
        ACCOUNT
        + 'options.url = "http://hooks.example.com/in"\ncredentials.hmac_secret = { env = "K" }\n'
    )

    assert parse_config(text, "c.toml").accounts["hook"]


def test_a_database_password_in_the_config_is_refused() -> None:
    line, field, message = only_problem(
        '[database]\nurl = "postgresql+psycopg://smm:pw-1234@db/smm"\n'
    )

    assert (line, field) == (2, "database.url")
    assert "pw-1234" not in message


def test_config_check_refuses_a_short_webhook_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Callable[..., Path]
) -> None:
    monkeypatch.setenv("HOOK_HMAC", "short-secret-of-25-bytes!")
    path = config_file(
        ACCOUNT
        + 'options.url = "https://h.example/in"\ncredentials.hmac_secret = { env = "HOOK_HMAC" }\n'
    )

    result = CliRunner().invoke(
        cli, ["--config", str(path), "--db", f"sqlite:///{tmp_path}/x.db", "config", "check"]
    )

    assert result.exit_code == 1, result.output
    assert "line 5, field 'accounts.hook.credentials.hmac_secret'" in result.output
    assert "25 bytes; at least 32" in result.output
    assert "short-secret" not in result.output


# ---------------------------------------------------------------------- every value checked


@pytest.mark.parametrize(
    ("toml", "field", "message"),
    [
        ("[daemon]\ntick = { seconds = 5 }", "daemon.tick", "not a duration: a table"),
        ("[daemon]\ntick = inf", "daemon.tick", "at most 3650 days"),
        ("[daemon]\ntick = nan", "daemon.tick", "not a duration: nan"),
        ("[daemon]\nlease = 1e300", "daemon.lease", "at most 3650 days"),
        ('[daemon]\nlease = "99999999999999999999d"', "daemon.lease", "at most 3650 days"),
        ("[policies]\nbackoff_max = [1, 2]", "policies.backoff_max", "not a duration: list"),
        ("[er]\nfloor = nan", "er.floor", "must be a finite number"),
        ("[er]\nceiling = inf", "er.ceiling", "must be a finite number"),
        ("[er]\nages = [{ h = 1 }]", "er.ages", "not a duration: a table"),
        ('[database]\nurl = "not a url"', "database.url", "cannot read database URL"),
        (
            '[database]\nurl = "postgresql+psycopg://smm@db:abc/smm"',
            "database.url",
            "port must be a number",
        ),
        ('[database]\nurl = "mysql://smm@db/smm"', "database.url", "unsupported database 'mysql'"),
        ("[database]\nurl = 5", "database.url", "must be a string"),
        ('[metrics]\nlisten = "[::]:x"', "metrics.listen", "bad metrics address"),
        ('[metrics]\nlisten = "host:99999"', "metrics.listen", "bad metrics address"),
        ("[metrics]\nlisten = 9464", "metrics.listen", "must be a string"),
        ("[logging]\nlevel = { a = 1 }", "logging.level", "unknown level"),
    ],
    ids=lambda v: v if "\n" not in v else v.split("\n")[1],
)
def test_a_bad_value_is_refused_at_load_with_its_key(toml: str, field: str, message: str) -> None:
    line, found_field, found = only_problem(toml + "\n")

    assert (line, found_field) == (2, field)
    assert message in found


def test_a_10000_character_zone_name_is_refused_with_a_short_message() -> None:
    text = f'[accounts.a]\nplatform = "sim"\ntimezone = "{"Z" * 10_000}"\n'

    line, field, message = only_problem(text)

    assert (line, field) == (3, "accounts.a.timezone")
    assert "unknown time zone" in message
    assert len(message) < 200


def test_metrics_on_a_bare_port_listen_on_loopback_only() -> None:
    from scheduler.observability import parse_listen

    config = parse_config('[metrics]\nlisten = ":9464"\n', "c.toml")

    assert parse_listen(str(config.metrics_listen)) == ("127.0.0.1", 9464)


@pytest.mark.parametrize(
    "toml",
    [
        "[er]\nfloor = nan",
        '[metrics]\nlisten = "[::]:x"',
        '[database]\nurl = "not a url"',
        "[daemon]\ntick = inf",
    ],
)
def test_config_check_exits_1_naming_file_and_key(
    toml: str, tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    path = config_file(toml + "\n")

    result = CliRunner().invoke(
        cli, ["--config", str(path), "--db", f"sqlite:///{tmp_path}/x.db", "config", "check"]
    )

    assert result.exit_code == 1
    assert f"{path}, line 2, field '{toml[1:].split(']')[0]}." in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "big"])
def test_a_credential_file_that_is_not_a_small_regular_file_is_missing_not_read(
    special: str, tmp_path: Path
) -> None:
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")  # opening it must not wait for a writer
    if special == "big":
        (tmp_path / "big").write_bytes(b"x" * (65 * 1024))
    ref = CredentialRef("file", special if special.startswith("/") else str(tmp_path / special))

    with pytest.raises(CredentialError, match=r"not a regular file|larger than 64 KiB"):
        ref.resolve()
    assert ref.available() is False
