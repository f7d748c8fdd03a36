"""Importing a validated plan: one transaction, reconciled with what is already queued.

Re-importing reconciles by the plan's ``id``: new items are added, changed items that have not
gone out are updated, published (or possibly published) posts are never touched, and items
that disappeared from a plan file are reported, cancelled only when asked (``--prune``).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, bindparam, func, select, update

from scheduler.accounts import sync_accounts
from scheduler.adapter import NO_OPTIONS
from scheduler.config import Config
from scheduler.db.bulk import column_converters, insert_rows, insert_tuples, supports_tuples
from scheduler.db.models import PostState, Schedule
from scheduler.plan.gcpause import gc_paused
from scheduler.plan.items import PlanItem, meta_record
from scheduler.plan.post_options import options_record
from scheduler.queue import (
    Change,
    accounts_t,
    announce,
    assign_queue_slots,
    posts_t,
    record_events,
)

#: Changed items in these states are updated in place.
UPDATABLE = frozenset(
    {
        PostState.QUEUED,
        PostState.RETRY_WAIT,
        PostState.PAUSED,
        PostState.PENDING_APPROVAL,
        PostState.CHANGES_REQUESTED,
    }
)
#: Changed items in these states are updated and queued again (the plan fixed them).
REQUEUEABLE = frozenset({PostState.FAILED, PostState.MISSED, PostState.CANCELLED})
#: Posts in these states are never touched by an import.
LOCKED = frozenset({PostState.PUBLISHED, PostState.UNCONFIRMED, PostState.CLAIMED})
#: Posts gone from the plan in these states are reported (and cancelled with --prune).
PRUNABLE = frozenset(UPDATABLE)

#: Keys per IN (...) lookup: well under the parameter limits of SQLite (32,766) and psycopg.
_CHUNK = 5_000
_INSERT_BATCH = 10_000
#: Stored rows read per fetch when an import reads every stored post.
READ_CHUNK = 10_000


class Existing(NamedTuple):
    """What an import needs of a stored post (a tuple: a large plan reads one per post)."""

    id: int
    key: str
    content_hash: str
    state: str
    plan_file: str | None
    account_id: int
    plan_order: int
    source: str | None
    #: The item's id when the post is one of an item's several accounts (``group_key``).
    group_key: str | None = None


class NewPost(NamedTuple):
    """A post an import adds, as the summary and ``--dry-run`` show it."""

    key: str
    account: str
    content_type: str


#: Entries a streamed import's diff keeps of each list (``ImportDiff.keep``).
KEPT_ENTRIES = 1_000


@dataclass
class ImportDiff:
    """What an import would do (``--dry-run`` prints it) and, once applied, did."""

    #: Validated items (``apply_plan``), or what the summary needs of them (``import_plan``).
    added: list[PlanItem | NewPost] = field(default_factory=list)
    updated: list[tuple[PlanItem, Existing]] = field(default_factory=list)
    requeued: list[tuple[PlanItem, Existing]] = field(default_factory=list)
    unchanged: int = 0
    #: Changed in the plan, but the post is already out (or going out): not touched.
    locked: list[tuple[PlanItem, Existing]] = field(default_factory=list)
    #: Unchanged posts whose place in the plan moved (order, file or line): bookkeeping only.
    moved: list[tuple[PlanItem, Existing]] = field(default_factory=list)
    #: Waiting posts of the imported files that the plan no longer lists.
    gone: list[Existing] = field(default_factory=list)
    pruned: bool = False
    #: Stored posts that become another post of their item (an item that named one account
    #: now names several, or the other way): their id changes, nothing else (``ITEM`` <->
    #: ``ITEM@ACCOUNT``).
    renamed: list[tuple[PlanItem, Existing]] = field(default_factory=list)
    #: Waiting posts of items still in the plan whose account the item no longer names:
    #: cancelled by the import, as any other change the plan makes to an item.
    dropped: list[Existing] = field(default_factory=list)
    #: How many posts are added, when ``added`` keeps only the first of them (a streamed
    #: import); None: ``added`` lists them all.
    added_count: int | None = None
    #: How many problems were found, when only the first of them were kept.
    problem_count: int = 0
    #: How many entries each list above has, for the lists that keep only the first
    #: ``KEPT_ENTRIES`` of them (a streamed import, ``keep``): by the list's name.
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> int:
        """How many entries list ``name`` (``updated``, ``gone``...) has, kept or not."""
        return self.counts.get(name, len(getattr(self, name)))

    def keep(self, name: str, entries: Sequence[Any]) -> None:
        """Add ``entries`` to list ``name``, which keeps only the first ``KEPT_ENTRIES``
        (memory stays bounded however many posts an import changes); ``count`` counts all."""
        kept: list[Any] = getattr(self, name)
        self.counts[name] = self.count(name) + len(entries)
        if len(kept) < KEPT_ENTRIES:
            kept += entries[: KEPT_ENTRIES - len(kept)]

    def take(self, part: ImportDiff) -> None:
        """Add what ``part``, the diff of a later part of the same plan, says about stored
        posts (updated, requeued, unchanged, locked, moved)."""
        self.updated += part.updated
        self.requeued += part.requeued
        self.unchanged += part.unchanged
        self.locked += part.locked
        self.moved += part.moved
        self.renamed += part.renamed

    @property
    def queues_posts(self) -> bool:
        """Whether the import adds posts to the queue or changes queued ones."""
        return bool(
            self.added_total
            or self.count("updated")
            or self.count("requeued")
            or self.count("dropped")
        )

    @property
    def added_total(self) -> int:
        """How many posts the import adds."""
        return len(self.added) if self.added_count is None else self.added_count

    def summary(self) -> dict[str, int]:
        return {
            "added": self.added_total,
            "updated": self.count("updated"),
            "requeued": self.count("requeued"),
            "unchanged": self.unchanged,
            "locked": self.count("locked"),
            "gone": self.count("gone"),
            "dropped": self.count("dropped"),
            "cancelled": (self.count("gone") if self.pruned else 0) + self.count("dropped"),
        }


def settled_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` whose posts are out of the waiting queue (published, failed...)."""
    done = LOCKED | REQUEUEABLE
    found: set[str] = set()
    for i in range(0, len(keys), _CHUNK):
        found.update(
            conn.execute(
                select(posts_t.c.key).where(
                    posts_t.c.key.in_(keys[i : i + _CHUNK]), posts_t.c.state.in_(done)
                )
            ).scalars()
        )
    return found


@functools.lru_cache(maxsize=256)
def plan_file_id(file: str) -> str:
    """How a plan file is remembered: its absolute path."""
    return str(Path(file).resolve())


def stored_posts(
    conn: Connection, keys: Sequence[str], files: Sequence[str]
) -> tuple[dict[str, Existing], list[Existing]]:
    cols = (
        posts_t.c.id,
        posts_t.c.key,
        posts_t.c.content_hash,
        posts_t.c.state,
        posts_t.c.plan_file,
        posts_t.c.account_id,
        posts_t.c.plan_order,
        posts_t.c.source,
        posts_t.c.group_key,
    )
    by_key: dict[str, Existing] = {}
    wanted = set(keys)
    gone: list[Existing] = []
    stored = conn.execute(select(func.count()).select_from(posts_t)).scalar_one()
    if stored <= 2 * len(keys):
        # Few stored posts for the size of the plan (a first import, a re-import of the
        # whole plan): reading them all once, straight from the driver (these columns need
        # no conversion), costs less than looking every key up and then the plan's files.
        names = ", ".join(conn.dialect.identifier_preparer.quote(c.name) for c in cols)
        table = conn.dialect.identifier_preparer.format_table(posts_t)
        # Read a chunk at a time: only the posts the plan names (and the gone ones) are kept,
        # never every stored row at once.
        cursor = conn.connection.cursor()
        prunable_files = set(files)
        try:
            cursor.execute(f"SELECT {names} FROM {table}")
            while stored_rows := cursor.fetchmany(READ_CHUNK):
                for post in map(Existing._make, stored_rows):
                    if post.key in wanted:
                        by_key[post.key] = post
                    elif post.plan_file in prunable_files and post.state in PRUNABLE:
                        gone.append(post)
        finally:
            cursor.close()
        return by_key, gone
    for i in range(0, len(keys), _CHUNK):
        query = select(*cols).where(posts_t.c.key.in_(keys[i : i + _CHUNK]))
        for row in conn.execute(query):
            by_key[row.key] = Existing(*row)
    gone = [
        Existing(*row)
        for row in conn.execute(
            select(*cols).where(posts_t.c.plan_file.in_(files), posts_t.c.state.in_(PRUNABLE))
        )
        if row.key not in wanted
    ]
    return by_key, gone


def has_groups(conn: Connection) -> bool:
    """Whether any stored post belongs to a group (an item with several accounts)."""
    any_group = select(posts_t.c.id).where(posts_t.c.group_key.is_not(None)).limit(1)
    return conn.execute(any_group).first() is not None


def grouped_posts(conn: Connection, item_ids: Sequence[str]) -> dict[str, list[Existing]]:
    """The stored posts of groups (``group_key``) whose item id is one of ``item_ids``; no
    lookup at all while no stored post belongs to a group. Evergreen repeats are left out:
    they share their original's group, but no plan lists them, and a re-import never
    touches them."""
    if not item_ids or not has_groups(conn):
        return {}
    cols = [posts_t.c[name] for name in Existing._fields]
    found: dict[str, list[Existing]] = {}
    for i in range(0, len(item_ids), _CHUNK):
        query = select(*cols).where(
            posts_t.c.group_key.in_(item_ids[i : i + _CHUNK]),
            posts_t.c.recycled_from_id.is_(None),
        )
        for row in conn.execute(query):
            found.setdefault(row.group_key, []).append(Existing(*row))
    return found


def reconcile_groups(
    conn: Connection,
    stored: dict[str, Existing],
    gone: list[Existing],
    item_ids: Sequence[str],
    members: Callable[[str], Sequence[tuple[str, str]]],
    group_items: Collection[str],
    planned: Container[str],
    account_ids: Mapping[str, int],
    settled: set[int] | None = None,
) -> list[Existing]:
    """Match the stored posts of items whose accounts changed shape with the posts the plan
    now makes of them, and return the waiting ones no account of their item claims (to be
    cancelled: ``ImportDiff.dropped``).

    ``stored`` (by post id, with the bare ids of ``group_items`` looked up too) and ``gone``
    are ``stored_posts``' answer; ``members(item_id)`` gives (post id, account name) of each
    post an item makes; ``group_items`` are the items that name their accounts as a list;
    ``planned`` holds every post id the plan makes. A post made under another id of its item
    (``ITEM`` when the item named one account, ``ITEM@ACCOUNT`` when it named several) on the
    same account is entered in ``stored`` under its new id: the import then renames it and
    treats it as that post, so a post already published is never made again. The posts
    adopted or dropped are taken out of ``gone``, and added to ``settled`` when given.
    """
    grouped = grouped_posts(conn, item_ids)
    if not grouped and not group_items:
        return []
    taken: set[int] = set()
    dropped: list[Existing] = []
    for item_id in sorted({*group_items, *grouped}):  # in order: the summary lists them
        candidates = list(grouped.get(item_id, ()))
        single = stored.get(item_id)
        if single is not None and single.key == item_id and item_id not in planned:
            candidates.append(single)  # the item named one account before
        wanted = list(members(item_id))
        for key, _ in wanted:
            if key in stored and stored[key].key == key:
                taken.add(stored[key].id)
        for key, account in wanted:
            if key in stored or account not in account_ids:
                continue
            for old in candidates:
                if (
                    old.id not in taken
                    and old.account_id == account_ids[account]
                    and old.key not in planned
                ):
                    stored[key] = old
                    taken.add(old.id)
                    break
        dropped += [
            old
            for old in candidates
            if old.id not in taken and old.key not in planned and old.state in PRUNABLE
        ]
    settled_ids = taken | {d.id for d in dropped}
    if gone:
        gone[:] = [g for g in gone if g.id not in settled_ids]
    if settled is not None:
        settled |= settled_ids
    return dropped


def diff_plan(
    conn: Connection, items: Sequence[PlanItem], account_ids: dict[str, int]
) -> ImportDiff:
    """Compare the plan with the database without changing anything."""
    files = sorted({plan_file_id(i.file) for i in items})
    groups: dict[str, list[tuple[str, str]]] = {}
    for i in items:
        groups.setdefault(i.group or i.key, []).append((i.key, i.account))
    group_items = {i.group for i in items if i.group}
    existing, gone = stored_posts(conn, [*[i.key for i in items], *group_items], files)
    planned = {i.key for i in items}
    dropped = reconcile_groups(
        conn,
        existing,
        gone,
        list(groups),
        lambda item_id: groups.get(item_id, ()),
        group_items,
        planned,
        account_ids,
    )
    diff = ImportDiff(gone=gone, dropped=dropped)
    for item in items:
        old = existing.get(item.key)
        if old is None:
            diff.added.append(item)
        else:
            classify(diff, item, old, account_ids)
    return diff


def classify(diff: ImportDiff, item: PlanItem, old: Existing, account_ids: dict[str, int]) -> None:
    """Record in ``diff`` what the plan's ``item`` means for its stored post ``old``."""
    if old.key != item.key:  # adopted by ``reconcile_groups``
        diff.renamed.append((item, old))
    same_account = account_ids.get(item.account) == old.account_id
    if old.content_hash == item.content_hash() and same_account:
        diff.unchanged += 1
        place = (item.order, plan_file_id(item.file), item.source)
        if place != (old.plan_order, old.plan_file, old.source):
            diff.moved.append((item, old))
    elif old.state in LOCKED:
        diff.locked.append((item, old))
    elif old.state in REQUEUEABLE:
        diff.requeued.append((item, old))
    else:
        diff.updated.append((item, old))


def _values(item: PlanItem, account_id: int, now: datetime) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "content_type": item.content_type,
        "text": item.text,
        "media": list(item.media),
        "media_meta": [meta_record(m) for m in item.media_meta] or None,
        "post_options": options_record(item.options),
        "link": item.link,
        "tags": list(item.tags),
        "evergreen": item.evergreen,
        "schedule": Schedule.FIXED if item.at else Schedule.QUEUE,
        "plan_order": item.order,
        "plan_file": plan_file_id(item.file),
        "source": item.source,
        "group_key": item.group,
        "content_hash": item.content_hash(),
        "due_at": item.at,
        "next_attempt_at": item.at,
        "updated_at": now,
    }


#: Columns of a new post, in the order ``_new_tuples`` builds them.
NEW_COLUMNS = (
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
    "key",
    "state",
    "idempotency_key",
    "attempt_count",
    "repeat_count",
    "created_at",
    "media_meta",
    "post_options",
    "group_key",
)


def _identity(value: Any) -> Any:
    return value


# Plain strings, not the StrEnum members: the same stored text, without the driver's
# adaptation lookup for str subclasses.
_QUEUED, _PAUSED = PostState.QUEUED.value, PostState.PAUSED.value
_PENDING = PostState.PENDING_APPROVAL.value
_QUEUE, _FIXED = Schedule.QUEUE.value, Schedule.FIXED.value


_DUE_AT = NEW_COLUMNS.index("due_at")
assert NEW_COLUMNS[_DUE_AT + 1] == "next_attempt_at"


def new_key_prefix() -> str:
    """The random part of one import's idempotency keys (see ``NewRows``)."""
    return secrets.token_hex(10)


class NewRows:
    """Driver-ready rows of new posts: the values ``_values`` gives, converted as each column
    type would (see ``scheduler.db.bulk``), built straight into tuples in ``NEW_COLUMNS``
    order. Needs a connection only to learn the converters: rows can be built elsewhere.

    Idempotency keys are an import's random 80-bit prefix and the item's 48-bit number in the
    import: unique, and in index order, so inserting them appends to the unique index.
    """

    def __init__(
        self,
        conn: Connection,
        paused: set[int],
        now: datetime,
        prefix: str,
        pending: Collection[int] = (),
    ) -> None:
        convs = dict(zip(NEW_COLUMNS, column_converters(conn, posts_t, NEW_COLUMNS), strict=True))

        def conv(name: str) -> Callable[[Any], Any]:
            return convs[name] or _identity

        self._media, self._tags, bool_c = conv("media"), conv("tags"), conv("evergreen")
        self._meta, self._options = conv("media_meta"), conv("post_options")
        self._due = conv("due_at")
        # Slot assignment gives both columns the same instant; they have the same type.
        assert type(posts_t.c.due_at.type) is type(posts_t.c.next_attempt_at.type)
        self._updated, self._created = conv("updated_at")(now), conv("created_at")(now)
        self._empty_media, self._empty_tags = self._media([]), self._tags([])
        self._true, self._false = bool_c(True), bool_c(False)
        self._paused = paused
        self._pending = frozenset(pending)
        self._prefix = prefix
        self._files: dict[str, str] = {}
        # Plans repeat the same tag (and media) lists: each distinct one is converted once.
        self._media_seen: dict[tuple[str, ...], Any] = {}
        self._tags_seen: dict[tuple[str, ...], Any] = {}

    def due(self, row: tuple[Any, ...], due: datetime | None) -> tuple[Any, ...]:
        """``row`` with its due time (and next attempt time) set to ``due``."""
        value = None if due is None else self._due(due)
        return (*row[:_DUE_AT], value, value, *row[_DUE_AT + 2 :])

    def row(
        self, item: PlanItem, account_id: int, number: int, due: datetime | None, queue: bool
    ) -> tuple[Any, ...]:
        """The row of ``item``, the ``number``-th new post of the import, due at ``due``."""
        file = item.file
        plan_file = self._files.get(file)
        if plan_file is None:
            plan_file = self._files[file] = plan_file_id(file)
        due_v = None if due is None else self._due(due)
        media, tags = item.media, item.tags
        if not media:
            media_v = self._empty_media
        else:
            media_v = self._media_seen.get(media)
            if media_v is None:
                media_v = self._media_seen[media] = self._media(list(media))
        if not tags:
            tags_v = self._empty_tags
        else:
            tags_v = self._tags_seen.get(tags)
            if tags_v is None:
                tags_v = self._tags_seen[tags] = self._tags(list(tags))
        return (
            account_id,
            item.content_type,
            item.text,
            media_v,
            item.link,
            tags_v,
            self._true if item.evergreen else self._false,
            _QUEUE if queue else _FIXED,
            item.order,
            plan_file,
            item.source,
            item.content_hash(),
            due_v,
            due_v,
            self._updated,
            item.key,
            # A post that needs sign-off waits for it first (a paused account's posts are
            # not claimed either way); a paused account's other new posts wait with the
            # rest until it is resumed.
            _PENDING
            if item.approval or account_id in self._pending
            else _PAUSED
            if account_id in self._paused
            else _QUEUED,
            f"{self._prefix}{number:012x}",
            0,
            0,
            self._created,
            self._meta([meta_record(m) for m in item.media_meta]) if item.media_meta else None,
            None if item.options is NO_OPTIONS else self._options(options_record(item.options)),
            item.group,
        )


def approval_accounts(config: Config, account_ids: Mapping[str, int]) -> set[int]:
    """The accounts whose new and changed posts wait for sign-off (``approval = "required"``)."""
    accounts = config.accounts.items()
    return {account_ids[n] for n, acc in accounts if acc.approval and n in account_ids}


def new_state(account_id: int, paused: Collection[int], pending: Collection[int]) -> PostState:
    """The state a new (or changed) post starts in: an account that needs approval holds it
    for sign-off, even while the account is paused (resuming an account must not queue a post
    nobody signed off; the daemon claims no post of a paused account either way); otherwise a
    paused account's posts wait with the others until it is resumed."""
    if account_id in pending:
        return PostState.PENDING_APPROVAL
    return PostState.PAUSED if account_id in paused else PostState.QUEUED


def paused_accounts(conn: Connection) -> set[int]:
    return set(conn.execute(select(accounts_t.c.id).where(accounts_t.c.paused.is_(True))).scalars())


def apply_changes(
    conn: Connection,
    diff: ImportDiff,
    account_ids: dict[str, int],
    now: datetime,
    pending: Collection[int] = (),
) -> set[int]:
    """Write what ``diff`` says about stored posts (updated, requeued, moved, and gone when
    pruning); return the accounts whose queue may need new slot times."""
    prune = diff.pruned
    if diff.renamed:
        # First, so the updates below and later imports find each post by its new id.
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id == bindparam("b_id"))
            .values(key=bindparam("b_key"), group_key=bindparam("b_group"), updated_at=now),
            [
                {"b_id": old.id, "b_key": item.key, "b_group": item.group}
                for item, old in diff.renamed
            ],
        )
    changes: list[Change] = []
    updates = []
    for item, old in diff.updated + diff.requeued:
        values = _values(item, account_ids[item.account], now)
        # A changed post starts afresh: a paused one stays paused, any other waits in the
        # queue, or for sign-off again where the account needs it.
        paused = (old.account_id,) if old.state == PostState.PAUSED else ()
        account_id = account_ids[item.account]
        state = new_state(account_id, paused, (account_id,) if item.approval else pending)
        values.update(state=state, attempt_count=0, last_error=None, error_class=None)
        if state != old.state:
            changes.append(Change(old.id, old.key, old.state, state))
        updates.append({"b_id": old.id, **values})
    if updates:
        # One statement per distinct column set keeps executemany batching effective.
        cols = [k for k in updates[0] if k != "b_id"]
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id == bindparam("b_id"))
            .values({c: bindparam(c) for c in cols}),
            updates,
        )
    record_events(conn, changes, now, "plan", "the plan changed the post")
    if diff.moved:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id == bindparam("b_id"))
            .values(
                plan_order=bindparam("b_order"),
                plan_file=bindparam("b_file"),
                source=bindparam("b_source"),
            ),
            [
                {
                    "b_id": old.id,
                    "b_order": item.order,
                    "b_file": plan_file_id(item.file),
                    "b_source": item.source,
                }
                for item, old in diff.moved
            ],
        )

    if prune and diff.gone:
        gone_changes = [Change(g.id, g.key, g.state, PostState.CANCELLED) for g in diff.gone]
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id.in_([g.id for g in diff.gone]))
            .values(state=PostState.CANCELLED, updated_at=now)
        )
        record_events(conn, gone_changes, now, "plan", "no longer in the plan (--prune)")
    if diff.dropped:
        dropped = [Change(d.id, d.key, d.state, PostState.CANCELLED) for d in diff.dropped]
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id.in_([d.id for d in diff.dropped]), posts_t.c.state.in_(PRUNABLE))
            .values(state=PostState.CANCELLED, updated_at=now)
        )
        record_events(conn, dropped, now, "plan", "its account was taken off the plan item")

    touched = {account_ids[i.account] for i, _ in diff.updated + diff.requeued}
    touched |= {old.account_id for _, old in diff.updated + diff.requeued + diff.moved}
    if prune:
        touched |= {g.account_id for g in diff.gone}
    touched |= {d.account_id for d in diff.dropped}
    return touched


@gc_paused
def apply_plan(
    conn: Connection,
    items: Sequence[PlanItem],
    config: Config,
    now: datetime,
    *,
    prune: bool = False,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportDiff:
    """Reconcile the database with ``items`` inside the caller's transaction.

    The caller commits (or, for a dry run, rolls back); nothing here commits.
    """
    account_ids = sync_accounts(conn, config, now)
    diff = diff_plan(conn, items, account_ids)
    diff.pruned = prune
    if dry_run:
        return diff

    pending = approval_accounts(config, account_ids)
    touched = apply_changes(conn, diff, account_ids, now, pending)
    if diff.queues_posts:
        announce(conn)  # delivered when the caller commits
    paused = paused_accounts(conn)
    touched |= {account_ids[i.account] for i in diff.added}
    by_id = {account_ids[name]: acc for name, acc in config.accounts.items()}

    # What slot assignment needs of each new post; it sets due_at/next_attempt_at in place.
    added = cast(list[PlanItem], diff.added)  # diff_plan adds the items themselves
    new_ids = [account_ids[item.account] for item in added]
    slot_rows: list[dict[str, Any]] = [
        {
            "account_id": account_id,
            "schedule": Schedule.FIXED if item.at else Schedule.QUEUE,
            "plan_order": item.order,
            "content_type": item.content_type,
            "due_at": item.at,
            "next_attempt_at": item.at,
        }
        for item, account_id in zip(added, new_ids, strict=True)
    ]
    new_by_account: dict[int, list[dict[str, Any]]] = {}
    for row in slot_rows:
        new_by_account.setdefault(row["account_id"], []).append(row)
    for account_id in sorted(touched):
        if account_id in by_id:
            assign_queue_slots(
                conn,
                by_id[account_id],
                account_id,
                now,
                new_rows=new_by_account.get(account_id, []),
            )

    prefix = new_key_prefix()
    if supports_tuples(conn):
        rows = NewRows(conn, paused, now, prefix, pending)
        params = [
            rows.row(
                item, slot["account_id"], n, slot["due_at"], slot["schedule"] == Schedule.QUEUE
            )
            for n, (item, slot) in enumerate(zip(added, slot_rows, strict=True))
        ]
        for start in range(0, len(params), _INSERT_BATCH):
            chunk = params[start : start + _INSERT_BATCH]
            insert_tuples(conn, posts_t, NEW_COLUMNS, chunk)
            if progress:
                progress(len(chunk))
        return diff

    new_rows: list[dict[str, Any]] = []
    for n, (item, slot) in enumerate(zip(added, slot_rows, strict=True)):
        row = _values(item, slot["account_id"], now)
        row.update(
            key=item.key,
            state=new_state(
                row["account_id"], paused, (row["account_id"],) if item.approval else pending
            ),
            idempotency_key=f"{prefix}{n:012x}",
            attempt_count=0,
            repeat_count=0,
            created_at=now,
            due_at=slot["due_at"],
            next_attempt_at=slot["next_attempt_at"],
        )
        new_rows.append(row)
    for start in range(0, len(new_rows), _INSERT_BATCH):
        batch = new_rows[start : start + _INSERT_BATCH]
        insert_rows(conn, posts_t, batch)
        if progress:
            progress(len(batch))
    return diff
