"""LinkedIn video: the Videos API's multi-part upload (initializeUpload, a PUT per part,
finalizeUpload), processing polled until AVAILABLE, the post referencing the video URN; a
failed part resumes without resending acknowledged ones.

Shapes as Microsoft Learn documents the Videos API (LinkedIn Marketing, Community
Management): ``initializeUpload`` answers ``{"value": {"uploadUrlsExpireAt", "video",
"uploadInstructions": [{"uploadUrl", "firstByte", "lastByte"}], "uploadToken"}}``; each
part's PUT answers an ``etag`` header; ``finalizeUpload`` takes ``uploadedPartIds`` in part
order; ``GET /rest/videos/{urn}`` answers ``{"status": "WAITING_UPLOAD" | "PROCESSING" |
"AVAILABLE" | "PROCESSING_FAILED", ...}``. The post: ``content.media.id`` the video URN.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_support import mp4
from smm_linkedin import LinkedInAdapter
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
from scheduler.testing import Handler, account_with_secrets, mock_client, offline_adapter

pytestmark = pytest.mark.usefixtures("media_roots")

TOKEN = "AQV-secret-linkedin-token"
AUTHOR = "urn:li:organization:2414183"
VIDEO = "urn:li:video:C5F10AQGKQg_6y2a4sQ"
PART = 40 * 1024
SIZE = 100 * 1024
UPLOAD = "https://www.linkedin.com/dms-uploads/sp/v2/C5F10AQGKQg_6y2a4sQ"


def make_account() -> Account:
    return account_with_secrets(
        "brand-li", "linkedin", {"author": AUTHOR}, secrets={"access_token": TOKEN}
    )


def make_post(path: str, **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="v1",
        account="brand-li",
        content_type="instruction",
        text="Our launch, in a minute",
        media=(path,),
        idempotency_key="v1-key",
    )
    return replace(post, **changes)


class FakeLinkedIn:
    """api.linkedin.com/rest: videos (initialize, parts, finalize, status) and posts."""

    def __init__(self, *, processing: int = 1, fail_part: int | None = None) -> None:
        self.processing = processing
        self.fail_part = fail_part
        self.initialized = 0
        self.parts: dict[int, bytes] = {}
        self.puts = 0
        self.finalized: list[str] | None = None
        self.posts: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url.startswith(UPLOAD):
            self.puts += 1
            index = int(request.url.params["part"])
            if index == self.fail_part:
                self.fail_part = None
                return httpx.Response(500, json={"status": 500, "message": "Internal error"})
            self.parts[index] = request.content
            return httpx.Response(201, headers={"etag": f'"etag-{index}"'})
        path = request.url.path.removeprefix("/rest/")
        action = request.url.params.get("action")
        if request.method == "POST" and path == "videos" and action == "initializeUpload":
            self.initialized += 1
            ask = json.loads(request.content)["initializeUploadRequest"]
            size = ask["fileSizeBytes"]
            instructions = [
                {
                    "uploadUrl": f"{UPLOAD}?part={n}",
                    "firstByte": first,
                    "lastByte": min(first + PART, size) - 1,
                }
                for n, first in enumerate(range(0, size, PART))
            ]
            value = {
                "uploadUrlsExpireAt": 4102444800000,  # 2100-01-01
                "video": VIDEO,
                "uploadInstructions": instructions,
                "uploadToken": "",
            }
            return httpx.Response(200, json={"value": value})
        if request.method == "POST" and path == "videos" and action == "finalizeUpload":
            self.finalized = json.loads(request.content)["finalizeUploadRequest"]["uploadedPartIds"]
            return httpx.Response(200)
        if request.method == "GET" and path.startswith("videos/"):
            if self.finalized is None:
                state = "WAITING_UPLOAD"
            elif self.processing > 0:
                self.processing -= 1
                state = "PROCESSING"
            else:
                state = "AVAILABLE"
            return httpx.Response(200, json={"id": VIDEO, "owner": AUTHOR, "status": state})
        if request.method == "POST" and path == "posts":
            self.posts.append(json.loads(request.content))
            return httpx.Response(201, headers={"x-restli-id": "urn:li:share:7199"})
        return httpx.Response(404, json={"status": 404, "message": f"no {path}"})


def attempt(fake: Handler, notes: Path, post: OutgoingPost) -> Published:
    async def main() -> Published:
        async with mock_client(fake) as client:
            adapter = LinkedInAdapter(client, checkpoints=Checkpoints(notes))
            adapter.video_poll_interval = 0
            adapter.video_poll_attempts = 3
            return await adapter.publish(post, make_account(), post.idempotency_key)

    return asyncio.run(main())


def test_a_video_is_uploaded_in_parts_finalized_processed_then_posted(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)
    fake = FakeLinkedIn()
    with capture_logs() as logs:
        published = attempt(fake, tmp_path / "notes", make_post(path))
    data = Path(path).read_bytes()
    assert b"".join(fake.parts[i] for i in sorted(fake.parts)) == data
    assert fake.finalized == ['"etag-0"', '"etag-1"', '"etag-2"']
    ((post),) = fake.posts
    assert post["content"] == {"media": {"id": VIDEO}}
    assert published.remote_id == "urn:li:share:7199"
    sent = [e["sent"] for e in logs if e["event"] == "linkedin_video_upload"]
    assert sent == [PART, 2 * PART, SIZE]
    states = [e["state"] for e in logs if e["event"] == "linkedin_video_status"]
    assert states == ["PROCESSING", "AVAILABLE"]


def test_a_failed_part_resumes_without_resending_acknowledged_parts(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)
    fake = FakeLinkedIn(fail_part=1)
    with pytest.raises(Transient):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert sorted(fake.parts) == [0]
    attempt(fake, tmp_path / "notes", make_post(path))  # the retry, after a restart
    assert fake.initialized == 1  # the same upload, not a new one
    assert fake.puts == 4  # part 0 once, part 1 twice, part 2 once
    assert fake.finalized == ['"etag-0"', '"etag-1"', '"etag-2"']
    assert len(fake.posts) == 1


def test_a_video_still_processing_is_transient_and_the_retry_only_waits(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)
    fake = FakeLinkedIn(processing=5)
    with pytest.raises(Transient, match="still processing"):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.posts == []
    attempt(fake, tmp_path / "notes", make_post(path))
    assert (fake.initialized, fake.puts) == (1, 3)  # uploaded once
    assert len(fake.posts) == 1


def test_a_video_linkedin_cannot_process_is_rejected(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)

    class Failing(FakeLinkedIn):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and self.finalized is not None:
                return httpx.Response(200, json={"id": VIDEO, "status": "PROCESSING_FAILED"})
            return super().__call__(request)

    fake = Failing()
    with pytest.raises(Rejected, match="could not be processed"):
        attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.posts == []


def test_video_rules_are_checked_at_validation(tmp_path: Path) -> None:
    """Its size and length are checked by the core from the file (tests/test_plan_video.py);
    the adapter refuses what it can tell from the plan: a URL, alt text."""
    adapter = offline_adapter(LinkedInAdapter)
    account = make_account()
    assert adapter.validate(make_post(mp4(tmp_path, "ok.mp4", size=SIZE)), account) == []
    url = adapter.validate(make_post("https://cdn.example.com/a.mp4"), account)
    assert "uploaded from local files" in url[0].message
    ok = mp4(tmp_path, "alt.mp4", size=SIZE)
    (alt,) = adapter.media_meta_issues(make_post(ok, media_meta=(MediaMeta("A"),)), account)
    assert "alt text on images only" in alt.message


# --------------------------------------------------------------------------- settling


class Scripted(FakeLinkedIn):
    """FakeLinkedIn with one-off answers: ``once[(method, what)]`` is answered (or raised)
    the first time such a request comes; ``what`` is "part N", "finalize", "status" or
    "posts"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.once: dict[tuple[str, str], httpx.Response | Exception] = {}
        self.listed: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url.startswith(UPLOAD):
            what = f"part {request.url.params['part']}"
        elif request.url.params.get("action") == "finalizeUpload":
            what = "finalize"
        elif request.url.path.startswith("/rest/videos/"):
            what = "status"
        else:
            what = request.url.path.removeprefix("/rest/")
        scripted = self.once.pop((request.method, what), None)
        if isinstance(scripted, Exception):
            if what == "posts":
                super().__call__(request)  # LinkedIn made it; the answer is what is lost
            raise scripted
        if scripted is not None:
            return scripted
        if request.method == "GET" and what == "posts":
            return httpx.Response(200, json={"elements": self.listed})
        return super().__call__(request)


def look_up(fake: FakeLinkedIn, notes: Path, post: OutgoingPost) -> Published | None:
    async def main() -> Published | None:
        async with mock_client(fake) as client:
            adapter = LinkedInAdapter(client, checkpoints=Checkpoints(notes))
            return await adapter.lookup(post, make_account())

    return asyncio.run(main())


def test_an_upload_address_that_refuses_a_part_does_not_pause_the_account(
    tmp_path: Path,
) -> None:
    """A 401 or 403 from a pre-signed part address says the address is dead (expired, or the
    video is gone), not that the token is: the upload starts again at the next attempt."""
    path = mp4(tmp_path, size=SIZE)
    fake = Scripted()
    fake.once[("PUT", "part 1")] = httpx.Response(403, text="Forbidden")
    with pytest.raises(Transient, match="upload address"):
        attempt(fake, tmp_path / "notes", make_post(path))
    attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.initialized == 2  # the dead upload was left (invisible), a new one made
    assert len(fake.posts) == 1


def test_a_video_linkedin_no_longer_knows_is_uploaded_again(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)
    fake = Scripted(processing=5)
    with pytest.raises(Transient, match="still processing"):
        attempt(fake, tmp_path / "notes", make_post(path))
    fake.once[("GET", "status")] = httpx.Response(
        404, json={"status": 404, "message": "Video not found"}
    )
    with pytest.raises(Transient, match="no longer knows"):
        attempt(fake, tmp_path / "notes", make_post(path))
    fake.processing = 0
    attempt(fake, tmp_path / "notes", make_post(path))
    assert fake.initialized == 2
    assert len(fake.posts) == 1


def test_a_processing_failure_gives_linkedins_reason(tmp_path: Path) -> None:
    path = mp4(tmp_path, size=SIZE)
    fake = Scripted()
    failed = {"id": VIDEO, "status": "PROCESSING_FAILED"}
    failed["processingFailureReason"] = "Video format not supported"
    fake.once[("GET", "status")] = httpx.Response(200, json=failed)
    with pytest.raises(Rejected, match="Video format not supported"):
        attempt(fake, tmp_path / "notes", make_post(path))


def test_a_lost_answer_to_the_post_is_settled_by_the_video_it_carries(tmp_path: Path) -> None:
    """Without commentary to search by, the post is found by its video (content.media.id);
    a post with the same (empty) commentary but another video is not it."""
    path = mp4(tmp_path, size=SIZE)
    fake = Scripted()
    fake.once[("POST", "posts")] = httpx.ReadTimeout("no answer")
    post = make_post(path, text="", due_at=datetime(2030, 1, 7, 9, 0, tzinfo=UTC))
    with pytest.raises(OutcomeUnknown):
        attempt(fake, tmp_path / "notes", post)
    created = int(datetime(2030, 1, 7, 9, 0, 5, tzinfo=UTC).timestamp() * 1000)
    other = {"id": "urn:li:share:1", "commentary": "", "createdAt": created}
    other["content"] = {"media": {"id": "urn:li:video:someone-else"}}
    ours = {"id": "urn:li:share:7199", "commentary": "", "createdAt": created}
    ours["content"] = {"media": {"id": VIDEO}}
    fake.listed = [other, ours]
    found = look_up(fake, tmp_path / "notes", post)
    assert found is not None
    assert found.remote_id == "urn:li:share:7199"
    fake.listed = [other]  # reaching back past the due time without it: certainly not made
    fake.listed[0]["createdAt"] = created - 3_600_000
    assert look_up(fake, tmp_path / "notes", post) is None


def test_a_post_made_is_never_made_again(tmp_path: Path) -> None:
    """The post's URN joins the note: an attempt after a crash that lost it (the daemon died
    before recording the post) answers the same post, and lookup finds it without asking."""
    path = mp4(tmp_path, size=SIZE)
    fake = Scripted()
    post = make_post(path)
    first = attempt(fake, tmp_path / "notes", post)
    puts, initialized = fake.puts, fake.initialized
    assert attempt(fake, tmp_path / "notes", post) == first
    assert look_up(fake, tmp_path / "notes", post) == first
    assert (len(fake.posts), fake.puts, fake.initialized) == (1, puts, initialized)


# --------------------------------------------------------------------------- documented shapes

FIXTURES = Path(__file__).parent / "fixtures" / "linkedin"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_the_documented_exchange_goes_end_to_end(tmp_path: Path) -> None:
    """LinkedIn's documented answers (tests/fixtures/linkedin), verbatim: two parts of
    4 MiB and 1 MiB for a 5 MiB file, the ETag header, the statuses, the post's URN."""
    init = fixture("initialize_upload.json")
    instructions = init["value"]["uploadInstructions"]
    urls = [part["uploadUrl"] for part in instructions]
    etag = (FIXTURES / "part_upload.txt").read_text().split("etag: ")[1].split()[0]
    videos = fixture("video.json")
    states = ["PROCESSING", "AVAILABLE"]
    post = fixture("post_with_video.json")
    size = instructions[-1]["lastByte"] + 1
    path = tmp_path / "offsite.mp4"
    path.write_bytes(Path(mp4(tmp_path, size=SIZE, seconds=41)).read_bytes()[:4096])
    with path.open("r+b") as f:
        f.truncate(size)  # the rest reads as zeros: only the head is sniffed
    parts: dict[int, bytes] = {}
    sent: dict[str, Any] = {}

    def linkedin(request: httpx.Request) -> httpx.Response:
        if str(request.url) in urls:
            index = urls.index(str(request.url))
            parts[index] = request.content
            return httpx.Response(200, headers={"etag": f"{etag}.{index}"})
        action = request.url.params.get("action")
        if action == "initializeUpload":
            sent["init"] = json.loads(request.content)
            return httpx.Response(200, json=init)
        if action == "finalizeUpload":
            sent["finalize"] = json.loads(request.content)
            return httpx.Response(200)
        if request.url.path.startswith("/rest/videos/"):
            return httpx.Response(200, json=videos[states.pop(0)])
        if request.url.path == "/rest/posts":
            sent["post"] = json.loads(request.content)
            return httpx.Response(201, headers=post["response_headers"])
        return httpx.Response(404, json={"status": 404, "message": "unexpected"})

    text = post["request"]["commentary"]
    published = attempt(linkedin, tmp_path / "notes", make_post(str(path), text=text))
    assert published.remote_id == post["response_headers"]["x-restli-id"]
    assert sent["init"]["initializeUploadRequest"]["fileSizeBytes"] == size
    data = path.read_bytes()
    assert parts == {0: data[:4194304], 1: data[4194304:]}
    assert sent["finalize"] == {
        "finalizeUploadRequest": {
            "video": init["value"]["video"],
            "uploadToken": "",
            "uploadedPartIds": [f"{etag}.0", f"{etag}.1"],
        }
    }
    assert sent["post"] == post["request"]
