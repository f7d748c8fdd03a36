"""The web app over HTTP (a real uvicorn server, httpx as the browser): sign-in, roles, CSRF,
cookies, the calendar, previews, the CLI's actions and approval, the audit log, no secrets."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from web_support import MASTODON_COUNT, X_COUNT, Server, Site, build_site, csrf_of, login

from scheduler.daemon import store
from scheduler.db.engine import immediate
from scheduler.db.models import PostState, Schedule
from scheduler.queue import posts_t
from scheduler.timeutil import utcnow
from scheduler.web import auth, calendar
from scheduler.web.app import create_app

SECRET = "s3cr3t-token-never-shown-0123456789"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mp = pytest.MonkeyPatch()
    mp.setenv("SMM_TEST_WEB_TOKEN", SECRET)
    built = build_site(tmp_path_factory.mktemp("web"))
    yield built
    built.engine.dispose()
    mp.undo()


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Server]:
    served = Server(create_app(site.engine, site.config))
    yield served
    served.stop()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[Site, Server]]:
    """A site and server of the test's own, for tests that change posts (the module's site
    stays as planned for the others, whatever order they run in)."""
    built = build_site(tmp_path)
    served = Server(create_app(built.engine, built.config))
    yield built, served
    served.stop()
    built.engine.dispose()


@contextlib.contextmanager
def client(server: Server, user: str | None = None, **kw: Any) -> Iterator[httpx.Client]:
    """An httpx client on the server, signed in as ``user``."""
    with httpx.Client(base_url=server.url, follow_redirects=True, **kw) as c:
        if user:
            assert login(c, user).status_code == 200
        yield c


def state_of(site: Site, key: str) -> str:
    with site.engine.connect() as conn:
        return str(conn.execute(select(posts_t.c.state).where(posts_t.c.key == key)).scalar())


def flash(page: str) -> str:
    found = re.search(r'class="flash[^"]*"[^>]*><pre>(.*?)</pre>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


def problem(page: str) -> str:
    found = re.search(r'class="problem".*?<pre>(.*?)</pre>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


# ---------------------------------------------------------------------------------- sign-in


def test_pages_need_sign_in(server: Server) -> None:
    with client(server) as c:
        r = c.get("/calendar", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=%2Fcalendar")
        assert c.post("/post/launch-001/cancel", data={}).status_code == 401


def test_wrong_password_is_refused_and_audited(site: Site, server: Server) -> None:
    with client(server) as c:
        r = login(c, "maria", "not the password")
        assert r.status_code == 401
        assert "Wrong name or password" in r.text
        assert "smm_session" not in c.cookies
    with site.engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(auth.audit_t.c.action))]
    assert "login-failed" in actions


def test_repeated_failed_sign_ins_are_slowed_down(site: Site) -> None:
    served = Server(create_app(site.engine, site.config))
    try:
        with client(served) as c:
            answers = [login(c, "ed", f"guess {i}").status_code for i in range(6)]
            right = login(c, "ed")
        assert answers == [401] * 5 + [429]
        assert right.status_code == 429  # even the right password, until the window passes
        with client(served, "maria"):  # another name from the same address still may
            pass
    finally:
        served.stop()


def test_session_cookie_is_httponly_and_samesite(server: Server) -> None:
    with client(server) as c:
        page = c.get("/login")
        r = c.post(
            "/login",
            data={"csrf": csrf_of(page.text), "name": "vic", "password": "correct horse battery"},
            follow_redirects=False,
        )
        cookie = r.headers["set-cookie"].lower()
        assert "smm_session=" in cookie
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "secure" not in cookie  # plain HTTP on loopback: a Secure cookie would be lost


def test_session_cookie_is_secure_behind_a_tls_proxy(server: Server) -> None:
    with client(server, headers={"X-Forwarded-Proto": "https"}) as c:
        page = c.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        # httpx keeps a Secure cookie for HTTPS only; the browser talks HTTPS to the proxy
        c.cookies.set("smm_login", csrf_of(page.text))
        r = c.post(
            "/login",
            data={"csrf": csrf_of(page.text), "name": "vic", "password": "correct horse battery"},
            follow_redirects=False,
        )
        assert "; secure" in r.headers["set-cookie"].lower()


def test_the_sign_in_form_needs_its_token(server: Server) -> None:
    with client(server) as c:
        c.get("/login")
        r = c.post("/login", data={"name": "maria", "password": "correct horse battery"})
        assert r.status_code == 403


def test_sign_in_never_redirects_to_another_site(server: Server) -> None:
    with client(server) as c:
        page = c.get("/login")
        r = c.post(
            "/login",
            data={
                "csrf": csrf_of(page.text),
                "name": "vic",
                "password": "correct horse battery",
                "next": "//evil.example/",
            },
            follow_redirects=False,
        )
        assert r.headers["location"] == "/"


def test_security_headers(server: Server) -> None:
    with client(server) as c:
        r = c.get("/login")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # no script at all
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_published_address_becomes_a_link_only_when_it_is_http(
    own: tuple[Site, Server],
) -> None:
    """A remote address comes from a network's answer (a webhook receiver's ``url``) or from
    a person: a javascript: or data: one is shown as text, never as a link."""
    site, served = own
    with immediate(site.engine) as conn:
        for key, url in (("tip-002", "javascript:alert(1)"), ("launch-001", "https://a.example/1")):
            conn.execute(
                update(posts_t)
                .where(posts_t.c.key == key)
                .values(state="published", remote_id="r1", remote_url=url, published_at=utcnow())
            )
    with client(served, "vic") as c:
        bad = c.get("/post/tip-002").text
        good = c.get("/post/launch-001").text
    assert "javascript:alert(1)" in bad
    assert 'href="javascript' not in bad
    assert '<a href="https://a.example/1"' in good


# ---------------------------------------------------------------------------------- roles, CSRF


def test_a_viewer_is_refused_an_action(site: Site, server: Server) -> None:
    with client(server, "vic") as c:
        page = c.get("/post/tip-002")
        r = c.post("/post/tip-002/cancel", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403
    assert "Your role (viewer) does not allow this" in problem(r.text)
    assert state_of(site, "tip-002") == PostState.QUEUED


def test_an_editor_cannot_approve(site: Site, server: Server) -> None:
    with client(server, "ed") as c:
        page = c.get("/post/sim-reject-002")
        r = c.post("/post/sim-reject-002/approve", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 403
    assert state_of(site, "sim-reject-002") == PostState.PENDING_APPROVAL


def test_a_form_without_its_csrf_token_is_refused(site: Site, server: Server) -> None:
    with client(server, "alice") as c:
        missing = c.post("/post/tip-002/cancel", data={})
        forged = c.post("/post/tip-002/cancel", data={"csrf": "0" * 64})
    for r in (missing, forged):
        assert r.status_code == 403
        assert "no valid CSRF token" in problem(r.text)
    assert state_of(site, "tip-002") == PostState.QUEUED


def test_only_admins_read_the_audit_log(server: Server) -> None:
    with client(server, "maria") as c:
        assert c.get("/audit").status_code == 403
    with client(server, "alice") as c:
        r = c.get("/audit")
    assert r.status_code == 200
    assert "login" in r.text


# ---------------------------------------------------------------------------------- calendar


def test_the_week_shows_next_weeks_posts_in_the_viewers_zone(site: Site, server: Server) -> None:
    start = site.next_monday.date().isoformat()
    with client(server, "vic") as c:
        riga = c.get(f"/calendar?start={start}").text
        ny = c.get(f"/calendar?start={start}&tz=America/New_York").text
    assert 'data-key="launch-001"' in riga
    assert 'data-key="tip-002"' in riga
    # launch-001 is at 10:00 in Riga: 03:00 in New York, with the account's own time beside it.
    assert re.search(r'data-key="launch-001">\s*<span class="when">10:00<', riga)
    assert re.search(r'data-key="launch-001">\s*<span class="when">03:00 <small>\(10:00', ny)


def test_calendar_filters(site: Site, server: Server) -> None:
    start = site.next_monday.date().isoformat()
    with client(server, "vic") as c:
        by_net = c.get(f"/calendar?start={start}&network=x").text
        by_text = c.get(f"/calendar?start={start}&q=JOKE").text
        by_state = c.get(f"/calendar?start={start}&state=published").text
    assert 'data-key="tip-002"' in by_net
    assert 'data-key="launch-001"' not in by_net
    assert 'data-key="tip-002"' in by_text
    assert 'data-key="launch-001"' not in by_text
    assert "data-key=" not in by_state


def test_calendar_pages_by_key(site: Site) -> None:
    week = site.next_monday.date()
    with site.engine.connect() as conn:
        first = calendar.read_page(
            conn, "week", week, calendar.ZoneInfo("Europe/Riga"), calendar.Filters(), limit=1
        )
        assert first.shown == 1
        assert first.next_cursor is not None
        second = calendar.read_page(
            conn,
            "week",
            week,
            calendar.ZoneInfo("Europe/Riga"),
            calendar.Filters(),
            calendar.Cursor.decode(first.next_cursor.encode()),
            limit=1,
        )
    keys = [e.key for p in (first, second) for d in p.days for e in d.entries]
    assert keys == ["launch-001", "tip-002"]


@pytest.mark.postgres
def test_the_calendar_reads_postgresql_too(tmp_path: Path, postgres_url: str) -> None:
    site = build_site(tmp_path, db_url=postgres_url)
    try:
        with site.engine.connect() as conn:
            week = calendar.read_page(
                conn,
                "week",
                site.next_monday.date(),
                calendar.ZoneInfo("Europe/Riga"),
                calendar.Filters(text="100%_ JOKE"),
            )
            assert week.shown == 0  # % and _ are matched as themselves
            week = calendar.read_page(
                conn,
                "week",
                site.next_monday.date(),
                calendar.ZoneInfo("Europe/Riga"),
                calendar.Filters(text="joke", network="x"),
            )
            waiting = calendar.awaiting_approval(conn)
            conn.execute(update(posts_t).values(schedule=Schedule.QUEUE.value))
            ahead = calendar.beyond_horizon(conn, utcnow(), timedelta(hours=1))
            colours = calendar.type_colours(conn)
        assert [e.key for d in week.days for e in d.entries] == ["tip-002"]
        assert [w.key for w in waiting] == ["sim-approve-001", "sim-reject-002"]
        assert {w.account for w in ahead} >= {"riga_masto", "ny_x"}
        assert set(colours) == {"instruction", "laugh", "medal", "provocation"}
    finally:
        site.engine.dispose()


def test_smm_web_serves_on_loopback(site: Site) -> None:
    import socket
    import subprocess
    import sys
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    smm = (sys.executable, "-c", "from scheduler.cli import main; main()")
    base = ("--config", str(site.config_path), "--db", site.db_url, "web")
    refused = subprocess.run(
        [*smm, *base, "--dev", "--listen", "0.0.0.0:8080"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "--dev serves on loopback only" in refused.stderr
    proc = subprocess.Popen(
        [*smm, *base, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "smm web did not start"
                time.sleep(0.2)
        assert r.text == "ok"
        assert "server" not in r.headers  # no version banner
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_smm_web_dev_logs_uvicorns_lines_in_the_projects_format(site: Site) -> None:
    import json
    import socket
    import subprocess
    import sys
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "--config",
         str(site.config_path), "--db", site.db_url, "web", "--dev", "--listen",
         f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok"
                break
            except httpx.TransportError:
                assert proc.poll() is None
                assert time.monotonic() < deadline, "smm web did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = [ln for ln in err.splitlines() if ln and not ln.startswith("smm web on ")]
    events = [json.loads(ln) for ln in lines]  # stderr is no terminal: JSON lines, every one
    loggers = {e.get("logger") for e in events}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, loggers
    assert any("GET /healthz" in e["event"] for e in events if e["logger"] == "uvicorn.access")


def test_the_week_shows_posts_in_every_state(own: tuple[Site, Server]) -> None:
    site, _ = own
    code, out = site.cli("queue", "cancel", "tip-002")
    assert code == 0, out
    with site.engine.connect() as conn:
        week = calendar.read_page(
            conn,
            "week",
            site.next_monday.date(),
            calendar.ZoneInfo("Europe/Riga"),
            calendar.Filters(),
        )
    shown = {e.key: e.state for d in week.days for e in d.entries}
    assert shown == {"launch-001": "queued", "tip-002": "cancelled"}


def test_a_queue_beyond_the_horizon_is_flagged(site: Site) -> None:
    with site.engine.connect() as conn:  # left without a commit: the changes roll back
        fixed = calendar.beyond_horizon(conn, utcnow(), timedelta(hours=1))
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key.in_(["launch-001", "tip-002"]))
            .values(schedule=Schedule.QUEUE.value)
        )
        soon = calendar.beyond_horizon(conn, utcnow(), timedelta(days=30))
        short = calendar.beyond_horizon(conn, utcnow(), timedelta(hours=1))
    # Times the plan gave are meant: they say nothing of whether the slots carry the plan.
    assert fixed == []
    assert soon == []
    assert {w.account for w in short} == {"riga_masto", "ny_x"}


# ---------------------------------------------------------------------------------- the post


def test_post_page_previews_count_as_each_network(server: Server) -> None:
    with client(server, "vic") as c:
        html = c.get("/post/launch-001").text
    counts = dict(
        re.findall(
            r'data-platform="(\w+)".*?<b class="n">(\d+)</b> / <span class="limit">\d+', html, re.S
        )
    )
    assert counts["mastodon"] == str(MASTODON_COUNT)
    assert counts["x"] == str(X_COUNT)


ALT_ACCOUNT = """
[accounts.alt_masto]
platform = "mastodon"
timezone = "Europe/Riga"
require_alt = true
options = { instance = "https://mastodon.example" }
credentials = { access_token = { env = "SMM_TEST_WEB_TOKEN" } }
"""


def test_post_page_shows_media_options_thread_and_first_comment(tmp_path: Path) -> None:
    from scheduler.accounts import sync_accounts
    from scheduler.comments import record
    from scheduler.queue import accounts_t

    site = build_site(tmp_path, extra=ALT_ACCOUNT)
    long_part = "y" * 600  # over Mastodon's 500, and over X's 280
    with immediate(site.engine) as conn:
        ids = sync_accounts(conn, site.config, utcnow())
        alt_id = conn.execute(
            select(accounts_t.c.id).where(accounts_t.c.name == "alt_masto")
        ).scalar()
        assert alt_id is not None, ids
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == "launch-001")
            .values(
                account_id=alt_id,
                media=["pics/a.png", "pics/b.png"],
                media_meta=[{"alt": "A <b>cat</b> & a dog"}, {}],
                post_options={
                    "content_warning": "spoilers <script>",
                    "sensitive": True,
                    "visibility": "unlisted",
                    "language": "lv",
                    "poll": {"options": ["Yes <i>", "No"], "duration": 7200, "multiple": True},
                    "thread": [
                        {
                            "text": "Hello 🌍 again",
                            "media": ["pics/c.png"],
                            "media_meta": [{"alt": "A <u>mug</u>"}],
                        },
                        long_part,
                    ],
                    "first_comment": "Link in <comment>",
                },
            )
        )
        post_id = conn.execute(
            select(posts_t.c.id).where(posts_t.c.key == "launch-001")
        ).scalar_one()
    record(site.engine, post_id, "daemon", utcnow(), "first comment published: https://m.example/9")
    served = Server(create_app(site.engine, site.config))
    try:
        with client(served, "vic") as c:
            page = c.get("/post/launch-001").text
    finally:
        served.stop()
        site.engine.dispose()
    # every stored string is escaped
    for raw in ("<b>cat</b>", "<script>", "<i>", "<comment>"):
        assert raw not in page
    articles = dict(
        re.findall(
            r'<article class="preview[^"]*"[^>]*data-platform="(\w+)">(.*?)</article>', page, re.S
        )
    )
    masto, x = articles["mastodon"], articles["x"]
    assert "alt: “A &lt;b&gt;cat&lt;/b&gt; &amp; a dog”" in masto
    # alt_masto requires alt text: the second file is marked, on X (ny_x) merely noted
    assert "no alt text (alt_masto requires it)" in masto
    assert "requires it" not in x
    assert "(no alt text)" in x
    for article in (masto, x):
        assert "spoilers &lt;script&gt;" in article
        assert "sensitive media" in article
        assert 'class="visibility">unlisted<' in article
        assert 'class="language">lv<' in article
        assert "<li>Yes &lt;i&gt;</li><li>No</li>" in article
        assert "several answers" in article
        assert "Link in &lt;comment&gt;" in article
    # each part counted by the network's own plugin: the emoji is 1 on Mastodon, 2 on X
    part = re.compile(
        r'data-part="(\d)".*?<b class="pn">(\d+)</b> / <span class="limit">(\d+)', re.S
    )
    assert part.findall(masto) == [("2", "13", "500"), ("3", "600", "500")]
    assert part.findall(x) == [("2", "14", "280"), ("3", "600", "280")]
    assert "<b>100 over</b>" in masto
    # a part's own media, with its alt text escaped
    assert '<span class="path">pics/c.png</span> <span class="alt">alt: “A &lt;u&gt;mug' in masto
    assert "<b>320 over</b>" in x
    # the comment's outcome belongs to the post's own network
    assert "first comment published: https://m.example/9" in masto
    assert "first comment published" not in x


def test_reschedule_answers_as_the_cli_does(own: tuple[Site, Server]) -> None:
    site, server = own
    with client(server, "ed") as c:
        page = c.get("/post/tip-002")
        bad = c.post("/post/tip-002/reschedule", data={"csrf": csrf_of(page.text), "at": "soon"})
        code, cli_out = site.cli("queue", "reschedule", "tip-002", "--at", "soon")
        past = c.post(
            "/post/tip-002/reschedule", data={"csrf": csrf_of(page.text), "at": "2020-01-01 10:00"}
        )
        ok = c.post(
            "/post/tip-002/reschedule", data={"csrf": csrf_of(page.text), "at": "2099-03-04 10:00"}
        )
    assert bad.status_code == 409
    assert code == 2
    # the same words as the CLI's (which adds its option name around them)
    assert problem(bad.text).split(" (")[0] in cli_out
    assert "tip-002: the new time is in the past" in problem(past.text)
    assert flash(ok.text) == "tip-002: now due 2099-03-04 10:00 EST (2099-03-04T15:00:00Z)"


def test_approval_from_the_cli_and_the_web(own: tuple[Site, Server]) -> None:
    site, server = own
    code, out = site.cli(
        "queue", "reject", "sim-reject-002", "--comment", "tone it down", "--by", "m"
    )
    assert code == 0, out
    assert "sim-reject-002: pending_approval -> changes_requested" in out
    code, out = site.cli("queue", "reject", "sim-reject-002", "--comment", "again")
    assert code == 1
    assert "cannot send back a post that is changes_requested" in out
    with client(server, "maria") as c:
        page = c.get("/post/sim-reject-002")
        assert "tone it down" in page.text
        assert "by <b>m</b>" in page.text
        r = c.post("/post/sim-reject-002/approve", data={"csrf": csrf_of(page.text), "comment": ""})
    assert "sim-reject-002: changes_requested -> queued" in flash(r.text)
    assert "by <b>web:maria</b>" in r.text
    assert state_of(site, "sim-reject-002") == PostState.QUEUED


def test_the_daemon_never_claims_a_post_waiting_for_approval(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    try:
        # even long after its time, and with every other post claimed
        claimed, _ = store.claim(
            site.engine,
            "test-daemon",
            utcnow() + timedelta(days=3650),
            lease=timedelta(minutes=1),
            limit=100,
            grace={},
            default_grace=timedelta(days=100_000),
        )
        keys = {c.row.key for c in claimed}
        assert keys == {"launch-001", "tip-002"}
        assert state_of(site, "sim-approve-001") == PostState.PENDING_APPROVAL
        assert state_of(site, "sim-reject-002") == PostState.PENDING_APPROVAL
    finally:
        site.engine.dispose()


def test_a_plan_item_can_ask_for_approval(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    try:
        plan = tmp_path / "more.yaml"
        item = (
            "- id: {key}\n  account: riga_masto\n  type: laugh\n  text: hi\n  approval: {value}\n"
        )
        plan.write_text(item.format(key="ask-1", value="required"))
        code, out = site.cli("plan", "import", str(plan))
        assert code == 0, out
        assert state_of(site, "ask-1") == PostState.PENDING_APPROVAL
        plan.write_text(item.format(key="ask-2", value="maybe"))
        code, out = site.cli("plan", "validate", str(plan))
        assert code == 1
        assert "approval" in out
        assert "approval must be required or none" in out
    finally:
        site.engine.dispose()


def test_cancel_and_retry_is_no_way_around_approval(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    try:
        for args in (
            ("queue", "cancel", "sim-approve-001", "sim-reject-002"),
            ("queue", "retry", "sim-approve-001"),
            ("queue", "reschedule", "sim-reject-002", "--at", "2099-01-01 10:00"),
        ):
            code, out = site.cli(*args)
            assert code == 0, out
        assert state_of(site, "sim-approve-001") == PostState.PENDING_APPROVAL
        assert state_of(site, "sim-reject-002") == PostState.PENDING_APPROVAL
        # an account without approval queues them straight away
        site.cli("queue", "cancel", "tip-002")
        site.cli("queue", "retry", "tip-002")
        assert state_of(site, "tip-002") == PostState.QUEUED
    finally:
        site.engine.dispose()


def test_resuming_a_paused_account_queues_no_post_nobody_signed_off(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    try:
        code, out = site.cli("queue", "pause", "--account", "riga_masto")
        assert code == 0, out
        plan = tmp_path / "more.yaml"
        plan.write_text(
            "- id: while-paused\n  account: riga_masto\n  type: laugh\n  text: hi\n"
            "  approval: required\n"
        )
        code, out = site.cli("plan", "import", str(plan))
        assert code == 0, out
        assert state_of(site, "while-paused") == PostState.PENDING_APPROVAL
        code, out = site.cli("queue", "resume", "--account", "riga_masto")
        assert code == 0, out
        assert state_of(site, "while-paused") == PostState.PENDING_APPROVAL
    finally:
        site.engine.dispose()


def test_a_changed_plan_item_waits_for_approval_again(tmp_path: Path) -> None:
    site = build_site(tmp_path)
    try:
        code, out = site.cli("queue", "approve", "sim-approve-001")
        assert code == 0, out
        plan = tmp_path / "plan.yaml"
        plan.write_text(plan.read_text().replace("Needs a manager's eye", "Changed text"))
        code, out = site.cli("plan", "import", str(plan))
        assert code == 0, out
        assert state_of(site, "sim-approve-001") == PostState.PENDING_APPROVAL
    finally:
        site.engine.dispose()


def test_every_change_is_audited(own: tuple[Site, Server]) -> None:
    site, server = own
    with client(server, "ed") as c:
        page = c.get("/post/launch-001")
        c.post(
            "/post/launch-001/reschedule",
            data={"csrf": csrf_of(page.text), "at": "2099-02-02 09:30"},
        )
    with site.engine.connect() as conn:
        rows = conn.execute(select(auth.audit_t).where(auth.audit_t.c.action == "reschedule")).all()
    assert any(r.actor == "ed" and r.target == "launch-001" for r in rows)


def test_no_page_shows_a_secret(site: Site, server: Server) -> None:
    start = site.next_monday.date().isoformat()
    with client(server, "alice") as c:
        pages = [
            c.get(p).text
            for p in (
                f"/calendar?start={start}",
                "/calendar?view=month",
                "/post/launch-001",
                "/post/tip-002",
                "/approvals",
                "/er",
                "/audit",
            )
        ]
    for text in pages:
        assert SECRET not in text


def test_users_from_the_cli(site: Site) -> None:
    code, out = site.cli(
        "web", "user", "add", "newbie", "--role", "editor", "--password-stdin", input="short\n"
    )
    assert code == 1
    assert "at least 10 characters" in out
    code, out = site.cli(
        "web",
        "user",
        "add",
        "newbie",
        "--role",
        "editor",
        "--password-stdin",
        input="long enough pw\n",
    )
    assert code == 0, out
    code, out = site.cli("web", "user", "list")
    assert re.search(r"newbie\s+editor\s+yes", out)
    with site.engine.connect() as conn:
        stored = conn.execute(
            select(auth.users_t.c.password_hash).where(auth.users_t.c.name == "newbie")
        ).scalar()
    assert stored.startswith("$argon2id$")
    assert "long enough pw" not in stored
    assert "argon2" not in out


def test_a_refused_user_name_is_quoted_in_a_bounded_excerpt(site: Site) -> None:
    long = "n" * 5000
    code, out = site.cli(
        "web", "user", "add", long, "--role", "editor", "--password-stdin", input="x" * 12 + "\n"
    )
    assert code == 1
    assert "bad user name 'nnnn" in out
    assert len(out) < 500


def test_user_add_checks_the_name_and_role_before_asking_for_a_password(site: Site) -> None:
    for args, said in (
        (["n" * 5000, "--role", "editor"], "bad user name"),
        (["newbie", "--role", "king"], "king"),
        (["alice", "--role", "editor"], "a new role with `smm web user set alice --role ROLE`"),
    ):
        code, out = site.cli("web", "user", "add", *args, input="")
        assert code != 0
        assert said in out
        assert "Password" not in out


def test_user_passwd_names_a_missing_user_before_asking_for_a_password(site: Site) -> None:
    code, out = site.cli("web", "user", "passwd", "nobody", input="")
    assert code == 1
    assert "no user 'nobody'" in out
    assert "Password" not in out


def test_proxy_header_is_believed_only_from_a_trusted_address(tmp_path: Path) -> None:
    from dataclasses import replace

    site = build_site(tmp_path)
    try:
        trusting = replace(site.config, web=replace(site.config.web, auth="proxy"))
        wary = replace(
            site.config, web=replace(site.config.web, auth="proxy", trusted_proxies=("10.9.9.9",))
        )
        for config, expected in ((trusting, 200), (wary, 303)):
            served = Server(create_app(site.engine, config))
            try:
                with httpx.Client(base_url=served.url) as c:
                    r = c.get("/calendar", headers={"X-Remote-User": "maria"})
                    assert r.status_code == expected
                    if expected == 200:
                        # the proxy's user gets a session, so that forms carry a CSRF token
                        assert "smm_session" in r.headers["set-cookie"]
                        with immediate(site.engine) as conn:
                            assert auth.user_named(conn, "maria") is not None
            finally:
                served.stop()
    finally:
        site.engine.dispose()


# ------------------------------------------------------------------ ids that need encoding

ODD_ID = "Q&A? #1 50%"


def test_a_post_whose_id_needs_encoding_is_reached_from_every_page(
    own: tuple[Site, Server], tmp_path: Path
) -> None:
    """A plan's id may hold ?, #, % and spaces: every link, form and redirect encodes it."""
    site, server = own
    due = (site.next_monday + timedelta(days=3, hours=12)).strftime("%Y-%m-%d %H:%M")
    plan = tmp_path / "odd.yaml"
    plan.write_text(
        f'- {{id: "{ODD_ID}", account: acme_sim, type: medal, text: odd one, at: "{due}"}}\n'
    )
    code, out = site.cli("plan", "import", str(plan))
    assert code == 0, out
    start = site.next_monday.date().isoformat()
    with client(server, "alice") as c:
        for listing in (f"/calendar?start={start}", "/approvals"):
            hrefs = re.findall(r'href="(/post/[^"]*)"', c.get(listing).text)
            (href,) = [h for h in hrefs if "50" in h]
            page = c.get(html.unescape(href))
            assert page.status_code == 200, (listing, href)
            assert "odd one" in page.text
        (action,) = re.findall(r'action="([^"]*/approve)"', page.text)
        approved = c.post(html.unescape(action), data={"csrf": csrf_of(page.text), "comment": ""})
        assert approved.status_code == 200
        assert f"{ODD_ID}: pending_approval -> queued" in flash(approved.text)
        audit = c.get("/audit").text
    assert state_of(site, ODD_ID) == PostState.QUEUED
    hrefs = re.findall(r'href="(/post/[^"]*)"', audit)
    assert all("user:" not in h for h in hrefs), "a user is not a post"
    (href,) = [h for h in hrefs if "50" in h]
    with client(server, "alice") as c:
        assert c.get(html.unescape(href)).status_code == 200


def test_a_refused_action_leads_back_to_its_post_and_quotes_input_briefly(
    site: Site, server: Server
) -> None:
    with client(server, "ed") as c:
        page = c.get("/post/tip-002")
        r = c.post(
            "/post/tip-002/reschedule", data={"csrf": csrf_of(page.text), "at": "9" * 50_000}
        )
    assert r.status_code == 409
    assert "cannot read '9999" in problem(r.text)
    assert len(problem(r.text)) < 300
    assert '<a href="/post/tip-002">Back to the post</a>' in r.text


def test_the_approvals_list_shows_what_each_post_says(site: Site, server: Server) -> None:
    with client(server, "maria") as c:
        page = c.get("/approvals").text
    row = next(r for r in page.split("<tr>") if "sim-approve-001" in r)
    assert "Needs a manager&#39;s eye" in row


def test_settling_a_post_in_the_app_records_the_networks_id_not_its_address(
    own: tuple[Site, Server],
) -> None:
    """The metrics job and lookup send the remote id back to the network: an address stored
    in its place would leave the post unread for good (the CLI refuses it too)."""
    site, server = own
    with immediate(site.engine) as conn:
        conn.execute(
            update(posts_t).where(posts_t.c.key == "launch-001").values(state="unconfirmed")
        )
    address = "https://mastodon.example/@brand/112233"
    with client(server, "ed") as c:
        page = c.get("/post/launch-001")
        assert 'name="remote_id"' in page.text
        token = csrf_of(page.text)

        def settle(**fields: str) -> httpx.Response:
            return c.post("/post/launch-001/resolve", data={"csrf": token, **fields})

        assert "exactly one of" in problem(settle(url=address).text)
        assert "is an address" in problem(settle(remote_id=address).text)
        assert "has a space" in problem(settle(remote_id="112233", url=address + " x").text)
        assert "not an http(s) address" in problem(settle(remote_id="1", url="ftp://x/y").text)
        assert state_of(site, "launch-001") == "unconfirmed"
        done = settle(remote_id="112233", url=address)
    assert flash(done.text) == f"launch-001: published as 112233 at {address}"
    with site.engine.connect() as conn:
        row = conn.execute(select(posts_t).where(posts_t.c.key == "launch-001")).one()
    assert (row.state, row.remote_id, row.remote_url) == ("published", "112233", address)


def test_post_text_sets_its_own_direction(own: tuple[Site, Server], tmp_path: Path) -> None:
    """A post in Arabic or Hebrew reads right to left, as the networks show it (they mark
    user text dir=auto), wherever the app shows its text."""
    site, server = own
    due = (site.next_monday + timedelta(days=2, hours=12)).strftime("%Y-%m-%d %H:%M")
    text = "שלום עולם #launch 2027"
    plan = tmp_path / "rtl.yaml"
    plan.write_text(
        f'- {{id: rtl-1, account: acme_sim, type: medal, text: "{text}", at: "{due}"}}\n'
    )
    code, out = site.cli("plan", "import", str(plan))
    assert code == 0, out
    start = site.next_monday.date().isoformat()
    with client(server, "maria") as c:
        pages = [c.get(f"/calendar?start={start}").text, c.get("/approvals").text]
        pages.append(c.get("/post/rtl-1").text)
    for page in pages:
        assert re.search(r'dir="auto">' + re.escape(text), page), page[:200]
