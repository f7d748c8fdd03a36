"""The tables. The posts table *is* the queue (see docs/concepts.md).

Every column the daemon, the plugins and the ER loop need is here, so that later features add
behaviour, not schema churn. Times are UTC (``UTCDateTime``); free-form lists and network
payloads are JSON.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from scheduler.db.types import UTCDateTime
from scheduler.states import (
    AWAITING_APPROVAL,
    CALENDAR_STATES,
    DUE_STATES,
    SETTLING_STATES,
    sql_in,
)

# The post states live in scheduler.states; re-exported for the code that imports them here.
from scheduler.states import PENDING_STATES as PENDING_STATES
from scheduler.states import TERMINAL_STATES as TERMINAL_STATES
from scheduler.states import PostState as PostState


class Schedule(enum.StrEnum):
    """How a post got its due time."""

    FIXED = "fixed"  # the plan (or `queue reschedule`) gave an exact time
    QUEUE = "queue"  # it waits in the account's queue and takes a posting slot


class Outcome(enum.StrEnum):
    """The class of one attempt's result: the error taxonomy plus success."""

    PUBLISHED = "published"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    AUTH_EXPIRED = "auth_expired"
    REJECTED = "rejected"
    OUTCOME_UNKNOWN = "outcome_unknown"
    PLUGIN_ERROR = "plugin_error"  # the plugin raised, hung or returned garbage
    ABANDONED = "abandoned"  # the lease expired mid-attempt (crash); settled by rescue


def _utc(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


class Account(SQLModel, table=True):
    """A network account as the database knows it; name, platform and zone mirror the config."""

    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    platform: str = Field(max_length=50)
    timezone: str = Field(max_length=64)
    paused: bool = Field(default=False)
    paused_reason: str | None = Field(default=None)
    #: ``ok`` or ``expired`` (set when the network says the credentials no longer work).
    auth_state: str = Field(default="ok", max_length=20)
    token_expires_at: datetime | None = _utc()
    followers: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Post(SQLModel, table=True):
    """One post of the plan, and the queue entry that carries it to the network."""

    __tablename__ = "posts"
    __table_args__ = (
        # Only waiting posts, in claim order: the claim and the next-due lookup read this
        # small index instead of sorting every due row.
        Index(
            "ix_posts_due",
            "next_attempt_at",
            "id",
            postgresql_where=text(sql_in(DUE_STATES)),
            sqlite_where=text(sql_in(DUE_STATES)),
        ),
        Index("ix_posts_account_state", "account_id", "state"),
        # The web calendar's week and month pages: a range of due times, in order, of the
        # posts ix_posts_due leaves out (0009). A plan import's new posts are not in it.
        Index(
            "ix_posts_calendar",
            "due_at",
            "id",
            postgresql_where=text(sql_in(CALENDAR_STATES)),
            sqlite_where=text(sql_in(CALENDAR_STATES)),
        ),
        # Posts waiting for sign-off, soonest first: the approvers' list (0005).
        Index(
            "ix_posts_awaiting",
            "due_at",
            "id",
            postgresql_where=text(sql_in(AWAITING_APPROVAL)),
            sqlite_where=text(sql_in(AWAITING_APPROVAL)),
        ),
        # Partial indexes (migration 0003): each lookup's few rows, and nothing written for a
        # post that only waits in the queue.
        Index(
            "ix_posts_lease",
            "lease_expires_at",
            postgresql_where=text(sql_in([PostState.CLAIMED])),
            sqlite_where=text(sql_in([PostState.CLAIMED])),
        ),
        Index(
            "ix_posts_published",
            "published_at",
            postgresql_where=text(sql_in([PostState.PUBLISHED])),
            sqlite_where=text(sql_in([PostState.PUBLISHED])),
        ),
        Index(
            "ix_posts_settling",
            "state",
            "updated_at",
            postgresql_where=text(sql_in(SETTLING_STATES)),
            sqlite_where=text(sql_in(SETTLING_STATES)),
        ),
        # The posts of one plan item on several accounts (0012): only they are indexed.
        Index(
            "ix_posts_group",
            "group_key",
            postgresql_where=text("group_key IS NOT NULL"),
            sqlite_where=text("group_key IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: The plan's stable ``id`` for the item; re-imports reconcile on it. A post of an item
    #: that names several accounts is ``ITEM@ACCOUNT``.
    key: str = Field(unique=True, max_length=200)
    #: The item's id on each post of an item that names several accounts (migration 0012);
    #: NULL for a post of an item with one account.
    group_key: str | None = Field(default=None, max_length=200)
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False))
    content_type: str = Field(max_length=100)
    text: str
    media: list[str] = Field(default_factory=list, sa_type=JSON)
    #: Alt text and focal point per media file, aligned with ``media`` (migration 0008):
    #: ``[{"alt": "...", "focus": [0.2, -0.1]}, {}]``; NULL when the plan gave none.
    media_meta: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    #: Per-post options the plan gave (migration 0010): ``{"content_warning": "...",
    #: "visibility": "unlisted", "language": "lv", "reply_to": "...", "sensitive": true,
    #: "poll": {"options": [...], "duration": 86400, "multiple": false}}``; NULL for none.
    post_options: dict[str, Any] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    link: str | None = None
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    evergreen: bool = False
    schedule: str = Field(default=Schedule.QUEUE, max_length=10)
    #: Position in the plan; orders the account's queue until the ER loop reorders it.
    plan_order: int = 0
    #: The plan file the item was last imported from (re-imports of that file reconcile it).
    plan_file: str | None = Field(default=None, index=True)
    #: Where the item came from, e.g. ``plan.yaml:12`` (for messages).
    source: str | None = None
    #: Hash of the plan fields, to tell a changed item on re-import.
    content_hash: str = Field(max_length=64)
    state: str = Field(default=PostState.QUEUED, max_length=20)
    due_at: datetime | None = _utc()
    #: When the daemon may next take the post: ``due_at``, or the retry time.
    next_attempt_at: datetime | None = _utc()
    #: Sent with every attempt so that a network that honours it never posts twice.
    idempotency_key: str = Field(unique=True, max_length=64)
    attempt_count: int = 0
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _utc()
    remote_id: str | None = Field(default=None, max_length=200)
    remote_url: str | None = None
    published_at: datetime | None = _utc()
    followers_at_publish: int | None = Field(default=None, sa_type=BigInteger)
    last_error: str | None = None
    error_class: str | None = Field(default=None, max_length=20)
    #: How many times an evergreen post has been recycled.
    repeat_count: int = 0
    #: For recycled evergreen posts, the post they repeat.
    recycled_from_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("posts.id"), nullable=True)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Attempt(SQLModel, table=True):
    """One try at publishing a post, written before the network call and closed after it."""

    __tablename__ = "attempts"

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(
        sa_column=Column(Integer, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False)
    )
    number: int
    idempotency_key: str = Field(max_length=64)
    owner: str = Field(max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime)
    #: Written right before the publish call (migration 0005): from then on the request may
    #: have left. An attempt without it never reached the network and does not count.
    sent_at: datetime | None = _utc()
    finished_at: datetime | None = _utc()
    #: An ``Outcome`` value; NULL while the attempt is in flight.
    outcome: str | None = Field(default=None, max_length=20)
    #: The network's own words (or the plugin's failure), secrets redacted.
    message: str | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    retry_at: datetime | None = _utc()

    __table_args__ = (
        Index("ix_attempts_post", "post_id", "number"),
        # Attempts that reached the network and were refused with a rate limit (migration
        # 0004): the daemons read the retry times still ahead, to hold back together.
        Index(
            "ix_attempts_rate_limited",
            "retry_at",
            postgresql_where=text("outcome = 'rate_limited' AND latency_ms IS NOT NULL"),
            sqlite_where=text("outcome = 'rate_limited' AND latency_ms IS NOT NULL"),
        ),
    )


class PostEvent(SQLModel, table=True):
    """A state change made outside a publish attempt (plan import, CLI, misfire policy)."""

    __tablename__ = "post_events"
    __table_args__ = (Index("ix_post_events_post", "post_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(
        sa_column=Column(Integer, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False)
    )
    at: datetime = Field(sa_type=UTCDateTime)
    from_state: str | None = Field(default=None, max_length=20)
    to_state: str = Field(max_length=20)
    #: Who did it: "cli", "plan", or a daemon id.
    actor: str = Field(max_length=200)
    reason: str | None = None


class MetricSnapshot(SQLModel, table=True):
    """Engagement counters for a published post at one age. Unknown is NULL, never 0."""

    __tablename__ = "metric_snapshots"
    __table_args__ = (Index("ix_metrics_post_age", "post_id", "age_seconds"),)

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(
        sa_column=Column(Integer, ForeignKey("posts.id", ondelete="CASCADE"), nullable=False)
    )
    collected_at: datetime = Field(sa_type=UTCDateTime)
    age_seconds: int
    likes: int | None = Field(default=None, sa_type=BigInteger)
    comments: int | None = Field(default=None, sa_type=BigInteger)
    shares: int | None = Field(default=None, sa_type=BigInteger)
    saves: int | None = Field(default=None, sa_type=BigInteger)
    clicks: int | None = Field(default=None, sa_type=BigInteger)
    reach: int | None = Field(default=None, sa_type=BigInteger)
    impressions: int | None = Field(default=None, sa_type=BigInteger)
    views: int | None = Field(default=None, sa_type=BigInteger)
    followers: int | None = Field(default=None, sa_type=BigInteger)
    reactions: int | None = Field(default=None, sa_type=BigInteger)  # migration 0007


class ContentTypePriority(SQLModel, table=True):
    """The current weight of a content type in an account's queue, and the evidence behind it."""

    __tablename__ = "content_type_priorities"
    __table_args__ = (UniqueConstraint("account_id", "content_type"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    )
    content_type: str = Field(max_length=100)
    weight: float
    er: float | None = None
    er_low: float | None = None
    er_high: float | None = None
    posts_counted: int = 0
    demoted: bool = False
    updated_at: datetime = Field(sa_type=UTCDateTime)


class PriorityDecision(SQLModel, table=True):
    """One ER recompute for one account: what went in, what changed and why."""

    __tablename__ = "priority_decisions"
    __table_args__ = (Index("ix_decisions_account_time", "account_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    policy: str = Field(max_length=100)
    inputs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    old_weights: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    new_weights: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    reason: str
    frozen: bool = False


class SlotDecision(SQLModel, table=True):
    """One change of an account's learned slots (migration 0013): the weekly tables before
    and after (weekday -> ["HH:MM"]), from when the new one holds, the moves and why."""

    __tablename__ = "slot_decisions"
    __table_args__ = (Index("ix_slot_decisions_account_time", "account_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(
        sa_column=Column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    effective_from: datetime = Field(sa_type=UTCDateTime)
    old_slots: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    new_slots: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    moves: list[Any] = Field(default_factory=list, sa_type=JSON)
    summary: str
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class ERSums(SQLModel, table=True):
    """The ER readings' running sums (one row): what an incremental recompute starts from
    (migration 0011). ``sums`` hold per (account, content type) and age the decayed sums at
    ``computed_at``, over every snapshot up to id ``watermark``; ``settings_key`` names the
    settings they were made with (ages, half-life, reach), so a change means a full pass."""

    __tablename__ = "er_sums"

    id: int | None = Field(default=None, primary_key=True)
    computed_at: datetime = Field(sa_type=UTCDateTime)
    watermark: int = Field(sa_type=BigInteger)
    #: The newest post then: posts added since are read again too.
    post_watermark: int = Field(sa_type=BigInteger)
    settings_key: str = Field(max_length=64)
    sums: list[Any] = Field(default_factory=list, sa_type=JSON)
    #: When the readings were last read again from every snapshot (``er_readings`` rebuilt).
    rebuilt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


#: The columns of the full pass's covering index, in its order.
_ER_READINGS_SUMS = (
    "latest", "account_id", "content_type", "band", "published", "er", "log_er", "fallback",
    "er_last",
)  # fmt: skip


class ERReading(SQLModel, table=True):
    """Each published post's ER readings, kept beside the running sums (migration 0014):
    one row per post (``latest``: its latest reading, or band -1 without any) and one per
    earlier age it was read at. A full pass sums these rows instead of seeking every
    snapshot; they hold what ``readings.per_post_readings`` works out from the snapshots up
    to ``er_sums.watermark``, with the settings of ``er_sums.settings_key``."""

    __tablename__ = "er_readings"
    __table_args__ = (
        # Covers the full pass's grouped scan: read in this order, it needs no sort.
        Index("ix_er_readings_sums", *_ER_READINGS_SUMS),
    )

    post_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    #: The age's index in the ascending configured ages; -1 on a post's row without readings.
    band: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    latest: bool
    account_id: int
    content_type: str = Field(max_length=100)
    #: Publish time, seconds since 1970.
    published: float
    er: float | None = None
    log_er: float | None = None
    #: 1 when the reading is by followers although the network declares reach.
    fallback: int = 0
    #: The post's ER at the last age (None when not read there): relates this age to it.
    er_last: float | None = None


class DaemonHeartbeat(SQLModel, table=True):
    """A running daemon's sign of life; lease owners are daemon ids."""

    __tablename__ = "daemons"

    id: str = Field(primary_key=True, max_length=200)
    hostname: str = Field(max_length=200)
    pid: int
    version: str = Field(max_length=50)
    started_at: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="running", max_length=200)


class CheckpointNote(SQLModel, table=True):
    """An adapter's note between the attempts of one post (``scheduler.checkpoints``): how far
    a reply chain or a resumable upload got, read by whichever daemon takes the post next."""

    __tablename__ = "checkpoint_notes"
    __table_args__ = (Index("ix_checkpoint_notes_updated_at", "updated_at"),)

    #: SHA-256 (hex, first 40 characters) of the platform and the adapter's key: any key fits.
    digest: str = Field(primary_key=True, max_length=64)
    platform: str = Field(max_length=100)
    #: The adapter's key, mostly the post's idempotency key: a published post's notes go.
    note_key: str
    #: The note as a JSON object.
    note: str
    #: When it was last written; notes not written for ``Checkpoints.max_age`` are removed.
    updated_at: datetime = Field(sa_type=UTCDateTime)


class WebUser(SQLModel, table=True):
    """A person who signs in to the web app (``smm web user add``), and what they may do."""

    __tablename__ = "web_users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    #: viewer, editor, approver or admin (docs/web.md#roles).
    role: str = Field(max_length=20)
    #: An argon2id hash (never the password); NULL for people known only through the proxy.
    password_hash: str | None = None
    disabled: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("web_users.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class AuditEntry(SQLModel, table=True):
    """One change made through the web app (or a user change from the CLI): who, what, when."""

    __tablename__ = "web_audit"
    __table_args__ = (Index("ix_web_audit_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=50)
    target: str | None = Field(default=None, max_length=200)
    detail: str | None = None
    remote_addr: str | None = Field(default=None, max_length=64)


metadata = SQLModel.metadata
