"""Facebook Page videos: the chunked upload (start, transfer, finish) resumed from the last
acknowledged chunk after a failure or a restart, finish never sent twice, processing followed.

Shapes as the Page Videos reference and Meta's own SDKs (facebook-python-business-sdk
``video_uploader.py``, php-graph-sdk ``FacebookResumableUploader``) send and read them:
``upload_phase=start`` with ``file_size`` answers ``{"upload_session_id", "video_id",
"start_offset", "end_offset"}`` (offsets as strings); ``upload_phase=transfer`` with
``upload_session_id``, ``start_offset`` and the multipart ``video_file_chunk`` answers the next
``{"start_offset", "end_offset"}``, equal when the file is whole; a chunk at an offset Graph
did not expect is error subcode 1363037 with the offsets it wants in ``error_data``;
``upload_phase=finish`` answers ``{"success": true}``; ``GET /{video-id}?fields=status``
answers ``{"status": {"video_status": "processing" | "ready" | "error", ...}}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_support import form, mp4
from smm_meta import FacebookAdapter
from structlog.testing import capture_logs

from scheduler.adapter import (
    Account,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    Rejected,
    Transient,
)
from scheduler.checkpoints import Checkpoints
from scheduler.testing import account_with_secrets, mock_client, offline_adapter

pytestmark = pytest.mark.usefixtures("media_roots")

TOKEN = "EAAB-secret-page-token"
PAGE = "104582671234567"
VIDEO = "1234567890123456"
CHUNK = 1000


def make_account() -> Account:
    return account_with_secrets(
        "brand-fb", "facebook", {"page_id": PAGE}, secrets={"page_access_token": TOKEN}
    )


def make_post(path: str, **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="v1",
        account="brand-fb",
        content_type="announcement",
        text="Spring, in 30 seconds",
        media=(path,),
        idempotency_key="v1-key",
    )
    return replace(post, **changes)


def multipart_field(request: httpx.Request, name: str) -> bytes | None:
    """A form field's value, url-encoded or multipart (the whole part body for a file)."""
    kind = request.headers["content-type"]
    if not kind.startswith("multipart/"):
        value = form(request).get(name)
        return None if value is None else value.encode()
    marker = f'name="{name}"'.encode()
    for part in request.content.split(b"--" + kind.split("boundary=")[-1].encode()):
        if marker in part:
            return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    return None


class FakeVideos:
    """POST /{page}/videos in its three phases, and the video's status.

    ``drop`` names phases ("transfer2", "finish") whose request Facebook takes but whose
    answer is lost; ``refuse`` names phases answered with a transient Graph error.
    """

    def __init__(self, size: int, *, drop: set[str] = frozenset(), refuse: set[str] = frozenset()):
        self.size = size
        self.drop = set(drop)
        self.refuse = set(refuse)
        self.received = b""
        self.transfers = 0
        self.finished = 0
        self.description: str | None = None
        self.status_checks = 0

    def offsets(self) -> dict[str, str]:
        start = len(self.received)
        return {"start_offset": str(start), "end_offset": str(min(start + CHUNK, self.size))}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v21.0/")
        if request.method == "GET" and path == VIDEO:
            self.status_checks += 1
            state = "processing" if self.status_checks < 2 else "ready"
            status = {"video_status": state, "processing_progress": 50 * self.status_checks}
            if not self.finished:
                status = {"video_status": "upload_complete", "processing_progress": 0}
            return httpx.Response(200, json={"status": status, "id": VIDEO})
        assert (request.method, path) == ("POST", f"{PAGE}/videos")
        phase = (multipart_field(request, "upload_phase") or b"").decode()
        if phase == "start":
            session = {"upload_session_id": "5566778899", "video_id": VIDEO}
            return httpx.Response(200, json={**session, **self.offsets()})
        if phase == "transfer":
            self.transfers += 1
            label = f"transfer{self.transfers}"
            if label in self.refuse:
                error = {"message": "Please retry", "code": 2, "is_transient": True}
                return httpx.Response(500, json={"error": error})
            start = int(multipart_field(request, "start_offset") or b"-1")
            if start != len(self.received):
                error = {
                    "message": "Your video upload timed out before it could be completed.",
                    "type": "OAuthException",
                    "code": 6000,
                    "error_subcode": 1363037,
                    "error_data": {
                        "start_offset": self.offsets()["start_offset"],
                        "end_offset": self.offsets()["end_offset"],
                    },
                }
                return httpx.Response(400, json={"error": error})
            self.received += multipart_field(request, "video_file_chunk") or b""
            if label in self.drop:
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return httpx.Response(200, json=self.offsets())
        if phase == "finish":
            self.finished += 1
            self.description = (multipart_field(request, "description") or b"").decode()
            if "finish" in self.drop:
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return httpx.Response(200, json={"success": True})
        raise AssertionError(f"unexpected phase {phase!r} {request.content[:300]!r}")


def attempt(fake: FakeVideos, notes: Path, post: OutgoingPost, call: str = "publish") -> Any:
    """One attempt by a fresh adapter (as after a restart): only the notes carry over."""

    async def main() -> Any:
        async with mock_client(fake) as client:
            adapter = FacebookAdapter(client, checkpoints=Checkpoints(notes))
            adapter.video_poll_interval = 0
            if call == "lookup":
                return await adapter.lookup(post, make_account())
            return await adapter.publish(post, make_account(), post.idempotency_key)

    return asyncio.run(main())


def test_a_video_is_uploaded_in_chunks_then_finished_and_followed(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=2500)
    fake = FakeVideos(2500)
    with capture_logs() as logs:
        published = attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.received == Path(path).read_bytes()
    assert fake.transfers == 3  # 1000 + 1000 + 500 bytes, as Facebook asked
    assert fake.finished == 1
    assert fake.description == "Spring, in 30 seconds"
    assert published == Published(VIDEO, url=f"https://www.facebook.com/{PAGE}/videos/{VIDEO}")
    progress = [e["sent"] for e in logs if e["event"] == "facebook_video_upload"]
    assert progress == [1000, 2000, 2500]
    states = [e["state"] for e in logs if e["event"] == "facebook_video_status"]
    assert states == ["processing", "ready"]


def test_a_failed_chunk_resumes_from_the_last_acknowledged_one(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=2500)
    fake = FakeVideos(2500, refuse={"transfer2"})
    with pytest.raises(Transient):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert len(fake.received) == 1000
    attempt(fake, tmp_path / "notes", make_post(path))  # the retry, after a restart
    assert fake.received == Path(path).read_bytes()  # chunk 1 not sent again
    assert fake.transfers == 4
    assert fake.finished == 1


def test_a_lost_chunk_answer_follows_the_offsets_facebook_wants(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=2500)
    fake = FakeVideos(2500, drop={"transfer2"})
    with pytest.raises(Transient):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert len(fake.received) == 2000  # Facebook has chunk 2; the note still says chunk 2
    attempt(fake, tmp_path / "notes", make_post(path))
    # Chunk 2 again is refused with 1363037 and the offsets of chunk 3, which is sent next.
    assert fake.received == Path(path).read_bytes()
    assert fake.finished == 1


def test_a_lost_finish_answer_is_settled_by_the_videos_status_not_sent_again(
    tmp_path: Path,
) -> None:
    path = mp4(tmp_path, size=2500)
    fake = FakeVideos(2500, drop={"finish"})
    with pytest.raises(OutcomeUnknown):
        attempt(fake, tmp_path / "notes", make_post(path))
    found = attempt(fake, tmp_path / "notes", make_post(path), "lookup")
    assert found == Published(VIDEO, url=f"https://www.facebook.com/{PAGE}/videos/{VIDEO}")
    published = attempt(fake, tmp_path / "notes", make_post(path))
    assert published.remote_id == VIDEO
    assert fake.finished == 1  # never finished (published) twice


def test_a_video_url_is_one_request_facebook_fetches(tmp_path: Path) -> None:
    sent: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"status": {"video_status": "ready"}, "id": VIDEO})
        sent.append(form(request))
        return httpx.Response(200, json={"id": VIDEO})

    post = make_post("https://cdn.example.com/spring.mp4")

    async def main() -> Published:
        async with mock_client(handler) as client:
            adapter = FacebookAdapter(client, checkpoints=Checkpoints(tmp_path))
            return await adapter.publish(post, make_account(), post.idempotency_key)

    assert asyncio.run(main()).remote_id == VIDEO
    assert sent == [
        {
            "file_url": "https://cdn.example.com/spring.mp4",
            "description": "Spring, in 30 seconds",
            "access_token": TOKEN,
        }
    ]


def test_video_rules_are_checked_at_validation(tmp_path: Path) -> None:
    adapter = offline_adapter(FacebookAdapter)
    ok = mp4(tmp_path, "ok.mp4", seconds=60)
    assert adapter.validate(make_post(ok), make_account()) == []
    # Size and length are checked by the core from the file (tests/test_plan_video.py).
    mixed = make_post(ok, media=(ok, "https://cdn.example.com/a.jpg"))
    assert "goes out alone" in adapter.validate(mixed, make_account())[0].message
    (webm,) = adapter.validate(make_post("https://cdn.example.com/a.webm"), make_account())
    assert "MP4 or MOV" in webm.message
    described = make_post(ok, media_meta=(MediaMeta("A coat"),))
    (alt,) = adapter.media_meta_issues(described, make_account())
    assert "alt text on photos only" in alt.message


def test_a_video_facebook_cannot_process_is_refused(tmp_path: Path) -> None:
    """``video_status`` ``error`` after ``finish``: the post is refused, not retried."""
    path = mp4(tmp_path, size=2500)

    class Failing(FakeVideos):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and self.finished:
                self.status_checks += 1
                status = {"video_status": "error", "processing_progress": 0}
                return httpx.Response(200, json={"status": status, "id": VIDEO})
            return super().__call__(request)

    fake = Failing(2500)
    with capture_logs() as logs, pytest.raises(Rejected, match="could not be processed"):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.finished == 1
    assert [e["state"] for e in logs if e["event"] == "facebook_video_status"] == ["error"]


class ExpiringSession(FakeVideos):
    """Refuses transfers of the first session once ``expired`` (not 1363037: the session is
    gone), as after an outage longer than the session lives."""

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.starts = 0
        self.expired = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return super().__call__(request)
        phase = (multipart_field(request, "upload_phase") or b"").decode()
        if phase == "start":
            self.starts += 1
            self.received = b""
            answer = super().__call__(request)
            body = answer.json()
            body["upload_session_id"] = f"session-{self.starts}"
            return httpx.Response(200, json=body)
        session = (multipart_field(request, "upload_session_id") or b"").decode()
        if phase == "transfer" and self.expired and session == "session-1":
            self.transfers += 1
            error = {
                "message": "The upload session has expired",
                "type": "OAuthException",
                "code": 6000,
                "error_subcode": 1363030,
            }
            return httpx.Response(400, json={"error": error})
        return super().__call__(request)


def test_a_noted_session_facebook_refuses_later_is_given_up_for_a_new_one(
    tmp_path: Path,
) -> None:
    path = mp4(tmp_path, size=2500)
    fake = ExpiringSession(2500, refuse={"transfer2"})
    with pytest.raises(Transient):
        attempt(fake, tmp_path / "notes", make_post(path))
    fake.expired = True  # the daemon was down for longer than the session lives
    with pytest.raises(Transient, match="starts a new one"):
        attempt(fake, tmp_path / "notes", make_post(path))
    published = attempt(fake, tmp_path / "notes", make_post(path))
    assert published.remote_id == VIDEO
    assert (fake.starts, fake.finished) == (2, 1)
    assert fake.received == Path(path).read_bytes()


def test_a_fresh_session_facebook_refuses_is_a_refusal(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=2500)
    fake = ExpiringSession(2500)
    fake.expired = True
    with pytest.raises(Rejected, match="upload session has expired"):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert (fake.starts, fake.finished) == (1, 0)
