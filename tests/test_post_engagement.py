"""A published post's engagement, reading by reading, where a manager looks at the post:
``smm queue show`` and the web app's post page, with ER by reach or by followers as the ER
loop counts it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from er_support import HOUR, T0, Builder, cli_at_t0
from sqlalchemy import Engine
from web_support import Server, login

from scheduler.config import parse_config
from scheduler.db.engine import immediate, make_engine
from scheduler.db.models import Attempt
from scheduler.er.post_readings import post_readings
from scheduler.timeutil import utcnow
from scheduler.web import auth
from scheduler.web.app import create_app


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def seed(engine: Engine) -> dict[str, int]:
    """A post on the simulated network (which reports reach) read at 1 h and 24 h, one on
    Mastodon (no reach: ER by followers), and one waiting."""
    with engine.begin() as conn:
        b = Builder(conn)
        sim, masto = b.account("shop", "sim"), b.account("shop_md", "mastodon")
        by_reach = b.post(sim, "laugh", key="joke-1", followers=5000)
        conn.execute(
            attempts_t.insert().values(
                post_id=by_reach,
                number=1,
                idempotency_key="idem-joke",
                owner="daemon",
                started_at=T0,
                sent_at=T0,
                finished_at=T0,
                outcome="published",
            )
        )
        b.snapshot(by_reach, 1 * HOUR, likes=10, comments=1, shares=1, reach=400)
        b.snapshot(by_reach, 24 * HOUR, likes=40, comments=6, shares=4, reach=2000)
        by_followers = b.post(masto, "tip", key="tip-1", followers=1000)
        b.snapshot(by_followers, 24 * HOUR, likes=15, comments=3, shares=2)
        waiting = b.post(sim, "laugh", key="later-1", state="queued")
    return {"joke-1": by_reach, "tip-1": by_followers, "later-1": waiting}


def test_readings_are_youngest_first_with_er_by_reach_or_by_followers(engine: Engine) -> None:
    ids = seed(engine)
    with engine.connect() as conn:
        reach = post_readings(conn, ids["joke-1"], by_reach=True, followers_at_publish=5000)
        followers = post_readings(conn, ids["tip-1"], by_reach=False, followers_at_publish=1000)
    assert [(m.age, m.engagements, m.seen) for m in reach] == [("1 h", 12, 400), ("24 h", 50, 2000)]
    assert reach[1].er == pytest.approx(50 / 2000)
    assert [(m.age, m.engagements, m.seen) for m in followers] == [("24 h", 20, None)]
    assert followers[0].er == pytest.approx(20 / 1000)


def test_queue_show_tells_a_published_posts_engagement(
    engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine)
    smm = cli_at_t0(sqlite_url, monkeypatch)
    out = smm("queue", "show", "joke-1").output
    assert "  engagement:\n" in out
    assert "at 24 h: 40 likes, 6 comments, 4 shares, reach 2,000: 50 engagements, ER 2.5%" in out
    tip = json.loads(smm("queue", "show", "tip-1", "--json").output)
    (reading,) = tip["readings"]
    assert (reading["age_hours"], reading["engagements"], reading["seen"]) == (24, 20, None)
    assert reading["er"] == pytest.approx(0.02)
    assert "engagement:" not in smm("queue", "show", "later-1").output


attempts_t = Attempt.__table__  # type: ignore[attr-defined]

CONFIG = """
[accounts.shop]
platform = "sim"
timezone = "UTC"
[accounts.shop_md]
platform = "mastodon"
timezone = "UTC"
options.instance = "https://mastodon.example"
"""


def test_the_post_page_shows_each_reading(engine: Engine) -> None:
    seed(engine)
    with immediate(engine) as conn:
        auth.add_user(conn, "vic", "viewer", "correct horse battery", utcnow())
    server = Server(create_app(engine, parse_config(CONFIG, "config.toml")))
    try:
        import httpx

        with httpx.Client(base_url=server.url, follow_redirects=True) as c:
            login(c, "vic", "correct horse battery")
            page: Any = c.get("/post/joke-1").text
            tip: Any = c.get("/post/tip-1").text
            later: Any = c.get("/post/later-1").text
    finally:
        server.stop()
    assert "<th>ER by reach</th>" in page
    cells = ("24 h", "40", "6", "4", "2,000", "50", "2.5%")
    row = "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    assert row in page
    assert "<th>ER by followers</th>" in tip
    assert "<td>–</td><td>20</td><td>2.0%</td>" in tip
    assert 'id="eng-h"' not in later
    # A published post's history says where its story is, not that nothing happened.
    assert "No change besides the daemon's attempts above." in page
    assert "No change yet." in later
