"""Database outages are weather: told apart from bugs, waited out, and said so once.

A step that fails because the database cannot be used right now (the server restarting, the
connection gone, the disk full, the file locked or read-only) is tried again with capped,
jittered backoff; any other failure is a bug and propagates. ``Weather`` tracks whether the
daemon is ``degraded``: it logs one line when that changes, tells systemd (STATUS=) and sets
the ``smm_daemon_degraded`` gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy import exc as sa_exc

from scheduler import observability
from scheduler.daemon import systemd

log = structlog.get_logger("scheduler.weather")
T = TypeVar("T")

#: Backoff between tries of a step while the database is unreachable: doubling from the
#: first value, never longer than the second.
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 2.0
#: A failure this soon after the database came back belongs to the same outage.
SETTLE_S = 2.0


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be used now, not that the step is wrong.

    SQLAlchemy raises ``OperationalError`` for what the drivers class as operational (refused
    or dropped connections, a server shutting down or starting up, a full disk, SQLite's
    "database is locked" and "readonly database"), ``InterfaceError`` for a closed
    connection, and its own ``TimeoutError`` when no pooled connection frees up; a
    ``DBAPIError`` may also say that it invalidated the connection. Anything else (a bad
    statement, a broken constraint) is a bug, and retrying it would only hide it.
    """
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


class Unavailable(Exception):
    """The database stayed unreachable until the caller stopped waiting."""


@dataclass
class Weather:
    """Whether the database answers, as this daemon last found it."""

    #: Called with the STATUS= text when the state changes (systemd by default).
    notify: Callable[[str], Any] = field(default=lambda s: systemd.notify(f"STATUS={s}"))
    degraded: bool = False
    since: float = field(default_factory=time.monotonic)
    #: When the database last came back (monotonic), or None.
    back_at: float | None = None
    #: When the failure that made the daemon degraded was seen (monotonic).
    failed_at: float = 0.0
    reason: str = ""
    _quiet: bool = False

    def trouble(self, step: str, exc: BaseException, started: float | None = None) -> None:
        """``step`` failed because the database is unreachable; ``started``: when the try
        that failed began (``time.monotonic()``; None: just now)."""
        if self.degraded:
            return
        now = time.monotonic()
        if self.back_at is not None and started is not None and started < self.back_at:
            # A try that began before the database came back (steps run side by side, and
            # finish in any order): it tells of the outage that ended, not of a new one.
            return
        if self.back_at is not None and now - self.back_at < SETTLE_S:
            # The same outage's tail (a kept connection that died with the server fails
            # once): not news, no second pair of log lines.
            self.degraded = self._quiet = True
            self.failed_at = now
            return
        self.degraded, self.since, self.failed_at = True, now, now
        self.reason = _short(exc)
        log.warning("database_unreachable", step=step, error=self.reason, state="degraded")
        self.notify(f"degraded: the database is unreachable ({self.reason}); retrying")
        observability.record_degraded(True)

    def fine(self, started: float | None = None) -> None:
        """A step went through: the database answers. ``started``: when that try began
        (None: just now); one that began before the failure was seen (a statement that got
        through as the server went down, answered after another step failed) says nothing
        of the database since, and changes nothing."""
        if not self.degraded:
            return
        if started is not None and started < self.failed_at:
            return
        if self._quiet:
            self.degraded = self._quiet = False
            return
        now = time.monotonic()
        log.info("database_back", after_s=round(now - self.since, 1), state="dispatching")
        self.degraded, self.since, self.back_at = False, now, now
        self.notify("dispatching")
        observability.record_degraded(False)

    def calm_for(self) -> float:
        """Seconds since the database last came back (infinity when it never went away)."""
        return float("inf") if self.back_at is None else time.monotonic() - self.back_at


def _short(exc: BaseException) -> str:
    """The driver's own first line, not SQLAlchemy's statement dump."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}"[:300]


class Backoff:
    """Capped exponential delays with jitter (half to full of each step)."""

    def __init__(self, first: float = FIRST_RETRY_S, cap: float = MAX_RETRY_S) -> None:
        self.first, self.cap, self.next = first, cap, first

    def delay(self) -> float:
        d = self.next
        self.next = min(self.cap, self.next * 2)
        return random.uniform(d / 2, d)

    def reset(self) -> None:
        self.next = self.first


async def patiently(
    weather: Weather,
    step: str,
    fn: Callable[..., T],
    *args: Any,
    give_up: Callable[[], bool] = lambda: False,
    deadline: float | None = None,
    wake: asyncio.Event | None = None,
    executor: Executor | None = None,
) -> T:
    """``fn(*args)`` in a thread, tried again while the database is unreachable. Its
    success is taken as the database answering: ``fn`` must reach it (a step with nothing
    to do is not run through here).

    Raises ``Unavailable`` once ``give_up()`` is true or the monotonic ``deadline`` passes
    while the database is still away; other errors propagate at once. ``wake`` cuts a pause
    short (set when the caller may be giving up). ``executor``: the thread to run in (None:
    asyncio's default pool).
    """
    backoff = Backoff()
    # A kept connection that died with a restarted server fails once, however long after
    # the restart it is next used; the step, tried again at once, opens a new one. Only a
    # second failure in a row is an outage.
    once_more = not weather.degraded
    while True:
        attempt = Try(fn, *args)
        try:
            result = await in_thread(executor, attempt)
        except Exception as exc:
            if not unreachable(exc):
                raise
            if once_more:
                once_more = False
                continue
            weather.trouble(step, exc, attempt.started)
            pause = backoff.delay()
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
            if give_up() or pause <= 0:
                raise Unavailable(f"{step}: {_short(exc)}") from exc
            if wake is None:
                await asyncio.sleep(pause)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), pause)
            if give_up():
                raise Unavailable(f"{step}: {_short(exc)}") from exc
            continue
        weather.fine(attempt.started)
        return result


#: A try of a step handed to a thread, and its future (``start``).
Started = tuple["Try[T]", "asyncio.Future[T]"]


class Try(Generic[T]):
    """One try of a database step, as a callable for a thread: ``started`` is when it began
    to run there (not when it was queued), so that what it found is dated right."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self.fn, self.args = fn, args
        self.started: float | None = None

    def __call__(self) -> T:
        self.started = time.monotonic()
        return self.fn(*self.args)


def start(executor: Executor | None, fn: Callable[..., T], *args: Any) -> Started[T]:
    """A first try of ``fn(*args)``, handed to the thread now (``in_thread`` hands it over
    when the awaiting task next runs, after whatever the event loop runs before it)."""
    attempt = Try(fn, *args)
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return attempt, loop.run_in_executor(executor, functools.partial(ctx.run, attempt))


async def briefly(
    weather: Weather,
    step: str,
    fn: Callable[..., T],
    *args: Any,
    executor: Executor | None = None,
    first: Started[T] | None = None,
) -> T:
    """``fn(*args)`` in a thread for a step that cannot wait out an outage (a send record:
    the request waits on it). A first failure of an unusable database is tried once more
    at once, as in ``patiently`` (a kept connection that died with a restarted server fails
    once, however long after the restart it is next used); a second is reported to
    ``weather`` and raised. ``first``: the first try, already started (``start``)."""
    once_more = not weather.degraded
    while True:
        running: Awaitable[T]
        if first is not None:
            (attempt, running), first = first, None
        else:
            attempt = Try(fn, *args)
            running = in_thread(executor, attempt)
        try:
            return await running
        except Exception as exc:
            if not unreachable(exc):
                raise
            if once_more:
                once_more = False
                continue
            weather.trouble(step, exc, attempt.started)
            raise


async def in_thread(executor: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread(fn, *args)``, in ``executor``'s thread when one is given."""
    if executor is None:
        return await asyncio.to_thread(fn, *args)
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(ctx.run, fn, *args))


__all__ = [
    "Backoff",
    "Try",
    "Unavailable",
    "Weather",
    "briefly",
    "in_thread",
    "patiently",
    "start",
    "unreachable",
]
