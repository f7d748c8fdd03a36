"""Logging, configured in one place: structlog in front, the standard library behind it.

Output is JSON lines when it does not go to a terminal (journald, a file, a pipe) and a readable
console format on a terminal. Events from the standard library's loggers (alembic, httpx,
APScheduler) take the same path, so they are formatted the same way and, above all, redacted
the same way: every value of every event passes :func:`redact_secrets` before it is rendered.

Code logs with ``structlog.get_logger(__name__)`` and key-value pairs::

    log.info("post published", post=post.key, remote_url=url)
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from scheduler.redaction import MIN_SECRET_LENGTH, SecretMatcher

__all__ = [
    "LEVELS",
    "MASK",
    "MIN_SECRET_LENGTH",
    "SHARED_PROCESSORS",
    "configure_logging",
    "redact",
    "redact_secrets",
    "redact_stored",
    "register_secret",
    "reset_logging",
]

#: Level names accepted by :func:`configure_logging` (case-insensitive).
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: What a secret is replaced with.
MASK = "***"

_SECRET_NAME = r"[A-Za-z0-9_]*(?:token|secret|password|passwd|api_?key)"

#: Patterns of secrets in free text. Each has a ``keep`` group: the context that survives (the
#: key, the URL up to the password...), followed by the secret that is masked.
#: Each comes with a substring the text must contain for the pattern to have a chance, checked
#: first because most log lines have none of them (on the lower-cased text).
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # The password of a URL's user info: postgresql+psycopg://smm:<password>@db/smm
    ("@", re.compile(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)")),
    # HTTP authorization: "Authorization: Bearer <token>", also JSON- or URL-escaped
    # ("Bearer abc\/def", "Bearer%20abc%2Fdef").
    (
        "bearer",
        re.compile(
            r"(?P<keep>\b(?i:bearer)(?:\s+|%20|\+))(?:[A-Za-z0-9\-._~+/=]|\\/|%[0-9A-Fa-f]{2})+"
        ),
    ),
    # Query strings, form bodies and messages: access_token=<token>&..., password=<...>
    # (the name's prefix, "access_" in "access_token=", stays as it is: it is not matched)
    ("=", re.compile(r"(?i)(?P<keep>(?:token|secret|password|passwd|api_?key)=)[^\s&'\"#,;]+")),
    # JSON bodies echoed in errors: "access_token": "<token>", escapes inside included
    ('"', re.compile(rf'(?i)(?P<keep>"{_SECRET_NAME}"\s*:\s*")(?:[^"\\]|\\.)*')),
    # Telegram bot tokens, <bot id>:<secret>, which the Bot API puts in the URL path.
    (":", re.compile(r"(?<![0-9])(?P<keep>)[0-9]{3,}:[A-Za-z0-9_-]{30,}")),
)
_REPLACEMENT = rf"\g<keep>{MASK}"

#: Event keys whose whole value is a secret, e.g. ``log.debug("auth", access_token=...)``.
_SECRET_KEY = re.compile(rf"(?i)^(?:{_SECRET_NAME}|authorization|cookie)$")

#: structlog's bookkeeping keys (a LogRecord, a flag): never rendered, never touched.
_META_KEYS = frozenset({"_record", "_from_structlog"})


_registry = SecretMatcher()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in a log event, stored message or page from now on.

    The credential resolver calls this for every secret it hands out, so a token that a
    network echoes back in an error message is masked too: whole, as any fragment of
    8 characters or more, and in the encodings servers use (see :mod:`scheduler.redaction`).
    """
    _registry.add(value)


def _redact_text(text: str) -> str:
    text = _registry.mask(text, MASK)
    lowered = text.lower()
    for needle, pattern in _PATTERNS:
        if needle in lowered:
            text = pattern.sub(_REPLACEMENT, text)
    return text


def redact_stored(text: str | None) -> str | None:
    """A message read back from the database, masked again before it is shown.

    Stored messages are masked when written; this catches what an older version stored, and
    secrets this process has registered since (``smm accounts list`` reads the credentials).
    """
    return None if text is None else _redact_text(text)


def redact(value: Any) -> Any:
    """``value`` with secrets masked: strings, and strings inside mappings and sequences.

    Other objects are checked through their string form, and replaced by the masked string
    only when it had something to mask (so numbers and clean objects keep their type).
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {k: MASK if _is_secret_item(k, v) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(redact(v) for v in value)
    text = str(value)
    masked = _redact_text(text)
    return value if masked == text else masked


def _is_secret_item(key: Any, value: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.match(key)) and value not in (None, "")


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value of the event (see :func:`redact`)."""
    return {
        key: value if key in _META_KEYS else MASK if _is_secret_item(key, value) else redact(value)
        for key, value in event_dict.items()
    }


#: Run on every event, structlog's and the standard library's, in this order. Redaction
#: comes last, after exceptions are formatted, so that tracebacks are redacted too.
SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    redact_secrets,
]

_handler: logging.Handler | None = None


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def configure_logging(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send all logging to ``stream`` (standard error by default) at ``level`` and above.

    ``json=None`` picks JSON lines unless ``stream`` is a terminal. Standard error rather than
    standard output keeps logs apart from a command's ``--json`` output; journald collects
    both. Calling this again replaces the previous configuration.
    """
    global _handler
    try:
        numeric_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}") from None
    stream = stream if stream is not None else sys.stderr
    terminal = _is_terminal(stream)
    renderer: Processor
    if json if json is not None else not terminal:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        # NO_COLOR (any value) and TERM=dumb turn colour off, as they do for the CLI's tables.
        plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
        renderer = structlog.dev.ConsoleRenderer(colors=terminal and not plain)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=SHARED_PROCESSORS,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _handler = handler

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger taken at import time follows a later reconfiguration.
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove its handler and restore structlog's defaults."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    logging.getLogger().setLevel(logging.WARNING)
    structlog.reset_defaults()
