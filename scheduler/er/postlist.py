"""The report's posts: what went out in the period and what comes next, one by one.

Each post shows with its text, media and their alt text, per-post options, thread parts,
first comment, its latest engagement reading, and the other posts of its plan item when the
item names several accounts (a group: each with its own account, state, text and address).
The lists are bounded (``LIMIT`` published, ``UPCOMING`` waiting) with a note of how many
more there are. Every stored string is masked for secrets (``redact_stored``) and escaped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, select, text

from scheduler.adapter import MediaMeta
from scheduler.db.models import Account, MetricSnapshot, Post, PostState
from scheduler.er.html import esc, pct, when
from scheduler.er.stats import engagement_rate, engagements
from scheduler.logging import redact_stored
from scheduler.plan.items import stored_meta
from scheduler.plan.post_options import stored_options
from scheduler.queue import page_posts
from scheduler.states import CALENDAR_STATES, DUE_STATES, sql_in

posts_t = Post.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]
snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]

#: Published posts listed, newest first.
LIMIT = 100
#: Waiting posts listed, soonest first.
UPCOMING = 30
#: Characters of a text shown (a post's, a part's, a comment's); the rest is cut with "…".
MAX_TEXT = 1_000
#: Characters of a group member's text shown in the group's list.
MEMBER_TEXT = 120
#: The states of posts that wait to go out.
WAITING = (
    PostState.QUEUED,
    PostState.RETRY_WAIT,
    PostState.PENDING_APPROVAL,
    PostState.PAUSED,
)


@dataclass(frozen=True)
class MediaEntry:
    name: str
    alt: str | None = None


@dataclass(frozen=True)
class Member:
    """Another post of the same plan item (a group member)."""

    key: str
    account: str
    state: str
    text: str
    remote_url: str | None


@dataclass(frozen=True)
class Entry:
    """One post as the report shows it."""

    key: str
    account: str
    content_type: str
    state: str
    #: Published time, or due time for a waiting post.
    at: datetime | None
    remote_id: str | None
    remote_url: str | None
    text: str
    media: Sequence[MediaEntry] = ()
    #: ``(label, value)`` of each per-post option given (content warning, visibility...).
    options: Sequence[tuple[str, str]] = ()
    first_comment: str | None = None
    #: Each part after the first: its text and media.
    thread: Sequence[tuple[str, Sequence[MediaEntry]]] = ()
    #: The plan item's id when it names several accounts, and its other posts.
    group: str | None = None
    members: Sequence[Member] = ()
    #: The latest reading: age in hours, engagements, ER (None: unknown).
    reading: tuple[int, int | None, float | None] | None = None


@dataclass(frozen=True)
class PostList:
    """The two lists, and how many posts each leaves out."""

    published: Sequence[Entry] = ()
    published_total: int = 0
    upcoming: Sequence[Entry] = ()
    upcoming_total: int = 0


# ============================================================================ reading


def _clean(text: str | None, limit: int = MAX_TEXT) -> str:
    masked = redact_stored(text) or ""
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


def _media_name(path: str) -> str:
    """A local file by its name (the report may travel; the server's paths need not), a URL
    by its host and path."""
    if "://" in path:
        parts = urlsplit(path)
        return f"{parts.hostname or ''}{parts.path}"
    return posixpath.basename(path.replace("\\", "/"))


def _media(media: Sequence[str], metas: Sequence[MediaMeta]) -> tuple[MediaEntry, ...]:
    return tuple(
        MediaEntry(
            _clean(_media_name(path), 200),
            _clean(metas[i].alt, 2_000) if i < len(metas) and metas[i].alt else None,
        )
        for i, path in enumerate(media)
    )


def _entry(row: Any, members: Sequence[Any], reading: Any, by_reach: bool) -> Entry:
    options = stored_options(row.post_options)
    shown: list[tuple[str, str]] = []
    if options.content_warning:
        shown.append(("content warning", _clean(options.content_warning, 500)))
    if options.sensitive:
        shown.append(("sensitive", "yes"))
    for label, value in (
        ("visibility", options.visibility),
        ("language", options.language),
        ("in reply to", options.reply_to),
    ):
        if value:
            shown.append((label, _clean(value, 200)))
    if options.poll is not None:
        hours = options.poll.duration.total_seconds() / 3600
        choices = " / ".join(options.poll.options)
        shown.append(("poll", _clean(f"{choices} ({hours:g} h)", 500)))
    result = None
    if reading is not None:
        eng = engagements(reading)
        er = engagement_rate(
            reading, by_reach=by_reach, followers_at_publish=row.followers_at_publish
        )
        result = (int(reading.age_seconds) // 3600, eng, er)
    return Entry(
        key=_clean(row.key, 200),
        account=row.account,
        content_type=row.content_type,
        state=row.state,
        at=row.published_at if row.state == PostState.PUBLISHED else row.due_at,
        remote_id=_clean(row.remote_id, 200) if row.remote_id else None,
        remote_url=_clean(row.remote_url, 500) if row.remote_url else None,
        text=_clean(row.text),
        media=_media(row.media or (), stored_meta(row.media or (), row.media_meta)),
        options=shown,
        first_comment=_clean(options.first_comment) if options.first_comment else None,
        thread=[(_clean(p.text), _media(p.media, p.media_meta)) for p in options.thread],
        group=row.group_key,
        members=[
            Member(
                _clean(m.key, 200),
                m.account,
                m.state,
                _clean(m.text, MEMBER_TEXT),
                _clean(m.remote_url, 500) if m.remote_url else None,
            )
            for m in members
            if m.id != row.id
        ],
        reading=result,
    )


def _published(conn: Connection, where: Sequence[Any], limit: int) -> list[Any]:
    query = (
        select(posts_t, accounts_t.c.name.label("account"), accounts_t.c.platform)
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(*where)
        .order_by(posts_t.c.published_at.desc(), posts_t.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query).all())


def _count(conn: Connection, where: Sequence[Any]) -> int:
    return int(conn.execute(select(func.count()).select_from(posts_t).where(*where)).scalar_one())


def _members(conn: Connection, groups: Collection[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if not groups:
        return out
    query = (
        select(posts_t, accounts_t.c.name.label("account"))
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(posts_t.c.group_key.in_(sorted(groups)))
        .order_by(posts_t.c.id)
    )
    for row in conn.execute(query):
        out.setdefault(row.group_key, []).append(row)
    return out


def _readings(conn: Connection, post_ids: Collection[int]) -> dict[int, Any]:
    """Each post's reading at its greatest age."""
    out: dict[int, Any] = {}
    if not post_ids:
        return out
    query = (
        select(snapshots_t)
        .where(snapshots_t.c.post_id.in_(sorted(post_ids)))
        .order_by(snapshots_t.c.post_id, snapshots_t.c.age_seconds, snapshots_t.c.id)
    )
    for row in conn.execute(query):
        out[row.post_id] = row  # the last one per post is the oldest age
    return out


def read_posts(
    conn: Connection,
    since: datetime,
    until: datetime,
    *,
    account: str | None = None,
    reach: Collection[str] = (),
    limit: int = LIMIT,
    upcoming: int = UPCOMING,
) -> PostList:
    """The posts published from ``since`` to ``until`` (newest first) and those waiting to go
    out (soonest first), at most ``limit`` and ``upcoming`` of them, of ``account`` (None:
    every account). ``reach``: the platforms whose ER is by reach.

    Each list and count reads a partial index of the posts table (its condition spelt out,
    as ``scheduler.queue.page_posts`` does), so a queue of millions costs what a small one
    does."""
    scope = []
    if account is not None:
        scope = [
            posts_t.c.account_id
            == select(accounts_t.c.id).where(accounts_t.c.name == account).scalar_subquery()
        ]
    done = [
        text(sql_in([PostState.PUBLISHED], "posts.state")),
        posts_t.c.published_at >= since,
        posts_t.c.published_at <= until,
        *scope,
    ]
    published = _published(conn, done, limit)
    coming, _ = page_posts(conn, states=WAITING, account=account, limit=upcoming)
    waiting = _count(conn, [text(sql_in(DUE_STATES, "posts.state")), *scope])
    held = [s for s in WAITING if s not in DUE_STATES]
    waiting += _count(
        conn, [text(sql_in(CALENDAR_STATES, "posts.state")), posts_t.c.state.in_(held), *scope]
    )
    groups = _members(conn, {r.group_key for r in (*published, *coming) if r.group_key})
    readings = _readings(conn, [r.id for r in published])

    def entry(row: Any, by_reach: bool = False) -> Entry:
        members = groups.get(row.group_key, []) if row.group_key else []
        return _entry(row, members, readings.get(row.id), by_reach)

    return PostList(
        published=[entry(r, r.platform in reach) for r in published],
        published_total=_count(conn, done),
        upcoming=[entry(r) for r in coming],
        upcoming_total=waiting,
    )


# ============================================================================ drawing


def _link(url: str | None, label: str) -> str:
    if url and url.startswith(("https://", "http://")):
        return f'<a href="{esc(url)}" rel="noopener noreferrer">{esc(label)}</a>'
    return esc(label)


def _media_html(media: Sequence[MediaEntry]) -> str:
    if not media:
        return ""
    items = "".join(
        f'<li><span class="file">{esc(m.name)}</span> '
        + (
            f'<span class="alt">alt: “{esc(m.alt)}”</span>'
            if m.alt
            else '<span class="no-alt">(no alt text)</span>'
        )
        + "</li>"
        for m in media
    )
    return f'<ul class="media">{items}</ul>'


def _entry_html(e: Entry) -> str:
    label = e.remote_id or e.remote_url
    where = _link(e.remote_url, label) if label else ""
    head = (
        f'<h4><span class="key">{esc(e.key)}</span> <span class="state">{esc(e.state)}</span></h4>'
        f'<p class="meta">{esc(e.account)} · {esc(e.content_type)}'
        + (f' · <time datetime="{e.at.isoformat()}">{when(e.at)}</time>' if e.at else "")
        + (f" · {where}" if where else "")
        + "</p>"
    )
    parts = [f'<article class="post" data-post="{esc(e.key)}">', head]
    if e.reading is not None:
        hours, eng, er = e.reading
        parts.append(
            f'<p class="reading">At {hours} h: {"–" if eng is None else f"{eng:,}"} engagements'
            f", ER {pct(er)}</p>"
        )
    parts.append(f'<p class="text">{esc(e.text)}</p>')
    parts.append(_media_html(e.media))
    if e.options:
        parts.append(
            '<dl class="options">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in e.options)
            + "</dl>"
        )
    if e.thread:
        total = len(e.thread) + 1
        items = "".join(
            f'<li value="{n}"><span class="part-n">Part {n} of {total}</span> '
            f'<span class="text">{esc(text)}</span>{_media_html(media)}</li>'
            for n, (text, media) in enumerate(e.thread, 2)
        )
        parts.append(f'<ol class="thread">{items}</ol>')
    if e.first_comment:
        parts.append(f'<p class="comment"><b>First comment:</b> {esc(e.first_comment)}</p>')
    if e.group:
        rows = "".join(
            f"<tr><td>{_link(m.remote_url, m.key)}</td><td>{esc(m.account)}</td>"
            f"<td>{esc(m.state)}</td><td>{esc(m.text)}</td></tr>"
            for m in e.members
        )
        parts.append(
            f'<table class="group"><caption>The other posts of plan item {esc(e.group)}, '
            "one per account</caption><thead><tr><th>post</th><th>account</th><th>state</th>"
            f"<th>text</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</article>")
    return "".join(parts)


def _more(shown: int, total: int, what: str) -> str:
    if total <= shown:
        return ""
    return (
        f'<p class="note more">Showing {shown:,} of {total:,} {what}; '
        "<code>smm queue list</code> and the web app list them all.</p>"
    )


def render_posts(posts: PostList) -> str:
    """The section of the page with both lists (each bounded, with a note of the rest)."""
    out = [
        '<section id="posts" aria-labelledby="posts-h"><h2 id="posts-h">Posts</h2>',
        f"<h3>Published in the period, newest first ({posts.published_total:,})</h3>",
    ]
    if posts.published:
        out += [_entry_html(e) for e in posts.published]
        out.append(_more(len(posts.published), posts.published_total, "published posts"))
    else:
        out.append('<p class="note">None published in the period.</p>')
    out.append(f"<h3>Coming up, soonest first ({posts.upcoming_total:,})</h3>")
    if posts.upcoming:
        out += [_entry_html(e) for e in posts.upcoming]
        out.append(_more(len(posts.upcoming), posts.upcoming_total, "waiting posts"))
    else:
        out.append('<p class="note">No post waits to go out.</p>')
    out.append("</section>")
    return "".join(out)
