"""Files the project writes: readable by their owner only, whatever the umask, never through a
planted symlink, and never seen half-written.

A report or the database can hold what the brand has not published yet, error messages and
account names; 0644 under the usual umask 022 would show them to every user of the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["PRIVATE_FILE", "create_private", "write_private"]

#: The mode of every file the project creates.
PRIVATE_FILE = 0o600

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when it was created.

    Used before a program that creates the file itself with the umask's mode (SQLite): it
    then opens ours, and SQLite gives its ``-wal`` and ``-shm`` files the database's mode.
    A symlink at ``path`` is neither followed nor replaced.
    """
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, PRIVATE_FILE
        )
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits off; never adds any
    finally:
        os.close(fd)
    return True


def write_private(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8), atomically, mode 0600.

    The data goes to a fresh file with a random name in the target's directory, opened with
    ``O_CREAT | O_EXCL | O_NOFOLLOW``, so no existing file or symlink there (``X.tmp`` planted
    by someone else included) is ever opened, then is renamed over ``path``: a reader sees
    the old file or the whole new one. A symlink at ``path`` itself is replaced, not followed.
    Raises OSError.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, PRIVATE_FILE)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"cannot create a temporary file beside {target}")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), PRIVATE_FILE)
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
