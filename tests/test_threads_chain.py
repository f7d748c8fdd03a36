"""Threads reply chains: each part a container with ``reply_to_id`` published in turn, each
a recorded step; a chain failing at part 2 of 3 resumes from part 2, never publishing a part
twice.

Shapes as the Threads API documents them:
- POST /{threads-user-id}/threads with ``media_type``, ``text``, ``reply_to_id``, answered
  ``{"id": <container>}`` (developers.facebook.com/docs/threads/reference/publishing,
  .../retrieve-and-manage-replies/create-replies);
- POST /{threads-user-id}/threads_publish with ``creation_id``, answered ``{"id": <media>}``;
- GET /{container-id}?fields=status,error_message: ``IN_PROGRESS``, ``FINISHED``,
  ``PUBLISHED``, ``ERROR``, ``EXPIRED``;
- GET /{media-id}/replies?fields=id,text,timestamp,is_reply_owned_by_me: ``{"data": [...],
  "paging": {"cursors": ...}}`` (.../replies-and-conversations);
- errors Graph-shaped: ``{"error": {"message", "type", "code", "is_transient", "fbtrace_id"}}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_support import form
from smm_meta import ThreadsAdapter

from scheduler.adapter import (
    Account,
    OutcomeUnknown,
    OutgoingPost,
    PostOptions,
    Published,
    ThreadPart,
    Transient,
)
from scheduler.checkpoints import Checkpoints
from scheduler.testing import account_with_secrets, mock_client

TOKEN = "THQVJ-secret-threads-token"
USER = "25749843731371234"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
PARTS = ("Part two: mugs", "Part three: beans")


def make_account() -> Account:
    return account_with_secrets(
        "brand-threads", "threads", {"threads_user_id": USER}, secrets={"access_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="t1",
        account="brand-threads",
        content_type="laugh",
        text="Part one: coffee",
        idempotency_key="t1-key",
        due_at=DUE,
        options=PostOptions(thread=PARTS),
    )
    return replace(post, **changes)


def graph_error(status: int, code: int, message: str, transient: bool) -> httpx.Response:
    error = {"message": message, "type": "THApiException", "code": code}
    return httpx.Response(
        status, json={"error": {**error, "is_transient": transient, "fbtrace_id": "AbC"}}
    )


class FakeThreads:
    """graph.threads.net with containers, publishing, replies, and failures on demand.

    ``fail[n]`` answers the n-th ``threads_publish`` with "refuse" (a transient Graph error:
    nothing published) or "drop" (published, the answer lost).
    """

    def __init__(self, fail: dict[int, str] | None = None) -> None:
        self.fail = dict(fail or {})
        self.publishes = 0
        self.containers: dict[str, dict[str, str]] = {}
        self.status: dict[str, str] = {}
        #: Published media: id -> (text, the media id it replies to).
        self.media: dict[str, tuple[str, str | None]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1.0/")
        if path == f"{USER}/threads_publishing_limit":
            config = {"quota_total": 250, "quota_duration": 86400}
            return httpx.Response(200, json={"data": [{"quota_usage": 0, "config": config}]})
        if request.method == "POST" and path == f"{USER}/threads":
            container = str(17889615691921648 + len(self.containers))
            self.containers[container] = form(request)
            self.status[container] = "FINISHED"
            return httpx.Response(200, json={"id": container})
        if request.method == "POST" and path == f"{USER}/threads_publish":
            self.publishes += 1
            mode = self.fail.pop(self.publishes, None)
            if mode == "refuse":
                return graph_error(500, 2, "Service temporarily unavailable", True)
            container = form(request)["creation_id"]
            params = self.containers[container]
            media_id = str(18050206876123456 + len(self.media))
            self.media[media_id] = (params["text"], params.get("reply_to_id"))
            self.status[container] = "PUBLISHED"
            if mode == "drop":
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return httpx.Response(200, json={"id": media_id})
        if request.method == "GET" and path == f"{USER}/threads":
            items = [
                {
                    "id": media_id,
                    "text": text,
                    "timestamp": "2030-01-07T09:00:01+0000",
                    "permalink": f"https://www.threads.net/@brand/post/{media_id}",
                }
                for media_id, (text, parent) in reversed(self.media.items())
                if parent is None
            ]
            return httpx.Response(200, json={"data": items})
        if request.method == "GET" and path.endswith("/replies"):
            parent = path.removesuffix("/replies")
            data = [
                {
                    "id": media_id,
                    "text": text,
                    "timestamp": "2030-01-07T09:00:02+0000",
                    "is_reply_owned_by_me": True,
                }
                for media_id, (text, replied) in self.media.items()
                if replied == parent
            ]
            cursors = {"before": "BEFORE_CURSOR", "after": "AFTER_CURSOR"}
            return httpx.Response(200, json={"data": data, "paging": {"cursors": cursors}})
        if path in self.status:
            return httpx.Response(200, json={"status": self.status[path], "id": path})
        if path in self.media:
            link = f"https://www.threads.net/@brand/post/{path}"
            return httpx.Response(200, json={"permalink": link, "id": path})
        return graph_error(400, 100, f"Unsupported request {path}", False)

    def chain(self) -> list[tuple[str, str | None]]:
        """(text, the text of the post it replies to) per published post, in order."""
        return [
            (text, self.media[parent][0] if parent else None)
            for text, parent in self.media.values()
        ]


def attempt(fake: FakeThreads, notes: Path, call: str = "publish") -> Any:
    """One attempt by a fresh adapter (as after a restart): only the notes carry over."""

    async def main() -> Any:
        async with mock_client(fake) as client:
            adapter = ThreadsAdapter(client, checkpoints=Checkpoints(notes))
            adapter.poll_interval = 0
            post = make_post()
            if call == "lookup":
                return await adapter.lookup(post, make_account())
            return await adapter.publish(post, make_account(), post.idempotency_key)

    return asyncio.run(main())


WHOLE_CHAIN = [
    ("Part one: coffee", None),
    ("Part two: mugs", "Part one: coffee"),
    ("Part three: beans", "Part two: mugs"),
]


def test_a_thread_is_containers_replying_to_the_part_before(tmp_path: Path) -> None:
    fake = FakeThreads()
    published = attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN
    first_id, second_id, _ = fake.media
    first, second, third = fake.containers.values()
    assert "reply_to_id" not in first
    assert (second["media_type"], second["reply_to_id"]) == ("TEXT", first_id)
    assert third["reply_to_id"] == second_id
    assert published == Published(first_id, url=f"https://www.threads.net/@brand/post/{first_id}")


def test_a_failure_at_part_2_of_3_resumes_from_part_2(tmp_path: Path) -> None:
    fake = FakeThreads(fail={2: "refuse"})
    with pytest.raises(Transient, match="thread part 2 of 3"):
        attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN[:1]

    published = attempt(fake, tmp_path)  # the retry, by a restarted daemon
    assert fake.chain() == WHOLE_CHAIN  # part 1 not published again, none skipped
    assert published.remote_id == next(iter(fake.media))


def test_a_lost_answer_at_part_2_is_found_among_the_replies(tmp_path: Path) -> None:
    fake = FakeThreads(fail={2: "drop"})
    with pytest.raises(OutcomeUnknown, match="thread part 2 of 3"):
        attempt(fake, tmp_path)
    assert len(fake.media) == 2

    # Looked up: the container says PUBLISHED, the part is found among the replies of part
    # 1; part 3 is not out, so the post is published again, which resumes with part 3.
    assert attempt(fake, tmp_path, "lookup") is None
    attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN
    assert fake.publishes == 3


def test_a_lost_answer_on_the_first_part_is_found_among_the_threads(tmp_path: Path) -> None:
    fake = FakeThreads(fail={1: "drop"})
    with pytest.raises(OutcomeUnknown):
        attempt(fake, tmp_path)
    published = attempt(fake, tmp_path)
    assert fake.chain() == WHOLE_CHAIN
    assert fake.publishes == 3  # part 1 once
    assert published.remote_id == next(iter(fake.media))


def test_lookup_of_a_whole_chain_is_its_first_part(tmp_path: Path) -> None:
    fake = FakeThreads()
    attempt(fake, tmp_path)
    found = attempt(fake, tmp_path, "lookup")
    assert found is not None
    assert found.remote_id == next(iter(fake.media))


def test_lookup_without_the_record_does_not_claim_the_chain(tmp_path: Path) -> None:
    fake = FakeThreads()
    attempt(fake, tmp_path / "this-host")
    with pytest.raises(OutcomeUnknown, match="no record of its other parts"):
        attempt(fake, tmp_path / "another-host", "lookup")


def test_a_part_with_an_image_is_an_image_container_replying_to_the_part_before(
    tmp_path: Path,
) -> None:
    fake = FakeThreads()
    image = ThreadPart("Part two: mugs", ("https://cdn.example.com/mug.jpg",))
    post = make_post(options=PostOptions(thread=(image, ThreadPart(PARTS[1]))))

    async def main() -> None:
        async with mock_client(fake) as client:
            adapter = ThreadsAdapter(client, checkpoints=Checkpoints(tmp_path))
            adapter.poll_interval = 0
            await adapter.publish(post, make_account(), post.idempotency_key)

    asyncio.run(main())
    assert fake.chain() == WHOLE_CHAIN
    first_id = next(iter(fake.media))
    second = list(fake.containers.values())[1]
    assert second == {
        "media_type": "IMAGE",
        "image_url": "https://cdn.example.com/mug.jpg",
        "text": "Part two: mugs",
        "reply_to_id": first_id,
        "access_token": TOKEN,
    }
