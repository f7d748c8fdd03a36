"""VK adapter: wall.post with guid, errors inside HTTP 200, photo uploads, metrics, lookup."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import smm_vk
from adapter_support import form, registered_adapters
from smm_vk import VKAdapter
from smm_vk.api import classify_error

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
TOKEN = "vk1.a.secret-vk-token"
GROUP = -218374651
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
UPLOAD_URL = "https://pu.vk.com/c909218/ss2244/upload.php?act=do_add&mid=1&aid=-14&gid=218374651"


def make_account(owner_id: int | str = GROUP) -> Account:
    return account_with_secrets(
        "brand-vk",
        "vk",
        {"owner_id": owner_id},
        secrets={"access_token": TOKEN},
        timezone="Europe/Moscow",
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="v1",
        account="brand-vk",
        content_type="medal",
        text="Top 5 checklists of the year",
        link="https://blog.example.com/checklists",
        tags=("checklist",),
        idempotency_key="v1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def vk_error(code: int, message: str) -> httpx.Response:
    params = [{"key": "method", "value": "wall.post"}, {"key": "oauth", "value": "1"}]
    error = {"error_code": code, "error_msg": message, "request_params": params}
    return httpx.Response(200, json={"error": error})


def wall_item(post_id: int, text: str, date: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": post_id,
        "owner_id": GROUP,
        "from_id": GROUP,
        "date": int(date.timestamp()),
        "text": text,
        "likes": {"count": 48, "user_likes": 0, "can_like": 1},
        "reposts": {"count": 7, "user_reposted": 0},
        "comments": {"count": 12, "can_post": 1},
        "views": {"count": 3190},
        **extra,
    }


class FakeVK(RecordingHandler):
    """api.vk.com and its upload server, answering as VK's docs describe."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: dict[str, dict[str, str]] = {}  # guid -> wall.post form
        self.wall: list[dict[str, Any]] = []
        self.uploads = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "pu.vk.com":
            self.uploads += 1
            photo = json.dumps([{"photo": "a1b2c3", "sizes": [], "kid": "k"}])
            return httpx.Response(200, json={"server": 909218, "photo": photo, "hash": "f00d"})
        # Media are fetched from the address their host was resolved to, named in Host.
        if request.headers["host"] == "images.example.com":
            return httpx.Response(
                200, content=b"\xff\xd8\xff\xe0jpeg", headers={"content-type": "image/jpeg"}
            )
        method = request.url.path.rsplit("/", 1)[-1]
        params = form(request)
        if method == "wall.post":
            # VK makes one post per guid.
            if params["guid"] not in self.posts:
                self.posts[params["guid"]] = params
                self.wall.insert(0, wall_item(4520 + len(self.posts), params["message"], DUE))
            post_id = list(self.posts).index(params["guid"]) + 4521
            return httpx.Response(200, json={"response": {"post_id": post_id}})
        if method == "wall.getById":
            wanted = params["posts"].split(",")
            items = [i for i in self.wall if f"{i['owner_id']}_{i['id']}" in wanted]
            return httpx.Response(200, json={"response": {"items": items}})
        if method == "wall.get":
            return httpx.Response(
                200, json={"response": {"count": len(self.wall), "items": self.wall}}
            )
        if method == "photos.getWallUploadServer":
            body = {"upload_url": UPLOAD_URL, "album_id": -14, "user_id": 1}
            return httpx.Response(200, json={"response": body})
        if method == "photos.saveWallPhoto":
            photo = {"id": 457239017 + self.uploads, "owner_id": GROUP, "album_id": -14}
            return httpx.Response(200, json={"response": [photo]})
        return vk_error(3, "Unknown method passed")


def run(handler: Handler, call: Callable[[VKAdapter], Awaitable[T]]) -> T:
    return run_adapter(VKAdapter, handler, call)


def publish(
    handler: Handler,
    post: OutgoingPost | None = None,
    account: Account | None = None,
) -> Any:
    post = post or make_post()
    account = account or make_account()
    return run(handler, lambda a: a.publish(post, account, post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestVKContract(AdapterContract):
    adapter_class = VKAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeVK()
        answers = {
            "rate_limited": (6, "Too many requests per second"),
            "server_error": (10, "Internal server error: Unknown error, try later"),
            "auth_expired": (5, "User authorization failed: invalid access_token (4)."),
            "rejected": (
                100,
                "One of the parameters specified was missing or invalid: message is undefined",
            ),
        }
        code, message = answers[scenario]
        return lambda request: vk_error(code, message)


# --------------------------------------------------------------------------- publishing


def test_community_post_sends_guid_from_group_message_and_link_attachment() -> None:
    vk = FakeVK()
    result = publish(vk)
    (request,) = vk.requests
    assert request.url.path == "/method/wall.post"
    assert form(request) == {
        "owner_id": str(GROUP),
        "from_group": "1",
        "message": "Top 5 checklists of the year\n\n#checklist",
        "guid": "v1-key",
        "attachments": "https://blog.example.com/checklists",
        "v": "5.199",
        "access_token": TOKEN,
    }
    assert result == Published(f"{GROUP}_4521", url=f"https://vk.com/wall{GROUP}_4521")


def test_the_token_is_never_in_a_url() -> None:
    vk = FakeVK()
    publish(vk)
    assert all(TOKEN not in str(r.url) for r in vk.requests)


def test_a_post_on_a_users_own_wall_is_not_from_a_group() -> None:
    vk = FakeVK()
    publish(vk, account=make_account(owner_id=1234567))
    assert "from_group" not in form(vk.requests[0])


def test_resending_after_a_lost_answer_cannot_duplicate_thanks_to_the_guid() -> None:
    vk = FakeVK()
    first = publish(vk)
    again = publish(vk)
    assert len(vk.posts) == 1
    assert first == again


def test_photos_are_uploaded_to_the_wall_upload_server_then_attached(tmp_path: Path) -> None:
    image = tmp_path / "chart.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    vk = FakeVK()
    post = make_post(media=(str(image), "https://images.example.com/cover.jpg"))
    publish(vk, post)
    methods = [
        r.url.path.rsplit("/", 1)[-1] if r.url.host == "api.vk.com" else r.headers["host"]
        for r in vk.requests
    ]
    assert methods == [
        "photos.getWallUploadServer",
        "pu.vk.com",
        "photos.saveWallPhoto",
        "images.example.com",
        "photos.getWallUploadServer",
        "pu.vk.com",
        "photos.saveWallPhoto",
        "wall.post",
    ]
    assert form(vk.requests[0]) == {"group_id": "218374651", "v": "5.199", "access_token": TOKEN}
    upload = vk.requests[1]
    assert b'name="photo"; filename="chart.png"' in upload.content
    saved = form(vk.requests[2])
    assert (saved["group_id"], saved["server"], saved["hash"]) == ("218374651", "909218", "f00d")
    assert form(vk.requests[-1])["attachments"] == (
        f"photo{GROUP}_457239018,photo{GROUP}_457239019,https://blog.example.com/checklists"
    )


def test_an_image_vk_cannot_use_is_rejected_before_posting(tmp_path: Path) -> None:
    image = tmp_path / "broken.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 a JPEG start, then nothing VK can use")
    vk = FakeVK()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "pu.vk.com":
            return httpx.Response(200, json={"server": 1, "photo": "[]", "hash": "x"})
        return vk(request)

    with pytest.raises(Rejected, match=r"photo upload of broken\.jpg failed"):
        publish(handler, make_post(media=(str(image),)))
    assert vk.posts == {}


@pytest.mark.parametrize(("status", "expected"), [(404, Rejected), (503, Transient)])
def test_an_image_url_that_cannot_be_downloaded(status: int, expected: type[PublishError]) -> None:
    vk = FakeVK()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "images.example.com":
            return httpx.Response(status)
        return vk(request)

    with pytest.raises(expected, match=f"HTTP {status}"):
        publish(handler, make_post(media=("https://images.example.com/gone.jpg",)))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "message", "expected", "wait"),
    [
        (6, "Too many requests per second", RateLimited, timedelta(seconds=1)),
        (9, "Flood control: too much messages sent to user", RateLimited, timedelta(minutes=10)),
        (14, "Captcha needed", RateLimited, timedelta(minutes=15)),
        (29, "Rate limit reached", RateLimited, timedelta(hours=1)),
        (5, "User authorization failed: access_token has expired.", AuthExpired, None),
        (
            27,
            "Group authorization failed: method is unavailable with group auth.",
            AuthExpired,
            None,
        ),
        (
            28,
            "Application authorization failed: method is unavailable with service token.",
            AuthExpired,
            None,
        ),
        (15, "Access denied: no access to call this method", AuthExpired, None),
        (7, "Permission to perform this action is denied", AuthExpired, None),
        (17, "Validation required: please open redirect_uri in browser", AuthExpired, None),
        (1, "Unknown error occurred", Transient, None),
        (10, "Internal server error", Transient, None),
        (36, "Method execution was interrupted due to timeout", OutcomeUnknown, None),
        (100, "One of the parameters specified was missing or invalid", Rejected, None),
        (214, "Access to adding post denied: you can only add 50 posts a day", Rejected, None),
        (219, "Advertisement post was recently added", Rejected, None),
        (220, "Too many recipients", Rejected, None),
        (222, "Hyperlinks are forbidden", Rejected, None),
        (3610, "Some future error", Rejected, None),
    ],
)
def test_vk_error_codes_map_to_the_taxonomy(
    code: int, message: str, expected: type[PublishError], wait: timedelta | None
) -> None:
    before = datetime.now(UTC)
    error = classify_error(
        {"error_code": code, "error_msg": message}, method="wall.post", mutating=True
    )
    assert type(error) is expected
    assert error.message == f"VK: {message} [error {code} in wall.post]"
    if wait is not None:
        assert error.retry_at is not None
        assert wait - timedelta(seconds=1) <= error.retry_at - before <= wait + timedelta(seconds=1)


def test_a_timeout_error_on_a_read_is_transient() -> None:
    error = classify_error(
        {"error_code": 36, "error_msg": "timeout"}, method="wall.get", mutating=False
    )
    assert isinstance(error, Transient)


def test_errors_inside_http_200_are_classified_not_taken_for_success() -> None:
    with pytest.raises(Rejected, match="Access to adding post denied"):
        publish(lambda r: vk_error(214, "Access to adding post denied"))


@pytest.mark.parametrize(
    ("status", "expected"),
    [(502, Transient), (429, RateLimited), (504, OutcomeUnknown), (403, Rejected)],
)
def test_http_errors_from_vks_front_end(status: int, expected: type[PublishError]) -> None:
    with pytest.raises(expected, match=f"HTTP {status}"):
        publish(lambda r: httpx.Response(status, text="<html>error</html>"))


def test_a_token_echoed_in_an_error_message_is_redacted() -> None:
    with pytest.raises(AuthExpired) as caught:
        publish(lambda r: vk_error(5, f"User authorization failed: invalid token {TOKEN}"))
    assert TOKEN not in caught.value.message


@pytest.mark.parametrize("owner", ["", "club123", 0])
def test_validate_flags_a_missing_or_malformed_owner_id(owner: Any) -> None:
    issues = offline_adapter(VKAdapter).validate(make_post(), make_account(owner_id=owner))
    assert [i.field for i in issues] == ["account"]


def test_validate_flags_text_over_16384_characters() -> None:
    post = make_post(text="я" * 16385, tags=())
    issues = offline_adapter(VKAdapter).validate(post, make_account())
    assert [i.field for i in issues] == ["text"]


# --------------------------------------------------------------------------- metrics, lookup


def test_fetch_metrics_reads_likes_comments_reposts_and_views_in_one_call() -> None:
    vk = FakeVK()
    vk.wall = [wall_item(4521, "a", DUE), wall_item(4522, "b", DUE, views=None)]
    posts = [
        make_post(remote_id=f"{GROUP}_4521"),
        make_post(remote_id=f"{GROUP}_4522"),
        make_post(remote_id=f"{GROUP}_9999"),
    ]
    metrics = run(vk, lambda a: a.fetch_metrics(posts, make_account()))
    (request,) = vk.requests
    assert form(request)["posts"] == f"{GROUP}_4521,{GROUP}_4522,{GROUP}_9999"
    m = metrics[f"{GROUP}_4521"]
    assert (m.likes, m.comments, m.shares, m.views) == (48, 12, 7, 3190)
    assert metrics[f"{GROUP}_4522"].views is None
    assert f"{GROUP}_9999" not in metrics


def test_fetch_metrics_asks_for_at_most_100_posts_a_call() -> None:
    vk = FakeVK()
    posts = [make_post(remote_id=f"{GROUP}_{i}") for i in range(150)]
    run(vk, lambda a: a.fetch_metrics(posts, make_account()))
    assert [len(form(r)["posts"].split(",")) for r in vk.requests] == [100, 50]


def test_lookup_finds_the_post_by_its_text_after_the_due_time() -> None:
    vk = FakeVK()
    vk.wall = [
        wall_item(4530, "Top 5 checklists of the year\n\n#checklist", DUE + timedelta(seconds=3))
    ]
    found = run(vk, lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(f"{GROUP}_4530", url=f"https://vk.com/wall{GROUP}_4530")


def test_lookup_ignores_an_identical_older_post_and_says_not_published() -> None:
    vk = FakeVK()
    vk.wall = [
        wall_item(4400, "Top 5 checklists of the year\n\n#checklist", DUE - timedelta(days=30))
    ]
    assert run(vk, lambda a: a.lookup(make_post(), make_account())) is None


def test_lookup_cannot_tell_when_fifty_newer_posts_hide_the_due_time() -> None:
    vk = FakeVK()
    old_pinned = wall_item(1, "pinned", DUE - timedelta(days=300), is_pinned=1)
    vk.wall = [old_pinned] + [
        wall_item(5000 + i, f"later {i}", DUE + timedelta(hours=i)) for i in range(49)
    ]
    with pytest.raises(OutcomeUnknown, match="do not reach back"):
        run(vk, lambda a: a.lookup(make_post(), make_account()))


def test_the_plugin_registers_the_vk_platform() -> None:
    assert registered_adapters(smm_vk.register_platforms) == [VKAdapter]
    assert VKAdapter.platform == "vk"
