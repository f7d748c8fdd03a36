"""Instagram adapter: container publishing, quota, retries that cannot duplicate, insights."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from adapter_support import form, mp4
from smm_meta import InstagramAdapter
from structlog.testing import capture_logs

from scheduler.adapter import (
    Account,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    mock_client,
    offline_adapter,
    run_adapter,
)

T = TypeVar("T")
TOKEN = "IGQVJ-secret-instagram-token"
IG_USER = "17841405822304914"
IMAGE = "https://cdn.example.com/photos/launch.jpg"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "brand-ig", "instagram", {"ig_user_id": IG_USER, **options}, secrets={"access_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="p1",
        account="brand-ig",
        content_type="instruction",
        text="How we pack a parcel in 30 seconds #howto",
        media=(IMAGE,),
        idempotency_key="p1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def graph_error(status: int, code: int, message: str, **extra: Any) -> httpx.Response:
    error = {"message": message, "type": "OAuthException", "code": code, **extra}
    error.setdefault("fbtrace_id", "AbCdEfGhIjK")
    return httpx.Response(status, json={"error": error})


class FakeInstagram(RecordingHandler):
    """The Graph API endpoints Instagram publishing uses, with the documented bodies."""

    def __init__(self, *, processing: int = 0, quota_usage: int = 2, quota_total: int = 100):
        super().__init__()
        self.processing = processing  # status checks answering IN_PROGRESS before FINISHED
        self.quota_usage = quota_usage
        self.quota_total = quota_total
        self.containers: dict[str, dict[str, str]] = {}
        self.status: dict[str, str] = {}
        self.published: dict[str, str] = {}  # media id -> caption
        self.fail_publish: httpx.Response | None = None
        self.publish_timeouts = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v21.0/")
        if request.method == "GET" and path == f"{IG_USER}/content_publishing_limit":
            config = {"quota_total": self.quota_total, "quota_duration": 86400}
            return httpx.Response(
                200, json={"data": [{"quota_usage": self.quota_usage, "config": config}]}
            )
        if request.method == "POST" and path == f"{IG_USER}/media":
            container = str(17889455560051444 + len(self.containers))
            self.containers[container] = form(request)
            self.status[container] = "IN_PROGRESS" if self.processing else "FINISHED"
            return httpx.Response(200, json={"id": container})
        if request.method == "POST" and path == f"{IG_USER}/media_publish":
            return self._publish(form(request)["creation_id"])
        if request.method == "GET" and path == f"{IG_USER}/media":
            items = [
                {
                    "id": media_id,
                    "caption": caption,
                    "timestamp": "2030-01-07T09:00:03+0000",
                    "permalink": f"https://www.instagram.com/p/{media_id}/",
                }
                for media_id, caption in reversed(self.published.items())
            ]
            return httpx.Response(200, json={"data": items})
        if request.method == "GET" and path.endswith("/insights"):
            return httpx.Response(200, json=_INSIGHTS)
        if request.method == "GET" and path in self.status:
            return self._container_status(path)
        if request.method == "GET" and path in self.published:
            link = f"https://www.instagram.com/p/{path}/"
            return httpx.Response(200, json={"permalink": link, "id": path})
        return graph_error(400, 100, f"Unsupported request {request.method} {path}")

    def _container_status(self, container: str) -> httpx.Response:
        if self.status[container] == "IN_PROGRESS":
            self.processing -= 1
            if self.processing <= 0:
                self.status[container] = "FINISHED"
            return httpx.Response(200, json={"status_code": "IN_PROGRESS", "id": container})
        return httpx.Response(200, json={"status_code": self.status[container], "id": container})

    def _publish(self, container: str) -> httpx.Response:
        if self.fail_publish is not None:
            return self.fail_publish
        if self.status.get(container) == "PUBLISHED":
            return graph_error(
                400, 9007, "The media has already been published", error_subcode=2207027
            )
        if self.status.get(container) != "FINISHED":
            return graph_error(400, 9007, "Media ID is not available", error_subcode=2207027)
        self.status[container] = "PUBLISHED"
        media_id = str(17920238422030506 + len(self.published))
        self.published[media_id] = self.containers[container].get("caption", "")
        if self.publish_timeouts:
            self.publish_timeouts -= 1
            raise httpx.ReadTimeout("the answer was lost")
        return httpx.Response(200, json={"id": media_id})


_INSIGHTS = {
    "data": [
        {"name": name, "period": "lifetime", "values": [{"value": value}], "id": f"x/{name}"}
        for name, value in (
            ("reach", 1320),
            ("likes", 87),
            ("comments", 9),
            ("shares", 4),
            ("saved", 31),
            ("views", 2210),
        )
    ]
}


def fast(client: httpx.AsyncClient) -> InstagramAdapter:
    """The adapter, with no pause between container status checks."""
    adapter = InstagramAdapter(client)
    adapter.poll_interval = 0
    return adapter


def run(
    handler: Handler,
    call: Callable[[InstagramAdapter], Awaitable[T]],
    adapter: InstagramAdapter | None = None,
) -> T:
    """``call`` on a new adapter, or on ``adapter`` (with what it remembers) moved to this
    run's client."""

    def on(client: httpx.AsyncClient) -> InstagramAdapter:
        if adapter is None:
            return fast(client)
        adapter.client = client
        return adapter

    return run_adapter(on, handler, call)


def publish(fake: Handler, adapter: InstagramAdapter | None = None) -> Published:
    post, account = make_post(), make_account()
    return run(fake, lambda a: a.publish(post, account, post.idempotency_key), adapter)


def failed_attempt(fake: Handler, error: type[PublishError]) -> InstagramAdapter:
    """Publish on ``fake`` and expect ``error``; the adapter, to try again with."""
    adapter = offline_adapter(fast)
    with pytest.raises(error):
        publish(fake, adapter)
    return adapter


# --------------------------------------------------------------------------- contract


class TestInstagramContract(AdapterContract):
    adapter_class = InstagramAdapter
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_post(self) -> OutgoingPost:
        return replace(super().make_post(), media=(IMAGE,))

    def make_adapter(self, client: httpx.AsyncClient) -> InstagramAdapter:
        return fast(client)

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeInstagram()
        answers: dict[str, Handler] = {
            "rate_limited": lambda request: httpx.Response(
                400,
                headers={
                    "X-Business-Use-Case-Usage": json.dumps(
                        {
                            IG_USER: [
                                {
                                    "type": "instagram",
                                    "call_count": 100,
                                    "total_cputime": 12,
                                    "total_time": 15,
                                    "estimated_time_to_regain_access": 14,
                                }
                            ]
                        }
                    )
                },
                json={
                    "error": {
                        "message": "Application request limit reached",
                        "type": "OAuthException",
                        "is_transient": True,
                        "code": 4,
                        "fbtrace_id": "A1b2C3",
                    }
                },
            ),
            "server_error": lambda request: graph_error(
                500,
                2,
                "An unexpected error has occurred. Please retry your request later.",
                is_transient=True,
            ),
            "auth_expired": lambda request: graph_error(
                400,
                190,
                "Error validating access token: Session has expired on Monday, 07-Jan-30.",
                error_subcode=463,
            ),
            "rejected": lambda request: graph_error(
                400,
                9004,
                "Only photo or video can be accepted as media type.",
                error_subcode=2207052,
                is_transient=False,
                error_user_title="Media download has failed",
                error_user_msg="The media could not be fetched from this URI.",
            ),
        }
        return answers[scenario]


# --------------------------------------------------------------------------- publishing


def test_publish_builds_a_container_then_publishes_it_by_creation_id() -> None:
    fake = FakeInstagram()
    result = publish(fake)
    ((container, params),) = fake.containers.items()
    assert params == {
        "image_url": IMAGE,
        "caption": "How we pack a parcel in 30 seconds #howto",
        "access_token": TOKEN,
    }
    publish_request = next(r for r in fake.requests if r.url.path.endswith("/media_publish"))
    assert form(publish_request)["creation_id"] == container
    assert result == Published(
        "17920238422030506", url="https://www.instagram.com/p/17920238422030506/"
    )


def test_token_travels_in_post_bodies_not_in_their_urls() -> None:
    fake = FakeInstagram()
    publish(fake)
    posts = [r for r in fake.requests if r.method == "POST"]
    assert posts
    assert all(TOKEN not in str(r.url) for r in posts)


def test_several_images_become_a_carousel_of_ready_children() -> None:
    fake = FakeInstagram()
    images = (IMAGE, "https://cdn.example.com/photos/b.jpg", "https://cdn.example.com/photos/c.jpg")
    post, account = make_post(media=images), make_account()
    run(fake, lambda a: a.publish(post, account, post.idempotency_key))
    *children, carousel = fake.containers.items()
    assert [p["image_url"] for _, p in children] == list(images)
    assert all(p["is_carousel_item"] == "true" for _, p in children)
    assert carousel[1]["media_type"] == "CAROUSEL"
    assert carousel[1]["children"] == ",".join(c for c, _ in children)
    assert "caption" not in children[0][1]


def test_alt_text_rides_on_the_image_container_and_on_each_carousel_image() -> None:
    # POST /{ig-user-id}/media: alt_text "for image posts only ... up to 1000 character";
    # only on a single image or an image of a carousel (the parent holds no image).
    fake = FakeInstagram()
    run(
        fake,
        lambda a: a.publish(make_post(media_meta=(MediaMeta("A parcel"),)), make_account(), "k1"),
    )
    ((_, single),) = fake.containers.items()
    assert single["alt_text"] == "A parcel"

    fake = FakeInstagram()
    images = (IMAGE, "https://cdn.example.com/photos/b.jpg")
    meta = (MediaMeta("A parcel"), MediaMeta())
    post = make_post(media=images, media_meta=meta)
    run(fake, lambda a: a.publish(post, make_account(), "k2"))
    first, second, carousel = fake.containers.values()
    assert first["alt_text"] == "A parcel"
    assert "alt_text" not in second  # no alt text given: Instagram writes its own
    assert "alt_text" not in carousel


def test_alt_text_over_1000_characters_is_refused_at_validation() -> None:
    adapter = offline_adapter(InstagramAdapter)
    fits = make_post(media_meta=(MediaMeta("x" * 1000),))
    over = make_post(media_meta=(MediaMeta("x" * 1001),))
    assert adapter.media_meta_issues(fits, make_account()) == []
    (issue,) = adapter.media_meta_issues(over, make_account())
    assert "alt text of 1001 characters, over instagram's limit of 1000" in issue.message


def test_publish_waits_while_the_container_is_in_progress() -> None:
    fake = FakeInstagram(processing=3)
    result = publish(fake)
    checks = [r for r in fake.requests if r.url.params.get("fields") == "status_code,status"]
    assert len(checks) == 4
    assert result.remote_id in fake.published


def test_container_still_processing_after_the_last_check_is_transient_and_unpublished() -> None:
    fake = FakeInstagram(processing=100)

    async def call(adapter: InstagramAdapter) -> Any:
        adapter.poll_attempts = 5
        post = make_post()
        return await adapter.publish(post, make_account(), post.idempotency_key)

    with pytest.raises(Transient, match="still processing after 5 checks"):
        run(fake, call)
    assert fake.published == {}


def test_container_error_is_rejected_with_the_reason() -> None:
    fake = FakeInstagram()
    original = fake._container_status

    def failing(container: str) -> httpx.Response:
        original(container)
        return httpx.Response(
            200,
            json={
                "status_code": "ERROR",
                "status": "Error: Media upload has failed with error code 2207026",
                "id": container,
            },
        )

    fake._container_status = failing  # type: ignore[method-assign]
    with pytest.raises(Rejected, match="2207026"):
        publish(fake)
    assert fake.published == {}


def test_exhausted_quota_is_rate_limited_for_an_hour_before_any_container() -> None:
    fake = FakeInstagram(quota_usage=100, quota_total=100)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as caught:
        publish(fake)
    assert fake.containers == {}
    assert caught.value.retry_at is not None
    assert timedelta(minutes=59) < caught.value.retry_at - before < timedelta(minutes=61)
    assert "100 of 100" in caught.value.message


def test_retry_after_a_lost_publish_answer_finds_the_post_instead_of_publishing_again() -> None:
    fake = FakeInstagram()
    fake.publish_timeouts = 1
    adapter = failed_attempt(fake, OutcomeUnknown)
    again = publish(fake, adapter=adapter)
    assert len(fake.published) == 1
    assert len(fake.containers) == 1
    assert again.remote_id in fake.published


def test_retry_after_a_transient_publish_error_reuses_the_finished_container() -> None:
    fake = FakeInstagram()
    fake.fail_publish = graph_error(500, 2, "Service temporarily unavailable", is_transient=True)
    adapter = failed_attempt(fake, Transient)
    fake.fail_publish = None
    publish(fake, adapter=adapter)
    assert len(fake.containers) == 1
    assert len(fake.published) == 1


def test_rejected_publish_forgets_the_container_so_a_new_attempt_starts_afresh() -> None:
    fake = FakeInstagram()
    fake.fail_publish = graph_error(400, 100, "Invalid parameter", error_subcode=2207001)
    adapter = failed_attempt(fake, Rejected)
    assert adapter._containers == {}


# --------------------------------------------------------------------------- lookup


def test_lookup_of_a_never_published_container_says_not_published() -> None:
    fake = FakeInstagram()
    fake.fail_publish = graph_error(500, 2, "Service temporarily unavailable", is_transient=True)
    adapter = failed_attempt(fake, Transient)
    assert run(fake, lambda a: a.lookup(make_post(), make_account()), adapter=adapter) is None


def test_lookup_after_a_restart_finds_the_post_by_its_caption() -> None:
    fake = FakeInstagram()
    fake.published["17920238422030999"] = "How we pack a parcel in 30 seconds #howto"
    found = run(fake, lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(
        "17920238422030999", url="https://www.instagram.com/p/17920238422030999/"
    )


def test_lookup_says_not_published_when_the_listing_reaches_back_past_the_due_time() -> None:
    fake = FakeInstagram()
    fake.published["1"] = "another caption"
    assert run(fake, lambda a: a.lookup(make_post(), make_account())) is None


def test_lookup_cannot_tell_when_a_full_page_does_not_reach_back_far_enough() -> None:
    fake = FakeInstagram()
    for i in range(50):
        fake.published[str(i)] = f"later post {i}"
    with pytest.raises(OutcomeUnknown, match="do not reach back"):
        run(fake, lambda a: a.lookup(make_post(), make_account()))


def test_lookup_turns_a_server_error_into_outcome_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(500, 1, "An unknown error occurred", is_transient=True)

    with pytest.raises(OutcomeUnknown, match="cannot look the post up"):
        run(handler, lambda a: a.lookup(make_post(), make_account()))


# --------------------------------------------------------------------------- video


def test_a_video_alone_is_a_reel_polled_until_finished() -> None:
    # POST /{ig-user-id}/media with media_type=REELS and video_url; the container's
    # status_code goes IN_PROGRESS -> FINISHED while Instagram fetches and processes the video.
    fake = FakeInstagram(processing=2)
    video = "https://cdn.example.com/clips/launch.mp4"
    post = make_post(media=(video,))
    with capture_logs() as logs:
        result = run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    ((_, params),) = fake.containers.items()
    assert params == {
        "media_type": "REELS",
        "video_url": video,
        "caption": "How we pack a parcel in 30 seconds #howto",
        "access_token": TOKEN,
    }
    states = [e["state"] for e in logs if e["event"] == "container_status"]
    assert states == ["IN_PROGRESS", "IN_PROGRESS", "FINISHED"]
    assert result.remote_id == "17920238422030506"


def test_a_video_still_processing_is_transient_and_the_retry_waits_on_the_same_container() -> None:
    fake = FakeInstagram(processing=12)
    post = make_post(media=("https://cdn.example.com/clips/launch.mp4",))

    async def main() -> Published:
        async with mock_client(fake) as client:
            adapter = fast(client)
            with pytest.raises(Transient, match="still processing"):
                await adapter.publish(post, make_account(), post.idempotency_key)
            return await adapter.publish(post, make_account(), post.idempotency_key)

    published = asyncio.run(main())
    assert len(fake.containers) == 1  # the retry did not ask Instagram to fetch it again
    assert published.remote_id == "17920238422030506"


def test_a_video_instagram_cannot_process_is_rejected_with_its_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/content_publishing_limit"):
            config = {"quota_total": 100, "quota_duration": 86400}
            return httpx.Response(200, json={"data": [{"quota_usage": 0, "config": config}]})
        if request.method == "POST":
            return httpx.Response(200, json={"id": "17889455560051444"})
        # GET /{container}?fields=status_code,status: ERROR with Instagram's reason.
        reason = "ERROR: Media upload has failed with error code 2207026"
        return httpx.Response(
            200, json={"status_code": "ERROR", "status": reason, "id": "17889455560051444"}
        )

    post = make_post(media=("https://cdn.example.com/clips/launch.mp4",))
    with pytest.raises(Rejected, match="2207026"):
        run(handler, lambda a: a.publish(post, make_account(), post.idempotency_key))


def test_a_carousel_mixes_images_and_video_items() -> None:
    fake = FakeInstagram()
    media = (IMAGE, "https://cdn.example.com/clips/b.mov")
    post = make_post(media=media)
    run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    image, video, carousel = fake.containers.values()
    assert video == {
        "media_type": "VIDEO",
        "video_url": "https://cdn.example.com/clips/b.mov",
        "is_carousel_item": "true",
        "access_token": TOKEN,
    }
    assert "media_type" not in image
    assert carousel["media_type"] == "CAROUSEL"


def test_alt_text_on_a_video_is_refused_at_validation() -> None:
    adapter = offline_adapter(InstagramAdapter)
    post = make_post(
        media=("https://cdn.example.com/clips/launch.mp4",), media_meta=(MediaMeta("A parcel"),)
    )
    (issue,) = adapter.media_meta_issues(post, make_account())
    assert "alt text on images only, not on Reels" in issue.message


# --------------------------------------------------------------------------- validation


def test_validate_accepts_a_captioned_jpeg() -> None:
    adapter = offline_adapter(InstagramAdapter)
    assert adapter.validate(make_post(), make_account()) == []


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"media": ()}, "media", "at least one media"),
        ({"media": ("/srv/photos/a.jpg",)}, "media", "not a URL"),
        ({"media": ("https://cdn.example.com/a.png",)}, "media", ".jpg, .jpeg images only"),
        ({"media": ("https://cdn.example.com/clip.webm",)}, "media", ".mp4, .mov videos only"),
        ({"text": " ".join(f"#tag{i}" for i in range(31))}, "text", "31 hashtags"),
        ({"text": " ".join(f"@user{i}" for i in range(21))}, "text", "21 @mentions"),
        ({"text": "x" * 2201}, "text", "over the limit of 2200"),
    ],
)
def test_validate_flags_what_instagram_refuses(
    changes: dict[str, Any], field: str, words: str
) -> None:
    adapter = offline_adapter(InstagramAdapter)
    issues = adapter.validate(make_post(**changes), make_account())
    assert any(i.field == field and words in i.message for i in issues), issues


def test_validate_flags_an_account_without_an_instagram_user_id() -> None:
    adapter = offline_adapter(InstagramAdapter)
    account = replace(make_account(), options={})
    issues = adapter.validate(make_post(), account)
    assert [i.field for i in issues] == ["account"]


# --------------------------------------------------------------------------- metrics


def test_fetch_metrics_maps_insights_onto_metrics() -> None:
    fake = FakeInstagram()
    post = make_post(remote_id="17920238422030506")
    metrics = run(fake, lambda a: a.fetch_metrics([post], make_account()))
    m = metrics["17920238422030506"]
    assert (m.reach, m.likes, m.comments, m.shares, m.saves, m.views) == (
        1320,
        87,
        9,
        4,
        31,
        2210,
    )
    request = next(r for r in fake.requests if r.url.path.endswith("/insights"))
    assert request.url.params["metric"] == "reach,likes,comments,shares,saved,views"


def test_fetch_metrics_leaves_out_media_instagram_no_longer_has() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gone/insights"):
            return graph_error(400, 100, "Object with ID 'gone' does not exist", error_subcode=33)
        return httpx.Response(200, json=_INSIGHTS)

    posts = [make_post(remote_id="gone"), make_post(remote_id="kept")]
    metrics = run(handler, lambda a: a.fetch_metrics(posts, make_account()))
    assert list(metrics) == ["kept"]


# --------------------------------------------------------------------------- local Reels


class FakeReels(FakeInstagram):
    """Instagram with the resumable Reels upload: ``upload_type=resumable`` containers and
    ``POST rupload.facebook.com/ig-api-upload/{version}/{container}`` (headers
    ``Authorization: OAuth``, ``offset``, ``file_size``), answered ``{"success": true,
    "message": "Upload successful."}`` (Instagram Graph API, Reels publishing)."""

    def __init__(self, *, fail_uploads: int = 0) -> None:
        super().__init__()
        self.fail_uploads = fail_uploads
        self.uploads: list[httpx.Request] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "rupload.facebook.com":
            self.uploads.append(request)
            if self.fail_uploads:
                self.fail_uploads -= 1
                return httpx.Response(
                    500, json={"debug_info": {"type": "ProcessingFailedError", "message": "x"}}
                )
            return httpx.Response(200, json={"success": True, "message": "Upload successful."})
        return super().answer(request)


@pytest.mark.usefixtures("media_roots")
def test_a_local_video_is_uploaded_as_a_reel_then_published(tmp_path: Path) -> None:
    path = mp4(tmp_path, "reel.mp4", size=9000)
    fake = FakeReels()
    post = make_post(media=(path,))
    with capture_logs() as logs:
        result = run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    ((container, params),) = fake.containers.items()
    assert params == {
        "media_type": "REELS",
        "upload_type": "resumable",
        "caption": "How we pack a parcel in 30 seconds #howto",
        "access_token": TOKEN,
    }
    (upload,) = fake.uploads
    assert str(upload.url) == f"https://rupload.facebook.com/ig-api-upload/v21.0/{container}"
    assert upload.headers["authorization"] == f"OAuth {TOKEN}"
    assert (upload.headers["offset"], upload.headers["file_size"]) == ("0", "9000")
    assert upload.content == Path(path).read_bytes()
    assert [e["sent"] for e in logs if e["event"] == "instagram_reel_upload"] == [9000]
    assert result.remote_id == "17920238422030506"


@pytest.mark.usefixtures("media_roots")
def test_a_failed_reel_upload_is_transient(tmp_path: Path) -> None:
    fake = FakeReels(fail_uploads=1)
    post = make_post(media=(mp4(tmp_path, "reel.mp4", size=9000),))
    with pytest.raises(Transient, match="Reel upload failed"):
        run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    assert fake.published == {}


def test_a_local_reel_is_checked_at_validation(tmp_path: Path) -> None:
    adapter = offline_adapter(InstagramAdapter)
    ok = mp4(tmp_path, "ok.mp4", seconds=30)
    assert adapter.validate(make_post(media=(ok,)), make_account()) == []
    # A Reel's size and length are checked by the core from the file (test_plan_video.py).
    (issue,) = adapter.validate(make_post(media=(ok, IMAGE)), make_account())
    assert "is not a URL" in issue.message  # in a carousel, Instagram fetches every item


def test_a_restarted_adapter_waits_on_the_video_container_it_noted(tmp_path: Path) -> None:
    from scheduler.checkpoints import Checkpoints

    fake = FakeInstagram(processing=12)
    post = make_post(media=("https://cdn.example.com/clips/launch.mp4",))

    def restarted(client: httpx.AsyncClient) -> InstagramAdapter:
        adapter = InstagramAdapter(client, checkpoints=Checkpoints(tmp_path))
        adapter.poll_interval = 0
        return adapter

    with pytest.raises(Transient, match="still processing"):
        run_adapter(restarted, fake, lambda a: a.publish(post, make_account(), "k1"))
    # A new process: the noted container is asked, not a new one built (Instagram would
    # fetch and process the video again).
    published = run_adapter(restarted, fake, lambda a: a.publish(post, make_account(), "k1"))
    assert len(fake.containers) == 1
    assert published.remote_id == "17920238422030506"
    assert Checkpoints(tmp_path).load("instagram", "brand-ig\x1fk1#container") is None  # forgotten


def test_lookup_after_a_restart_asks_the_noted_container(tmp_path: Path) -> None:
    from scheduler.checkpoints import Checkpoints

    fake = FakeInstagram()
    fake.processing = 0
    post = make_post()

    def restarted(client: httpx.AsyncClient) -> InstagramAdapter:
        return InstagramAdapter(client, checkpoints=Checkpoints(tmp_path))

    fake.fail_publish = graph_error(500, 2, "Service temporarily unavailable", is_transient=True)
    with pytest.raises(Transient):
        run_adapter(restarted, fake, lambda a: a.publish(post, make_account(), "k1"))
    for i in range(50):  # a full page of later posts: the listing alone could not tell
        fake.published[str(i)] = f"later post {i}"
    # Never published, and the noted container says so: certainly not out.
    assert (
        run_adapter(
            restarted, fake, lambda a: a.lookup(replace(post, idempotency_key="k1"), make_account())
        )
        is None
    )
