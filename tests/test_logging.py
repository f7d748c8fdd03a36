"""Logging: the output format, levels, the standard library's logs, and secret redaction.

Redaction is checked on the rendered output, the only place where a leak matters.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from scheduler.logging import (
    MASK,
    configure_logging,
    log_each,
    register_secret,
    reset_logging,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root_level = logging.getLogger().level
    yield
    reset_logging()
    logging.getLogger().setLevel(root_level)


@pytest.fixture
def json_log() -> Callable[[], list[dict[str, Any]]]:
    """Configure JSON logging into a buffer; calling the fixture returns the lines so far."""
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def log() -> Any:
    return structlog.get_logger("tests.logging")


def unique_secret() -> str:
    return "s3cr3t-" + secrets.token_urlsafe(18)


# --------------------------------------------------------------------------------- format


def test_output_is_json_lines_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)

    log().info("post published", post="spring-sale", attempt=2)

    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "post published"
    assert (event["post"], event["attempt"]) == ("spring-sale", 2)
    assert (event["level"], event["logger"]) == ("info", "tests.logging")


def test_timestamps_are_iso_utc(json_log: Callable[[], list[dict[str, Any]]]) -> None:
    log().info("tick")

    (event,) = json_log()
    stamp = datetime.fromisoformat(event["timestamp"])
    assert event["timestamp"].endswith("Z")
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


def test_output_is_readable_console_text_on_a_terminal() -> None:
    terminal = FakeTerminal()
    configure_logging(stream=terminal)

    log().info("post published", post="spring-sale")

    output = terminal.getvalue()
    assert "post published" in output
    assert "spring-sale" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


@pytest.mark.parametrize(
    ("env", "coloured"), [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False)]
)
def test_console_colour_follows_no_color_and_term(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], coloured: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    terminal = FakeTerminal()
    configure_logging(stream=terminal)
    log().warning("post published", post="spring-sale")
    assert ("\x1b[" in terminal.getvalue()) is coloured


def test_json_can_be_forced_on_a_terminal() -> None:
    terminal = FakeTerminal()
    configure_logging(json=True, stream=terminal)

    log().info("tick")

    assert json.loads(terminal.getvalue())["event"] == "tick"


def test_console_format_can_be_forced_and_has_no_colours_off_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)

    log().info("tick", n=1)

    output = stream.getvalue()
    assert "tick" in output
    assert "n=1" in output
    assert "\x1b[" not in output


def test_logs_go_to_standard_error_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    # Standard output belongs to the commands' own (--json) output.
    configure_logging()

    log().warning("unusual")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "unusual"


def test_configuring_again_replaces_the_previous_output() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)

    log().info("tick")

    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


# --------------------------------------------------------------------------------- levels


def test_events_below_the_level_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)

    log().info("routine")
    log().warning("unusual")

    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["unusual"]


def test_level_names_are_case_insensitive() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)

    log().debug("details")

    assert json.loads(stream.getvalue())["level"] == "debug"


def test_unknown_level_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose': use one of debug, info"):
        configure_logging("verbose")


def _without_time(lines: list[str]) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in lines]
    for event in events:
        assert event.pop("timestamp").endswith("Z")
    return events


@pytest.mark.parametrize("json_output", [True, False], ids=["json", "console"])
def test_a_batch_of_events_is_written_as_one_logger_call_per_event_would(
    json_output: bool,
) -> None:
    events = [{"event": "post_published", "post": f"p-{i}", "attempt": 1} for i in range(3)]
    one_by_one, at_once = io.StringIO(), io.StringIO()
    configure_logging("info", json=json_output, stream=one_by_one)
    for event in events:
        fields = dict(event)
        log().info(fields.pop("event"), **fields)
    configure_logging("info", json=json_output, stream=at_once)

    log_each("tests.logging", logging.INFO, events)

    if json_output:
        expected = _without_time(one_by_one.getvalue().splitlines())
        assert _without_time(at_once.getvalue().splitlines()) == expected
        assert list(json.loads(at_once.getvalue().splitlines()[0]))[:3] == [
            "post",
            "attempt",
            "event",
        ]
    else:  # the console lines differ only in their leading time
        strip = lambda text: [line.split(" ", 1)[1] for line in text.splitlines()]  # noqa: E731
        assert strip(at_once.getvalue()) == strip(one_by_one.getvalue())


def test_a_batch_of_events_takes_the_bound_context_and_renders_a_stack_as_one_by_one() -> None:
    events: list[dict[str, Any]] = [
        {"event": "post_published", "post": "p-1"},
        {"event": "post_published", "post": "p-2", "daemon": "its own"},
        {"event": "post_failed", "post": "p-3", "stack_info": True},
    ]
    one_by_one, at_once = io.StringIO(), io.StringIO()
    structlog.contextvars.bind_contextvars(daemon="host:1")
    try:
        configure_logging("info", json=True, stream=one_by_one)
        for event in events:
            fields = dict(event)
            log().info(fields.pop("event"), **fields)
        configure_logging("info", json=True, stream=at_once)
        log_each("tests.logging", logging.INFO, events)
    finally:
        structlog.contextvars.clear_contextvars()

    got = _without_time(at_once.getvalue().splitlines())
    expected = _without_time(one_by_one.getvalue().splitlines())
    # The stack is where each was logged from: rendered in both, not the same.
    assert got[2].pop("stack").startswith("Stack (most recent call last)")
    assert expected[2].pop("stack").startswith("Stack (most recent call last)")
    assert got == expected
    assert [e["daemon"] for e in got] == ["host:1", "its own", "host:1"]


def test_a_batch_of_events_follows_the_level_and_is_redacted() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    secret = unique_secret()
    register_secret(secret)

    log_each("tests.logging", logging.INFO, [{"event": "routine"}])
    log_each("tests.logging", logging.WARNING, [{"event": "odd", "message": f"echo {secret}"}])

    (event,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (event["event"], event["level"]) == ("odd", "warning")
    assert secret not in stream.getvalue()
    assert MASK in event["message"]


def test_a_value_logged_before_its_secret_was_registered_is_masked_after(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    secret = unique_secret()
    log().info("echo", body=f"the server said {secret}")
    register_secret(secret)
    log().info("echo", body=f"the server said {secret}")

    first, second = json_log()
    assert secret in first["body"]
    assert secret not in second["body"]


def test_a_batch_of_events_reaches_captured_logs_one_by_one() -> None:
    # Anything but the configured output (structlog's capture, another handler) gets each
    # event through an ordinary logger call.
    configure_logging("warning", stream=io.StringIO())
    with structlog.testing.capture_logs() as captured:
        log_each("tests.logging", logging.INFO, [{"event": "a", "n": 1}, {"event": "b"}])
    assert [(e["event"], e["log_level"]) for e in captured] == [("a", "info"), ("b", "info")]


# --------------------------------------------------------------------------------- stdlib


def test_standard_library_logs_are_rendered_the_same_way(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s -> %s", None, "0001")

    (event,) = json_log()
    assert event["event"] == "Running upgrade None -> 0001"
    assert (event["logger"], event["level"]) == ("alembic.runtime.migration", "info")
    assert event["timestamp"].endswith("Z")


def test_standard_library_logs_follow_the_level() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)

    logging.getLogger("httpx").info("HTTP Request: GET https://example.org")

    assert stream.getvalue() == ""


def test_standard_library_logs_are_redacted(json_log: Callable[[], list[dict[str, Any]]]) -> None:
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    url = f"https://api.telegram.org/bot{token}/sendMessage"

    logging.getLogger("httpx").info('HTTP Request: POST %s "HTTP/1.1 200 OK"', url)

    (event,) = json_log()
    assert event["event"] == (
        'HTTP Request: POST https://api.telegram.org/bot***/sendMessage "HTTP/1.1 200 OK"'
    )


# --------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret", "masked"),
    [
        (
            "Authorization: Bearer eyJhbGciOi.J9.eyJzdWIi-_x=",
            "eyJhbGciOi.J9.eyJzdWIi-_x=",
            "Authorization: Bearer ***",
        ),
        (
            "GET https://graph.facebook.com/v19.0/me?fields=id&access_token=EAABwzLixnjYBO1&x=1",
            "EAABwzLixnjYBO1",
            "GET https://graph.facebook.com/v19.0/me?fields=id&access_token=***&x=1",
        ),
        (
            "retrying with token=ghp_x7Kq2Lm9 in 30s",
            "ghp_x7Kq2Lm9",
            "retrying with token=*** in 30s",
        ),
        (
            "cannot connect to postgresql+psycopg://smm:hunter2-pw@db.internal/smm",
            "hunter2-pw",
            "cannot connect to postgresql+psycopg://smm:***@db.internal/smm",
        ),
        (
            "POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
            "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "POST https://api.telegram.org/bot***/getMe",
        ),
        (
            '{"error": "expired", "refresh_token": "rt-91be55c"}',
            "rt-91be55c",
            '{"error": "expired", "refresh_token": "***"}',
        ),
    ],
    ids=["bearer", "access-token-in-url", "token-in-text", "database-url", "telegram", "json"],
)
def test_secret_patterns_are_masked_in_event_values(
    json_log: Callable[[], list[dict[str, Any]]], text: str, secret: str, masked: str
) -> None:
    log().warning("publish failed", detail=text)

    (event,) = json_log()
    assert event["detail"] == masked
    assert secret not in json.dumps(event)


def test_registered_secret_is_masked_anywhere(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    secret = unique_secret()
    register_secret(secret)

    log().error(f"the network said: invalid key {secret}!", echoed=f"key={secret};")

    (event,) = json_log()
    assert event["event"] == f"the network said: invalid key {MASK}!"
    assert event["echoed"] == f"key={MASK};"


def test_registered_secret_is_masked_in_its_url_encoded_form(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    secret = unique_secret() + "/+="
    register_secret(secret)
    encoded = secret.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")

    log().info("request", url=f"https://example.org/api?k={encoded}")

    assert json_log()[0]["url"] == f"https://example.org/api?k={MASK}"


def test_short_registered_values_are_not_masked(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    register_secret("abc")

    log().info("abcdef")

    assert json_log()[0]["event"] == "abcdef"


def test_secrets_are_masked_in_the_event_message(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    log().info("connecting to postgresql+psycopg://smm:pw-7781@db/smm")

    assert json_log()[0]["event"] == "connecting to postgresql+psycopg://smm:***@db/smm"


def test_secrets_are_masked_in_nested_dicts_and_lists(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    request = {
        "headers": {"Accept": "application/json", "X-Auth": "Bearer tok-55aa77"},
        "redirects": ["https://example.org/cb?code=1&access_token=tok-66bb88"],
        "retries": 2,
    }

    log().debug("request", request=request)

    assert json_log()[0]["request"] == {
        "headers": {"Accept": "application/json", "X-Auth": "Bearer ***"},
        "redirects": ["https://example.org/cb?code=1&access_token=***"],
        "retries": 2,
    }


def test_values_under_secret_looking_keys_are_masked_whole(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    log().debug(
        "auth",
        access_token="plain-value-1",
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
        password="plain-value-2",
        token_expires_at="2026-12-01T00:00:00Z",
    )

    event = json_log()[0]
    assert (event["access_token"], event["password"]) == (MASK, MASK)
    assert event["headers"] == {"Authorization": MASK}
    assert event["token_expires_at"] == "2026-12-01T00:00:00Z"


def test_objects_are_masked_through_their_string_form(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    log().warning("failed", error=ValueError("rejected token=tok-3c9e1f"))

    assert json_log()[0]["error"] == "rejected token=***"


def test_tracebacks_are_masked(json_log: Callable[[], list[dict[str, Any]]]) -> None:
    try:
        raise ConnectionError("postgresql+psycopg://smm:pw-0d15ea5e@db/smm refused")
    except ConnectionError:
        log().exception("database unreachable")

    event = json_log()[0]
    assert "ConnectionError: postgresql+psycopg://smm:***@db/smm refused" in event["exception"]
    assert "pw-0d15ea5e" not in event["exception"]


def test_tracebacks_are_masked_on_the_console() -> None:
    terminal = FakeTerminal()
    configure_logging(stream=terminal)

    try:
        raise ConnectionError("password=pw-feedface")
    except ConnectionError:
        log().exception("database unreachable")

    assert "pw-feedface" not in terminal.getvalue()
    assert "password=***" in terminal.getvalue()


def test_values_without_secrets_keep_their_type(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    log().info("stats", posts=3, er=0.042, frozen=False, missing=None, tags=["a", "b"])

    event = json_log()[0]
    assert (event["posts"], event["er"], event["frozen"]) == (3, 0.042, False)
    assert (event["missing"], event["tags"]) == (None, ["a", "b"])


def test_a_database_password_is_masked_once_an_engine_uses_it(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    from scheduler.db.engine import make_engine

    password = unique_secret()
    engine = make_engine(f"postgresql+psycopg://smm:{password}@db.invalid:5432/smm")
    try:
        log().warning("queue_listen_failed", error=f"connection to smm:{password} refused")
    finally:
        engine.dispose()
    (event,) = json_log()
    assert password not in json.dumps(event)
    assert MASK in event["error"]
