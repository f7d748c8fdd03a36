"""Durable notes an adapter keeps between the attempts of one post.

Some publishes are long and can be resumed: a video sent through a resumable upload session
survives a timeout, a crash or a kill -9 of the daemon, as long as the session's address is
not forgotten; a reply chain goes on from the parts already out. An adapter writes such a note
here before it starts sending, under its platform and the post's idempotency key (the same on
every attempt of the post), and reads it back at the next attempt or in ``lookup``. The
calls block (a database round trip, or a file written and synced), so adapters make them in a
thread::

    checkpoints = Checkpoints()
    note = await checkpoints.recall("youtube", idempotency_key)  # load, in a thread
    if note is None:
        note = {"session": session_uri, "size": size}
        await asyncio.to_thread(checkpoints.save, "youtube", idempotency_key, note)

Where notes live. The daemon keeps them in its database, the one its queue is in (table
``checkpoint_notes``; ``keep_in``, called when the daemon starts): ``save`` returns once the
note is committed, and any daemon on the database, on any host, reads what another one wrote,
so a post whose daemon died is resumed by whichever daemon rescues it. A process with no
database (a plugin's own tests, a script) keeps them as files instead, one small JSON file
per note, written atomically (a temporary file, fsync, rename, fsync of the directory) with
mode 0600 in a directory of mode 0700: ``$STATE_DIRECTORY/checkpoints`` under systemd, else
the per-user data directory. Notes in files written by an earlier version are still read when
the database has none for the key, and ``clear`` removes both.

A note holds what a network issued for one post (ids, an upload session's address or upload
URL, which expire within hours or days), never the account's credentials: any secret the
process has registered (``scheduler.logging.register_secret``) is masked before a note is
stored, and notes never go to a log. Notes of published posts, and notes not written for
``max_age``, are removed as new ones are written (looked for at most every ``PRUNE_EVERY_S``),
so they never pile up; a failed post keeps its notes, since a person may send it again.

When the database cannot be read or written (an outage), ``load``, ``save`` and ``clear``
raise ``NotesUnavailable``, an ``OSError``: an adapter that cannot note what it is about to
send sends nothing (a ``Transient`` failure), as it does when a disk refuses a file, and one
that cannot read its note before its first request sends nothing either (``recall``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
import structlog

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Checkpoints", "NotesUnavailable", "default_directory", "keep_in"]

log = structlog.get_logger("scheduler.checkpoints")

APP_NAME = "smm-scheduler"
#: How often old notes are looked for (at the first note written after that).
PRUNE_EVERY_S = 600.0
#: Directory or database URL -> when this process last looked for its old notes (monotonic).
_pruned: dict[object, float] = {}
#: The database this process keeps its notes in (``keep_in``); None: files.
_database: Engine | None = None


class NotesUnavailable(OSError):
    """The database the notes are kept in cannot be read or written now."""


def keep_in(engine: Engine | None) -> Engine | None:
    """Keep this process's notes in ``engine``'s database (None: in files); the previous one.

    The daemon calls it with its own engine before it creates the adapters, which build their
    ``Checkpoints()`` without knowing where the queue is."""
    global _database
    previous, _database = _database, engine
    return previous


def default_directory() -> Path:
    """``checkpoints`` in the service's StateDirectory under systemd, else the user data dir."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    base = (
        Path(state_dir.split(":")[0]) if state_dir else Path(platformdirs.user_data_dir(APP_NAME))
    )
    return base / "checkpoints"


def _digest(platform: str, key: str) -> str:
    return hashlib.sha256(f"{platform}\0{key}".encode()).hexdigest()[:40]


@dataclass
class Checkpoints:
    """Notes, one per (platform, key): in ``database`` (None: the one this process keeps its
    notes in, see ``keep_in``), else files in ``directory`` (None: the default one)."""

    directory: Path | None = None
    #: Notes not written for this long are removed (an upload session lives a week at most).
    max_age: timedelta = timedelta(days=14)
    database: Engine | None = None

    def _engine(self) -> Engine | None:
        return self.database if self.database is not None else _database

    def _root(self) -> Path:
        return self.directory if self.directory is not None else default_directory()

    def _path(self, platform: str, key: str) -> Path:
        return self._root() / f"{platform}-{_digest(platform, key)}.json"

    def load(self, platform: str, key: str) -> dict[str, Any] | None:
        """The note saved for ``key``, or None (none saved, or unreadable: logged).

        Raises ``NotesUnavailable`` when the database cannot be read: no note is not the same
        as a note that cannot be read, and an adapter that took one for the other could send
        again what is already out."""
        engine = self._engine()
        if engine is not None:
            note = _in_database(engine, _read, platform, key)
            if note is not None:
                return _object(note, platform)
        # A daemon without a database, or a note an earlier version wrote to a file.
        return self._load_file(platform, key)

    async def recall(self, platform: str, key: str) -> dict[str, Any] | None:
        """``load`` in a thread, for an attempt that has sent nothing yet: a note that cannot
        be read now is a ``Transient`` failure (nothing is sent without it), never taken for
        no note."""
        try:
            return await asyncio.to_thread(self.load, platform, key)
        except NotesUnavailable as exc:
            from scheduler.adapter import Transient

            message = f"{platform}: cannot read the checkpoint note: {exc.strerror}"
            raise Transient(message) from None

    def save(self, platform: str, key: str, note: Mapping[str, Any]) -> None:
        """Write ``note`` for ``key`` durably (committed, or on disk); raises OSError when it
        cannot be written (``NotesUnavailable`` when the database cannot be reached)."""
        text = _masked(json.dumps(dict(note), sort_keys=True), platform)
        engine = self._engine()
        if engine is None:
            self._save_file(platform, key, text)
            return
        _in_database(engine, _write, platform, key, text)
        self._prune_database(engine)

    def clear(self, platform: str, key: str) -> None:
        """Forget the note for ``key`` (nothing happens when there is none)."""
        engine = self._engine()
        if engine is not None:
            _in_database(engine, _delete, platform, key)
        with contextlib.suppress(FileNotFoundError):
            self._path(platform, key).unlink()

    # -- files -------------------------------------------------------------------------------

    def _load_file(self, platform: str, key: str) -> dict[str, Any] | None:
        try:
            text = self._path(platform, key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("checkpoint_unreadable", platform=platform, error=type(exc).__name__)
            return None
        return _object(text, platform)

    def _save_file(self, platform: str, key: str, text: str) -> None:
        root = self._root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(platform, key)
        fd, tmp = tempfile.mkstemp(prefix=".note-", dir=root)  # created 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(root)
        if _due(root):
            self._prune_files(root, keep=path)

    def _prune_files(self, root: Path, keep: Path | None = None) -> None:
        # Reading the whole directory at every note (a thread writes several per part) would
        # cost in proportion to the notes kept; notes live for days, so once in a while will do.
        horizon = time.time() - self.max_age.total_seconds()
        for path in root.glob("*.json"):
            with contextlib.suppress(OSError):
                if path != keep and path.stat().st_mtime < horizon:
                    path.unlink()

    # -- the database ------------------------------------------------------------------------

    def _prune_database(self, engine: Engine) -> None:
        # Keyed by URL: a key holding the engine would keep every engine ever used alive.
        if not _due(engine.url.render_as_string(hide_password=True)):
            return
        from scheduler.timeutil import utcnow

        _in_database(engine, _delete_done, utcnow() - self.max_age)
        # Notes an earlier version left in files age out too.
        root = self._root()
        if root.is_dir():
            self._prune_files(root)


def _due(place: object) -> bool:
    """Whether ``place``'s old notes are to be looked for now (at most every PRUNE_EVERY_S)."""
    now = time.monotonic()
    last = _pruned.get(place)
    if last is not None and now - last < PRUNE_EVERY_S:
        return False
    _pruned[place] = now
    return True


def _object(text: str | bytes, platform: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError as exc:
        log.warning("checkpoint_unreadable", platform=platform, error=type(exc).__name__)
        return None
    return data if isinstance(data, dict) else None


def _masked(text: str, platform: str) -> str:
    """``text`` with the secrets this process registered masked: a plugin that put an
    account's token in a note would otherwise write it to a file or a database row."""
    from scheduler.logging import mask_registered

    masked = mask_registered(text)
    if masked != text:
        log.warning("checkpoint_secret_masked", platform=platform)
    return masked


def _in_database(engine: Engine, step: Any, *args: Any) -> Any:
    """``step(engine, *args)``, a database outage raised as ``NotesUnavailable`` (the
    driver's words are left out: they may quote the server's address)."""
    from scheduler.daemon.weather import unreachable

    try:
        return step(engine, *args)
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise NotesUnavailable(
            errno.EIO, f"the database keeping the notes cannot be used ({type(exc).__name__})"
        ) from None


def _notes() -> Any:
    from scheduler.db.models import CheckpointNote

    return CheckpointNote.__table__  # type: ignore[attr-defined]


def _read(engine: Engine, platform: str, key: str) -> str | None:
    from sqlalchemy import select

    notes = _notes()
    with engine.connect() as conn:
        found = conn.execute(
            select(notes.c.note).where(notes.c.digest == _digest(platform, key))
        ).scalar()
    return found if isinstance(found, str) else None


def _write(engine: Engine, platform: str, key: str, text: str) -> None:
    from scheduler.db.engine import immediate
    from scheduler.timeutil import utcnow

    notes = _notes()
    row = {"digest": _digest(platform, key), "platform": platform, "note_key": key, "note": text}
    statement = _insert(engine)(notes).values(**row, updated_at=utcnow())
    statement = statement.on_conflict_do_update(
        index_elements=[notes.c.digest],
        set_={"note": statement.excluded.note, "updated_at": statement.excluded.updated_at},
    )
    with immediate(engine) as conn:
        conn.execute(statement)


def _insert(engine: Engine) -> Any:
    """The dialect's INSERT, which takes ON CONFLICT (both databases spell it alike)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _delete(engine: Engine, platform: str, key: str) -> None:
    from scheduler.db.engine import immediate

    notes = _notes()
    with immediate(engine) as conn:
        conn.execute(notes.delete().where(notes.c.digest == _digest(platform, key)))


def _delete_done(engine: Engine, horizon: Any) -> None:
    """Remove the notes not written since ``horizon``, and those of published posts (a
    published post is never sent again; a failed one may be, by a person, and resumes)."""
    from sqlalchemy import exists, or_

    from scheduler.db.engine import immediate
    from scheduler.db.models import Post, PostState

    notes, posts = _notes(), Post.__table__  # type: ignore[attr-defined]
    published = exists().where(
        posts.c.idempotency_key == notes.c.note_key, posts.c.state == PostState.PUBLISHED
    )
    with immediate(engine) as conn:
        conn.execute(notes.delete().where(or_(notes.c.updated_at < horizon, published)))


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
