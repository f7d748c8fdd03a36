"""Secrets are masked in every form a server may echo them: escaped, encoded, cut short.

The end-to-end test sends posts through the daemon to a webhook receiver (httpx
``MockTransport``) that answers 401 quoting the bearer token the way real servers do, then
reads every place the answer can land: the attempt, the post, the paused account, the log and
``smm status``.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from click.testing import CliRunner
from daemon_support import attempt_rows, no_pending, post_rows, run_service, seed_posts
from sqlalchemy import select

from scheduler.cli import cli
from scheduler.config import load_config
from scheduler.db.engine import make_engine
from scheduler.logging import MASK, configure_logging, redact, register_secret, reset_logging
from scheduler.queue import accounts_t, posts_t
from scheduler.redaction import FRAGMENT, KEPT_PER_SOURCE, SecretMatcher


def windows(text: str, n: int = FRAGMENT) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def leaked(output: str, *forms: str) -> set[str]:
    """The 8-character runs of any of ``forms`` still present in ``output``."""
    return {w for form in forms for w in windows(form) if w in output}


def unique_token(extra: str = "") -> str:
    # Long, and with the characters that encodings change.
    return "tk" + secrets.token_urlsafe(24) + extra + secrets.token_hex(6)


def _b64(token: str, align: int, *, urlsafe: bool = False) -> str:
    raw = b"ab"[:align] + token.encode() + b"--"
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda t: t,
    "json-slash-escaped": lambda t: json.dumps(t)[1:-1].replace("/", "\\/"),
    "json-quote-and-backslash": lambda t: json.dumps(t)[1:-1],
    "json-every-char-as-uXXXX": lambda t: "".join(f"\\u{ord(c):04X}" for c in t),
    "json-some-chars-as-uxxxx": lambda t: "".join(
        f"\\u{ord(c):04x}" if i % 3 == 0 else c for i, c in enumerate(t)
    ),
    "url-percent": lambda t: quote(t, safe=""),
    "url-percent-lowercase-hex": lambda t: quote(t, safe="").replace("%2F", "%2f"),
    "url-plus-form": lambda t: quote_plus(t, safe=""),
    "url-slash-kept": lambda t: quote(t),
    "html-named": lambda t: html.escape(t),
    "html-numeric": lambda t: "".join(f"&#{ord(c)};" for c in t),
    "html-hex": lambda t: "".join(f"&#x{ord(c):x};" if not c.isalnum() else c for c in t),
    **{
        f"base64-{'urlsafe' if u else 'standard'}-align-{a}": (
            lambda t, a=a, u=u: _b64(t, a, urlsafe=u)
        )
        for a in range(3)
        for u in (False, True)
    },
    "fragment-of-10": lambda t: t[7:17],
    "json-escaped-fragment": lambda t: json.dumps(t[3:20])[1:-1].replace("/", "\\/"),
}


@pytest.fixture
def token() -> str:
    value = unique_token('/"\\+ é=')
    register_secret(value)
    return value


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_registered_secret_is_masked_in_every_encoding(encoding: str, token: str) -> None:
    echoed = ENCODINGS[encoding](token)

    out = redact(f'{{"error": "invalid credential {echoed}", "code": 401}}')

    assert MASK in out
    assert not leaked(out, echoed, token), out
    assert out.startswith('{"error": "invalid credential ')
    assert out.endswith('", "code": 401}')


def test_a_bearer_token_echoed_with_escaped_slashes_leaks_nothing(token: str) -> None:
    # PHP's json_encode writes "/" as "\/": the exact-value match of old missed the rest.
    body = json.dumps({"message": f"token {token} revoked"}).replace("/", "\\/")

    out = redact(f"HTTP 401 Unauthorized: {body}")

    assert leaked(out, token, json.dumps(token)[1:-1].replace("/", "\\/")) == set()


def test_escapes_of_different_kinds_mixed_in_one_echo_are_read_together() -> None:
    token = "abc/def+ghi=jkl&mno"
    register_secret(token)
    echoed = "abc\\/def%2Bghi&#61;jkl&amp;mno"

    assert redact(f"[{echoed}]") == f"[{MASK}]"


def test_an_unregistered_bearer_token_with_escaped_slashes_is_masked_whole() -> None:
    out = redact('{"error": "Bearer abc\\/def\\/ghi+jk= is invalid"}')

    assert out == '{"error": "Bearer *** is invalid"}'


def test_a_json_token_value_with_escaped_quotes_is_masked_whole() -> None:
    out = redact('{"access_token": "ab\\"cd\\\\ef", "ok": false}')

    assert out == '{"access_token": "***", "ok": false}'


def test_fragments_shorter_than_eight_characters_and_other_text_are_left_alone() -> None:
    matcher = SecretMatcher()
    matcher.add("Zq8fK2pLm4Xw9Rt")

    assert matcher.mask("x Zq8fK2p x", MASK) == "x Zq8fK2p x"  # 7 characters
    assert matcher.mask("x Zq8fK2pL x", MASK) == f"x {MASK} x"  # 8
    assert matcher.mask("nothing to see %41 &amp; \\u0041", MASK) == (
        "nothing to see %41 &amp; \\u0041"
    )


def test_a_short_secret_is_masked_whole_and_in_its_encodings() -> None:
    matcher = SecretMatcher()
    matcher.add("a/b+c=")

    assert matcher.mask("[a/b+c=] [a\\/b+c=] [a%2Fb%2Bc%3D]", MASK) == f"[{MASK}] [{MASK}] [{MASK}]"


def test_overlapping_secrets_are_masked_as_one_run() -> None:
    matcher = SecretMatcher()
    matcher.add("first-secret-1234")
    matcher.add("1234-second-secret")

    assert matcher.mask("<first-secret-1234-second-secret>", MASK) == f"<{MASK}>"


# ------------------------------------------------------------------------- end to end


@pytest.fixture
def daemon_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    yield stream
    reset_logging()


def test_a_token_echoed_by_a_server_never_reaches_the_database_status_or_log(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    daemon_log: io.StringIO,
) -> None:
    tokens = {
        "slashes": unique_token("/ab/cd/"),  # echoed as \/ by PHP
        "quotes": unique_token('"q\\b"'),  # echoed as \" and \\
        "go-style": unique_token("/a&b<c>/"),  # Go's encoder writes & < > as \u0026...
    }
    config_lines = []
    for name, value in tokens.items():
        monkeypatch.setenv(f"TOKEN_{name.upper()}", value)
        config_lines += [
            f"[accounts.{name}]",
            'platform = "webhook"',
            'timezone = "UTC"',
            f'options = {{ url = "https://hooks.example.test/{name}" }}',
            f'credentials = {{ bearer_token = {{ env = "TOKEN_{name.upper()}" }} }}',
            "",
        ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(config_lines), encoding="utf-8")
    config = load_config(path)

    def receiver(request: httpx.Request) -> httpx.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        body = json.dumps({"error": "unauthorized", "detail": f"token {sent} was revoked"})
        body = body.replace("/", "\\/")
        if "go-style" in str(request.url):
            body = body.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        return httpx.Response(401, text=body)

    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    seed_posts(engine, config, [(f"p-{name}", name, now) for name in tokens], now=now)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
            await run_service(engine, config, until=no_pending(engine), client=client, timeout=30)

    asyncio.run(run())

    posts = post_rows(engine)
    attempts = attempt_rows(engine)
    with engine.connect() as conn:
        reasons = dict(conn.execute(select(accounts_t.c.name, accounts_t.c.paused_reason)).all())
    engine.dispose()
    status = CliRunner().invoke(cli, ["--db", sqlite_url, "status"]).output
    status_json = CliRunner().invoke(cli, ["--db", sqlite_url, "status", "--json"]).output
    places = {
        "attempts.message": "\n".join(str(a.message) for a in attempts),
        "posts.last_error": "\n".join(str(p.last_error) for p in posts.values()),
        "accounts.paused_reason": "\n".join(str(r) for r in reasons.values()),
        "smm status": status + status_json,
        "log": daemon_log.getvalue(),
    }
    assert all("revoked" in reasons[name] for name in tokens)  # the answer did land
    for name, value in tokens.items():
        forms = (value, json.dumps(value)[1:-1], json.dumps(value)[1:-1].replace("/", "\\/"))
        for place, text in places.items():
            assert not leaked(text, *forms), f"{name} token leaked into {place}: {text}"


def test_messages_stored_unmasked_are_masked_when_shown(sqlite_url: str) -> None:
    # Rows an older version wrote: the commands that show them mask them again.
    leak = 'HTTP 401: {"detail": "Bearer sk\\/live\\/4f9a8b7c6d5e", "access_token": "at\\"99x"}'
    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        account_id = conn.execute(
            accounts_t.insert()
            .values(
                name="old",
                platform="sim",
                timezone="UTC",
                paused=True,
                paused_reason=leak,
                auth_state="expired",
                created_at=now,
                updated_at=now,
            )
            .returning(accounts_t.c.id)
        ).scalar_one()
        conn.execute(
            posts_t.insert().values(
                key="p-old",
                account_id=account_id,
                content_type="laugh",
                text="x",
                state="failed",
                schedule="fixed",
                due_at=now,
                attempt_count=1,
                last_error=leak,
                error_class="auth_expired",
                idempotency_key="k-old",
                content_hash="h-old",
                created_at=now,
                updated_at=now,
            )
        )
    engine.dispose()

    shown = "".join(
        CliRunner().invoke(cli, ["--db", sqlite_url, *args]).output
        for args in (
            ["status"],
            ["status", "--json"],
            ["queue", "show", "p-old"],
            ["queue", "show", "p-old", "--json"],
            ["accounts", "list", "--json"],
        )
    )

    assert "4f9a8b7c6d5e" not in shown
    assert "99x" not in shown
    assert "Bearer ***" in shown


def test_a_source_keeps_its_latest_values_masked_and_forgets_the_older_ones() -> None:
    # A token file refreshed every hour for months would otherwise keep every dead token
    # (and its windows) registered, and each new one would rebuild the tables of them all.
    m = SecretMatcher()
    values = [secrets.token_urlsafe(24) for _ in range(10)]
    for value in values:
        m.add(value, "file:/run/smm/x-access")
        m.add(value, "file:/run/smm/x-access")  # read again at every use
    for value in values[-KEPT_PER_SOURCE:]:
        assert value not in m.mask(f"echo {value}", MASK)
    for value in values[:-KEPT_PER_SOURCE]:
        assert value in m.mask(f"echo {value}", MASK)
    assert len(m._secrets) == KEPT_PER_SOURCE
    fresh = SecretMatcher()
    for value in values[-KEPT_PER_SOURCE:]:
        fresh.add(value)
    assert m._windows == fresh._windows  # the windows of the forgotten values are gone


def test_a_value_registered_without_a_source_or_by_another_source_is_never_forgotten() -> None:
    m = SecretMatcher()
    pinned, shared = "the-database-password", "a-token-two-files-hold"
    m.add(pinned)
    m.add(pinned, "file:/a")
    m.add(shared, "file:/a")
    m.add(shared, "env:B")
    refreshed = [secrets.token_urlsafe(24) for _ in range(3 * KEPT_PER_SOURCE)]
    for value in refreshed:
        m.add(value, "file:/a")
    assert m.mask(pinned, MASK) == MASK
    assert m.mask(shared, MASK) == MASK
    assert m.mask(refreshed[0], MASK) == refreshed[0]
