"""Importing a plan as a stream: memory stays flat however large the plan is.

``import_plan`` is what ``smm plan import`` runs. The plan is read as a stream (a list of raw
items, or ``PlanFiles``, which reads the files again on each pass), never held whole:

1. **A first pass** keeps only what checks across items need, compactly: a 64-bit hash of
   each id (duplicates; the stored posts that left the plan), the minutes the new fixed-time
   posts take in each account (queue slots), the accounts that get new queue posts.
2. **Validation** of every item (fields, times, each network's rules) and the driver-ready
   row of each valid one, in chunks of ``CHUNK`` items. For a large plan this runs in a
   forked process that reads the files itself and streams each chunk's rows and problems
   back through a pipe; this process validates chunks too whenever nothing is waiting.
3. **Writing**, chunk by chunk in plan order, in the caller's transaction: the stored posts
   the chunk names are looked up; new ones are inserted (queue posts take their slots as
   they come, ``SlotPlanner``), changed ones updated. Nothing is written once any problem
   is known, and every problem is still found: the caller gets the first ``KEPT_PROBLEMS``
   and the count, and rolls the transaction back, so an invalid plan changes nothing.
4. The stored posts of the plan's files that it no longer names (found by a chunked read)
   are reported, or cancelled with ``prune``; accounts whose stored posts changed get
   fresh slot times.

The forked process only reads the plan files and what it inherited, and writes to a pipe;
it never touches the database connection, and leaves with ``os._exit`` so no finalizer of
an inherited object runs in it. Everything that turns an item into rows is a function of
that one item (``validating.Validator.item_rows``).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from array import array
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from scheduler.accounts import sync_accounts
from scheduler.config import AccountConfig, Config
from scheduler.db.bulk import insert_tuples, supports_tuples
from scheduler.db.models import PostState
from scheduler.errors import Problem, excerpt
from scheduler.learned_slots import slot_plan
from scheduler.plan import validating
from scheduler.plan.groups import account_list, is_group_values, item_ids, post_keys
from scheduler.plan.importer import (
    LOCKED,
    NEW_COLUMNS,
    PRUNABLE,
    REQUEUEABLE,
    Existing,
    ImportDiff,
    NewPost,
    NewRows,
    apply_plan,
    approval_accounts,
    has_groups,
    new_key_prefix,
    paused_accounts,
    plan_file_id,
    reconcile_groups,
)
from scheduler.plan.items import RawItem
from scheduler.plan.slotplan import SlotPlanner, epoch_minute
from scheduler.plan.validate import NetworkCheck, _blank, _read_time, planned_times, raw_key
from scheduler.plan.validating import ValidationProcessError
from scheduler.queue import (
    Change,
    announce,
    assign_queue_slots,
    holding_posts,
    posts_t,
    record_events,
    write_slot_times,
)
from scheduler.timeutil import LocalTimeError

#: From this many items (a list) or bytes of plan files on, validation runs in a second
#: process too (below it, starting one costs about what it saves).
PARALLEL_FROM = 5_000
PARALLEL_FROM_BYTES = 500_000
#: Problems kept whole (the rest are counted): ten times what an error lists.
KEPT_PROBLEMS = 1_000
#: New posts ``ImportDiff.added`` keeps (the summary counts all of them).
ADDED_KEPT = 20

_ACCOUNT, _SCHEDULE, _ORDER, _FILE, _SOURCE, _HASH, _KEY, _STATE, _GROUP = (
    NEW_COLUMNS.index(c)
    for c in (
        "account_id",
        "schedule",
        "plan_order",
        "plan_file",
        "source",
        "content_hash",
        "key",
        "state",
        "group_key",
    )
)
_QUEUE = "queue"
_BUCKETS = 16


# --------------------------------------------------------------------------- the first pass


class _Scan:
    """What the first pass keeps: compact, a few bytes per item."""

    def __init__(self) -> None:
        self.count = 0
        #: 64-bit hashes of the ids the plan uses (each item's, and each post's of the items
        #: that name several accounts), by their low bits; sorted once the pass is over.
        self.hashes: list[array[int]] = [array("q") for _ in range(_BUCKETS)]
        #: Hashes of the ids of items that name several accounts (no post has that id).
        self.bare: array[int] = array("q")
        #: Account id -> epoch minutes of its new fixed-time posts.
        self.taken: dict[int, array[int]] = {}
        #: Accounts that get new queue posts.
        self.queued: set[int] = set()
        self.named: set[str] = set()
        self.files: dict[str, None] = {}
        #: Repeated hashes: how many times an id's hash was seen again (a duplicate id,
        #: unless two ids share a hash: ``_duplicates`` compares the ids themselves).
        self.duplicates = 0
        #: Each hash seen more than once, and how many times it was seen again.
        self.suspects: array[int] = array("q")
        self.repeats: array[int] = array("q")

    def add(self, key: str) -> None:
        h = _id_hash(key)
        self.hashes[h % _BUCKETS].append(h)

    def finish(self) -> None:
        """Sort the hashes and note those seen more than once."""
        suspects, repeats = self.suspects, self.repeats
        for number, bucket in enumerate(self.hashes):
            ordered = sorted(bucket)
            for a, b in itertools.pairwise(ordered):
                if a == b:
                    self.duplicates += 1
                    if suspects and suspects[-1] == a:
                        repeats[-1] += 1
                    else:
                        suspects.append(a)
                        repeats.append(1)
            self.hashes[number] = array("q", ordered)
        self.bare = array("q", sorted(self.bare))

    def names(self, key: str) -> bool:
        """Whether the plan uses the id ``key`` (after ``finish``)."""
        h = _id_hash(key)
        return _holds(self.hashes[h % _BUCKETS], h)

    def __contains__(self, key: object) -> bool:
        """Whether the plan makes a post with the id ``key`` (after ``finish``)."""
        return isinstance(key, str) and self.names(key) and not _holds(self.bare, _id_hash(key))


#: The 64-bit hash the first pass keeps of each id (a function of its own: a test gives two
#: ids the same one).
_id_hash = hash


def _holds(ordered: array[int], h: int) -> bool:
    at = bisect.bisect_left(ordered, h)
    return at < len(ordered) and ordered[at] == h


def _scan(
    conn: Connection | None,
    plan: Iterable[RawItem],
    config: Config,
    account_ids: Mapping[str, int],
    stored: bool,
    watched: Container[str],
) -> _Scan:
    scan = _Scan()
    taken, queued = scan.taken, scan.queued
    #: (post id, account, fixed time or None) of each post of a batch of items.
    batch: list[tuple[str, AccountConfig, datetime | None]] = []

    def settle() -> None:
        keys = [key for key, _, _ in batch]
        known = _stored_keys(conn, keys) if stored and conn is not None else set()
        for key, account, at in batch:
            if key in known:
                continue
            account_id = account_ids[account.name]
            if at is None:
                queued.add(account_id)
            else:
                minutes = taken.get(account_id)
                if minutes is None:
                    minutes = taken[account_id] = array("q")
                minutes.append(epoch_minute(at))
        batch.clear()

    count = 0
    files = scan.files
    hashes, add, id_hash = scan.hashes, scan.add, _id_hash
    accounts = config.accounts
    for raw in plan:
        count += 1
        if raw.file not in files:
            files[raw.file] = None
        values = raw.values
        key = values.get("id")
        key = key.strip() if type(key) is str else ""  # as raw_key reads it
        if is_group_values(values):
            names = account_list(values) or []
            members = post_keys(raw)
            if key:
                add(key)
                for member, _ in members:
                    if member != key:
                        add(member)
                if len(members) > 1:
                    scan.bare.append(_id_hash(key))
                batch += planned_times(raw, config)
            if watched:
                scan.named.update(n for n in names if n in watched)
        else:
            name = values.get("account")
            if key:
                h = id_hash(key)
                hashes[h % _BUCKETS].append(h)
                # planned_time, without reading the account's name twice.
                account = accounts.get(name.strip()) if type(name) is str else None
                if account is not None:
                    at = values.get("at")
                    if _blank(at):
                        batch.append((key, account, None))
                    else:
                        with contextlib.suppress(LocalTimeError):  # validation says why
                            batch.append((key, account, _read_time(at, account)))
            if watched and type(name) is str and name.strip() in watched:
                scan.named.add(name.strip())
        if len(batch) >= validating.CHUNK:
            settle()
    scan.count = count
    settle()
    scan.finish()
    return scan


def _stored_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    return set(conn.execute(select(posts_t.c.key).where(posts_t.c.key.in_(keys))).scalars())


_EXISTING = [posts_t.c[name] for name in Existing._fields]


def _existing(conn: Connection, keys: Sequence[str]) -> dict[str, Existing]:
    if not keys:
        return {}
    query = select(*_EXISTING).where(posts_t.c.key.in_(keys))
    return {row[1]: Existing._make(row) for row in conn.execute(query)}


def _gone(
    conn: Connection, scan: _Scan, files: Sequence[str], settled: Container[int]
) -> Iterator[list[Existing]]:
    """Waiting posts of the plan's files whose ids the plan no longer names (but those
    ``reconcile_groups`` settled), a page at a time: each page is read in full (by id,
    after the last one) before it is given, so the caller may cancel its posts."""
    after = 0
    while True:
        query = (
            select(*_EXISTING)
            .where(
                posts_t.c.plan_file.in_(files),
                posts_t.c.state.in_(sorted(PRUNABLE)),
                posts_t.c.id > after,
            )
            .order_by(posts_t.c.id)
            .limit(validating.CHUNK)
        )
        page = [Existing._make(r) for r in conn.execute(query)]
        if not page:
            return
        after = page[-1].id
        gone = [g for g in page if not scan.names(g.key) and g.id not in settled]
        if gone:
            yield gone


#: Ids whose hash the first pass saw more than once, compared as written in one pass.
SUSPECTS_PER_PASS = 10_000


def _duplicates(plan: Iterable[RawItem], scan: _Scan) -> tuple[list[tuple[int, int, Problem]], int]:
    """The problems of the first ids used twice (``KEPT_PROBLEMS`` of them, each naming
    where the id was first used, as ``duplicate_ids`` finds them), and how many there are.

    Another pass, only for a plan whose ids repeat a hash: it follows those ids, up to
    ``SUSPECTS_PER_PASS`` hashes at a time, and compares them as they are written, so that
    two ids that share a hash are no duplicate. Once ids are found used twice (the plan is
    refused), the hashes not compared yet count as the duplicates they almost surely are."""
    found: list[tuple[int, int, Problem]] = []
    confirmed = compared = 0
    for start in range(0, len(scan.suspects), SUSPECTS_PER_PASS):
        suspects = set(scan.suspects[start : start + SUSPECTS_PER_PASS])
        compared += sum(scan.repeats[start : start + SUSPECTS_PER_PASS])
        #: Each suspect id as written -> where it was first used (file, unit, line).
        first: dict[str, tuple[str, str, int]] = {}
        for index, raw in enumerate(plan):
            key = raw_key(raw)
            if not key:
                continue
            names = [n for n in item_ids(raw, key) if _id_hash(n) in suspects]
            if not names:
                continue
            clash = next((n for n in names if n in first), None)
            if clash is None:
                place = (raw.file, raw.unit, raw.line_of("id"))
                first.update(dict.fromkeys(names, place))
                continue
            confirmed += 1
            if len(found) >= KEPT_PROBLEMS:
                continue
            file, unit, line = first[clash]
            found.append(
                (
                    index,
                    validating.DUPLICATE,
                    Problem(
                        raw.file,
                        raw.line_of("id"),
                        "id",
                        f"duplicate id {excerpt(clash)}",
                        f"already used at {file} {unit} {line}",
                        unit=raw.unit,
                        item=clash,
                    ),
                )
            )
        if confirmed:
            return found, confirmed + scan.duplicates - compared
    return found, 0


# --------------------------------------------------------------------------- writing


class _Problems:
    """The first ``KEPT_PROBLEMS`` problems (with their item index and kind), and a count."""

    def __init__(self) -> None:
        self.kept: list[tuple[int, int, Problem]] = []
        self.total = 0

    def add(self, found: Iterable[tuple[int, int, Problem]]) -> None:
        for entry in found:
            self.total += 1
            if len(self.kept) < KEPT_PROBLEMS:
                self.kept.append(entry)

    def result(self, duplicated: Iterable[tuple[int, int, Problem]], more: int) -> list[Problem]:
        """In plan order, each item's own problems, then its duplicate id, then its
        network's (dropped for a duplicate, which is not checked against its network)."""
        dups = list(duplicated)
        skip = {index for index, _, _ in dups}
        kept = [e for e in self.kept if not (e[1] == validating.NETWORK and e[0] in skip)]
        self.total += len(dups) + more - (len(self.kept) - len(kept))
        entries = sorted(kept + dups, key=lambda e: (e[0], e[1]))
        return [p for _, _, p in entries[:KEPT_PROBLEMS]]


_UPDATE_COLUMNS = (
    "account_id",
    "content_type",
    "text",
    "media",
    "link",
    "tags",
    "evergreen",
    "schedule",
    "plan_order",
    "plan_file",
    "source",
    "content_hash",
    "due_at",
    "next_attempt_at",
    "updated_at",
    "media_meta",
    "post_options",
    "group_key",
)
_UPDATE_AT = [NEW_COLUMNS.index(c) for c in _UPDATE_COLUMNS]


class _Writer:
    """Takes the validated chunks in plan order and writes them."""

    def __init__(
        self,
        conn: Connection,
        rows: NewRows,
        planners: dict[int, SlotPlanner],
        stored: bool,
        account_names: Mapping[int, str],
        now: datetime,
        progress: Callable[[int, int], None] | None,
        total: int,
        dry_run: bool,
        scan: _Scan,
        account_ids: Mapping[str, int],
        groups: bool,
    ) -> None:
        #: The post ids the plan makes; whether groups are stored.
        self.planned = scan
        self.account_ids = account_ids
        self.groups = groups
        #: Stored posts ``reconcile_groups`` adopted or dropped: never gone.
        self.settled: set[int] = set()
        self.total = total
        self.dry_run = dry_run
        self.conn = conn
        self.rows = rows
        self.planners = planners
        self.stored = stored
        self.names = account_names
        self.now = now
        self.progress = progress
        self.diff = ImportDiff()
        self.added = 0
        self.problems = _Problems()
        self.writing = True
        #: Accounts whose stored posts changed or moved in the plan: they get new slots.
        self.touched: set[int] = set()
        #: Stored posts the plan changed (their new values hold, not a slot planned before),
        #: compactly (sorted once the writing is over).
        self.changed: array[int] = array("q")
        preparer = conn.dialect.identifier_preparer
        marker = "?" if conn.dialect.name == "sqlite" else "%s"
        self._update_sql = (
            f"UPDATE {preparer.format_table(posts_t)} SET "
            + ", ".join(f"{preparer.quote(c)} = {marker}" for c in _UPDATE_COLUMNS)
            + f", state = {marker}, attempt_count = 0, last_error = NULL, error_class = NULL"
            + f" WHERE id = {marker}"
        )

    def _lookup(self, chunk: validating.Chunk) -> dict[str, Existing]:
        """The stored posts the chunk's items name, and those ``reconcile_groups`` finds
        other posts of their items (entered under the new ids)."""
        keys: list[str] = []
        group_items: list[str] = []
        members: dict[str, list[tuple[str, str]]] = {}
        for item_id, posts, group in chunk.members:
            if not item_id:
                continue
            keys.append(item_id)
            keys += [key for key, _ in posts if key != item_id]
            members[item_id] = posts
            if group:
                group_items.append(item_id)
        existing = _existing(self.conn, keys)
        if group_items or self.groups:
            dropped = reconcile_groups(
                self.conn,
                existing,
                [],
                list(members),
                lambda item_id: members.get(item_id, ()),
                group_items,
                self.planned,
                self.account_ids,
                self.settled,
            )
            if dropped:
                self._drop(dropped)
        return existing

    def _drop(self, dropped: list[Existing]) -> None:
        """Waiting posts of accounts taken off their item: cancelled (unless nothing is
        written), and the first of them kept for the summary."""
        self.diff.keep("dropped", dropped)
        if self.dry_run or not self.writing:
            return
        self.conn.execute(
            update(posts_t)
            .where(posts_t.c.id.in_([d.id for d in dropped]), posts_t.c.state.in_(PRUNABLE))
            .values(state=PostState.CANCELLED, updated_at=self.now)
        )
        changes = [Change(d.id, d.key, d.state, PostState.CANCELLED) for d in dropped]
        record_events(
            self.conn, changes, self.now, "plan", "its account was taken off the plan item"
        )
        self.touched.update(d.account_id for d in dropped)

    def take(self, chunk: validating.Chunk) -> None:
        problems = chunk.problems
        existing = self._lookup(chunk) if self.stored else {}
        if chunk.past:
            settled = LOCKED | REQUEUEABLE
            unsettled = {
                index: alt
                for index, (keys, alt) in chunk.past.items()
                if not all(
                    key is not None and key in existing and existing[key].state in settled
                    for key in keys
                )
            }
            if unsettled:
                problems = [e for e in problems if e[0] not in unsettled]
                problems += [(i, kind, p) for i, alt in unsettled.items() for kind, p in alt]
                problems.sort(key=lambda e: (e[0], e[1]))
        if problems:
            self.problems.add(problems)
            self.writing = False
        if not self.writing:
            return
        new: list[tuple[Any, ...]] = []
        changed: list[tuple[tuple[Any, ...], Existing]] = []
        moved: list[tuple[Any, ...]] = []
        planners, due = self.planners, self.rows.due
        renamed: list[tuple[str, str | None, int]] = []
        renames: list[tuple[NewPost, Existing]] = []
        for row in chunk.rows:
            old = existing.get(row[_KEY]) if existing else None
            if old is None:
                if row[_SCHEDULE] == _QUEUE:
                    row = due(row, planners[row[_ACCOUNT]].next(row[_ORDER]))
                new.append(row)
                continue
            if old.key != row[_KEY]:  # adopted by ``reconcile_groups``
                renames.append((NewPost(row[_KEY], self.names[row[_ACCOUNT]], row[1]), old))
                renamed.append((row[_KEY], row[_GROUP], old.id))
            if old.content_hash == row[_HASH] and old.account_id == row[_ACCOUNT]:
                self.diff.unchanged += 1
                place = (row[_ORDER], row[_FILE], row[_SOURCE])
                if place != (old.plan_order, old.plan_file, old.source):
                    moved.append((*place, old.id))
                    self.touched.add(old.account_id)
            else:
                changed.append((row, old))
        if renames:
            self.diff.keep("renamed", renames)
        if new:
            self.added += len(new)
            if len(self.diff.added) < ADDED_KEPT:
                self.diff.added += [
                    NewPost(r[_KEY], self.names[r[_ACCOUNT]], r[1])
                    for r in new[: ADDED_KEPT - len(self.diff.added)]
                ]
        if self.dry_run:
            if changed:
                self._change(changed)
            return
        if renamed:
            # First, so the updates below and later imports find each post by its new id.
            self.conn.execute(
                update(posts_t)
                .where(posts_t.c.id == bindparam("b_id"))
                .values(
                    key=bindparam("b_key"), group_key=bindparam("b_group"), updated_at=self.now
                ),
                [{"b_key": k, "b_group": g, "b_id": i} for k, g, i in renamed],
            )
        if new:
            insert_tuples(self.conn, posts_t, NEW_COLUMNS, new)
            if self.progress:
                self.progress(len(new), self.total)
        if changed:
            self._change(changed)
        if moved:
            self.conn.execute(
                update(posts_t)
                .where(posts_t.c.id == bindparam("b_id"))
                .values(
                    plan_order=bindparam("b_order"),
                    plan_file=bindparam("b_file"),
                    source=bindparam("b_source"),
                ),
                [{"b_order": o, "b_file": f, "b_source": s, "b_id": i} for o, f, s, i in moved],
            )

    def _change(self, changed: list[tuple[tuple[Any, ...], Existing]]) -> None:
        """Changed items' posts: locked ones are left alone, the others take the plan's
        values and start afresh (as ``apply_changes`` writes them)."""
        updates: list[tuple[Any, ...]] = []
        changes: list[Change] = []
        kinds: dict[str, list[tuple[NewPost, Existing]]] = {
            "locked": [],
            "requeued": [],
            "updated": [],
        }
        for row, old in changed:
            post = NewPost(row[_KEY], self.names[row[_ACCOUNT]], row[1])
            if old.state in LOCKED:
                kinds["locked"].append((post, old))
                continue
            kinds["requeued" if old.state in REQUEUEABLE else "updated"].append((post, old))
            # A changed post starts afresh: a paused one stays paused, any other waits in
            # the queue, or for sign-off again where the item or the account needs it.
            if row[_STATE] == PostState.PENDING_APPROVAL.value:
                state = PostState.PENDING_APPROVAL
            elif old.state == PostState.PAUSED and old.account_id == row[_ACCOUNT]:
                state = PostState.PAUSED
            else:
                state = PostState.QUEUED
            if state != old.state:
                changes.append(Change(old.id, old.key, old.state, state))
            updates.append((*(row[i] for i in _UPDATE_AT), state.value, old.id))
            self.changed.append(old.id)
            self.touched.add(row[_ACCOUNT])
            self.touched.add(old.account_id)
        for name, entries in kinds.items():
            if entries:
                self.diff.keep(name, entries)
        if self.dry_run:
            return
        if updates:
            self.conn.exec_driver_sql(self._update_sql, updates)
        record_events(self.conn, changes, self.now, "plan", "the plan changed the post")


# --------------------------------------------------------------------------- the import


def import_plan(
    conn: Connection,
    plan: Iterable[RawItem],
    config: Config,
    now: datetime,
    *,
    network_check: NetworkCheck | None = None,
    prune: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    parallel: bool | None = None,
    account_problems: Mapping[str, Sequence[Problem]] | None = None,
) -> tuple[ImportDiff, list[Problem]]:
    """Validate the plan and reconcile the database with it in the caller's transaction.

    ``plan``: its raw items, read again on each pass (a list, or ``PlanFiles``, whose
    reading problems come first in the result). Returns the diff and the problems found
    (the first ``KEPT_PROBLEMS``; ``ImportDiff.problem_count`` counts them all). With
    problems, rows may have been written: the caller rolls back (as it does for a dry run);
    nothing here commits. ``parallel``: validate in a second process too (None: when the
    plan is large and the platform can fork). ``account_problems``: problems of config
    accounts, reported when the plan names the account.
    """
    watched = account_problems or {}
    if not supports_tuples(conn):
        return _import_whole(conn, plan, config, now, network_check, prune, dry_run, watched)
    account_ids = sync_accounts(conn, config, now)
    names = {account_id: name for name, account_id in account_ids.items()}
    stored = conn.execute(select(posts_t.c.id).limit(1)).first() is not None
    rows = NewRows(
        conn, paused_accounts(conn), now, new_key_prefix(), approval_accounts(config, account_ids)
    )
    validator = validating.Validator(config, now, network_check, rows, account_ids, stored)
    groups = stored and has_groups(conn)
    if parallel is None:
        if isinstance(plan, Sequence):
            parallel = len(plan) >= PARALLEL_FROM
        else:
            parallel = _plan_bytes(plan) >= PARALLEL_FROM_BYTES
    shared = None
    if parallel and validating.can_fork():
        validator.warm(plan)
        # The other process starts validating now, while this one makes the first pass.
        shared = validating.Shared(validator, plan)
    try:
        scan = _scan(conn, plan, config, account_ids, stored, watched)
        read_problems = list(getattr(plan, "problems", ()))
        voided = set(getattr(plan, "voided", ()))
        # Ids whose hash repeats are compared as written, before anything is written.
        duplicated, duplicates = _duplicates(plan, scan) if scan.duplicates else ([], 0)
        more = [p for name in sorted(scan.named) for p in watched[name]]
        touched = sorted(scan.queued | scan.taken.keys())
        held = holding_posts(conn, touched) if touched else {}
        by_id = {account_ids[name]: acc for name, acc in config.accounts.items()}
        # An account that learns its slots follows the learned table, as the final
        # re-slotting does, so each new queue post's time is written once.
        planners = {
            a: SlotPlanner(
                by_id[a],
                held.get(a, ()),
                now,
                scan.taken.get(a, array("q")),
                slot_plan(conn, by_id[a], a) if by_id[a].learn else None,
            )
            for a in touched
        }
        writer = _Writer(
            conn,
            rows,
            planners,
            stored,
            names,
            now,
            progress,
            scan.count,
            dry_run,
            scan,
            account_ids,
            groups,
        )
        writer.writing = not (read_problems or duplicates or more)
        chunks = -(-scan.count // validating.CHUNK)
        source = (
            shared.chunks(chunks) if shared is not None else validating.own_chunks(validator, plan)
        )
        for chunk in source:
            writer.take(chunk)
    finally:
        if shared is not None:
            shared.close()
    changed = list(getattr(plan, "changed", lambda: [])())
    problems = writer.problems
    if duplicates or problems.total or read_problems or more or changed:
        found = problems.result(duplicated, duplicates - len(duplicated))
        if voided:  # items of a file that could not be read count for nothing
            found = [p for p in found if p.file not in voided]
        listed = read_problems + changed + found + more
        diff = writer.diff
        diff.problem_count = len(read_problems) + len(changed) + problems.total + len(more)
        return diff, listed
    diff = writer.diff
    diff.added_count = writer.added
    diff.pruned = prune
    files = sorted({plan_file_id(f) for f in scan.files})
    if dry_run:
        for gone in _gone(conn, scan, files, writer.settled) if stored else ():
            diff.keep("gone", gone)
        return diff, []
    # The slots stored posts moved to for the new ones, but for the posts the plan changed.
    changed_ids = array("q", sorted(writer.changed))
    moves = [m for planner in planners.values() for m in planner.finish()]
    write_slot_times(conn, [m for m in moves if not _holds(changed_ids, m[0])], now)
    touched_now = set(writer.touched)
    # Stored posts the plan no longer names, a page at a time (cancelled with --prune).
    for gone in _gone(conn, scan, files, writer.settled) if stored else ():
        diff.keep("gone", gone)
        if prune:
            conn.execute(
                update(posts_t)
                .where(posts_t.c.id.in_([g.id for g in gone]))
                .values(state=PostState.CANCELLED, updated_at=now)
            )
            gone_changes = [Change(g.id, g.key, g.state, PostState.CANCELLED) for g in gone]
            record_events(conn, gone_changes, now, "plan", "no longer in the plan (--prune)")
            touched_now |= {g.account_id for g in gone}
    for account_id in sorted(touched_now):
        if account_id in by_id:
            assign_queue_slots(conn, by_id[account_id], account_id, now)
    if diff.queues_posts:
        announce(conn)
    return diff, []


def _plan_bytes(plan: Iterable[RawItem]) -> int:
    size = getattr(plan, "size", None)
    return int(size()) if callable(size) else 0


def _import_whole(
    conn: Connection,
    plan: Iterable[RawItem],
    config: Config,
    now: datetime,
    network_check: NetworkCheck | None,
    prune: bool,
    dry_run: bool,
    watched: Mapping[str, Sequence[Problem]],
) -> tuple[ImportDiff, list[Problem]]:
    """Databases whose driver takes no prepared rows: the plan validated whole, then
    ``apply_plan``."""
    from scheduler.plan.validate import validate_items

    raws = list(plan)
    problems = list(getattr(plan, "problems", ()))
    items, found = validate_items(raws, config, now, network_check=network_check)
    named = {str(r.values.get("account") or "").strip() for r in raws}
    problems += found + [p for name in sorted(named & watched.keys()) for p in watched[name]]
    if problems:
        return ImportDiff(), problems
    return apply_plan(conn, items, config, now, prune=prune, dry_run=dry_run), []


__all__ = ["KEPT_PROBLEMS", "PARALLEL_FROM", "ValidationProcessError", "import_plan"]
