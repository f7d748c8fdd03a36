"""A file-backed delivery log: what the sim network accepted, readable from other processes.

One JSON line per accepted publish request, fsync'd before the publish returns, so a test can
kill the daemon at any instant and still count exactly what the "network" received. Writers
hold an exclusive ``flock`` while they check and append, which also makes idempotency keys
hold across processes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime

__all__ = ["Ledger", "LedgerEntry", "posts_per_key", "read_ledger", "requests_per_key"]


@dataclass(frozen=True)
class LedgerEntry:
    """One accepted publish request.

    ``duplicate`` is True when the network recognised the idempotency key and returned the
    post it already had instead of creating one.
    """

    key: str
    remote_id: str
    account: str
    post_key: str
    content_type: str
    published_at: str  # ISO 8601, UTC
    followers: int
    duplicate: bool = False

    @property
    def published(self) -> datetime:
        return datetime.fromisoformat(self.published_at)


class Ledger:
    """Appends entries to ``path`` and reads back the ones other processes appended."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0  # bytes already read by this process
        self._fd = -1  # open while locked()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's exclusive lock (check-then-append must not interleave)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
            yield
        finally:
            self._fd = -1
            os.close(fd)  # closing releases the lock

    def read_new(self) -> list[LedgerEntry]:
        """Entries appended since the last call (by any process)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        # A line without its newline is a write in progress elsewhere (or torn by a crash,
        # which ``append`` then terminates): leave it for the next read.
        end = data.rfind(b"\n") + 1
        self._offset += end
        entries = (_parse(line) for line in data[:end].splitlines())
        return [e for e in entries if e is not None]

    def append(self, entry: LedgerEntry) -> None:
        """Append ``entry`` durably. Call inside ``locked()``, after ``read_new()``: the lock
        guarantees nothing was appended since, so our own line need not be read back."""
        line = (json.dumps(asdict(entry), separators=(",", ":")) + "\n").encode()
        size = os.fstat(self._fd).st_size
        if size != self._offset:
            # Under the lock nobody is writing: the tail is a line torn by a crash. End it, so
            # our entry stays a line of its own (the torn one is skipped when read).
            line = b"\n" + line
        os.write(self._fd, line)
        os.fsync(self._fd)
        self._offset = size + len(line)


def _parse(line: bytes) -> LedgerEntry | None:
    """The entry on ``line``; None for a blank or torn line."""
    try:
        return LedgerEntry(**json.loads(line))
    except (ValueError, TypeError):
        return None


def read_ledger(path: str | os.PathLike[str]) -> list[LedgerEntry]:
    """Every complete entry in the ledger at ``path`` (none if it does not exist)."""
    return Ledger(os.fspath(path)).read_new()


def posts_per_key(path: str | os.PathLike[str]) -> Counter[str]:
    """How many posts the network created per idempotency key (more than 1: a duplicate post)."""
    return Counter(e.key for e in read_ledger(path) if not e.duplicate)


def requests_per_key(path: str | os.PathLike[str]) -> Counter[str]:
    """How many accepted publish requests arrived per key, deduplicated repeats included."""
    return Counter(e.key for e in read_ledger(path))
