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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    "log_each",
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


def register_secret(value: str, source: str | None = None) -> None:
    """Mask ``value`` wherever it appears in a log event, stored message or page from now on.

    The credential resolver calls this for every secret it hands out, so a token that a
    network echoes back in an error message is masked too: whole, as any fragment of
    8 characters or more, and in the encodings servers use (see :mod:`scheduler.redaction`).
    ``source`` names where the value was read: a source whose value changes (a refreshed
    token) keeps its latest few values masked, not every value it ever had.
    """
    if _registry.add(value, source):
        _masked.clear()


#: Strings already masked (or found clean) -> what they became: event names, logger names,
#: levels and account names come back on every line. Short strings only, a bounded number,
#: forgotten whenever a secret is registered.
_masked: dict[str, str] = {}
_MASKED_KEPT = 1024
_MASKED_LENGTH = 200


def _redact_text(text: str) -> str:
    if len(text) > _MASKED_LENGTH:
        return _mask_text(text)
    found = _masked.get(text)
    if found is None:
        if len(_masked) >= _MASKED_KEPT:
            _masked.clear()
        found = _masked[text] = _mask_text(text)
    return found


def _mask_text(text: str) -> str:
    text = _registry.mask(text, MASK)
    lowered = text.lower()
    for needle, pattern in _PATTERNS:
        if needle in lowered:
            text = pattern.sub(_REPLACEMENT, text)
    return text


def mask_registered(text: str) -> str:
    """``text`` with every whole registered secret masked, and nothing else: for values
    kept to be used again (a checkpoint note's upload address), which the name, pattern and
    fragment rules of ``redact`` would spoil (``upload_token=`` in a URL the network issued)."""
    return _registry.mask_whole(text, MASK)


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


#: Event key -> whether it names a secret. Events use a few dozen keys; bounded all the same.
_secret_keys: dict[str, bool] = {}
_SECRET_KEYS_KEPT = 4096


def _is_secret_key(key: str) -> bool:
    found = _secret_keys.get(key)
    if found is None:
        found = bool(_SECRET_KEY.match(key))
        if len(_secret_keys) < _SECRET_KEYS_KEPT:
            _secret_keys[key] = found
    return found


def _is_secret_item(key: Any, value: Any) -> bool:
    return isinstance(key, str) and _is_secret_key(key) and value not in (None, "")


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value of the event (see :func:`redact`)."""
    out = {}
    for key, value in event_dict.items():
        if key in _META_KEYS or value is None:
            out[key] = value
        elif isinstance(key, str) and _is_secret_key(key) and value != "":
            out[key] = MASK
        elif type(value) is str:  # the common case, without redact's type tests
            out[key] = _redact_text(value)
        else:
            out[key] = redact(value)
    return out


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


@dataclass(frozen=True)
class _Output:
    """What ``configure_logging`` set up, for ``log_each`` to render events the same way."""

    handler: logging.StreamHandler[TextIO]
    processors: list[Processor]
    renderer: Processor


_output: _Output | None = None


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

    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(stream)
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

    global _output
    processors: list[Processor] = [
        structlog.stdlib.filter_by_level,
        *SHARED_PROCESSORS,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    _output = _Output(handler, processors, renderer)
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger taken at import time follows a later reconfiguration.
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove its handler and restore structlog's defaults."""
    global _handler, _output
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    _output = None
    logging.getLogger().setLevel(logging.WARNING)
    structlog.reset_defaults()


def log_each(name: str, level: int, events: Sequence[dict[str, Any]]) -> None:
    """Log each of ``events`` (``{"event": NAME, key: value...}``) as logger ``name`` at
    ``level``: the lines one ``structlog.get_logger(name)`` call per event would write, through
    the same processors (redaction included), written to the stream at once.

    For events that come in batches on a hot path (the daemon's outcome of each post): one
    logger call per event costs the standard library's record, lock and flush each time, as
    much as a post's whole database work. Where logging is not as ``configure_logging`` left
    it (``structlog.testing.capture_logs``, other handlers), each event takes the usual path.
    """
    if not events:
        return
    logger = logging.getLogger(name)
    out = _output
    if out is None or not _plain_route(logger, out):
        bound = structlog.get_logger(name)
        method = logging.getLevelName(level).lower()
        for event in events:
            fields = dict(event)
            getattr(bound, method)(fields.pop("event"), **fields)
        return
    if not logger.isEnabledFor(level) or level < out.handler.level:
        return  # as filter_by_level and the handler would drop each
    method = logging.getLevelName(level).lower()
    steps = _batch_steps(logger, method)
    lines: list[str] = []
    for event in events:
        ed: Any = dict(event)
        ed["event"] = ed.pop("event")  # where structlog puts it: after the fields
        if _PER_EVENT_KEYS.isdisjoint(ed):
            for kind, step in steps:
                if kind is _ADD:
                    ed.update(step)
                elif kind is _DEFAULT:
                    for key, value in step.items():
                        ed.setdefault(key, value)
                else:
                    ed = step(logger, method, ed)
        else:  # an event the processors read more of: each of them, as structlog would
            for processor in SHARED_PROCESSORS:
                ed = processor(logger, method, ed)
        lines.append(str(out.renderer(logger, method, ed)))
    stream = out.handler.stream
    out.handler.acquire()
    try:
        stream.write(out.handler.terminator.join(lines) + out.handler.terminator)
        out.handler.flush()
    except Exception:  # as a handler does: a broken stream never stops the daemon
        out.handler.handleError(logging.makeLogRecord({"msg": lines[0], "name": name}))
    finally:
        out.handler.release()


#: How ``_batch_steps`` applies a step to each event of a batch.
_ADD, _DEFAULT, _CALL = "add", "default", "call"
#: Keys that make a shared processor do more than add what ``_batch_steps`` computed once
#: (the standard library's record, a stack or an exception to render).
_PER_EVENT_KEYS = frozenset({"_record", "stack_info", "exc_info"})


def _batch_steps(logger: logging.Logger, method: str) -> list[tuple[str, Any]]:
    """``SHARED_PROCESSORS`` for a batch of events of one logger and level: what a processor
    adds whatever the event (the logger's name, the level, the batch's one reading of the
    clock, the bound context variables) is computed once, as a dict added to each event
    (``_ADD``) or set where the event has no such key (``_DEFAULT``, as
    ``merge_contextvars`` does); the stack and exception renderers, which do nothing to an
    event without those keys, are left out (``log_each`` runs every processor on an event
    that has them); any other processor runs on each event (``_CALL``)."""
    steps: list[tuple[str, Any]] = []
    for processor in SHARED_PROCESSORS:
        if processor is structlog.contextvars.merge_contextvars:
            context = processor(logger, method, {})
            if context:
                steps.append((_DEFAULT, context))
        elif processor in (structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level) or (
            isinstance(processor, structlog.processors.TimeStamper)
        ):
            added = processor(logger, method, {})
            if steps and steps[-1][0] is _ADD:
                steps[-1][1].update(added)
            else:
                steps.append((_ADD, added))
        elif processor is structlog.processors.format_exc_info or isinstance(
            processor, structlog.processors.StackInfoRenderer
        ):
            continue
        else:
            steps.append((_CALL, processor))
    return steps


def _plain_route(logger: logging.Logger, out: _Output) -> bool:
    """Whether an event of ``logger`` would reach only ``out``'s handler, unfiltered, and
    structlog still runs ``out``'s processors."""
    if structlog.get_config()["processors"] is not out.processors:
        return False
    root = logging.getLogger()
    if root.handlers != [out.handler] or root.filters or out.handler.filters:
        return False
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate or node.disabled:
            return False
        node = node.parent
    return True
