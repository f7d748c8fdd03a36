"""Noticing posts that other processes queue, without waiting for the next tick.

A daemon sleeps until its earliest due post or the next tick. A post that ``smm plan import``
or ``smm queue retry`` makes due sooner than that is noticed at once:

* PostgreSQL: writers ``NOTIFY`` on ``scheduler.queue.CHANNEL`` in their transaction
  (``scheduler.queue.announce``; delivered when it commits) and every daemon ``LISTEN``\\s on a
  connection of its own.
* SQLite: the daemon polls ``PRAGMA data_version`` a few times a second; it changes whenever
  another connection commits to the file.

Either way the daemon is only woken up to look: what is due is still read from the queue, so a
lost or extra notice changes nothing but when it looks.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import structlog
from sqlalchemy import Engine

from scheduler.queue import CHANNEL

log = structlog.get_logger("scheduler.notices")

#: How often a daemon on SQLite looks for commits of other processes, in seconds.
SQLITE_POLL = 0.25
#: Longest wait before listening again after the PostgreSQL connection is lost, in seconds.
MAX_RETRY = 30.0


async def watch(engine: Engine, wake: Callable[[], None]) -> None:
    """Call ``wake`` whenever another process may have queued posts; runs until cancelled."""
    backend = engine.dialect.name
    try:
        if backend == "postgresql":
            await _listen(engine, wake)
        elif backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            await _poll_data_version(str(engine.url.database), wake)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noticing is a shortcut: without it, ticks still find the posts
        log.warning("queue_watch_stopped", error=str(exc))


async def _listen(engine: Engine, wake: Callable[[], None]) -> None:
    import psycopg

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 1.0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = 1.0
                wake()  # whatever was committed while nobody listened
                async for _ in conn.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server went away: listen again later; ticks go on
            log.warning("queue_listen_failed", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)


async def _poll_data_version(path: str, wake: Callable[[], None]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        while True:
            await asyncio.sleep(SQLITE_POLL)
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:  # the file is busy or gone: ticks go on
                log.warning("queue_poll_failed", error=str(exc))
                continue
            if version != seen:
                seen = version
                wake()
    finally:
        conn.close()
