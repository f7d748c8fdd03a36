"""The web app in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A manager signs in, finds next week's posts, opens one and reads its Mastodon and X previews,
reschedules it, approves a post and watches the daemon publish it; a viewer is refused an
action; forms without their CSRF token are refused. Screenshots of the calendar, a post and
the engagement page go to ``artifacts/web/`` (docs/web.md shows copies of them).

Never downloads a browser: without the system's Chromium (``apt-get install -y chromium``)
or the ``playwright`` package the tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A persistent context (its own new user-data-dir) of the system's Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (the dev extra has it)")
    if not Path(CHROMIUM).exists():
        _unavailable("no Chromium here (apt-get install -y chromium)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


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
    browser: Any, site: Site, server: Server
) -> None:
    page = browser.new_page()
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
    page.close()


def test_a_viewer_is_refused_an_action(browser: Any, site: Site, server: Server) -> None:
    page = browser.new_page()
    sign_in(page, server, "vic")
    page.goto(server.url + "/post/tip-002")
    with page.expect_response(re.compile(r"/post/tip-002/cancel$")) as answer:
        page.click("text=Cancel the post")
    assert answer.value.status == 403
    assert "Your role (viewer) does not allow this" in page.inner_text(".problem")
    assert due_of(site, "tip-002").state == "queued"
    sign_out(page)
    page.close()


def test_forms_without_their_csrf_token_are_refused(
    browser: Any, site: Site, server: Server
) -> None:
    page = browser.new_page()
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
    page.close()


def test_the_engagement_page_reads_on_a_phone(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from scheduler.cli.demo import START

    workdir = tmp_path_factory.mktemp("demo")
    days = 21
    # its own process: the demo runs an event loop, and Playwright's is running here
    demo = subprocess.run(
        [*SMM, "demo", "--days", str(days), "--dir", str(workdir)],
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
    served = Server(create_app(engine, config, FixedClock(START + timedelta(days=days))))
    try:
        page = browser.new_page()
        sign_in(page, served, "maria")
        page.goto(served.url + f"/er?days={days}")
        assert page.locator("svg[role=img]").count() >= 3
        shot(page, "er.png")
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        # nothing wider than the phone's screen but the charts' own scrolling boxes
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1
        shot(page, "er-phone.png")
        page.close()
    finally:
        served.stop()
        engine.dispose()
