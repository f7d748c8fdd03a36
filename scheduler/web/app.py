"""The web app: a Starlette application over the same database and queue functions as the CLI.

Every page is rendered on the server from Jinja2 templates shipped in this package (plain
forms, no JavaScript, nothing from another site). Every change goes through the function the
CLI uses (``scheduler.queue``, ``scheduler.daemon.store.settle``), inside one transaction with
its audit entry.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.config import Config
from scheduler.db.engine import immediate
from scheduler.errors import NotFound, SmmError
from scheduler.logging import redact
from scheduler.queue import AWAITING_APPROVAL, accounts_t, find_posts, group_posts, post_story
from scheduler.states import PostState
from scheduler.timeutil import UTC, Clock, LocalTimeError, SystemClock, format_utc, zone
from scheduler.web import actions, auth, calendar
from scheduler.web.preview import previews

log = logging.getLogger(__name__)

SESSION_COOKIE = "smm_session"
LOGIN_COOKIE = "smm_login"
ZONE_COOKIE = "smm_tz"
DAY_TIME = "%a %d %b %Y %H:%M"
#: How long the types' colours and the horizon warnings are kept (see ``Web.cached``).
COLOURS_TTL = 300.0
HORIZON_TTL = 60.0

#: Sent with every response: nothing loads from elsewhere, no script runs, no framing.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP response (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Web:
    """What the handlers share: the database, the config, the clock, the templates."""

    engine: Engine
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    dev: bool = False
    env: Environment = field(init=False)
    #: One message to show on the next page a session loads (after a redirect).
    flashes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Failed sign-ins per name, and (more of them) per address, to slow down guessing.
    throttle: auth.Throttle = field(default_factory=auth.Throttle)
    throttle_addr: auth.Throttle = field(default_factory=lambda: auth.Throttle(limit=30))
    #: Slow, advisory reads kept for a while: name -> (when read, value). See ``cached``.
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("scheduler.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["local"] = _local
        self.env.filters["utc"] = format_utc
        self.env.filters["wall"] = _wall

    @property
    def settings(self) -> Any:
        return self.config.web

    def cached(self, name: str, ttl: float, read: Callable[[], Any]) -> Any:
        """``read()``, done again at most every ``ttl`` seconds. For reads that scan many
        posts and only advise: the types' colours, the queues beyond the horizon."""
        at, value = self._cache.get(name, (-ttl - 1.0, None))
        if time.monotonic() - at > ttl:
            value = read()
            self._cache[name] = (time.monotonic(), value)
        return value

    # ---------------------------------------------------------------------- requests

    def trusted(self, request: Request) -> bool:
        """Whether the request comes from a configured reverse proxy."""
        host = request.client.host if request.client else None
        return host in self.settings.trusted_proxies

    def secure(self, request: Request) -> bool:
        """Whether the browser talks HTTPS to us (directly, or to the proxy in front)."""
        if request.url.scheme == "https":
            return True
        forwarded = request.headers.get("x-forwarded-proto", "")
        return self.trusted(request) and forwarded.lower() == "https"

    def viewer_zone(self, request: Request) -> ZoneInfo:
        for name in (request.query_params.get("tz"), request.cookies.get(ZONE_COOKIE)):
            if name:
                try:
                    return zone(name)
                except LocalTimeError:
                    pass
        zones = [a.timezone for a in self.config.accounts.values()]
        return zone(max(set(zones), key=zones.count)) if zones else ZoneInfo("UTC")

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        ident: Identity | None = getattr(request.state, "ident", None)
        flash = None
        if ident is not None and ident.token:
            flash = self.flashes.pop(ident.token, None)
        if len(self.flashes) > 10_000:  # messages nobody came back for
            self.flashes.clear()
        body = self.env.get_template(template).render(
            request=request,
            user=ident.user if ident else None,
            csrf=auth.csrf_token(ident.token) if ident and ident.token else "",
            flash=flash,
            tz=self.viewer_zone(request),
            zones=sorted({a.timezone for a in self.config.accounts.values()} | {"UTC"}),
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        if ident is not None and ident.new_token:
            self.set_session_cookie(request, response, ident.new_token)
        return response

    def set_session_cookie(self, request: Request, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.settings.session_lifetime.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
            path="/",
        )

    def problem(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        # A refused action on a post leads back to that post, where the form is.
        key = request.path_params.get("key") if status != 404 else None
        back = (post_url(key), "the post") if key else ("/calendar", "the calendar")
        return self.render(
            request, "problem.html", status, title=title, message=redact(message), back=back
        )


def post_url(key: str) -> str:
    """The address of a post's page: its key percent-encoded (a plan's id may hold ``?``,
    ``#``, ``%`` or spaces), as the templates' ``urlencode`` filter writes it."""
    return "/post/" + quote(key, safe="/")


@dataclass
class Identity:
    user: auth.User
    token: str
    #: A session opened for this request (the trusted proxy named the user): set the cookie.
    new_token: str | None = None


def _local(instant: datetime | None, where: tzinfo | str | None, fmt: str = DAY_TIME) -> str:
    """An instant as read in ``where``, with the zone's abbreviation."""
    if instant is None:
        return "unscheduled"
    tz: tzinfo = UTC
    if isinstance(where, str):
        try:
            tz = ZoneInfo(where)
        except Exception:
            tz = UTC
    elif where is not None:
        tz = where
    local = instant.astimezone(tz)
    return local.strftime(fmt) + " " + (local.tzname() or "")


def _wall(instant: datetime | None, where: str) -> str:
    """``2027-01-15 10:00``: the form ``smm queue reschedule --at`` reads, in ``where``."""
    return _local(instant, where, "%Y-%m-%d %H:%M").rsplit(" ", 1)[0] if instant else ""


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


async def identify(request: Request) -> Identity | None:
    """The signed-in user: a live session cookie, or (when configured) the trusted proxy's
    header, which opens a session so that forms get a CSRF token."""
    web = _web(request)
    now = web.clock.now()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with web.engine.connect() as conn:
            user = auth.session_user(conn, token, now)
        if user is not None:
            return Identity(user, token)
    if web.settings.auth == "proxy" and web.trusted(request):
        name = request.headers.get(web.settings.proxy_header)
        if name:
            with immediate(web.engine) as conn:
                user = auth.user_named(conn, name)
                if user is None:
                    return None
                fresh = auth.open_session(conn, user, now, web.settings.session_lifetime)
            return Identity(user, fresh, new_token=fresh)
    return None


Handler = Callable[[Request], Awaitable[Response]]


def page(action: str = "view") -> Callable[[Handler], Handler]:
    """Wraps a handler: signed in (else to the login page), the role allows ``action``, and
    for a POST a valid CSRF token in the form."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            web = _web(request)
            ident = await identify(request)
            if ident is None:
                if request.method == "GET":
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse("/login?" + urlencode({"next": target}), 303)
                return web.problem(request, 401, "Not signed in", "Sign in first.")
            request.state.ident = ident
            if request.method == "POST":
                form = await request.form()
                if not auth.csrf_ok(ident.token, form.get("csrf")):
                    return web.problem(
                        request,
                        403,
                        "Form refused",
                        "This form has no valid CSRF token (it did not come from this app's "
                        "own page, or the session changed): reload the page and try again.",
                    )
            if not ident.user.can(action):
                return web.problem(
                    request,
                    403,
                    "Not allowed",
                    f"Your role ({ident.user.role}) does not allow this: it needs "
                    f"{auth.NEEDS[action]} or above.",
                )
            try:
                return await handler(request)
            except NotFound as exc:
                return web.problem(request, 404, "Not found", str(exc))
            except SmmError as exc:
                return web.problem(request, 409, "Refused", str(exc))

        return run

    return wrap


# ------------------------------------------------------------------------------ login


async def login(request: Request) -> Response:
    web = _web(request)
    nxt = request.query_params.get("next", "/")
    if request.method == "GET":
        token = secrets.token_urlsafe(24)
        response = web.render(request, "login.html", login_csrf=token, next=nxt, error=None)
        response.set_cookie(
            LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=web.secure(request)
        )
        return response
    form = await request.form()
    sent, cookie = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
    if not cookie or not isinstance(sent, str) or not secrets.compare_digest(cookie, sent):
        return web.problem(request, 403, "Form refused", "The sign-in form has no valid token.")
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    nxt = str(form.get("next", "/"))
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"  # never send a signed-in user to another site
    now = web.clock.now()
    keys, addr = [name.lower()], [str(_addr(request))]
    clock = time.monotonic()
    wait = max(web.throttle.wait(keys, clock), web.throttle_addr.wait(addr, clock))
    if wait > 0:
        return web.problem(
            request,
            429,
            "Too many failed sign-ins",
            f"Too many failed sign-ins for this name or from this address: try again in "
            f"{wait / 60:.0f} minute(s).",
        )

    def check() -> str:
        with immediate(web.engine) as conn:
            user = auth.check_password(conn, name, password)
            if user is None:
                auth.audit(conn, now, name[:100] or "?", "login-failed", remote_addr=_addr(request))
                return ""
            auth.audit(conn, now, user.name, "login", remote_addr=_addr(request))
            return auth.open_session(conn, user, now, web.settings.session_lifetime)

    token = await run_in_threadpool(check)
    if not token:
        web.throttle.failed(keys, time.monotonic())
        web.throttle_addr.failed(addr, time.monotonic())
        return web.render(
            request, "login.html", 401, login_csrf=cookie, next=nxt, error="Wrong name or password."
        )
    done = RedirectResponse(nxt, 303)
    web.set_session_cookie(request, done, token)
    done.delete_cookie(LOGIN_COOKIE)
    return done


@page()
async def logout(request: Request) -> Response:
    web = _web(request)
    ident: Identity = request.state.ident

    def close() -> None:
        with immediate(web.engine) as conn:
            auth.close_session(conn, ident.token)
            auth.audit(conn, web.clock.now(), ident.user.name, "logout", remote_addr=_addr(request))

    await run_in_threadpool(close)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _addr(request: Request) -> str | None:
    """The browser's address: the first hop of ``X-Forwarded-For`` when a trusted proxy
    forwards the request, else the peer's."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and _web(request).trusted(request):
        return forwarded.split(",")[0].strip()[:64] or peer
    return peer


# ------------------------------------------------------------------------------ pages


def _parse_day(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        return default


@page()
async def calendar_page(request: Request) -> Response:
    web = _web(request)
    q = request.query_params
    tz = web.viewer_zone(request)
    now = web.clock.now()
    view = "month" if q.get("view") == "month" else "week"
    anchor = _parse_day(q.get("start"), now.astimezone(tz).date())
    filters = calendar.Filters(
        account=q.get("account") or None,
        network=q.get("network") or None,
        content_type=q.get("type") or None,
        states=tuple(s for s in q.getlist("state") if s),
        text=(q.get("q") or "").strip()[:200] or None,
    )
    after = calendar.Cursor.decode(q.get("after"))

    def read() -> tuple[Any, ...]:
        with web.engine.connect() as conn:
            return (
                calendar.read_page(conn, view, anchor, tz, filters, after),
                web.cached(
                    "horizon",
                    HORIZON_TTL,
                    lambda: calendar.beyond_horizon(conn, now, web.settings.horizon),
                ),
                calendar.choices(conn),
                calendar.awaiting_approval(conn, 10),
                web.cached("colours", COLOURS_TTL, lambda: calendar.type_colours(conn)),
            )

    data, ahead, choices, waiting, known = await run_in_threadpool(read)
    if view == "month":
        first = anchor.replace(day=1)
        prev_start = (first - timedelta(days=1)).replace(day=1)
        next_start = (first + timedelta(days=32)).replace(day=1)
        title = first.strftime("%B %Y")
    else:
        prev_start, next_start = data.start - timedelta(days=7), data.start + timedelta(days=7)
        title = f"Week of {data.start.strftime('%d %b %Y')}"
    keep = {k: v for k, v in q.multi_items() if k not in ("start", "after") and v}

    def link(**extra: str) -> str:
        items = [(k, v) for k, v in keep.items() if k not in extra] + list(extra.items())
        items += [("state", s) for s in filters.states if "state" not in extra]
        return "/calendar?" + urlencode([(k, v) for k, v in items if k != "state" or v])

    types = sorted({e.content_type for d in data.days for e in d.entries})
    colours = {t: known.get(t) or calendar.fallback_colour(t) for t in types}
    return web.render(
        request,
        "calendar.html",
        page=data,
        view=view,
        title=title,
        filters=filters,
        choices=choices,
        ahead=ahead,
        horizon_days=web.settings.horizon.days,
        waiting=waiting,
        legend=[(t, colours[t]) for t in types],
        colours=colours,
        prev_link=link(view=view, start=prev_start.isoformat()),
        next_link=link(view=view, start=next_start.isoformat()),
        today_link=link(view=view, start=now.astimezone(tz).date().isoformat()),
        more_link=link(view=view, start=anchor.isoformat(), after=data.next_cursor.encode())
        if data.next_cursor
        else None,
        anchor=anchor,
        today=now.astimezone(tz).date(),
    )


def _post_context(conn: Connection, key: str) -> dict[str, Any]:
    rows = find_posts(conn, [key])
    if len(rows) > 1 or (rows[0].key != key and rows[0].group_key == key):
        # The id of an item with several accounts: its group, one post per account.
        return {"group": key, "members": rows}
    (row,) = rows
    acc = conn.execute(
        select(accounts_t.c.platform, accounts_t.c.timezone, accounts_t.c.paused).where(
            accounts_t.c.id == row.account_id
        )
    ).one()
    attempts, events = post_story(conn, row.id)
    members = group_posts(conn, row.group_key) if row.group_key else []
    readings = []
    by_reach = False
    if row.state == PostState.PUBLISHED:
        from scheduler.er.post_readings import post_readings
        from scheduler.er.recompute import has_reach

        by_reach = has_reach(acc.platform)
        readings = post_readings(
            conn, row.id, by_reach=by_reach, followers_at_publish=row.followers_at_publish
        )
    return {
        "row": row,
        "acc": acc,
        "attempts": attempts,
        "events": events,
        "members": members,
        "readings": readings,
        "by_reach": by_reach,
    }


class _PostRow:
    """A posts row with its account's platform and zone, for the previews."""

    def __init__(self, row: Any, acc: Any) -> None:
        self._row = row
        self.platform = acc.platform
        self.timezone = acc.timezone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _comment_event(events: list[Any]) -> Any:
    """The newest record of what happened to the post's first comment (scheduler.comments
    keeps it as a published -> published event), or None."""
    found = None
    for e in events:
        if e.from_state == e.to_state == PostState.PUBLISHED.value and (e.reason or "").startswith(
            "first comment"
        ):
            found = e
    return found


@page()
async def post_page(request: Request) -> Response:
    web = _web(request)
    key = request.path_params["key"]

    def read() -> dict[str, Any]:
        with web.engine.connect() as conn:
            return _post_context(conn, key)

    ctx = await run_in_threadpool(read)
    if "group" in ctx:
        return web.render(request, "group.html", **ctx)
    siblings = [m for m in ctx["members"] if m.id != ctx["row"].id]
    shown = await previews(_PostRow(ctx["row"], ctx["acc"]), web.config.accounts, siblings)
    approvals = [
        e
        for e in ctx["events"]
        if e.from_state in AWAITING_APPROVAL or e.to_state in AWAITING_APPROVAL
    ]
    return web.render(
        request,
        "post.html",
        previews=shown,
        approvals=approvals,
        comment_event=_comment_event(ctx["events"]),
        possible=actions.possible(ctx["row"].state),
        **ctx,
    )


@page("edit")
async def post_action(request: Request) -> Response:
    return await _act(request)


@page("approve")
async def post_approval(request: Request) -> Response:
    return await _act(request)


async def _act(request: Request) -> Response:
    web = _web(request)
    ident: Identity = request.state.ident
    key, action = request.path_params["key"], request.path_params["action"]
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if k != "csrf"}
    message = await run_in_threadpool(
        actions.run,
        web.engine,
        web.config,
        web.clock.now(),
        ident.user,
        action,
        key,
        fields,
        _addr(request),
    )
    web.flashes[ident.token] = ("ok", message)
    return RedirectResponse(post_url(key), 303)


@page("edit")
async def account_action(request: Request) -> Response:
    web = _web(request)
    ident: Identity = request.state.ident
    name, action = request.path_params["name"], request.path_params["action"]
    message = await run_in_threadpool(
        actions.run_account,
        web.engine,
        web.config,
        web.clock.now(),
        ident.user,
        action,
        name,
        _addr(request),
    )
    web.flashes[ident.token] = ("ok", message)
    return RedirectResponse(request.headers.get("x-back", "/calendar"), 303)


@page("approve")
async def approvals_page(request: Request) -> Response:
    web = _web(request)

    def read() -> list[Any]:
        with web.engine.connect() as conn:
            return calendar.awaiting_approval(conn, 500)

    return web.render(request, "approvals.html", waiting=await run_in_threadpool(read))


@page()
async def er_page(request: Request) -> Response:
    from scheduler.cli.report import DEFAULT_DAYS, MAX_DAYS, build_report
    from scheduler.er import html as report_html
    from scheduler.er.report import account_ids

    web = _web(request)
    account = request.query_params.get("account") or None
    try:
        days = min(MAX_DAYS, max(1, int(request.query_params.get("days", DEFAULT_DAYS))))
    except ValueError:
        days = DEFAULT_DAYS
    now = web.clock.now()

    def read() -> tuple[str, list[str]]:
        with web.engine.connect() as conn:
            names = [n for _, n in account_ids(conn, None)]
            data = build_report(conn, web.config.er, now, account=account, days=days)
        if data is None:
            scope = f"Account {account}" if account else ""
            return report_html.render_empty(now, now - timedelta(days=days), now, scope), names
        return report_html.render(data), names

    text, names = await run_in_threadpool(read)
    # The report is the static page `smm report --html` writes, drawn by the same code; the
    # app puts its own navigation and a period and account picker above it.
    bar = web.env.get_template("er_bar.html").render(
        user=request.state.ident.user, accounts=names, account=account, days=days
    )
    text = text.replace("<body>\n", "<body>\n" + bar, 1)
    return HTMLResponse(text)


@page("admin")
async def audit_page(request: Request) -> Response:
    web = _web(request)
    before = request.query_params.get("before")

    def read() -> list[Any]:
        q = select(auth.audit_t).order_by(auth.audit_t.c.id.desc()).limit(200)
        if before and before.isdigit():
            q = q.where(auth.audit_t.c.id < int(before))
        with web.engine.connect() as conn:
            return list(conn.execute(q).all())

    rows = await run_in_threadpool(read)
    return web.render(request, "audit.html", rows=rows)


@page()
async def prefs(request: Request) -> Response:
    web = _web(request)
    form = await request.form()
    name = str(form.get("tz", ""))
    back = str(form.get("back", "/calendar"))
    if not back.startswith("/") or back.startswith("//"):
        back = "/calendar"
    try:
        zone(name)
    except LocalTimeError as exc:
        return web.problem(request, 400, "Unknown time zone", f"{exc} ({exc.hint})")
    response = RedirectResponse(back, 303)
    response.set_cookie(
        ZONE_COOKIE, name, max_age=365 * 86400, samesite="lax", secure=web.secure(request)
    )
    return response


async def root(request: Request) -> Response:
    return RedirectResponse("/calendar", 303)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(
    engine: Engine, config: Config, clock: Clock | None = None, *, dev: bool = False
) -> ASGIApp:
    """The ASGI application (``smm web`` serves it with uvicorn)."""
    from importlib.resources import files

    web = Web(engine, config, clock or SystemClock(), dev=dev)
    static = str(files("scheduler.web") / "static")
    app = Starlette(
        debug=False,
        routes=[
            Route("/", root),
            Route("/healthz", healthz),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/prefs", prefs, methods=["POST"]),
            Route("/calendar", calendar_page),
            Route("/approvals", approvals_page),
            Route("/post/{key:path}/{action:str}", _dispatch_post, methods=["POST"]),
            Route("/post/{key:path}", post_page),
            Route("/account/{name}/{action}", account_action, methods=["POST"]),
            Route("/er", er_page),
            Route("/audit", audit_page),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
    )
    app.state.web = web
    return SecurityHeaders(app)


async def _dispatch_post(request: Request) -> Response:
    """Approving needs the approver role, every other action the editor role."""
    action = request.path_params["action"]
    if action in actions.APPROVAL_ACTIONS:
        return await post_approval(request)
    return await post_action(request)
