"""``smm report --html FILE``: the ER loop's pictures as one static page.

The figures come from the ER loop's own functions (``scheduler.er.readings`` and
``scheduler.er.stats``: the same readings, age scaling, ER basis and shrinkage) and from what
it stored (priorities and decision records); ``scheduler.er.html`` draws them. Reading never
recomputes or writes anything.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import Connection, and_, func, or_, select

from scheduler.cli.app import App, pass_app
from scheduler.cli.complete import account_names
from scheduler.cli.output import echo_json, safe
from scheduler.config import Config, CredentialError, ERSettings
from scheduler.db.models import Account, PostState, PriorityDecision
from scheduler.er import html as page
from scheduler.er.postlist import PostList, read_posts, render_posts
from scheduler.er.readings import (
    AgeSums,
    engagement_sql,
    posts_t,
    reading_windows,
    snapshots_t,
    sum_readings,
)
from scheduler.er.recompute import has_reach
from scheduler.er.report import account_ids, overview
from scheduler.er.stats import (
    HORIZON_HALF_LIVES,
    AccountStats,
    Evidence,
    TypeStats,
    account_stats,
    age_ratios,
    combine_ages,
    shrink,
)
from scheduler.errors import SmmError
from scheduler.files import write_private
from scheduler.timeutil import UTC, LocalTimeError, zone

accounts_t = Account.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]

DEFAULT_DAYS = 90
#: Decisions listed per section.
RECENT_DECISIONS = 5
#: Weekly points weigh every post of the week alike (the loop's decay is for deciding now).
NO_DECAY = timedelta.max
WEEK = timedelta(days=7)
#: Longer periods get points of several weeks each, so that a chart keeps at most this many.
MAX_POINTS = 60
MAX_DAYS = 3650
#: The end of a week is exclusive; the readings query's bounds are inclusive.
TICK = timedelta(microseconds=1)


# ============================================================================ reading


def week_buckets(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` spans of a week (of whole weeks, at most ``MAX_POINTS`` of them)
    counted back from ``until``; the oldest is cut at ``since`` (the newest is always whole)."""
    weeks = math.ceil((until - since) / WEEK)
    step = WEEK * max(1, math.ceil(weeks / MAX_POINTS))
    out = []
    end = until
    while end > since:
        out.append((max(end - step, since), end))
        end -= step
    return out[::-1]


def pool(evidence: Iterable[Evidence]) -> Evidence:
    """Several accounts' evidence for one content type, added up (each already on its own
    account's age scale)."""
    items = list(evidence)
    return Evidence(
        weight=sum(e.weight for e in items),
        total=sum(e.total for e in items),
        squares=sum(e.squares for e in items),
        posts=sum(e.posts for e in items),
        recent_total=sum(e.recent_total for e in items),
        recent_posts=sum(e.recent_posts for e in items),
        older_total=sum(e.older_total for e in items),
        older_posts=sum(e.older_posts for e in items),
    )


def current_evidence(
    conn: Connection,
    settings: ERSettings,
    now: datetime,
    reach: Mapping[int, bool],
    accounts: Collection[int] | None,
) -> tuple[dict[int, list[float]], dict[int, dict[str, Evidence]]]:
    """What the loop believes now (its horizon, its decay): per account, the factors that put
    each age on the last age's scale, and each content type's evidence."""
    sums = sum_readings(
        conn,
        ages=settings.ages,
        now=now,
        half_life=settings.half_life,
        horizon=now - settings.half_life * HORIZON_HALF_LIVES,
        reach_accounts={a for a, has in reach.items() if has},
        accounts=accounts,
    )
    per_account: dict[int, list[list[AgeSums]]] = defaultdict(list)
    for (account_id, _), per_age in sums.items():
        per_account[account_id].append(per_age)
    ratios = {a: age_ratios(s) for a, s in per_account.items()}
    return ratios, _evidence(sums, ratios, settings)


def weekly_evidence(
    conn: Connection,
    settings: ERSettings,
    weeks: Sequence[tuple[datetime, datetime]],
    reach: Mapping[int, bool],
    accounts: Collection[int] | None,
    ratios: Mapping[int, list[float]],
) -> list[dict[int, dict[str, Evidence]]]:
    """Per week, per account and content type: the posts published that week, read as the
    loop reads them (same ages, basis and age scaling), every post weighing the same."""
    return [
        _evidence(
            sum_readings(
                conn,
                ages=settings.ages,
                now=hi - TICK,
                half_life=NO_DECAY,
                horizon=lo,
                reach_accounts={a for a, has in reach.items() if has},
                accounts=accounts,
            ),
            ratios,
            settings,
        )
        for lo, hi in weeks
    ]


def _evidence(
    sums: Mapping[tuple[int, str], list[AgeSums]],
    ratios: Mapping[int, list[float]],
    settings: ERSettings,
) -> dict[int, dict[str, Evidence]]:
    ages_seconds = sorted({int(a.total_seconds()) for a in settings.ages})
    out: dict[int, dict[str, Evidence]] = defaultdict(dict)
    for (account_id, content_type), per_age in sums.items():
        r = ratios.get(account_id) or [1.0] * len(per_age)
        out[account_id][content_type] = combine_ages(per_age, r, ages_seconds)
    return out


def _local_zone(name: str | None) -> ZoneInfo:
    try:
        return zone(name or "UTC")
    except LocalTimeError:
        return ZoneInfo("UTC")


def heat_cells(
    conn: Connection,
    settings: ERSettings,
    since: datetime,
    until: datetime,
    zones: Mapping[int, ZoneInfo],
    accounts: Collection[int] | None,
) -> dict[int, dict[tuple[int, int], page.HeatCell]]:
    """Per account: posts published in each (local weekday, hour), and their engagements
    at the latest configured age each reached (its first snapshot in that age's window,
    as the loop reads it)."""
    windows = reading_windows(settings.ages)
    s, p = snapshots_t, posts_t
    in_window = or_(*(and_(s.c.age_seconds >= lo, s.c.age_seconds < hi) for lo, hi in windows))
    where = [
        p.c.state == PostState.PUBLISHED,
        p.c.published_at >= since,
        p.c.published_at <= until,
    ]
    if accounts is not None:
        where.append(p.c.account_id.in_(sorted(accounts)))
    q = (
        select(
            p.c.id,
            p.c.account_id,
            p.c.published_at,
            s.c.age_seconds,
            engagement_sql(s).label("eng"),
        )
        .select_from(p.outerjoin(s, and_(s.c.post_id == p.c.id, in_window)))
        .where(*where)
        .order_by(p.c.id, s.c.age_seconds, s.c.id)
    )
    starts = [lo for lo, _ in windows]
    # post id -> (account, published_at, band of the held reading, engagements)
    posts: dict[int, tuple[int, datetime, int, float | None]] = {}
    for row in conn.execute(q):
        held = posts.get(row.id)
        if held is None:
            held = (row.account_id, row.published_at, -1, None)
        if row.age_seconds is not None:
            band = bisect.bisect_right(starts, row.age_seconds) - 1
            if band > held[2]:  # the first snapshot of a later band wins
                eng = None if row.eng is None else float(row.eng)
                held = (held[0], held[1], band, eng)
        posts[row.id] = held
    sums: dict[int, dict[tuple[int, int], list[float]]] = defaultdict(dict)
    for account_id, published_at, _, eng in posts.values():
        local = published_at.astimezone(zones.get(account_id, UTC))
        cell = sums[account_id].setdefault((local.weekday(), local.hour), [0, 0, 0.0])
        cell[0] += 1
        if eng is not None:
            cell[1] += 1
            cell[2] += eng
    return {
        a: {k: page.HeatCell(int(v[0]), int(v[1]), v[2]) for k, v in cells.items()}
        for a, cells in sums.items()
    }


def merge_cells(
    maps: Iterable[Mapping[tuple[int, int], page.HeatCell]],
) -> dict[tuple[int, int], page.HeatCell]:
    """Several accounts' heatmaps as one (each post stays in its own account's local time),
    normalised per account: a post's engagements count as a multiple of its account's mean
    per post, so a large account does not drown the others' best hours."""
    out: dict[tuple[int, int], page.HeatCell] = {}
    for cells in maps:
        read = sum(c.read for c in cells.values())
        total = sum(c.engagements for c in cells.values())
        scale = read / total if total > 0 else 0.0
        for k, c in cells.items():
            o = out.get(k, page.HeatCell())
            out[k] = page.HeatCell(
                o.posts + c.posts, o.read + c.read, o.engagements + c.engagements * scale
            )
    return out


def published_counts(
    conn: Connection, since: datetime, until: datetime, accounts: Collection[int] | None
) -> dict[int, dict[str, int]]:
    """Per account and content type: posts published in ``[since, until]``."""
    p = posts_t
    q = (
        select(p.c.account_id, p.c.content_type, func.count())
        .where(
            p.c.state == PostState.PUBLISHED,
            p.c.published_at >= since,
            p.c.published_at <= until,
        )
        .group_by(p.c.account_id, p.c.content_type)
    )
    if accounts is not None:
        q = q.where(p.c.account_id.in_(sorted(accounts)))
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for account_id, content_type, n in conn.execute(q):
        out[account_id][content_type] = int(n)
    return out


def trajectories(
    conn: Connection, since: datetime, until: datetime, accounts: Collection[int] | None
) -> list[tuple[int, datetime, dict[str, float]]]:
    """``(account, time, new weights)`` of every decision in the period, oldest first."""
    d = decisions_t
    q = (
        select(d.c.account_id, d.c.created_at, d.c.new_weights)
        .where(d.c.created_at >= since, d.c.created_at <= until)
        .order_by(d.c.created_at, d.c.id)
    )
    if accounts is not None:
        q = q.where(d.c.account_id.in_(sorted(accounts)))
    return [(a, at, dict(w or {})) for a, at, w in conn.execute(q)]


def mean_trajectory(
    steps: Sequence[tuple[int, datetime, dict[str, float]]],
) -> list[tuple[datetime, dict[str, float]]]:
    """After each recompute, every type's weight averaged over the accounts decided so far
    (an account that does not weigh a type counts 0 for it). Decisions taken at the same
    time (one recompute of several accounts) make one point."""
    latest: dict[int, dict[str, float]] = {}
    out: list[tuple[datetime, dict[str, float]]] = []
    for i, (account_id, at, weights) in enumerate(steps):
        latest[account_id] = weights
        if i + 1 < len(steps) and steps[i + 1][1] == at:
            continue
        types = {t for w in latest.values() for t in w}
        out.append((at, {t: sum(w.get(t, 0.0) for w in latest.values()) / len(latest)
                         for t in types}))  # fmt: skip
    return out


def _row(
    content_type: str,
    published: int,
    stored: Mapping[str, Any] | None,
    live: TypeStats | None,
) -> page.TypeRow:
    """A table row: the figures of the last recompute for a weighed type, else measured now."""
    if stored is not None:
        return page.TypeRow(
            content_type,
            published,
            stored["posts"],
            stored["er"],
            stored["er_low"],
            stored["er_high"],
            stored["weight"],
            stored["trend"],
            stored["demoted"],
        )
    return page.TypeRow(
        content_type,
        published,
        live.posts if live else None,
        live.er if live else None,
        live.er_low if live else None,
        live.er_high if live else None,
        None,
        live.trend if live else None,
    )


def _decision(d: Mapping[str, Any], account: str) -> page.DecisionRow:
    return page.DecisionRow(
        d["at"],
        account,
        d["policy"],
        d["reason"],
        bool(d["frozen"]),
        bool(d["changed"]),
        d.get("old_weights") or {},
        d.get("new_weights") or {},
        d["summary"] if d.get("summary") and d.get("summary") != d["reason"] else None,
    )


def build_report(
    conn: Connection,
    settings: ERSettings,
    now: datetime,
    *,
    account: str | None = None,
    days: int = DEFAULT_DAYS,
) -> page.Report | None:
    """Everything the page shows for ``account`` (or every account, with a summary first)
    over the last ``days``; None when nothing was ever published (NotFound for an unknown
    account)."""
    names = dict(account_ids(conn, account))
    if not names:
        return None
    rows = conn.execute(
        select(accounts_t.c.id, accounts_t.c.platform, accounts_t.c.timezone).where(
            accounts_t.c.id.in_(sorted(names))
        )
    ).all()
    # Like the recompute: without a filter, one scan of posts rather than an IN list.
    scope: list[int] | None = sorted(names) if account is not None else None
    q = select(func.count()).where(posts_t.c.state == PostState.PUBLISHED)
    if scope is not None:
        q = q.where(posts_t.c.account_id.in_(scope))
    if not conn.execute(q).scalar():
        return None
    since = now - timedelta(days=days)
    reach = {r.id: has_reach(r.platform) for r in rows}
    zones = {r.id: _local_zone(r.timezone) for r in rows}
    live = account_stats(conn, settings, now, reach=reach, accounts=scope, names=names)
    ratios, evidence_now = current_evidence(conn, settings, now, reach, scope)
    weeks = week_buckets(since, now)
    weekly = weekly_evidence(conn, settings, weeks, reach, scope, ratios)
    published = published_counts(conn, since, now, scope)
    heat = heat_cells(conn, settings, since, now, zones, scope)
    steps = trajectories(conn, since, now, scope)
    stored = {a["account"]: a for a in overview(conn, account, decisions=RECENT_DECISIONS)}

    sections = []
    for account_id, name in sorted(names.items(), key=lambda kv: kv[1]):
        mine = stored.get(name)
        stored_types = {t["type"]: t for t in mine["types"]} if mine else {}
        stats: AccountStats | None = live.get(account_id)
        live_types = stats.types if stats else {}
        counts = published.get(account_id, {})
        weekly_types = {t for w in weekly for t in w.get(account_id, {})}
        types = sorted(set(stored_types) | set(counts) | set(live_types) | weekly_types)
        sections.append(
            page.Section(
                title=name,
                account=name,
                basis="reach" if reach.get(account_id) else "followers",
                local_time=zones[account_id].key,
                published=sum(counts.values()),
                weeks=weeks,
                er_weekly={
                    t: [_point(w.get(account_id, {}).get(t)) for w in weekly] for t in weekly_types
                },
                trajectory=[(at, w) for a, at, w in steps if a == account_id],
                heatmap=heat.get(account_id, {}),
                types=sorted(
                    (
                        _row(t, counts.get(t, 0), stored_types.get(t), live_types.get(t))
                        for t in types
                    ),
                    key=_table_order,
                ),
                decisions=[_decision(d, name) for d in (mine["decisions"] if mine else [])],
            )
        )
    if len(sections) > 1:
        sections.insert(
            0,
            _summary(
                sections,
                weeks=weeks,
                weekly=weekly,
                evidence_now=evidence_now,
                steps=steps,
                heat=heat,
                bases={"reach" if reach.get(a) else "followers" for a in names},
            ),
        )
    return page.Report(
        generated_at=now,
        since=since,
        until=now,
        sections=sections,
        scope=_scope_text(names, account, settings),
    )


def _point(e: Evidence | None) -> page.WeekPoint:
    if e is None:
        return page.WeekPoint(None, 0)
    return page.WeekPoint(e.mean, e.posts)


def _table_order(r: page.TypeRow) -> tuple[float, float, str]:
    # Heaviest first, then best ER, then by name (as `smm er` lists them).
    return (-(r.weight or 0.0), -(r.er or -1.0), r.content_type)


def _summary(
    sections: Sequence[page.Section],
    *,
    weeks: Sequence[tuple[datetime, datetime]],
    weekly: Sequence[Mapping[int, Mapping[str, Evidence]]],
    evidence_now: Mapping[int, Mapping[str, Evidence]],
    steps: Sequence[tuple[int, datetime, dict[str, float]]],
    heat: Mapping[int, Mapping[tuple[int, int], page.HeatCell]],
    bases: set[str],
) -> page.Section:
    """All accounts as one: evidence pooled across accounts, weights averaged."""
    weekly_types = {t for w in weekly for per in w.values() for t in per}
    er_weekly = {}
    for t in weekly_types:
        points = []
        for w in weekly:
            found = [per[t] for per in w.values() if t in per]
            points.append(_point(pool(found)) if found else page.WeekPoint(None, 0))
        er_weekly[t] = points
    pooled = {
        t: pool(per[t] for per in evidence_now.values() if t in per)
        for t in {t for per in evidence_now.values() for t in per}
    }
    _, _, _, stats = shrink(pooled)
    all_types = sorted({r.content_type for s in sections for r in s.types} | set(stats))
    rows = []
    for t in all_types:
        mine = [r for s in sections for r in s.types if r.content_type == t]
        weights = [r.weight for r in mine if r.weight is not None]
        st = stats.get(t)
        rows.append(
            page.TypeRow(
                t,
                sum(r.published for r in mine),
                st.posts if st else None,
                st.er if st else None,
                st.er_low if st else None,
                st.er_high if st else None,
                sum(weights) / len(weights) if weights else None,
                st.trend if st else None,
                demoted_on=sum(r.demoted for r in mine),
            )
        )
    decisions = sorted(
        (d for s in sections for d in s.decisions), key=lambda d: d.at, reverse=True
    )[:RECENT_DECISIONS]
    return page.Section(
        title="All accounts",
        account=None,
        basis=next(iter(bases)) if len(bases) == 1 else "mixed",
        local_time="each account's own time zone",
        published=sum(s.published for s in sections),
        weeks=weeks,
        er_weekly=er_weekly,
        trajectory=mean_trajectory(steps),
        heatmap=merge_cells(heat.values()),
        types=sorted(rows, key=_table_order),
        decisions=decisions,
        trajectory_note=", averaged over the accounts decided so far",
    )


def _duration(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def _scope_text(names: Mapping[int, str], account: str | None, settings: ERSettings) -> str:
    who = f"Account {account}" if account else f"{len(names)} accounts"
    ages = ", ".join(_duration(int(a.total_seconds())) for a in sorted(settings.ages))
    half_life = settings.half_life.total_seconds() / 86400
    return f"{who} · ER read at {ages} · half-life {half_life:g} days"


# ============================================================================ the command


@click.command("report")
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    metavar="FILE",
    help="Write the report as one static HTML page (- for standard output).",
)
@click.option("--account", help="Only this account.", shell_complete=account_names)
@click.option(
    "--days",
    default=DEFAULT_DAYS,
    show_default=True,
    type=click.IntRange(1, MAX_DAYS),
    help="The period covered, counted back from now.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_app
def report(app: App, html_path: str, account: str | None, days: int, as_json: bool) -> None:
    """A static HTML page of the ER loop: ER per content type over time, the priority
    trajectory, engagement by weekday and hour, per-type figures and the latest decisions.

    After them, the posts one by one (published in the period, and waiting; the first 100
    and 30), with their media, alt text, thread parts and the other posts of their plan item."""
    if as_json and html_path == "-":
        raise click.UsageError("--json prints a summary: write the page to a file with --html")
    now = app.now()
    since = now - timedelta(days=days)
    _register_credentials(app.config)
    with app.engine().connect() as conn:
        data = build_report(conn, app.config.er, now, account=account, days=days)
        posts_html = render_posts(report_posts(conn, since, now, account))
    if data is None:
        scope = f"Account {account}" if account else ""
        text = page.render_empty(now, since, now, scope, posts_html)
        summary = "no published posts yet"
        accounts = 0
    else:
        text = page.render(dataclasses.replace(data, posts_html=posts_html))
        accounts = n = sum(1 for s in data.sections if s.account is not None)
        summary = f"{n} account{'s' if n != 1 else ''}, {days} days"
    if html_path == "-":
        click.echo(text, nl=False)
        return
    path = Path(html_path)
    try:
        write_private(path, text)  # 0600, a reader never sees half a page
    except OSError as exc:
        raise SmmError(f"cannot write {safe(str(path))}: {exc.strerror or exc}") from exc
    if as_json:
        echo_json({"path": str(path), "accounts": accounts, "days": days, "empty": data is None})
        return
    click.echo(f"wrote {safe(str(path))} ({summary})")


def report_posts(
    conn: Connection, since: datetime, until: datetime, account: str | None
) -> PostList:
    """The posts the page lists: published in the period, and waiting (``read_posts``)."""
    names = dict(account_ids(conn, account))
    platforms = conn.execute(
        select(accounts_t.c.platform).where(accounts_t.c.id.in_(sorted(names))).distinct()
    ).scalars()
    reach = {p for p in platforms if has_reach(p)}
    return read_posts(conn, since, until, account=account, reach=reach)


def _register_credentials(config: Config) -> None:
    """Read each account's credentials so that a secret a post's text or address might hold
    is masked on the page (as ``smm accounts list`` does); one that cannot be read is
    skipped, the page being no place to report it."""
    for acc in config.accounts.values():
        for ref in acc.credentials.values():
            with contextlib.suppress(CredentialError, OSError):
                ref.resolve()


def register(cli: click.Group) -> None:
    cli.add_command(report)
