"""Validating a streamed plan in chunks, in this process and, for a large plan, a forked one.

A chunk is ``CHUNK`` consecutive items of the plan. ``Validator.chunk`` turns one into the
driver-ready rows of its valid items and its problems (each with its item's index and kind);
everything that turns an item into rows is a function of that one item
(``Validator.item_rows``). ``Shared`` runs a forked process that reads the plan itself and
validates the chunks it takes, streaming each result back through a pipe, while this process
takes chunks too whenever the one it needs next has not arrived. The forked process only
reads the plan files and what it inherited, and writes to a pipe; it never touches the
database connection, and leaves with ``os._exit`` so no finalizer of an inherited object runs
in it. If it fails or dies, the import fails (``ValidationProcessError``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import marshal
import multiprocessing
import os
import pickle
import queue
import select
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from scheduler.config import Config
from scheduler.errors import Problem, SmmError
from scheduler.plan.groups import is_group_values, post_keys
from scheduler.plan.importer import NewRows
from scheduler.plan.items import PlanItem, RawItem
from scheduler.plan.validate import (
    NetworkCheck,
    planned_time,
    post_number,
    raw_key,
    validate_raw,
)

#: Items per chunk: small enough to keep memory flat and start writing early, large enough
#: that a chunk's trip through the pipe and its database statements cost little.
CHUNK = 1_000
#: Chunks the validating process may have sent before the importing one takes them.
AHEAD = 8
#: Kinds of problem, in the order an item lists them: its own checks, its id used before,
#: its network's rules (checked only for an item that passed its own and is no duplicate).
OWN, DUPLICATE, NETWORK = 0, 1, 2


class Asked:
    """Stands in for the settled ids during validation: says yes to every id and notes which
    were asked, which validation does only for a post whose time is in the past. Whether
    that is an error depends on the stored post, which the writing process looks up."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[str | None] = []

    def __contains__(self, key: object) -> bool:
        self.keys.append(key if isinstance(key, str) else None)
        return True


@dataclass
class Chunk:
    number: int
    #: (item index, kind, problem), in plan order.
    problems: list[tuple[int, int, Problem]] = field(default_factory=list)
    #: Driver-ready rows of the valid items (queue posts' times left None), none once the
    #: chunk has a problem (nothing of an invalid plan is written).
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: Items with a post whose time is in the past: index -> (the ids of those posts, the
    #: problems (kind, problem) the item has unless every one of them is settled, i.e.
    #: stored and out of the queue).
    past: dict[int, tuple[list[str | None], list[tuple[int, Problem]]]] = field(
        default_factory=dict
    )
    #: What reconciling stored posts needs of each item, when posts are stored: (item id,
    #: (post id, account name) of each post it makes, whether it names its accounts as a
    #: list (``scheduler.plan.groups``)).
    members: list[tuple[str, list[tuple[str, str]], bool]] = field(default_factory=list)
    seconds: float = 0.0


class Validator:
    """Validates chunks of raw items into rows; a forked process inherits it as it is.
    ``stored``: whether the database holds posts (then each item's members are sent)."""

    def __init__(
        self,
        config: Config,
        now: datetime,
        network_check: NetworkCheck | None,
        rows: NewRows,
        account_ids: Mapping[str, int],
        stored: bool,
    ) -> None:
        self.config = config
        self.now = now
        self.network_check = network_check
        self.rows = rows
        self.account_ids = account_ids
        self.stored = stored

    def _validate(
        self, raw: RawItem, index: int, settled: Container[str]
    ) -> tuple[list[PlanItem], list[tuple[int, Problem]]]:
        own: list[Problem] = []
        network: list[Problem] = []
        items = validate_raw(
            raw,
            self.config,
            self.now,
            own,
            network,
            network_check=self.network_check,
            settled=settled,
        )
        return items, [(OWN, p) for p in own] + [(NETWORK, p) for p in network]

    def item_rows(self, raw: RawItem, index: int, chunk: Chunk) -> list[tuple[Any, ...]]:
        """Validate one raw item, the ``index``-th of the plan: the rows of its posts (one,
        or one per account of an item that names several), its problems added to
        ``chunk``. A function of this one item."""
        asked = Asked()
        items, found = self._validate(raw, index, asked)
        if asked.keys:  # a time in the past: what the item gets if its posts are not settled
            chunk.past[index] = (asked.keys, self._validate(raw, index, ())[1])
        if self.stored:
            chunk.members.append(self._members(raw))
        if found:
            chunk.problems += [(index, kind, p) for kind, p in found]
        if chunk.problems:
            return []
        rows, account_ids = self.rows, self.account_ids
        return [
            rows.row(
                item,
                account_ids[item.account],
                post_number(index, item.member),
                item.at,
                item.at is None,
            )
            for item in items
        ]

    def warm(self, plan: Iterable[RawItem]) -> None:
        """Validate the plan's first item and forget it: what validation loads on first use
        (each network's plugin, its modules) is then loaded once, before a fork, instead of
        in both processes."""
        items = iter(plan)
        try:
            first = next(items, None)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        if first is not None:
            self._validate(first, 0, Asked())

    def _members(self, raw: RawItem) -> tuple[str, list[tuple[str, str]], bool]:
        item_id = raw_key(raw)
        if not item_id:
            return "", [], False
        if is_group_values(raw.values):
            return item_id, post_keys(raw), True
        planned = planned_time(raw, self.config)
        return item_id, [] if planned is None else [(item_id, planned[0].name)], False

    def chunk(self, number: int, raws: Sequence[RawItem]) -> Chunk:
        started = time.perf_counter()
        chunk = Chunk(number)
        rows = chunk.rows
        for index, raw in enumerate(raws, number * CHUNK):
            rows += self.item_rows(raw, index, chunk)
        if chunk.problems:
            rows.clear()
        chunk.seconds = time.perf_counter() - started
        return chunk


class Reader:
    """One pass over the plan, taken a chunk at a time (chunks may be skipped)."""

    def __init__(self, plan: Iterable[RawItem]) -> None:
        self._items = iter(plan)
        self._at = 0  # the chunk the next item belongs to

    @property
    def at(self) -> int:
        """The chunk the next item read belongs to."""
        return self._at

    def take(self, number: int) -> list[RawItem]:
        """The items of chunk ``number`` (not before the last one taken)."""
        assert number >= self._at
        items = self._items
        for _ in range((number - self._at) * CHUNK):
            if next(items, None) is None:
                break
        self._at = number + 1
        out: list[RawItem] = []
        for raw in items:
            out.append(raw)
            if len(out) == CHUNK:
                break
        return out


def own_chunks(validator: Validator, plan: Iterable[RawItem]) -> Iterator[Chunk]:
    """Every chunk of the plan, validated in this process."""
    reader = Reader(plan)
    number = 0
    while raws := reader.take(number):
        yield validator.chunk(number, raws)
        number += 1


# --------------------------------------------------------------------------- the second process


def can_fork() -> bool:
    # Forking a process that runs other threads can copy a lock some thread holds.
    return sys.platform == "linux" and threading.active_count() == 1


class ValidationProcessError(SmmError):
    """The process validating the plan died or failed; nothing was imported."""


_FRAME = struct.Struct("!Q")
#: The pipe's size asked for (Linux's default largest): a chunk's message is 300-400 KB.
PIPE_BYTES = 1 << 20


class Shared:
    """Chunks validated by a forked process and by this one, yielded in plan order.

    Both take the next chunk nobody took yet from a shared counter, each reading the plan
    itself: the forked process at once, this one only when the chunk it needs next is the
    other's and has not arrived (and it has fewer than a few of its own waiting).
    """

    #: Chunks of its own this process may validate ahead of those it writes.
    HELPS = 4
    #: Chunks its reader may skip (reading each of their rows) to reach one to validate.
    SKIPS = 4

    def __init__(self, validator: Validator, plan: Iterable[RawItem]) -> None:
        self.validator = validator
        self.plan = plan
        ctx = multiprocessing.get_context("fork")
        self._lock = ctx.Lock()
        self._next = ctx.RawValue("q", 0)  # the next chunk nobody took
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # Linux: room for a few chunks
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_fd)
            _own_session(parent)
            self._child(write_fd)  # never returns
        os.close(write_fd)
        self._fd = read_fd
        # What was read off the pipe and not yet taken as whole messages.
        self._buffer = bytearray()
        self._ended = False
        self._done = False
        self._closed = False

    def _take(self, below: int | None = None) -> int | None:
        """The next chunk nobody took (None: all chunks before ``below`` are taken)."""
        with self._lock:
            number = int(self._next.value)
            if below is not None and number >= below:
                return None
            self._next.value = number + 1
            return number

    # -- the forked process ------------------------------------------------------------------

    def _child(self, write_fd: int) -> NoReturn:
        """Validate the chunks it takes, write each to the pipe, leave without finalizers.

        A thread of its own writes to the pipe, so that validating goes on while the
        importing process is busy writing (up to ``AHEAD`` chunks waiting)."""
        status = 1
        try:
            out: queue.Queue[bytes | None] = queue.Queue(AHEAD)
            writer = threading.Thread(target=_write_pipe, args=(write_fd, out), daemon=True)
            writer.start()
            try:
                reader = Reader(self.plan)
                while True:
                    number = self._take()
                    assert number is not None  # taken without a bound
                    raws = reader.take(number)
                    if not raws:
                        break
                    out.put(_encode("chunk", self.validator.chunk(number, raws)))
                out.put(_encode("done", None))
                status = 0
            except BaseException:  # reported to the parent, whatever it was
                out.put(_encode("error", traceback.format_exc()))
            out.put(None)
            writer.join()
        finally:
            os._exit(status)

    # -- this process ------------------------------------------------------------------------

    def chunks(self, count: int) -> Iterator[Chunk]:
        """The ``count`` chunks of the plan, in order."""
        own: dict[int, Chunk] = {}
        reader: Reader | None = None
        for number in range(count):
            while number not in own:
                with self._lock:
                    if self._next.value == number:  # nobody took it: this process does
                        self._next.value = number + 1
                        mine: int | None = number
                    else:
                        mine = None
                if mine is None:
                    data = self._next_message(0)
                    if data is None and len(own) < self.HELPS:
                        # Only a chunk its reader is close to: the reader gets there by
                        # parsing every row before it, which for a chunk far ahead costs
                        # more than validating it saves (the other process is ahead).
                        near = (reader.at if reader is not None else 0) + self.SKIPS + 1
                        mine = self._take(min(count, near))
                if mine is not None:
                    reader = reader or Reader(self.plan)
                    raws = reader.take(mine)
                    own[mine] = self.validator.chunk(mine, raws)
                    continue
                if data is None:
                    data = self._next_message(None)
                assert data is not None  # waited for it
                kind, payload = self._decode(data)
                if kind == "error":
                    raise ValidationProcessError(f"validating the plan failed:\n{payload}")
                if kind == "done":
                    # The validating process read a plan that changed under it (its own
                    # reader's check may see the change first, or this one).
                    raise ValidationProcessError("the plan changed while it was being imported")
                if payload.number != number:
                    raise ValidationProcessError(
                        f"chunk {payload.number} came when chunk {number} was expected"
                    )
                own[number] = payload
            yield own.pop(number)

    def _next_message(self, timeout: float | None) -> bytes | None:
        """The next whole message: one already read or readable at once (``timeout`` 0), or
        waiting until it comes (None). Read here, by this thread: the validating process's
        own writer thread keeps up to ``AHEAD`` chunks waiting for it."""
        buffer = self._buffer
        while True:
            if len(buffer) >= _FRAME.size:
                (size,) = _FRAME.unpack_from(buffer)
                end = _FRAME.size + size
                if len(buffer) >= end:
                    data = bytes(buffer[_FRAME.size : end])
                    del buffer[:end]
                    return data
            if self._ended:
                raise ValidationProcessError(
                    f"the process validating the plan (pid {self.pid}) ended early"
                )
            if timeout is not None and not select.select([self._fd], [], [], timeout)[0]:
                return None
            try:
                block = os.read(self._fd, 1 << 20)
            except OSError:
                block = b""  # the pipe was closed under the read: reported as an early end
            if not block:
                self._ended = True
            buffer += block

    @staticmethod
    def _decode(data: bytes) -> tuple[str, Any]:
        kind, payload, rows = pickle.loads(data)  # our own child's pipe
        if rows is not None:
            payload.rows = marshal.loads(rows)
        return kind, payload

    def close(self) -> None:
        """Stop the forked process (it is done, or no longer needed) and reap it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._fd)


def _encode(kind: str, payload: Any) -> bytes:
    """A message for the pipe, framed. A chunk's rows go as ``marshal`` data when they are
    plain values (SQLite's are: text, numbers, None), several times cheaper to write and
    read than pickle's; other rows (PostgreSQL's hold datetimes) are pickled with the rest."""
    rows = None
    if isinstance(payload, Chunk) and payload.rows:
        try:
            rows = marshal.dumps(payload.rows)
        except ValueError:
            pass
        else:
            payload = dataclasses.replace(payload, rows=[])
    data = pickle.dumps((kind, payload, rows), protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(data)) + data


def _write_pipe(fd: int, out: queue.Queue[bytes | None]) -> None:
    """The validating process's writer: each message to the pipe as it is queued, in one
    ``write`` (the kernel waits for room in the pipe, not this thread for the GIL between
    pieces of it, which the validating thread holds for milliseconds at a time). The
    process ends when the pipe does (nobody reads what it validates any more)."""
    try:
        while (message := out.get()) is not None:
            view = memoryview(message)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:
        os._exit(1)
    finally:
        os.close(fd)


_PR_SET_PDEATHSIG = 1


def _own_session(parent: int) -> None:
    """Put the validating process in a session of its own, tied to the importing process.

    Linux's scheduler groups the processes of a session (autogroup) and gives the group one
    share of the CPUs when they are busy: in the importing process's session the two would
    split that share, and a second process would gain nothing. Out of the session, a signal
    to the terminal no longer reaches it, so the kernel kills it when the importing process
    ends (``PR_SET_PDEATHSIG``), as ``close`` does when the import ends normally."""
    with contextlib.suppress(OSError):
        os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the importing process ended before the line above
        os._exit(1)


__all__ = [
    "CHUNK",
    "Chunk",
    "Reader",
    "Shared",
    "ValidationProcessError",
    "Validator",
    "can_fork",
    "own_chunks",
]
