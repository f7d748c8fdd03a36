"""TikTok adapter: creator info, direct post of a video by chunked upload or URL pull, a
resumed upload, status polling, caption and branded-content rules, errors, metrics, lookup."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import smm_tiktok
from adapter_support import REPO, network_page, options_read_by, registered_adapters, undocumented
from adapter_support import mp4 as support_mp4
from smm_tiktok import TikTokAdapter
from smm_tiktok.adapter import chunking

from scheduler.adapter import (
    Account,
    AuthExpired,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.budgets import Ledger
from scheduler.checkpoints import Checkpoints
from scheduler.mp4 import duration_seconds
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    offline_adapter,
    run_adapter,
)

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
FIXTURES = REPO / "tests" / "fixtures" / "tiktok"
TOKEN = "act.secret-tiktok-token!4692.e1"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
MB = 1024 * 1024
POST_ID = "7320004455667788990"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


ERRORS: dict[str, dict[str, Any]] = fixture("errors.json")


def make_account(**options: Any) -> Account:
    settings = {"privacy_level": "PUBLIC_TO_EVERYONE", "processing_interval": 0, **options}
    return account_with_secrets("brand-tt", "tiktok", settings, secrets={"access_token": TOKEN})


def mp4(tmp_path: Path, *, size: int = 64 * 1024, seconds: int = 30) -> str:
    """``adapter_support.mp4``, 64 KiB by default (TikTok's chunk tests need the room)."""
    return support_mp4(tmp_path, size=size, seconds=seconds)


def make_post(media: tuple[str, ...], **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="t1",
        account="brand-tt",
        content_type="laugh",
        text="Five checklists for the new year",
        link="https://blog.example.com/checklists",
        tags=("checklist",),
        media=media,
        idempotency_key="t1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def error(code: str) -> httpx.Response:
    entry = ERRORS[code]
    return httpx.Response(entry["status"], json=entry["body"])


class FakeTikTok(RecordingHandler):
    """open.tiktokapis.com and its upload host, keeping what was uploaded and posted."""

    def __init__(self) -> None:
        super().__init__()
        self.inits: list[dict[str, Any]] = []
        self.received = bytearray()
        self.ranges: list[str] = []
        self.posts = 0
        self.processing = ["PROCESSING_UPLOAD", "PUBLISH_COMPLETE"]
        self.size = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization", "Bearer " + TOKEN) != f"Bearer {TOKEN}":
            return error("access_token_invalid")
        path = request.url.path
        if request.url.host == "open-upload.tiktokapis.com":
            content_range = request.headers["content-range"]
            self.ranges.append(content_range)
            first = int(content_range.split()[1].split("-")[0])
            del self.received[first:]
            self.received += request.content
            if len(self.received) < self.size:
                return httpx.Response(206)
            self.posts += 1
            return httpx.Response(201)
        if path == "/v2/post/publish/creator_info/query/":
            return httpx.Response(200, json=fixture("creator_info.json"))
        if path == "/v2/post/publish/video/init/":
            body = json.loads(request.content)
            self.inits.append(body)
            source = body["source_info"]["source"]
            if source == "FILE_UPLOAD":
                self.size = body["source_info"]["video_size"]
                self.received = bytearray()
            else:
                self.posts += 1
            return httpx.Response(200, json=fixture("video_init.json")[source])
        if path == "/v2/post/publish/status/fetch/":
            uploading = self.size and len(self.received) < self.size
            state = "PROCESSING_UPLOAD" if uploading else self.processing[0]
            if not uploading and len(self.processing) > 1:
                self.processing.pop(0)
            body = copy.deepcopy(fixture("status_fetch.json")[state])
            body["data"]["uploaded_bytes"] = len(self.received)
            return httpx.Response(200, json=body)
        if path == "/v2/video/query/":
            return httpx.Response(200, json=fixture("video_query.json"))
        if path == "/v2/user/info/":
            return httpx.Response(200, json=fixture("user_info.json"))
        if path == "/v2/video/list/":
            return httpx.Response(200, json=fixture("video_list.json"))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


def run(handler: Handler, notes: Checkpoints, call: Callable[[TikTokAdapter], Awaitable[T]]) -> T:
    return run_adapter(
        lambda client: TikTokAdapter(
            client, notes, Ledger(notes.directory.parent / "budgets") if notes.directory else None
        ),
        handler,
        call,
    )


@pytest.fixture
def notes(tmp_path: Path) -> Checkpoints:
    return Checkpoints(tmp_path / "checkpoints")


def publish(
    handler: Handler, notes: Checkpoints, post: OutgoingPost, account: Account | None = None
) -> Any:
    account = account or make_account()
    return run(handler, notes, lambda a: a.publish(post, account, post.idempotency_key))


def paths(fake: FakeTikTok) -> list[str]:
    return [
        "upload" if r.url.host == "open-upload.tiktokapis.com" else r.url.path
        for r in fake.requests
    ]


# --------------------------------------------------------------------------- contract


class TestTikTokContract(AdapterContract):
    adapter_class = TikTokAdapter
    secret_values = (TOKEN,)

    @pytest.fixture(autouse=True)
    def _scratch(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def make_account(self) -> Account:
        return make_account()

    def make_post(self) -> OutgoingPost:
        return make_post((mp4(self.tmp),))

    def make_adapter(self, client: httpx.AsyncClient) -> TikTokAdapter:
        return TikTokAdapter(client, Checkpoints(self.tmp / "notes"), Ledger(self.tmp / "budgets"))

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeTikTok()
        code = {
            "rate_limited": "rate_limit_exceeded",
            "server_error": "internal_error",
            "auth_expired": "access_token_invalid",
            "rejected": "invalid_param",
        }[scenario]
        return lambda request: error(code)


# --------------------------------------------------------------------------- publishing


def test_a_small_video_goes_in_one_chunk_after_creator_info_and_init(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    video = mp4(tmp_path)
    result = publish(fake, notes, make_post((video,)))
    assert paths(fake) == [
        "/v2/post/publish/creator_info/query/",
        "/v2/post/publish/video/init/",
        "upload",
        "/v2/post/publish/status/fetch/",
        "/v2/post/publish/status/fetch/",
    ]
    (init,) = fake.inits
    size = Path(video).stat().st_size
    assert init == {
        "post_info": {
            "title": "Five checklists for the new year\n\nhttps://blog.example.com/checklists"
            "\n\n#checklist",
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "disable_comment": False,
            "disable_duet": False,
            "disable_stitch": True,  # the creator turned stitches off
            "video_cover_timestamp_ms": 1000,
            "brand_content_toggle": False,
            "brand_organic_toggle": False,
            "is_aigc": False,
        },
        "source_info": {
            "source": "FILE_UPLOAD",
            "video_size": size,
            "chunk_size": size,
            "total_chunk_count": 1,
        },
    }
    upload = fake.requests[2]
    assert upload.method == "PUT"
    assert upload.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    assert upload.headers["content-type"] == "video/mp4"
    assert "authorization" not in upload.headers  # the upload URL carries its own token
    assert fake.received == Path(video).read_bytes()
    assert result == Published(POST_ID)


@pytest.mark.parametrize(
    ("size", "preferred", "expected"),
    [
        (4 * MB, 10 * MB, (4 * MB, 1)),
        (11 * MB, 5 * MB, (5 * MB, 2)),
        (50 * MB, 10 * MB, (10 * MB, 5)),
        (59 * MB, 10 * MB, (10 * MB, 5)),  # the last chunk takes 19 MB
        (300 * MB, 100 * MB, (64 * MB, 4)),
        (20 * MB, 1 * MB, (5 * MB, 4)),
    ],
)
def test_chunking_follows_tiktoks_rules(
    size: int, preferred: int, expected: tuple[int, int]
) -> None:
    assert chunking(size, preferred) == expected


def test_an_interrupted_upload_is_resumed_from_tiktoks_uploaded_bytes(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    video = mp4(tmp_path, size=11 * MB)
    post = make_post((video,))
    account = make_account(chunk_mib=5)

    def dropping(request: httpx.Request) -> httpx.Response:
        if request.url.host == "open-upload.tiktokapis.com" and fake.ranges:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return fake(request)

    with pytest.raises(OutcomeUnknown, match="chunk 2 of 2"):
        publish(dropping, notes, post, account)
    assert fake.posts == 0
    assert run(fake, notes, lambda a: a.lookup(post, account)) is None  # not a post yet
    result = publish(fake, notes, post, account)
    assert len(fake.inits) == 1, "a second upload was started"
    size = 11 * MB
    assert fake.ranges == [f"bytes 0-{5 * MB - 1}/{size}", f"bytes {5 * MB}-{size - 1}/{size}"]
    assert fake.received == Path(video).read_bytes()
    assert fake.posts == 1
    assert result == Published(POST_ID)


def test_an_upload_whose_url_expired_starts_over_without_a_duplicate(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    post = make_post((mp4(tmp_path, size=11 * MB),))
    account = make_account(chunk_mib=5)
    notes.save(
        "tiktok",
        "t1-key",
        {
            "publish_id": "v_pub_file~v2-1.old",
            "upload_url": "https://open-upload.tiktokapis.com/video/?upload_id=1",
            "size": 11 * MB,
            "chunk": 5 * MB,
            "count": 2,
            "at": 0,  # long ago
        },
    )
    fake.size = 11 * MB
    fake.received = bytearray(5 * MB)
    publish(fake, notes, post, account)
    assert len(fake.inits) == 1
    assert fake.posts == 1


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    import httpx
    from smm_tiktok import TikTokAdapter
    from test_tiktok import FakeTikTok, make_account, make_post
    from scheduler import media
    from scheduler.budgets import Ledger
    from scheduler.checkpoints import Checkpoints

    notes, video, state = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    fake = FakeTikTok()
    second = f"bytes {5 * 1024 * 1024}-"

    def server(request):
        answer = fake(request)
        # TikTok's side of the upload, as it stands after each request.
        (state / "received.bin").write_bytes(bytes(fake.received))
        kept = {"inits": fake.inits, "ranges": fake.ranges, "size": fake.size, "posts": fake.posts}
        (state / "state.json").write_text(json.dumps(kept))
        if request.headers.get("content-range", "").startswith(second):
            (state / "second-chunk").touch()
            time.sleep(60)  # the chunk is in; the publisher dies before it hears back
        return answer

    async def main():
        transport = httpx.MockTransport(server)
        async with httpx.AsyncClient(transport=transport) as client:
            adapter = TikTokAdapter(client, Checkpoints(notes), Ledger(notes.parent / "budgets"))
            post = make_post((video,))
            await adapter.publish(post, make_account(chunk_mib=5), post.idempotency_key)

    # As the daemon does: the video's folder is the post's media root.
    with media.using(media.MediaPolicy((Path(video).resolve().parent,))):
        asyncio.run(main())
    """
)


@pytest.mark.slow  # a 15 MB video, a child process
def test_a_sigkill_during_an_upload_leaves_one_post_after_the_next_attempt(
    tmp_path: Path, notes: Checkpoints
) -> None:
    video = mp4(tmp_path, size=15 * MB)  # three 5 MB chunks
    state = tmp_path / "server"
    state.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests"), str(REPO)]),
        "STATE_DIRECTORY": str(tmp_path / "state"),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(notes.directory), video, str(state)], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "second-chunk").exists():
            assert time.monotonic() < deadline, "the child never sent its second chunk"
            assert child.poll() is None, f"the child ended ({child.returncode})"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    # TikTok as the killed publisher left it: one upload, two chunks of three received.
    fake = FakeTikTok()
    kept = json.loads((state / "state.json").read_text())
    fake.inits, fake.ranges, fake.size, fake.posts = (
        kept["inits"],
        kept["ranges"],
        kept["size"],
        kept["posts"],
    )
    fake.received = bytearray((state / "received.bin").read_bytes())
    assert (len(fake.received), fake.posts) == (10 * MB, 0)
    post = make_post((video,))
    account = make_account(chunk_mib=5)
    assert run(fake, notes, lambda a: a.lookup(post, account)) is None  # not a post yet
    result = publish(fake, notes, post, account)
    size = 15 * MB
    assert len(fake.inits) == 1, "a second upload was started"
    assert fake.ranges[-1] == f"bytes {10 * MB}-{size - 1}/{size}"
    assert fake.received == Path(video).read_bytes()
    assert fake.posts == 1
    assert result == Published(POST_ID)


def test_a_video_url_is_pulled_and_a_lost_answer_is_unknown(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    url = "https://media.example.com/clips/spring.mp4"
    result = publish(fake, notes, make_post((url,)))
    assert fake.inits[0]["source_info"] == {"source": "PULL_FROM_URL", "video_url": url}
    assert result == Published(POST_ID)

    def lost(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/post/publish/video/init/":
            raise httpx.ReadTimeout("timed out", request=request)
        return FakeTikTok()(request)

    with pytest.raises(OutcomeUnknown):
        publish(lost, Checkpoints(tmp_path / "other"), make_post((url,)))


def test_a_privacy_level_the_creator_lacks_is_rejected_before_init(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    account = make_account(privacy_level="FOLLOWER_OF_CREATOR")
    with pytest.raises(Rejected, match="cannot post as FOLLOWER_OF_CREATOR"):
        publish(fake, notes, make_post((mp4(tmp_path),)), account)
    assert fake.inits == []


def test_a_video_longer_than_the_creator_may_post_is_rejected(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    video = mp4(tmp_path, seconds=400)
    with Path(video).open("rb") as f:
        assert duration_seconds(f) == 400
    with pytest.raises(Rejected, match="lasts 400 s, this creator may post at most 300 s"):
        publish(fake, notes, make_post((video,)))
    assert fake.inits == []


def test_a_video_tiktok_fails_in_processing_is_rejected_with_its_reason(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    fake.processing = ["FAILED"]
    with pytest.raises(Rejected, match="duration_check_failed"):
        publish(fake, notes, make_post((mp4(tmp_path),)))


def test_still_processing_is_unknown_then_lookup_finds_the_post(
    tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()
    fake.processing = ["PROCESSING_UPLOAD"] * 3 + ["PUBLISH_COMPLETE"]
    post = make_post((mp4(tmp_path),))
    account = make_account(processing_checks=2)
    with pytest.raises(OutcomeUnknown, match="still processing"):
        publish(fake, notes, post, account)
    with pytest.raises(OutcomeUnknown, match="still processing"):
        run(fake, notes, lambda a: a.lookup(post, account))
    assert run(fake, notes, lambda a: a.lookup(post, account)) == Published(POST_ID)
    assert len(fake.inits) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("rate_limit_exceeded", RateLimited),
        ("spam_risk_too_many_posts", RateLimited),
        ("reached_active_user_cap", RateLimited),
        ("access_token_invalid", AuthExpired),
        ("scope_not_authorized", AuthExpired),
        ("spam_risk_user_banned_from_posting", AuthExpired),
        ("unaudited_client_can_only_post_to_private_accounts", AuthExpired),
        ("privacy_level_option_mismatch", Rejected),
        ("invalid_param", Rejected),
        ("url_ownership_unverified", Rejected),
        ("internal_error", Transient),
    ],
)
def test_tiktok_error_codes_map_to_the_taxonomy(
    code: str, expected: type[PublishError], tmp_path: Path, notes: Checkpoints
) -> None:
    fake = FakeTikTok()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/post/publish/video/init/":
            return error(code)
        return fake(request)

    with pytest.raises(expected) as caught:
        publish(handler, notes, make_post((mp4(tmp_path),)))
    assert caught.value.code == code
    assert ERRORS[code]["body"]["error"]["message"] in caught.value.message
    if code == "spam_risk_too_many_posts":
        assert caught.value.retry_at is not None
        assert caught.value.retry_at > datetime.now(UTC) + timedelta(hours=23)


# --------------------------------------------------------------------------- validation


def _fields(post: OutgoingPost, account: Account | None = None) -> list[str]:
    adapter = offline_adapter(TikTokAdapter)
    return [i.field for i in adapter.validate(post, account or make_account())]


def test_the_caption_is_counted_in_utf16_units() -> None:
    plain = make_post(("/srv/c.mp4",), link=None, tags=())
    assert _fields(replace(plain, text="👍" * 1100)) == []
    assert _fields(replace(plain, text="👍" * 1100 + "a")) == ["text"]


def test_validate_wants_one_video_and_a_chosen_privacy_level() -> None:
    assert _fields(make_post(("/srv/c.mp4", "/srv/d.mp4"))) == ["media"]
    assert _fields(make_post(("/srv/c.png",))) == ["media"]
    assert _fields(make_post(("http://media.example.com/c.mp4",))) == ["media"]
    assert _fields(make_post(())) == ["media"]
    account = account_with_secrets("brand-tt", "tiktok", {}, secrets={"access_token": TOKEN})
    assert _fields(make_post(("/srv/c.mp4",)), account) == ["account"]


def test_branded_content_cannot_be_private() -> None:
    post = make_post(("/srv/c.mp4",))
    assert _fields(post, make_account(brand_content=True, privacy_level="SELF_ONLY")) == ["account"]
    assert _fields(post, make_account(brand_content=True)) == []
    assert _fields(post, make_account(brand_organic=True, privacy_level="SELF_ONLY")) == []


# --------------------------------------------------------------------------- metrics, lookup


def test_fetch_metrics_reads_the_video_query_and_followers(notes: Checkpoints) -> None:
    fake = FakeTikTok()
    posts = [make_post((), remote_id=POST_ID), make_post((), remote_id="v_pub_file~v2-1.1")]
    metrics = run(fake, notes, lambda a: a.fetch_metrics(posts, make_account()))
    query = fake.requests[-1]
    assert query.url.params["fields"] == "id,like_count,comment_count,share_count,view_count"
    assert json.loads(query.content) == {"filters": {"video_ids": [POST_ID]}}
    m = metrics[POST_ID]
    assert (m.likes, m.comments, m.shares, m.views, m.followers) == (532, 41, 19, 18340, 48211)
    assert list(metrics) == [POST_ID]


def test_lookup_without_a_note_searches_the_latest_videos(notes: Checkpoints) -> None:
    post = make_post(("/srv/c.mp4",))
    assert run(FakeTikTok(), notes, lambda a: a.lookup(post, make_account())) == Published(POST_ID)
    later = replace(post, due_at=DUE + timedelta(days=3))
    assert run(FakeTikTok(), notes, lambda a: a.lookup(later, make_account())) is None


def test_every_option_the_adapter_reads_is_documented() -> None:
    options = options_read_by(smm_tiktok)
    assert options >= {"privacy_level", "brand_content", "brand_organic", "api_base"}
    assert undocumented(options, network_page("tiktok")) == []


def test_the_plugin_registers_the_tiktok_platform() -> None:
    assert registered_adapters(smm_tiktok.register_platforms) == [TikTokAdapter]
