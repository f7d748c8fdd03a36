"""Durable notes an adapter keeps between the attempts of one post.

Some publishes are long and can be resumed: a video sent through a resumable upload session
survives a timeout, a crash or a kill -9 of the daemon, as long as the session's address is
not forgotten. An adapter writes such a note here before it starts sending, under its
platform and the post's idempotency key (the same on every attempt of the post), and reads it
back at the next attempt or in ``lookup``::

    checkpoints = Checkpoints()
    note = checkpoints.load("youtube", idempotency_key)
    if note is None:
        checkpoints.save("youtube", idempotency_key, {"session": session_uri, "size": size})

A note is one small JSON file, written atomically (a temporary file, fsync, rename, fsync of
the directory) with mode 0600 in a directory of mode 0700: a note may hold an address that
works as a credential (an upload session), so it gets the care a secret file gets and never
goes to a log. Notes live beside the default SQLite database: ``$STATE_DIRECTORY/checkpoints``
under systemd, else the per-user data directory; notes older than ``max_age`` are removed as
new ones are written (the directory is looked through at most every ``PRUNE_EVERY_S``). They
are per host: a daemon on another machine does not see them, so an adapter must still settle a
post without its note (``lookup`` by the network's own listing) — the note makes resuming
possible, it is not the only guard against duplicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs
import structlog

__all__ = ["Checkpoints", "default_directory"]

log = structlog.get_logger("scheduler.checkpoints")

APP_NAME = "smm-scheduler"
#: How often a directory's old notes are looked for (at the first note written after that).
PRUNE_EVERY_S = 600.0
#: Directory -> when this process last looked for its old notes (``time.monotonic``).
_pruned: dict[Path, float] = {}


def default_directory() -> Path:
    """``checkpoints`` in the service's StateDirectory under systemd, else the user data dir."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    base = (
        Path(state_dir.split(":")[0]) if state_dir else Path(platformdirs.user_data_dir(APP_NAME))
    )
    return base / "checkpoints"


@dataclass
class Checkpoints:
    """A directory of notes, one per (platform, key). ``directory`` None: the default one."""

    directory: Path | None = None
    #: Notes not written for this long are removed (an upload session lives a week at most).
    max_age: timedelta = timedelta(days=14)

    def _root(self) -> Path:
        return self.directory if self.directory is not None else default_directory()

    def _path(self, platform: str, key: str) -> Path:
        digest = hashlib.sha256(f"{platform}\0{key}".encode()).hexdigest()[:40]
        return self._root() / f"{platform}-{digest}.json"

    def load(self, platform: str, key: str) -> dict[str, Any] | None:
        """The note saved for ``key``, or None (none saved, or unreadable: logged)."""
        path = self._path(platform, key)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("checkpoint_unreadable", platform=platform, error=type(exc).__name__)
            return None
        return data if isinstance(data, dict) else None

    def save(self, platform: str, key: str, note: Mapping[str, Any]) -> None:
        """Write ``note`` for ``key`` durably; raises OSError when it cannot be written."""
        root = self._root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(platform, key)
        fd, tmp = tempfile.mkstemp(prefix=".note-", dir=root)  # created 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(dict(note), sort_keys=True).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(root)
        self._prune(root, keep=path)

    def clear(self, platform: str, key: str) -> None:
        """Forget the note for ``key`` (nothing happens when there is none)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(platform, key).unlink()

    def _prune(self, root: Path, keep: Path) -> None:
        # Reading the whole directory at every note (a thread writes several per part) would
        # cost in proportion to the notes kept; notes live for days, so once in a while will do.
        now = time.monotonic()
        last = _pruned.get(root)
        if last is not None and now - last < PRUNE_EVERY_S:
            return
        _pruned[root] = now
        horizon = time.time() - self.max_age.total_seconds()
        for path in root.glob("*.json"):
            with contextlib.suppress(OSError):
                if path != keep and path.stat().st_mtime < horizon:
                    path.unlink()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
