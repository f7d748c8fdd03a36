"""The web app in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A manager signs in, finds next week's posts, opens one and reads its Mastodon and X previews,
reschedules it, approves a post and watches the daemon publish it; a viewer is refused an
action; forms without their CSRF token are refused. Screenshots of the calendar, a post and
the engagement page go to ``artifacts/web/`` (docs/web.md shows copies of them).

Never downloads a browser: without the system's Chromium (``apt-get install -y chromium``)
or the ``playwright`` package the tests are skipped, except under CI, where they fail.

Never hangs: each test gets a fresh context of one browser per module. Page actions time out
after ``ACTION_MS``; the steps Playwright gives no timeout (launching, opening and closing a
context or page, ``evaluate``, resizing) run under a watchdog that kills Chromium when they take
too long, which makes the waiting call fail instead of waiting forever. Opening a page is tried
once more, in a relaunched browser, when the first try fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from web_support import MASTODON_COUNT, PASSWORD, X_COUNT, Server, Site, build_site

from scheduler.config import load_config
from scheduler.db.engine import immediate, make_engine
from scheduler.queue import posts_t
from scheduler.timeutil import FixedClock, utcnow
from scheduler.web import auth
from scheduler.web.app import create_app

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("SMM_ARTIFACTS", REPO_ROOT / "artifacts")) / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


SMM = (sys.executable, "-c", "from scheduler.cli import main; main()")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (see .ci/run)")
    pytest.skip(reason)


#: Clicks, fills, waits and navigations fail after this long.
ACTION_MS = 15_000
#: The watchdog kills Chromium when launching it and opening a page take longer than this
#: (normally about a second, under 10 s on a loaded machine) ...
SETUP_S = 30.0
#: ... or when a test's browser steps take longer than this (normally under 10 s).
TEST_S = 60.0
DESKTOP = {"width": 1280, "height": 900}


def kill_chromium() -> None:
    """SIGKILL every Chromium process of this test process (started through Playwright)."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.name().startswith("chrom"):
                proc.kill()


class Watchdog:
    """Kills Chromium unless the ``with`` block ends within ``seconds``.

    Playwright then fails the call the block is waiting on ("Target page, context or browser
    has been closed"), so a stuck browser fails the test rather than hanging the run.
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        print(f"{self.what} took over {self.seconds:.0f} s: killing Chromium", file=sys.stderr)
        kill_chromium()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class Chromium:
    """The system's Chromium, launched once per module and again after the watchdog killed it."""

    def __init__(self, playwright: Any) -> None:
        self._playwright = playwright
        self._browser: Any = None

    def _connected(self) -> Any:
        if self._browser is None or not self._browser.is_connected():
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=ARGS, timeout=SETUP_S * 1000
            )
        return self._browser

    def open(self) -> tuple[Any, Any]:
        """A page in a new context; a first try that fails or hangs is made once more."""
        from playwright.sync_api import Error

        for attempt in (1, 2):
            with Watchdog(SETUP_S, "opening a page"):
                try:
                    context = self._connected().new_context(viewport=DESKTOP)
                    context.set_default_timeout(ACTION_MS)
                    return context, context.new_page()
                except Error as exc:
                    if attempt == 2:
                        raise
                    first_line = str(exc).splitlines()[0]
                    print(f"opening a page failed ({first_line}); relaunching", file=sys.stderr)
                    kill_chromium()
        raise AssertionError("unreachable")

    def close(self, context: Any) -> None:
        """Close ``context``; one that hangs or fails to close is left to a relaunch.

        Never ``page.close()``: closing a tab just after a click sent a form (a POST
        navigation) now and then never finishes (Chromium answers Target.closeTarget but keeps
        the tab, and Playwright waits for it to go); disposing of the context closes it.
        """
        from playwright.sync_api import Error

        with Watchdog(SETUP_S, "closing the page"), contextlib.suppress(Error):
            context.close()

    def quit(self) -> None:
        """Close the browser, or leave it to Playwright's exit when that hangs or fails."""
        from playwright.sync_api import Error

        if self._browser is not None:
            with Watchdog(SETUP_S, "closing Chromium"), contextlib.suppress(Error):
                self._browser.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """The system's Chromium under Playwright, for this module's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (the dev extra has it)")
    if not Path(CHROMIUM).exists():
        _unavailable("no Chromium here (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = Chromium(p)
        try:
            yield browser
        finally:
            browser.quit()


@pytest.fixture
def page(chromium: Chromium) -> Iterator[Any]:
    """A page in a fresh context (no cookies or pages of other tests), watched for TEST_S."""
    context, opened = chromium.open()
    with Watchdog(TEST_S, "the test's browser steps"):
        yield opened
    chromium.close(context)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    built = build_site(tmp_path_factory.mktemp("web-browser"))
    yield built
    built.engine.dispose()


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Server]:
    served = Server(create_app(site.engine, site.config))
    yield served
    served.stop()


def sign_in(page: Any, server: Server, name: str) -> None:
    page.goto(server.url + "/calendar")
    if "/login" in page.url:
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("form.login button")
    page.wait_for_url(re.compile(r"/calendar"))


def sign_out(page: Any) -> None:
    page.click("form.who button")
    page.wait_for_url(re.compile(r"/login"))


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def due_of(site: Site, key: str) -> Any:
    with site.engine.connect() as conn:
        return conn.execute(
            select(posts_t.c.state, posts_t.c.due_at).where(posts_t.c.key == key)
        ).one()


def test_a_manager_plans_previews_reschedules_and_approves(
    site: Site, server: Server, page: Any
) -> None:
    sign_in(page, server, "maria")

    # next week's posts
    page.click("a[rel=next]")
    page.wait_for_selector('a[data-key="launch-001"]')
    assert page.locator('a[data-key="tip-002"]').count() == 1
    shot(page, "calendar.png")

    # one of them, as Mastodon and X will show it
    page.click('a[data-key="launch-001"]')
    page.wait_for_url(re.compile(r"/post/launch-001$"))
    counts = {
        net: page.inner_text(f'article[data-platform="{net}"] .count .n')
        for net in ("mastodon", "x")
    }
    assert counts == {"mastodon": str(MASTODON_COUNT), "x": str(X_COUNT)}
    assert page.inner_text('article[data-platform="x"] .count .limit') == "280"
    shot(page, "post.png")

    # reschedule it to Thursday 11:00 in its account's zone
    new_time = (site.next_monday + timedelta(days=3, hours=11)).strftime("%Y-%m-%d %H:%M")
    page.fill("input[name=at]", new_time)
    page.click("text=Reschedule")
    assert "launch-001: now due" in page.inner_text(".flash")
    row = due_of(site, "launch-001")
    assert row.due_at == (site.next_monday + timedelta(days=3, hours=11))

    # a post whose time came while it waited for approval: approved, it goes out now
    with immediate(site.engine) as conn:
        past = utcnow() - timedelta(seconds=10)
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == "sim-approve-001")
            .values(due_at=past, next_attempt_at=past)
        )
    page.goto(server.url + "/approvals")
    page.click("text=sim-approve-001")
    page.fill("form[action$='/approve'] input[name=comment]", "good to go")
    page.click("button[value=approve]")
    assert "sim-approve-001: pending_approval -> queued" in page.inner_text(".flash")
    assert "by web:maria" in page.inner_text(".approval")

    daemon = subprocess.run(
        [
            *SMM,
            "--config",
            str(site.config_path),
            "--db",
            site.db_url,
            "run",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert daemon.returncode == 0, daemon.stderr
    page.reload()
    assert page.inner_text("h1 .badge") == "published"
    assert "approved: good to go" in page.inner_text(".history")
    sign_out(page)


def test_a_viewer_is_refused_an_action(site: Site, server: Server, page: Any) -> None:
    sign_in(page, server, "vic")
    page.goto(server.url + "/post/tip-002")
    with page.expect_response(re.compile(r"/post/tip-002/cancel$")) as answer:
        page.click("text=Cancel the post")
    assert answer.value.status == 403
    assert "Your role (viewer) does not allow this" in page.inner_text(".problem")
    assert due_of(site, "tip-002").state == "queued"
    sign_out(page)


def test_forms_without_their_csrf_token_are_refused(site: Site, server: Server, page: Any) -> None:
    sign_in(page, server, "alice")
    # the signed-in browser's own cookies, a form without the token
    answer = page.request.post(server.url + "/post/tip-002/cancel", form={"at": "x"})
    assert answer.status == 403
    assert "no valid CSRF token" in answer.text()
    # a page on another site posting a form to the app: the browser does not send the
    # session cookie (SameSite=Lax), and the token is missing anyway
    page.set_content(
        f'<form method="post" action="{server.url}/post/tip-002/cancel">'
        '<button id="go">win a prize</button></form>'
    )
    with page.expect_response(re.compile(r"/post/tip-002/cancel$")) as forged:
        page.click("#go")
    assert forged.value.status in (401, 403)
    assert due_of(site, "tip-002").state == "queued"


#: The demo's length, and the engagement page's window.
DEMO_DAYS = 21


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on ``smm demo``'s database, seen on the demo's last day."""
    from scheduler.cli.demo import START

    workdir = tmp_path_factory.mktemp("demo")
    # its own process: the demo runs an event loop, and Playwright's is running here
    demo = subprocess.run(
        [*SMM, "demo", "--days", str(DEMO_DAYS), "--dir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    db = next(workdir.glob("*.db"))
    engine = make_engine(f"sqlite:///{db}")
    with immediate(engine) as conn:
        auth.add_user(conn, "maria", "approver", PASSWORD, START)
    config = load_config(REPO_ROOT / "config" / "example.toml")
    served = Server(create_app(engine, config, FixedClock(START + timedelta(days=DEMO_DAYS))))
    try:
        yield served
    finally:
        served.stop()
        engine.dispose()


def test_the_engagement_page_reads_on_a_phone(demo_server: Server, page: Any) -> None:
    sign_in(page, demo_server, "maria")
    page.goto(demo_server.url + f"/er?days={DEMO_DAYS}")
    assert page.locator("svg[role=img]").count() >= 3
    shot(page, "er.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    # nothing wider than the phone's screen but the charts' own scrolling boxes
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1
    shot(page, "er-phone.png")
