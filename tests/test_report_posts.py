"""``smm report --html`` lists posts one by one: media with alt text, options, thread parts,
the first comment, the other posts of a group; bounded, escaped, secrets masked."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from er_support import DAY, HOUR, T0, Builder, cli_at_t0
from sqlalchemy import Engine

from scheduler.cli import cli
from scheduler.cli.report import register
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.er.postlist import read_posts, render_posts
from scheduler.logging import register_secret

if "report" not in cli.commands:
    register(cli)

EVIL = "<script>alert('x')</script>"


@pytest.fixture
def engine(sqlite_url: str) -> Any:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def seed_group(engine: Engine) -> None:
    """A plan item on two accounts: riga's post published (media, thread, comment, a
    reading at 24 h), oslo's waiting."""
    with engine.begin() as conn:
        b = Builder(conn)
        riga, oslo = b.account("riga"), b.account("oslo")
        post = b.post(
            riga,
            "launch",
            key="launch@riga",
            group_key="launch",
            published_at=T0 - 2 * DAY,
            text=f"Our launch {EVIL}",
            media=["/srv/plans/img/cat.png", "https://cdn.example/v/clip.mp4"],
            media_meta=[{"alt": "A <b>cat</b> on a desk"}, {}],
            remote_url="https://sim.example/p/1",
            post_options={
                "content_warning": "cw <x>",
                "first_comment": "See <comment>",
                "thread": [
                    "Part two <i>",
                    {
                        "text": "Part three",
                        "media": ["/x/dog.png"],
                        "media_meta": [{"alt": "A dog"}],
                    },
                ],
            },
        )
        b.snapshot(post, 24 * HOUR, likes=25, comments=3, shares=2, reach=1000)
        b.post(
            oslo,
            "launch",
            key="launch@oslo",
            group_key="launch",
            state=PostState.QUEUED,
            due_at=T0 + DAY,
            text="Short <variant> for oslo",
        )


class Tags(HTMLParser):
    """Nesting errors of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in {"meta", "br", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_the_report_lists_each_post_with_media_thread_comment_and_group(
    engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed_group(engine)
    out = tmp_path / "report.html"
    cli_at_t0(sqlite_url, monkeypatch)("report", "--html", str(out))
    text = out.read_text(encoding="utf-8")
    parsed = Tags()
    parsed.feed(text)
    assert parsed.errors == []
    assert parsed.stack == []
    assert EVIL not in text  # every stored string escaped
    for raw in ("<b>cat</b>", "<x>", "<comment>", "<i>", "<variant>"):
        assert raw not in text
    posts = text[text.index('<section id="posts"') :]
    published = posts[posts.index('data-post="launch@riga"') :]
    published = published[: published.index("</article>")]
    assert "Our launch &lt;script&gt;" in published
    # Media by name (the server's folders stay off the page), each with its alt text.
    assert (
        '<span class="file">cat.png</span> '
        '<span class="alt">alt: “A &lt;b&gt;cat&lt;/b&gt; on a desk”</span>' in published
    )
    assert (
        '<span class="file">cdn.example/v/clip.mp4</span> <span class="no-alt">(no alt text)</span>'
        in published
    )
    assert "/srv/plans" not in text
    assert "<dt>content warning</dt><dd>cw &lt;x&gt;</dd>" in published
    assert 'Part 2 of 3</span> <span class="text">Part two &lt;i&gt;' in published
    assert 'Part 3 of 3</span> <span class="text">Part three</span>' in published
    assert '<span class="file">dog.png</span> <span class="alt">alt: “A dog”</span>' in published
    assert "<b>First comment:</b> See &lt;comment&gt;" in published
    assert "At 24 h: 30 engagements, ER 3.0%" in published
    assert '<a href="https://sim.example/p/1" rel="noopener noreferrer">' in published
    # The group: the item's other post, with its own (variant) text and state.
    assert "The other posts of plan item launch" in published
    assert (
        "<td>launch@oslo</td><td>oslo</td><td>queued</td><td>Short &lt;variant&gt; for oslo</td>"
        in published
    )
    upcoming = posts[posts.index("Coming up") :]
    assert 'data-post="launch@oslo"' in upcoming
    assert "<td>launch@riga</td>" not in upcoming  # published: linked to its address
    assert '<a href="https://sim.example/p/1" rel="noopener noreferrer">launch@riga</a>' in upcoming


def test_the_lists_are_bounded_with_a_note(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("riga")
        for i in range(7):
            b.post(acc, "tip", published_at=T0 - (i + 1) * HOUR)
        for i in range(5):
            b.post(acc, "tip", state=PostState.QUEUED, due_at=T0 + (i + 1) * HOUR)
        other = b.account("oslo")
        b.post(other, "tip", published_at=T0 - HOUR)
        b.post(other, "tip", state=PostState.PAUSED, due_at=T0 + HOUR)
    with engine.connect() as conn:
        posts = read_posts(conn, T0 - 10 * DAY, T0, account="riga", limit=3, upcoming=2)
        everyone = read_posts(conn, T0 - 10 * DAY, T0)
    assert (everyone.published_total, everyone.upcoming_total) == (8, 6)
    assert {e.account for e in everyone.upcoming} == {"riga", "oslo"}
    assert (len(posts.published), posts.published_total) == (3, 7)
    assert (len(posts.upcoming), posts.upcoming_total) == (2, 5)
    # Newest published first, soonest waiting first.
    assert [e.at for e in posts.published] == sorted((e.at for e in posts.published), reverse=True)
    assert [e.at for e in posts.upcoming] == [T0 + HOUR, T0 + 2 * HOUR]
    page = render_posts(posts)
    assert "Showing 3 of 7 published posts" in page
    assert "Showing 2 of 5 waiting posts" in page
    assert page.count('<article class="post"') == 5


def test_secrets_and_unsafe_addresses_never_reach_the_page(engine: Engine) -> None:
    secret = "sk-live-REPORTSECRET123"
    register_secret(secret)
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("riga")
        b.post(
            acc,
            "tip",
            published_at=T0 - HOUR,
            text=f"token {secret} and https://user:hunter2pass@example.com/x?token=abc123",
            remote_url="javascript:alert(1)",
            remote_id="r1",
        )
    with engine.connect() as conn:
        page = render_posts(read_posts(conn, T0 - DAY, T0 + timedelta(minutes=1)))
    assert secret not in page
    assert "hunter2pass" not in page
    assert "abc123" not in page
    assert "javascript:" not in page.split('<p class="text">')[0]  # never a link
    assert 'href="javascript' not in page
