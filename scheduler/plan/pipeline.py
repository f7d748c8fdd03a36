"""Importing plan items: validation and writing overlap, on two cores for a large plan.

``import_plan`` is what ``smm plan import`` runs. It does what validating every item and then
``apply_plan`` would, in one pass:

1. In the caller's transaction: sync the accounts, load the stored posts the plan names
   (and the waiting posts of its files that it no longer names).
2. Validate every item (fields, times, each network's rules), build the driver-ready row
   of each new post, and tell what each item already stored means for its post (unchanged,
   updated, requeued, locked, moved). For a large plan this runs in a forked process that
   streams chunks of results back, while this process gives the new queue items their slots
   (reading the account and time each raw item asks for, ``planned_time``, and the posts
   that hold a time in the accounts that get new posts), fills them into the rows and
   inserts the chunks already received; when it would otherwise wait, it validates chunks
   from the end of the plan itself.
3. Stop inserting at the first problem, but keep validating: the caller gets every problem
   and rolls the transaction back, so an invalid plan changes nothing.
4. Update the stored posts the plan changed (as ``apply_plan`` does) and give the accounts
   they touched fresh slot times.

The forked process only reads what it inherited and writes to a pipe; it never touches the
database connection, and leaves with ``os._exit`` so no finalizer of an inherited object
runs in it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, NoReturn

from sqlalchemy import Connection

from scheduler.accounts import sync_accounts
from scheduler.config import AccountConfig, Config
from scheduler.db.bulk import insert_tuples, supports_tuples
from scheduler.db.models import Schedule
from scheduler.errors import Problem, SmmError
from scheduler.learned_slots import slot_plan
from scheduler.plan.gcpause import gc_paused
from scheduler.plan.groups import is_group_values, post_keys
from scheduler.plan.importer import (
    LOCKED,
    NEW_COLUMNS,
    REQUEUEABLE,
    Existing,
    ImportDiff,
    NewPost,
    NewRows,
    apply_changes,
    apply_plan,
    approval_accounts,
    classify,
    has_groups,
    new_key_prefix,
    paused_accounts,
    plan_file_id,
    reconcile_groups,
    stored_posts,
)
from scheduler.plan.items import RawItem
from scheduler.plan.validate import (
    NetworkCheck,
    duplicate_ids,
    planned_time,
    planned_times,
    post_number,
    raw_key,
    validate_items,
    validate_range,
)
from scheduler.queue import (
    announce,
    assign_queue_slots,
    holding_posts,
    plan_queue_slots,
    posts_t,
    write_slot_times,
)
from scheduler.slots import SlotPlan

#: From this many items on, validation runs in a second process (below it, starting one
#: costs about what it saves).
PARALLEL_FROM = 5_000
#: Items per chunk: small enough that inserting starts early, large enough that a chunk's
#: trip through the pipe costs little.
CHUNK = 1_000


@dataclass
class _Chunk:
    problems: list[Problem] = field(default_factory=list)
    #: Driver-ready rows of new posts (none once any problem was found).
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: (position in ``rows``, post number) of new queue items: their slot time is filled in
    #: by the importing process, which computes the slots while this chunk is validated.
    queued: list[tuple[int, int]] = field(default_factory=list)
    #: (key, account, content type) of each new post: plain tuples, which cross the pipe
    #: several times faster than ``NewPost``s (made of them by the importing process).
    added: list[tuple[str, str, str]] = field(default_factory=list)
    #: What the chunk's items whose id is already stored mean for their posts (``classify``):
    #: the importing process writes it at the end. Unchanged items cross the pipe as a count.
    stored: ImportDiff = field(default_factory=ImportDiff)
    #: How long validating the chunk took.
    seconds: float = 0.0


@dataclass
class _Job:
    """Everything validation needs; a forked process inherits it as it is."""

    raws: Sequence[RawItem]
    config: Config
    now: datetime
    network_check: NetworkCheck | None
    duplicates: Mapping[int, Problem]
    settled: Container[str]
    #: The stored posts the plan names, by id.
    stored: Mapping[str, Existing]
    account_ids: dict[str, int]
    #: None for a dry run: nothing is written, so no rows are built.
    rows: NewRows | None
    #: Each raw item's id as validation reads it ("" for none), when already known.
    keys: Sequence[str] | None = None
    #: Ids of the items that name their accounts as a list (``scheduler.plan.groups``).
    groups: Container[str] = ()
    #: Slot times of the new queue items by post number (``post_number``), once planned
    #: (``plan_slots``).
    slots: dict[int, datetime | None] | None = None
    #: Stored queue posts that the new items move to another slot: (post id, new time).
    slot_updates: list[tuple[int, datetime | None]] = field(default_factory=list)

    def plan_slots(
        self,
        holding: Callable[[Sequence[int]], Mapping[int, Sequence[Any]]],
        plans: Callable[[AccountConfig, int], SlotPlan] | None = None,
    ) -> None:
        """Give the new queue items their slots, as ``apply_plan`` does: the new items' fixed
        times take their slots, then the queue items the free ones, in plan order. Reads the
        account and time each raw item asks for; an item that cannot be read is invalid, and
        an invalid plan writes nothing. ``holding``: the stored posts that hold a time in the
        given accounts (``holding_posts``), asked only for accounts that get new posts;
        ``plans``: the slots an account that learns them follows (``learned_slots``)."""
        fixed: dict[int, list[datetime]] = {}
        waiting: dict[int, list[dict[str, Any]]] = {}
        queued: list[tuple[int, dict[str, Any]]] = []

        def plan(number: int, raw: RawItem, account: AccountConfig, at: datetime | None) -> None:
            account_id = self.account_ids[account.name]
            if at is not None:
                fixed.setdefault(account_id, []).append(at)
                return
            row = {
                "schedule": Schedule.QUEUE,
                "plan_order": raw.order,
                "content_type": str(raw.values.get("type") or "").strip().lower(),
                "due_at": None,
            }
            waiting.setdefault(account_id, []).append(row)
            queued.append((number, row))

        keys = self.keys if self.keys is not None else [raw_key(raw) for raw in self.raws]
        for index, raw in enumerate(self.raws):
            key = keys[index]
            if not key or index in self.duplicates:
                continue
            if key in self.groups:
                for member, (post_key, account, at) in enumerate(planned_times(raw, self.config)):
                    if post_key not in self.stored:
                        plan(post_number(index, member), raw, account, at)
                continue
            if key in self.stored:
                continue
            planned = planned_time(raw, self.config)
            if planned is not None:
                plan(post_number(index, 0), raw, *planned)
        by_id = {self.account_ids[name]: acc for name, acc in self.config.accounts.items()}
        touched = sorted(fixed.keys() | waiting.keys())
        held = holding(touched) if touched else {}
        for account_id in touched:
            # Sets each new queue row's due_at in place.
            self.slot_updates += plan_queue_slots(
                by_id[account_id],
                held.get(account_id, ()),
                self.now,
                new_rows=waiting.get(account_id, ()),
                new_taken=fixed.get(account_id, ()),
                plan=plans(by_id[account_id], account_id)
                if plans is not None and by_id[account_id].learn
                else None,
            )
        self.slots = {number: row["due_at"] for number, row in queued}

    @property
    def chunks(self) -> int:
        return -(-len(self.raws) // CHUNK)

    def chunk(self, number: int) -> _Chunk:
        """Validate the ``number``-th chunk of items and build the rows of its new posts."""
        started = time.perf_counter()
        chunk = _Chunk()
        low = number * CHUNK
        for index, item in validate_range(
            self.raws,
            low,
            min(low + CHUNK, len(self.raws)),
            self.config,
            self.now,
            chunk.problems,
            duplicates=self.duplicates,
            network_check=self.network_check,
            settled=self.settled,
        ):
            old = self.stored.get(item.key)
            if old is not None:
                classify(chunk.stored, item, old, self.account_ids)
                continue
            chunk.added.append((item.key, item.account, item.content_type))
            if self.rows is not None and not chunk.problems:
                number = post_number(index, item.member)
                due = item.at
                if due is None:
                    if self.slots is None:  # filled in once the slots are planned
                        chunk.queued.append((len(chunk.rows), number))
                    else:
                        due = self.slots[number]
                chunk.rows.append(
                    self.rows.row(
                        item, self.account_ids[item.account], number, due, item.at is None
                    )
                )
        if chunk.problems:  # nothing of an invalid plan is written: its rows are not needed
            chunk.rows.clear()
            chunk.queued.clear()
        chunk.seconds = time.perf_counter() - started
        return chunk


@gc_paused
def import_plan(
    conn: Connection,
    raws: Sequence[RawItem],
    config: Config,
    now: datetime,
    *,
    network_check: NetworkCheck | None = None,
    prune: bool = False,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    parallel: bool | None = None,
) -> tuple[ImportDiff, list[Problem]]:
    """Validate ``raws`` and reconcile the database with them in the caller's transaction.

    Returns the diff and every problem found. With problems, rows may have been written:
    the caller rolls back (as it does for a dry run); nothing here commits. ``parallel``:
    validate in a second process (None: when the plan is large and the platform can fork).
    """
    if not supports_tuples(conn):
        items, found = validate_items(raws, config, now, network_check=network_check)
        if found:
            return ImportDiff(), found
        return apply_plan(conn, items, config, now, prune=prune, dry_run=dry_run), []

    keys = [raw_key(raw) for raw in raws]
    duplicates = duplicate_ids(raws, keys)
    account_ids = sync_accounts(conn, config, now)
    files = sorted({plan_file_id(file) for file in {raw.file for raw in raws}})
    # Items that name their accounts as a list: each of their posts is looked up, and the
    # item's own id too (the post it made while it named one account).
    groups = {
        keys[i]: post_keys(raw)
        for i, raw in enumerate(raws)
        if keys[i] and is_group_values(raw.values)
    }
    lookup = [k for k in keys if k]
    lookup += [key for item_id, members in groups.items() for key, _ in members if key != item_id]
    stored, gone = stored_posts(conn, lookup, files)
    dropped = []
    if groups or has_groups(conn):
        several = {item_id for item_id, members in groups.items() if len(members) > 1}
        index_of = {k: i for i, k in enumerate(keys) if k}

        def members(item_id: str) -> Sequence[tuple[str, str]]:
            found = groups.get(item_id)
            if found is not None:
                return found
            index = index_of.get(item_id)
            planned = None if index is None else planned_time(raws[index], config)
            return () if planned is None else [(item_id, planned[0].name)]

        dropped = reconcile_groups(
            conn,
            stored,
            gone,
            list(index_of),
            members,
            groups,
            set(lookup).difference(several),
            account_ids,
        )
    settled = {k for k, old in stored.items() if old.state in LOCKED | REQUEUEABLE}
    rows = None
    if not dry_run:
        rows = NewRows(
            conn,
            paused_accounts(conn),
            now,
            new_key_prefix(),
            approval_accounts(config, account_ids),
        )
    job = _Job(
        raws,
        config,
        now,
        network_check,
        duplicates,
        settled,
        stored,
        account_ids,
        rows,
        keys,
        groups,
    )
    if parallel is None:
        parallel = len(raws) >= PARALLEL_FROM
    # The other process starts validating now; without one, chunks are validated as taken.
    chunks: Iterable[_Chunk] = (
        _Shared(job) if parallel and _can_fork() else (job.chunk(c) for c in range(job.chunks))
    )
    if rows is not None:
        # Meanwhile, here: the slots of the new queue items (the other process leaves
        # their times out of the rows; they are filled in below).
        job.plan_slots(
            lambda accounts: holding_posts(conn, accounts),
            lambda account, account_id: slot_plan(conn, account, account_id),
        )

    diff = ImportDiff(gone=gone, pruned=prune, dropped=dropped)
    problems: list[Problem] = []
    try:
        for chunk in chunks:
            problems += chunk.problems
            diff.added += map(NewPost._make, chunk.added)
            diff.take(chunk.stored)
            if chunk.rows and not problems and rows is not None:
                if chunk.queued:
                    assert job.slots is not None  # planned before the first chunk is taken
                    for position, index in chunk.queued:
                        chunk.rows[position] = rows.due(chunk.rows[position], job.slots[index])
                insert_tuples(conn, posts_t, NEW_COLUMNS, chunk.rows)
                if progress:
                    progress(len(chunk.rows))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # stops the other process if it is still at work
            close()
    if problems:
        return diff, problems
    write_slot_times(conn, job.slot_updates, now)
    if dry_run:
        return diff, []
    touched = apply_changes(conn, diff, account_ids, now, approval_accounts(config, account_ids))
    by_id = {account_ids[name]: acc for name, acc in config.accounts.items()}
    for account_id in sorted(touched):
        if account_id in by_id:
            assign_queue_slots(conn, by_id[account_id], account_id, now)
    if diff.queues_posts:
        announce(conn)
    return diff, []


# --------------------------------------------------------------------------- the second process


def _can_fork() -> bool:
    # Forking a process that runs other threads can copy a lock some thread holds.
    return sys.platform == "linux" and threading.active_count() == 1


class ValidationProcessError(SmmError):
    """The process validating the plan died or failed; nothing was imported."""


_FRAME = struct.Struct("!Q")
_EOF = b""


def _average(mean: float | None, sample: float) -> float:
    return sample if mean is None else 0.8 * mean + 0.2 * sample


class _Shared:
    """The job's chunks, validated by this process and a forked one, yielded in order.

    The forked process takes chunks from the front and streams each result back; this
    process takes chunks from the back whenever nothing is waiting in the pipe, so whichever
    process has time does the work. Chunks come out in plan order: the forked process's as
    they arrive (they are all before this process's), then this process's own.
    """

    def __init__(self, job: _Job) -> None:
        self.job = job
        ctx = multiprocessing.get_context("fork")
        self._lock = ctx.Lock()
        # The next chunk from the front, and the end of what is left (shared memory).
        self._front = ctx.RawValue("q", 0)
        self._back = ctx.RawValue("q", job.chunks)
        read_fd, write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_fd)
            self._child(write_fd)  # never returns
        os.close(write_fd)
        self._fd = read_fd
        # Whole messages, read off the pipe as they come so the other process never waits
        # for this one to read (_EOF: the pipe closed).
        self._messages: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_pipe, name="plan-validation-pipe")
        self._reader.start()
        self._own: list[tuple[int, _Chunk]] = []
        self._done = False
        self._closed = False

    # -- the forked process ------------------------------------------------------------------

    def _take_front(self) -> int | None:
        with self._lock:
            number = int(self._front.value)
            if number >= self._back.value:
                return None
            self._front.value = number + 1
            return number

    def _child(self, write_fd: int) -> NoReturn:
        """Validate chunks from the front, write each to the pipe, leave without finalizers."""
        status = 1
        try:
            with os.fdopen(write_fd, "wb") as out:
                try:
                    while (number := self._take_front()) is not None:
                        _send(out, ("chunk", self.job.chunk(number)))
                    _send(out, ("done", None))
                    status = 0
                except BaseException:  # reported to the parent, whatever it was
                    _send(out, ("error", traceback.format_exc()))
        finally:
            os._exit(status)

    # -- this process ------------------------------------------------------------------------

    def _take_back(self) -> int | None:
        with self._lock:
            number = int(self._back.value) - 1
            if number < self._front.value:
                return None
            self._back.value = number
            return number

    def __iter__(self) -> Iterator[_Chunk]:
        return self._chunks()

    def _chunks(self) -> Iterator[_Chunk]:
        # Seconds the other process takes to validate a chunk, and the caller to take one
        # (write it): running averages, to decide whether validating one here would help.
        validate: float | None = None
        write: float | None = None
        written = 0
        while not self._done:
            data = self._next_message(0)
            if data is None and self._should_help(validate, write, written):
                number = self._take_back()
                if number is not None:
                    self._own.append((number, self.job.chunk(number)))
                    continue
            if data is None:
                data = self._next_message(None)
            assert data is not None  # waited for it
            started = time.perf_counter()  # taking a chunk: decoding it, then writing it
            kind, payload = self._decode(data)
            if kind == "done":
                self._done = True
            elif kind == "error":
                raise ValidationProcessError(f"validating the plan failed:\n{payload}")
            else:
                validate = _average(validate, payload.seconds)
                yield payload
                write = _average(write, time.perf_counter() - started)
                written += 1
        self._reap()
        for _, chunk in sorted(self._own, key=lambda own: own[0]):
            yield chunk

    def _should_help(self, validate: float | None, write: float | None, written: int) -> bool:
        """Whether this process, idle now, should validate a chunk itself: only while the
        other process has more validating left than this one has writing (it writes every
        chunk), so that both finish together."""
        if validate is None or write is None:
            return False  # the other process is starting: its first chunk is on its way
        left_to_validate = self._back.value - self._front.value
        return write * (self.job.chunks - written) < validate * (left_to_validate - 1)

    def _next_message(self, timeout: float | None) -> bytes | None:
        """The next whole message, waiting up to ``timeout`` (None: until it comes)."""
        try:
            data = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if data is _EOF:
            raise ValidationProcessError(
                f"the process validating the plan (pid {self.pid}) ended early"
            )
        return data

    @staticmethod
    def _decode(data: bytes) -> tuple[str, Any]:
        message: tuple[str, Any] = pickle.loads(data)  # our own child's pipe
        return message

    def _read_pipe(self) -> None:
        buffer = bytearray()
        try:
            while block := os.read(self._fd, 1 << 20):
                buffer += block
                while len(buffer) >= _FRAME.size:
                    (size,) = _FRAME.unpack_from(buffer)
                    end = _FRAME.size + size
                    if len(buffer) < end:
                        break
                    self._messages.put(bytes(buffer[_FRAME.size : end]))
                    del buffer[:end]
        except OSError:
            pass  # the pipe was closed under the read: reported as an early end
        finally:
            self._messages.put(_EOF)

    def _reap(self) -> None:
        if self._closed:
            return
        self._closed = True
        _, status = os.waitpid(self.pid, 0)
        # The child is gone, so its end of the pipe is closed: the reader sees the end.
        self._reader.join()
        os.close(self._fd)
        code = os.waitstatus_to_exitcode(status)
        if self._done and code != 0:
            raise ValidationProcessError(f"the process validating the plan exited with {code}")

    def close(self) -> None:
        """Stop the forked process if it is still at work (an error, or the caller stopped)."""
        if not self._closed and not self._done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap()


def _send(out: IO[bytes], message: tuple[str, Any]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(data)))
    out.write(data)
    out.flush()


__all__ = ["CHUNK", "PARALLEL_FROM", "ValidationProcessError", "import_plan"]
