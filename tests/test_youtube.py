"""YouTube adapter: resumable upload (resumed from the server's offset, never restarted, even
after a SIGKILL), the video resource, thumbnail, processing, errors, metrics, lookup."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import smm_youtube
from adapter_support import REPO, network_page, options_read_by, registered_adapters, undocumented
from smm_youtube import YouTubeAdapter
from smm_youtube.errors import quota_reset
from youtube_fake import FakeYouTube, fixture

from scheduler import comments
from scheduler.adapter import (
    Account,
    AuthExpired,
    OutcomeUnknown,
    OutgoingPost,
    PostOptions,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.budgets import Ledger
from scheduler.checkpoints import Checkpoints
from scheduler.testing import (
    AdapterContract,
    Handler,
    account_with_secrets,
    offline_adapter,
    run_adapter,
)

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
TOKEN = "ya29.secret-youtube-token"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
KiB = 1024
ERRORS: dict[str, dict[str, Any]] = fixture("errors.json")


def make_account(**options: Any) -> Account:
    settings = {"chunk_mib": 0.25, "processing_interval": 0, **options}
    return account_with_secrets("brand-yt", "youtube", settings, secrets={"access_token": TOKEN})


def video_file(tmp_path: Path, size: int = 600 * KiB, name: str = "clip.mp4") -> str:
    path = tmp_path / name
    # An MP4's first box (the type is told by content), then a pattern that shows misplaced
    # chunks.
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    path.write_bytes(head + bytes(i % 251 for i in range(len(head), size)))
    return str(path)


def make_post(media: tuple[str, ...], **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="y1",
        account="brand-yt",
        content_type="instruction",
        text="Five checklists for the new year\nWhat we use every week.",
        link="https://blog.example.com/checklists",
        tags=("checklist", "#productivity"),
        media=media,
        idempotency_key="y1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def error(name: str) -> httpx.Response:
    entry = ERRORS[name]
    return httpx.Response(entry["status"], json=entry["body"])


def run(
    handler: Handler, checkpoints: Checkpoints, call: Callable[[YouTubeAdapter], Awaitable[T]]
) -> T:
    return run_adapter(
        lambda client: YouTubeAdapter(client, checkpoints, ledger_for(checkpoints)), handler, call
    )


def ledger_for(notes: Checkpoints) -> Ledger:
    """The quota ledger beside a test's checkpoints."""
    assert notes.directory is not None
    return Ledger(notes.directory.parent / "budgets")


@pytest.fixture
def notes(tmp_path: Path) -> Checkpoints:
    return Checkpoints(tmp_path / "checkpoints")


def publish(
    fake: Handler, notes: Checkpoints, post: OutgoingPost, account: Account | None = None
) -> Any:
    account = account or make_account()
    return run(fake, notes, lambda a: a.publish(post, account, post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestYouTubeContract(AdapterContract):
    adapter_class = YouTubeAdapter
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    @pytest.fixture(autouse=True)
    def _scratch(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def make_post(self) -> OutgoingPost:
        return make_post((video_file(self.tmp, 300 * KiB),))

    def make_adapter(self, client: httpx.AsyncClient) -> YouTubeAdapter:
        return YouTubeAdapter(client, Checkpoints(self.tmp / "notes"), Ledger(self.tmp / "budgets"))

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeYouTube().handler
        name = {
            "rate_limited": "quotaExceeded",
            "server_error": "backendError",
            "auth_expired": "authError",
            "rejected": "invalidTitle",
        }[scenario]
        return lambda request: error(name)


# --------------------------------------------------------------------------- upload


def test_the_session_carries_the_video_resource_and_the_file_goes_in_chunks(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = make_post((video_file(tmp_path),))
    result = publish(fake.handler, notes, post, make_account(privacy="unlisted", category_id=27))
    (init,) = fake.inits
    assert init["query"] == {
        "uploadType": "resumable",
        "part": "snippet,status",
        "notifySubscribers": "true",
    }
    assert init["headers"]["x-upload-content-length"] == str(600 * KiB)
    assert init["headers"]["x-upload-content-type"] == "video/mp4"
    assert init["resource"] == {
        "snippet": {
            "title": "Five checklists for the new year",
            "description": "What we use every week.\n\nhttps://blog.example.com/checklists",
            "categoryId": "27",
            "tags": ["checklist", "productivity"],
        },
        "status": {
            "privacyStatus": "unlisted",
            "selfDeclaredMadeForKids": False,
            "embeddable": True,
        },
    }
    total = 600 * KiB
    assert fake.ranges == [
        f"bytes 0-{256 * KiB - 1}/{total}",
        f"bytes {256 * KiB}-{512 * KiB - 1}/{total}",
        f"bytes {512 * KiB}-{total - 1}/{total}",
    ]
    (video_id,) = fake.videos
    assert result == Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")
    assert fake.sessions[next(iter(fake.sessions))]["data"] == Path(post.media[0]).read_bytes()


def test_a_thumbnail_is_set_and_processing_is_followed_until_processed(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    thumb = tmp_path / "cover.png"
    thumb.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    publish(fake.handler, notes, make_post((video_file(tmp_path), str(thumb))))
    (video_id,) = fake.videos
    assert fake.thumbnails == {video_id: thumb.read_bytes()}
    polls = [r for r in fake.requests if r == ("GET", "/youtube/v3/videos")]
    assert len(polls) == 2  # "processing", then "processed"


def test_a_video_youtube_rejects_in_processing_is_rejected(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    fake.processing = ["rejected"]
    post = make_post((video_file(tmp_path),))
    with pytest.raises(Rejected, match="duplicate"):
        publish(fake.handler, notes, post)
    # A retry a person asks for uploads again rather than report the rejected video.
    assert notes.load("youtube", post.idempotency_key) is None


def test_a_dropped_chunk_is_resumed_from_the_servers_offset_in_the_same_call(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    drops = {"left": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        content_range = request.headers.get("content-range", "")
        if content_range.startswith(f"bytes {256 * KiB}-") and drops["left"]:
            drops["left"] -= 1
            # The server keeps half of the chunk, then the connection drops.
            body = request.read()[: 128 * KiB]
            session = fake.sessions[str(request.url)]
            session["data"] += body
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return fake.handler(request)

    publish(handler, notes, make_post((video_file(tmp_path),)))
    total = 600 * KiB
    # The dropped chunk never reached the fake's log; the status query and the resumed
    # chunk, from the byte after what the server kept, did.
    assert fake.ranges == [
        f"bytes 0-{256 * KiB - 1}/{total}",
        f"bytes */{total}",
        f"bytes {384 * KiB}-{total - 1}/{total}",
    ]
    assert len(fake.videos) == 1
    assert len(fake.inits) == 1


def test_an_interrupted_attempt_is_resumed_by_the_next_one_not_restarted(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = make_post((video_file(tmp_path),))
    cut = {"after": 1}

    def failing(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not cut["after"]:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "PUT":
            cut["after"] -= 1
        return fake.handler(request)

    with pytest.raises(Transient):
        publish(failing, notes, post)
    assert fake.videos == {}
    publish(fake.handler, notes, post)
    total = 600 * KiB
    assert fake.ranges == [
        f"bytes 0-{256 * KiB - 1}/{total}",
        f"bytes */{total}",
        f"bytes {256 * KiB}-{512 * KiB - 1}/{total}",
        f"bytes {512 * KiB}-{total - 1}/{total}",
    ]
    assert len(fake.inits) == 1
    assert len(fake.videos) == 1


def test_a_cancelled_attempt_is_settled_by_lookup_and_resumed(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = make_post((video_file(tmp_path),))
    account = make_account()
    puts = {"n": 0}

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            puts["n"] += 1
            if puts["n"] == 2:
                await asyncio.sleep(60)  # the daemon's publish deadline cancels this
        return fake.handler(request)

    async def scenario() -> tuple[Published | None, Published]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
            adapter = YouTubeAdapter(client, notes, ledger_for(notes))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(adapter.publish(post, account, post.idempotency_key), 0.5)
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            adapter = YouTubeAdapter(
                client, notes, ledger_for(notes)
            )  # a new daemon: only the note survives
            found = await adapter.lookup(post, account)
            return found, await adapter.publish(post, account, post.idempotency_key)

    found, published = asyncio.run(scenario())
    assert found is None  # the session says incomplete: no video exists
    assert len(fake.inits) == 1
    assert len(fake.videos) == 1
    assert published.remote_id in fake.videos


def test_lookup_finds_the_video_an_attempt_completed_without_hearing_back(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = make_post((video_file(tmp_path, 200 * KiB),))

    def lost_answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not request.headers["content-range"].startswith("bytes */"):
            fake.handler(request)  # the video is made...
            raise httpx.ReadTimeout("timed out", request=request)  # ...the answer is lost
        if request.method == "PUT":
            raise httpx.ReadTimeout("timed out", request=request)
        return fake.handler(request)

    with pytest.raises(OutcomeUnknown):
        publish(lost_answer, notes, post)
    found = run(fake.handler, notes, lambda a: a.lookup(post, make_account()))
    (video_id,) = fake.videos
    assert found == Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")
    again = publish(fake.handler, notes, post)  # a resend after all: still one video
    assert again.remote_id == video_id
    assert len(fake.videos) == 1


def test_without_a_note_lookup_searches_the_uploads_playlist(notes: Checkpoints) -> None:
    fake = FakeYouTube()
    post = make_post(("/srv/clip.mp4",), text="Five checklists for the new year")
    fake.videos["Ks-_Mh1QhMc"] = fixture("video_resource.json")
    found = run(fake.handler, notes, lambda a: a.lookup(post, make_account()))
    assert found == Published("Ks-_Mh1QhMc", url="https://www.youtube.com/watch?v=Ks-_Mh1QhMc")
    later = replace(post, due_at=DUE + timedelta(days=30))
    assert run(fake.handler, notes, lambda a: a.lookup(later, make_account())) is None


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import httpx
    from smm_youtube import YouTubeAdapter
    from scheduler import media
    from scheduler.adapter import Account, OutgoingPost
    from scheduler.checkpoints import Checkpoints
    from scheduler.config import CredentialRef

    base, notes, video = sys.argv[1:4]
    account = Account(
        "brand-yt", "youtube", "UTC",
        {"api_base": base, "chunk_mib": 0.25, "processing_checks": 0},
        {"access_token": CredentialRef("env", "YT_TOKEN")},
    )
    post = OutgoingPost(
        key="y1", account="brand-yt", content_type="instruction",
        text="Five checklists for the new year", media=(video,), idempotency_key="y1-key",
    )

    async def main():
        async with httpx.AsyncClient(timeout=30) as client:
            await YouTubeAdapter(client, Checkpoints(Path(notes))).publish(
                post, account, "y1-key"
            )

    # As the daemon does: the video's folder is the post's media root.
    with media.using(media.MediaPolicy((Path(video).resolve().parent,))):
        asyncio.run(main())
    """
)


def test_a_sigkill_during_an_upload_leaves_one_video_after_the_next_attempt(
    tmp_path: Path,
) -> None:
    fake = FakeYouTube()
    second_chunk = threading.Event()
    release = threading.Event()

    def hold_second_chunk(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if method == "PUT" and headers["content-range"].startswith(f"bytes {256 * KiB}-"):
            answer = fake._put(path, headers, body)  # the server keeps the chunk
            second_chunk.set()
            release.wait(20)  # ... and the publisher dies before it hears back
            return answer
        return None

    fake.intercept = hold_second_chunk
    video = video_file(tmp_path)
    notes_dir = tmp_path / "notes"
    with fake.serve() as base:
        env = {
            **os.environ,
            "YT_TOKEN": TOKEN,
            "PYTHONPATH": str(REPO / "plugins"),
            "STATE_DIRECTORY": str(tmp_path / "state"),
        }
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, base, str(notes_dir), video], env=env
        )
        try:
            assert second_chunk.wait(30), "the child never sent its second chunk"
            child.send_signal(signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
            release.set()
        fake.intercept = None
        post = make_post((video,), text="Five checklists for the new year")
        account = make_account(api_base=base, processing_checks=0)

        async def next_daemon() -> tuple[Published | None, Published]:
            async with httpx.AsyncClient(timeout=10) as client:
                adapter = YouTubeAdapter(
                    client, Checkpoints(notes_dir), Ledger(tmp_path / "budgets")
                )
                found = await adapter.lookup(post, account)
                return found, await adapter.publish(post, account, "y1-key")

        found, published = asyncio.run(next_daemon())
    total = 600 * KiB
    assert found is None
    assert len(fake.inits) == 1, "a second upload session was opened"
    assert fake.ranges[-2:] == [f"bytes */{total}", f"bytes {512 * KiB}-{total - 1}/{total}"]
    assert list(fake.videos) == [published.remote_id]


# --------------------------------------------------------------------------- token refresh


def test_a_token_that_expired_during_the_run_is_refreshed_before_the_publish(
    tmp_path: Path, notes: Checkpoints
) -> None:
    from scheduler import tokens
    from scheduler.config import CredentialRef

    fake = FakeYouTube()
    fake.token = "ya29.only-a-fresh-token-works"
    fake.renewed = fake.token
    access = tmp_path / "access"
    access.write_text("ya29.expired-token")
    # A refresh an hour ago: the token it gave expired a minute ago, while the daemon ran.
    state = tokens.TokenState(
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
        refreshed_at=datetime.now(UTC) - timedelta(hours=1),
    )
    (tmp_path / "access.state.json").write_text(json.dumps(state.to_json()))
    secrets = {"refresh_token": "1//refresh", "client_id": "cid", "client_secret": "csecret"}
    base = make_account(token_url="https://oauth2.googleapis.com/token")
    account = replace(
        base,
        credentials={
            **account_with_secrets("x", "youtube", secrets=secrets).credentials,
            "access_token": CredentialRef("file", str(access)),
        },
    )
    result = publish(fake.handler, notes, make_post((video_file(tmp_path),)), account)
    assert fake.requests[0] == ("POST", "/token")
    assert fake.refreshes == [
        {
            "grant_type": "refresh_token",
            "refresh_token": "1//refresh",
            "client_id": "cid",
            "client_secret": "csecret",
        }
    ]
    assert result.remote_id in fake.videos
    assert access.read_text().strip() == "ya29.only-a-fresh-token-works"
    stored = tokens.read_state(account)
    assert stored is not None
    assert stored.expires_at is not None
    assert stored.expires_at > datetime.now(UTC) + timedelta(minutes=55)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("quotaExceeded", RateLimited),
        ("rateLimitExceeded", RateLimited),
        ("uploadLimitExceeded", RateLimited),
        ("authError", AuthExpired),
        ("forbidden", AuthExpired),
        ("youtubeSignupRequired", AuthExpired),
        ("invalidTitle", Rejected),
        ("invalidCategoryId", Rejected),
        ("backendError", Transient),
    ],
)
def test_google_error_reasons_map_to_the_taxonomy(
    name: str, expected: type[PublishError], tmp_path: Path, notes: Checkpoints
) -> None:
    with pytest.raises(expected) as caught:
        publish(lambda r: error(name), notes, make_post((video_file(tmp_path, 10),)))
    reason = ERRORS[name]["body"]["error"]["errors"][0]["reason"]
    assert caught.value.code == reason
    if name == "quotaExceeded":
        assert caught.value.retry_at == quota_reset()


def test_the_quota_resets_at_midnight_pacific_time() -> None:
    assert quota_reset(datetime(2030, 1, 7, 9, 0, tzinfo=UTC)) == datetime(
        2030, 1, 8, 8, 0, tzinfo=UTC
    )
    assert quota_reset(datetime(2030, 7, 7, 9, 0, tzinfo=UTC)) == datetime(
        2030, 7, 8, 7, 0, tzinfo=UTC
    )


def test_a_thumbnail_failure_does_not_unpublish_the_video(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    thumb = tmp_path / "cover.jpg"
    thumb.write_bytes(b"\xff\xd8\xff\xe0jpeg")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/thumbnails/set"):
            return error("forbidden")
        return fake.handler(request)

    result = publish(handler, notes, make_post((video_file(tmp_path), str(thumb))))
    assert result.remote_id in fake.videos


# --------------------------------------------------------------------------- first comment

COMMENT = "The checklists are linked in the description."


def _uploaded(tmp_path: Path, notes: Checkpoints, fake: FakeYouTube) -> OutgoingPost:
    post = make_post((video_file(tmp_path),), options=PostOptions(first_comment=COMMENT))
    result = publish(fake.handler, notes, post)
    return replace(post, remote_id=result.remote_id, remote_url=result.url)


def _comment(handler: Handler, notes: Checkpoints, post: OutgoingPost) -> Published:
    return run(handler, notes, lambda a: a.publish_comment(post, make_account(), COMMENT))


def test_a_first_comment_is_a_comment_thread_on_the_live_video(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = _uploaded(tmp_path, notes, fake)
    fake.requests.clear()
    published = _comment(fake.handler, notes, post)
    (sent,) = fake.comments
    channel = fake.videos[post.remote_id or ""]["snippet"]["channelId"]
    assert sent == {
        "snippet": {
            "channelId": channel,
            "videoId": post.remote_id,
            "topLevelComment": {"snippet": {"textOriginal": COMMENT}},
        }
    }
    assert fake.requests == [("GET", "/youtube/v3/videos"), ("POST", "/youtube/v3/commentThreads")]
    assert published.remote_id == "Ugz000001AaABAg"
    assert published.url == f"https://www.youtube.com/watch?v={post.remote_id}&lc=Ugz000001AaABAg"


def test_a_first_comment_waits_for_processing_and_never_comments_before(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = _uploaded(tmp_path, notes, fake)
    fake.upload_status = ["uploaded", "processed"]
    _comment(fake.handler, notes, post)
    assert len(fake.comments) == 1
    fake.upload_status = ["uploaded"]  # still processing at every look
    with pytest.raises(Transient, match="still processing"):
        _comment(fake.handler, notes, post)
    fake.upload_status = ["rejected"]
    with pytest.raises(Rejected, match="rejected"):
        _comment(fake.handler, notes, post)
    assert len(fake.comments) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("commentTextTooLong", Rejected),
        ("ineligibleAccount", Rejected),
        ("authError", AuthExpired),
        ("quotaExceeded", RateLimited),
        ("backendError", OutcomeUnknown),  # a 5xx on an insert: the comment may exist
    ],
)
def test_first_comment_errors_map_to_the_taxonomy(
    tmp_path: Path, notes: Checkpoints, name: str, expected: type[PublishError]
) -> None:
    fake = FakeYouTube()
    post = _uploaded(tmp_path, notes, fake)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/commentThreads"):
            return error(name)
        return fake.handler(request)

    with pytest.raises(expected) as caught:
        _comment(handler, notes, post)
    assert TOKEN not in str(caught.value)


def test_a_failing_first_comment_is_reported_and_leaves_the_post_published(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeYouTube()
    post = _uploaded(tmp_path, notes, fake)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/commentThreads"):
            return error("ineligibleAccount")
        return fake.handler(request)

    async def go(client: httpx.AsyncClient) -> tuple[bool, str]:
        adapter = YouTubeAdapter(client, notes, ledger_for(notes))
        return await comments.first_comment(
            adapter, post, make_account(), post.remote_id or "", post.remote_url
        )

    async def main() -> tuple[bool, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await go(client)

    done, message = asyncio.run(main())
    assert not done
    assert message.startswith("first comment failed (rejected): YouTube: The YouTube account")
    assert "ineligibleAccount on POST commentThreads.insert" in message


def test_the_first_comment_is_in_the_uploads_quota_cost() -> None:
    adapter = offline_adapter(YouTubeAdapter)
    account = make_account(processing_checks=6)
    plain = make_post(("/srv/c.mp4",))
    commented = replace(plain, options=PostOptions(first_comment=COMMENT))
    assert adapter.budget_cost(plain, account) == {"youtube-units": 1600 + 6}
    # commentThreads.insert costs 50 units, and each look at the video's state 1.
    assert adapter.budget_cost(commented, account) == {"youtube-units": 1600 + 6 + 50 + 3}


# --------------------------------------------------------------------------- validation


def _issues(post: OutgoingPost, account: Account | None = None) -> list[str]:
    adapter = offline_adapter(YouTubeAdapter)
    return [i.field for i in adapter.validate(post, account or make_account())]


def test_validate_wants_one_local_video_and_at_most_one_thumbnail() -> None:
    assert _issues(make_post(("/srv/clip.mp4",))) == []
    assert _issues(make_post(("/srv/a.png",))) == ["media"]
    assert _issues(make_post(("/srv/a.mp4", "/srv/b.mov"))) == ["media"]
    assert _issues(make_post(("https://cdn.example.com/a.mp4",))) == ["media"]
    assert "media" in _issues(make_post(("/srv/clip.mp4", "/srv/a.gif")))


def test_validate_checks_title_description_and_tags() -> None:
    assert _issues(make_post(("/srv/c.mp4",), text="t" * 101)) == ["text"]
    assert _issues(make_post(("/srv/c.mp4",), text="Title\n" + "é" * 2501)) == ["text"]
    assert _issues(make_post(("/srv/c.mp4",), text="A <b>bold</b> title")) == ["text"]
    assert _issues(make_post(("/srv/c.mp4",), tags=("x" * 250, "y" * 250))) == ["tags"]


def test_validate_checks_the_account_options() -> None:
    post = make_post(("/srv/c.mp4",))
    assert _issues(post, make_account(privacy="friends")) == ["account"]
    assert _issues(post, make_account(made_for_kids="no")) == ["account"]


# --------------------------------------------------------------------------- metrics


def test_fetch_metrics_reads_statistics_and_subscribers(notes: Checkpoints) -> None:
    fake = FakeYouTube()
    posts = [
        make_post((), remote_id="Ks-_Mh1QhMc"),
        make_post((), remote_id="dQ9xS2kLmPo"),
        make_post((), remote_id="gone0000000"),
    ]
    metrics = run(fake.handler, notes, lambda a: a.fetch_metrics(posts, make_account()))
    m = metrics["Ks-_Mh1QhMc"]
    assert (m.views, m.likes, m.comments, m.followers) == (1042, 87, 14, 2310)
    assert metrics["dQ9xS2kLmPo"].likes is None  # hidden by the owner
    assert "gone0000000" not in metrics


def test_every_option_the_adapter_reads_is_documented() -> None:
    options = options_read_by(smm_youtube)
    assert options >= {"privacy", "category_id", "made_for_kids", "api_base"}
    assert undocumented(options, network_page("youtube")) == []


def test_the_plugin_registers_the_youtube_platform() -> None:
    assert registered_adapters(smm_youtube.register_platforms) == [YouTubeAdapter]
