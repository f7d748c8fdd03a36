"""X threads: a reply chain, each part a recorded step; a chain failing at part 2 of 3
resumes from part 2 and never posts a part twice.

Request and response shapes as X documents them:
- POST /2/tweets (docs.x.com/x-api/posts/create-post): ``{"text": ..., "reply":
  {"in_reply_to_tweet_id": ...}}``, answered ``201 {"data": {"id", "text",
  "edit_history_tweet_ids"}}``;
- GET /2/users/{id}/tweets (docs.x.com/x-api/users/get-posts): ``{"data": [...], "meta":
  {"result_count", "newest_id", "oldest_id"}}``, each post with ``referenced_tweets``
  ``[{"type": "replied_to", "id": ...}]`` when ``tweet.fields`` asks for it;
- errors as RFC 7807 problems (``{"title", "detail", "type", "status"}``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_support import PNG_SIGNATURE
from smm_x import XAdapter

from scheduler.adapter import (
    Account,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    PostOptions,
    Published,
    RateLimited,
    ThreadPart,
    Transient,
)
from scheduler.checkpoints import Checkpoints
from scheduler.testing import account_with_secrets, mock_client

TOKEN = "dGhpcy1pcy1hbi14LWFjY2Vzcy10b2tlbg"
USER_ID = "2244994945"
DUE = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
PARTS = ("Part two: the audience", "Part three: the timing")


def make_account() -> Account:
    return account_with_secrets("x-main", "x", {}, secrets={"access_token": TOKEN})


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="t1",
        account="x-main",
        content_type="instruction",
        text="Part one: a thread on launch days",
        idempotency_key="t1-key",
        due_at=DUE,
        options=PostOptions(thread=PARTS),
    )
    return replace(post, **changes)


class FakeX:
    """api.x.com as documented: creates, the account's timeline, and failures on demand.

    ``fail[n]`` answers the n-th create (1-based, counting every create request) with
    "refuse" (429: nothing was made), "error" (503: nothing was made, but a 503 on a create
    cannot say so) or "drop" (the post is made, the answer lost).
    """

    def __init__(self, fail: dict[int, str] | None = None) -> None:
        self.fail = dict(fail or {})
        self.creates = 0
        self.uploads = 0
        self.alt_texts: list[dict[str, Any]] = []
        #: The posts X holds, in order: id, text, the id replied to.
        self.posts: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/2/tweets":
            self.creates += 1
            mode = self.fail.pop(self.creates, None)
            if mode == "refuse":
                body = {"title": "Too Many Requests", "detail": "Too Many Requests"}
                return httpx.Response(429, json={**body, "type": "about:blank", "status": 429})
            if mode == "error":
                body = {"title": "Service Unavailable", "detail": "Service Unavailable"}
                return httpx.Response(503, json={**body, "type": "about:blank", "status": 503})
            payload = json.loads(request.content)
            post_id = str(1445880548472328192 + len(self.posts))
            reply = payload.get("reply", {}).get("in_reply_to_tweet_id")
            media = payload.get("media", {}).get("media_ids", [])
            self.posts.append(
                {"id": post_id, "text": payload["text"], "reply": reply, "media": media}
            )
            if mode == "drop":
                raise httpx.ReadTimeout("the answer was lost", request=request)
            data = {"id": post_id, "text": payload["text"], "edit_history_tweet_ids": [post_id]}
            return httpx.Response(201, json={"data": data})
        if request.method == "POST" and path == "/2/media/upload":
            # POST /2/media/upload (docs.x.com/x-api/media/media-upload): {"data": {"id",
            # "media_key", "size", "expires_after_secs"}}.
            self.uploads += 1
            data = {"id": f"171000000000000000{self.uploads}", "media_key": "3_1", "size": 40}
            return httpx.Response(200, json={"data": {**data, "expires_after_secs": 86400}})
        if request.method == "POST" and path == "/2/media/metadata":
            self.alt_texts.append(json.loads(request.content))
            return httpx.Response(200, json={"data": {"associated_metadata": True}})
        if path == "/2/users/me":
            return httpx.Response(200, json={"data": {"id": USER_ID, "username": "smm"}})
        if path == f"/2/users/{USER_ID}/tweets":
            fields = request.url.params.get("tweet.fields", "")
            items = []
            for post in reversed(self.posts):  # newest first
                item = {
                    "id": post["id"],
                    "text": post["text"],
                    "created_at": "2026-01-07T09:00:02.000Z",
                    "edit_history_tweet_ids": [post["id"]],
                }
                if post["reply"] and "referenced_tweets" in fields:
                    item["referenced_tweets"] = [{"type": "replied_to", "id": post["reply"]}]
                items.append(item)
            meta = {"result_count": len(items)}
            return httpx.Response(
                200, json={"data": items, "meta": meta} if items else {"meta": meta}
            )
        return httpx.Response(404, json={"title": "Not Found", "detail": path, "status": 404})

    def chain(self) -> list[tuple[str, str | None]]:
        """(text, the text of the post it replies to) per post, in order."""
        texts = {p["id"]: p["text"] for p in self.posts}
        return [(p["text"], texts.get(p["reply"])) for p in self.posts]


def attempt(
    fake: FakeX, notes: Path, call: str = "publish", post: OutgoingPost | None = None
) -> Any:
    """One attempt by a fresh adapter (as after a restart): only the notes carry over."""

    async def main() -> Any:
        async with mock_client(fake) as client:
            adapter = XAdapter(client, checkpoints=Checkpoints(notes))
            target = post or make_post()
            if call == "lookup":
                return await adapter.lookup(target, make_account())
            return await adapter.publish(target, make_account(), target.idempotency_key)

    return asyncio.run(main())


WHOLE_CHAIN = [
    ("Part one: a thread on launch days", None),
    ("Part two: the audience", "Part one: a thread on launch days"),
    ("Part three: the timing", "Part two: the audience"),
]


def test_a_thread_is_a_chain_of_replies_and_the_post_is_its_first_part(tmp_path: Path) -> None:
    fake = FakeX()
    published = attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN
    assert published == Published(
        fake.posts[0]["id"], url=f"https://x.com/i/web/status/{fake.posts[0]['id']}"
    )


def test_a_failure_at_part_2_of_3_resumes_from_part_2(tmp_path: Path) -> None:
    fake = FakeX(fail={2: "refuse"})
    with pytest.raises(RateLimited, match="thread part 2 of 3"):
        attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN[:1]

    published = attempt(fake, tmp_path)  # the retry, by a restarted daemon
    assert fake.chain() == WHOLE_CHAIN  # part 1 not posted again, none skipped
    assert published.remote_id == fake.posts[0]["id"]
    assert fake.creates == 4  # 1, 2 refused, then 2 and 3


def test_a_5xx_at_part_2_is_checked_in_the_timeline_before_part_2_goes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 503 on a create may come after X made the post: the part is not resent blindly.
    fake = FakeX(fail={2: "error"})
    with pytest.raises(OutcomeUnknown, match="thread part 2 of 3"):
        attempt(fake, tmp_path)
    # At once, the timeline may simply not show the part yet: X cannot tell.
    with pytest.raises(OutcomeUnknown, match="too recent"):
        attempt(fake, tmp_path)
    assert fake.creates == 2
    # Three minutes on, the timeline read to its end and no part 2: it is sent, then part 3.
    later = datetime.now(UTC) + timedelta(minutes=3)
    monkeypatch.setattr("smm_x.adapter.utcnow", lambda: later)
    attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN


def test_a_lost_answer_at_part_2_is_found_in_the_timeline_not_posted_again(
    tmp_path: Path,
) -> None:
    fake = FakeX(fail={2: "drop"})
    with pytest.raises(OutcomeUnknown, match="thread part 2 of 3"):
        attempt(fake, tmp_path)
    assert len(fake.posts) == 2  # part 2 was made; its answer never came

    # The unconfirmed post is looked up: part 2 is found, part 3 is not out yet, so the
    # lookup says "not published" and the post goes out again ...
    assert attempt(fake, tmp_path, "lookup") is None
    # ... which resumes with part 3, replying to the part 2 the timeline showed.
    published = attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN
    assert published.remote_id == fake.posts[0]["id"]


def test_a_lost_answer_then_a_resumed_publish_checks_the_timeline_first(tmp_path: Path) -> None:
    fake = FakeX(fail={3: "drop"})
    with pytest.raises(OutcomeUnknown, match="thread part 3 of 3"):
        attempt(fake, tmp_path)
    published = attempt(fake, tmp_path)  # resumed without a lookup in between
    assert fake.chain() == WHOLE_CHAIN  # part 3 found, not posted again
    assert fake.creates == 3
    assert published.remote_id == fake.posts[0]["id"]


def test_lookup_of_a_whole_chain_is_its_first_part(tmp_path: Path) -> None:
    fake = FakeX()
    attempt(fake, tmp_path)
    found = attempt(fake, tmp_path, "lookup")
    assert found is not None
    assert found.remote_id == fake.posts[0]["id"]


def test_lookup_without_the_record_does_not_claim_a_chain_it_cannot_see(tmp_path: Path) -> None:
    fake = FakeX()
    attempt(fake, tmp_path / "this-host")
    with pytest.raises(OutcomeUnknown, match="no record of its other parts"):
        attempt(fake, tmp_path / "another-host", "lookup")


def test_a_failure_to_record_before_a_part_sends_nothing(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.write_text("a file where the notes' directory should be")  # cannot be written
    fake = FakeX()
    with pytest.raises(Transient, match="cannot record the thread's progress"):
        attempt(fake, notes)
    assert fake.posts == []


def test_each_part_is_logged_as_it_goes_out(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        attempt(FakeX(), tmp_path)
    parts = [e["part"] for e in logs if e["event"] == "thread_part_published"]
    assert parts == [1, 2, 3]


def test_thread_parts_spend_the_monthly_cap_one_each() -> None:
    from scheduler.testing import offline_adapter

    adapter = offline_adapter(XAdapter)
    assert adapter.budget_cost(make_post(), make_account()) == {"x-posts": 3}


@pytest.mark.usefixtures("media_roots")
def test_a_part_uploads_its_own_images_with_alt_text(tmp_path: Path) -> None:
    image = tmp_path / "cup.png"
    image.write_bytes(PNG_SIGNATURE + b"\0" * 16)
    part = ThreadPart("Part two: the audience", (str(image),), (MediaMeta("A cup"),))
    post = make_post(options=PostOptions(thread=(part, ThreadPart(PARTS[1]))))
    fake = FakeX()
    attempt(fake, tmp_path / "notes", post=post)
    assert fake.chain() == WHOLE_CHAIN
    assert [p["media"] for p in fake.posts] == [[], ["1710000000000000001"], []]
    assert fake.alt_texts == [
        {"id": "1710000000000000001", "metadata": {"alt_text": {"text": "A cup"}}}
    ]
