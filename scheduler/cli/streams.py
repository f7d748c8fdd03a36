"""Standard output and error that outlive their reader.

When the reader of ``smm``'s output goes away (``smm status | head -1``: ``head`` exits after
one line), a write gets EPIPE. Left alone, the error would end the command wherever it was
writing (click then exits 1, hiding the command's own code, such as status's 3), and Python
would print "Exception ignored ... BrokenPipeError" when it flushes at exit. The kernel's
default (SIGPIPE, exit 141, as git does) would stop the command just as abruptly, perhaps
halfway through a change to the database.

Instead, from the first EPIPE on, that stream's file descriptor is pointed at ``/dev/null``
(so child processes and C code writing to it are quiet too) and the command runs to its end,
exiting with the code it would have had. Any other failure to write (a full disk) is an
``OutputError``: the command stops, and ``smm`` says so in one line and exits 1.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class OutputError(OSError):
    """Standard output or error could not be written, for another reason than a reader that
    went away (``smm`` says so in one line and exits 1)."""


class _QuietWhenClosed(io.RawIOBase):
    """A file descriptor whose writes succeed (into ``/dev/null``) once its reader is gone.
    Closing it leaves the descriptor open: it is the process's standard stream."""

    def __init__(self, fd: int, name: str) -> None:
        super().__init__()
        self._fd, self._name = fd, name

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: ReadableBuffer) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:
            self._to_devnull()
            return memoryview(data).nbytes
        except OSError as exc:
            # A full disk or a failing device: the output is incomplete, the command fails;
            # what it writes from here on, and the flush at exit, go nowhere.
            self._to_devnull()
            raise OutputError(f"cannot write {self._name}: {exc.strerror}") from None

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._fd)
        finally:
            os.close(devnull)


def _quiet_copy(stream: io.TextIOWrapper, name: str) -> io.TextIOWrapper:
    stream.flush()
    return io.TextIOWrapper(
        io.BufferedWriter(_QuietWhenClosed(stream.fileno(), name)),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )


def quiet_when_closed() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` carry on quietly once their reader is gone.

    A stream that is not a file of this process (a test runner's buffer) is left as it is."""
    for name, words in (("stdout", "standard output"), ("stderr", "standard error")):
        stream = getattr(sys, name)
        if not isinstance(stream, io.TextIOWrapper):
            continue
        try:
            stream.fileno()
        except (OSError, ValueError):
            continue
        setattr(sys, name, _quiet_copy(stream, words))


__all__ = ["OutputError", "quiet_when_closed"]
