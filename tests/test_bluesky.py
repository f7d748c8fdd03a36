"""The Bluesky adapter against a fake PDS that answers with bodies captured from the live
network: sessions, idempotent record creation, facets, metrics, failures case by case, and
text counted in graphemes."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import smm_bluesky
from adapter_support import (
    PNG_SIGNATURE,
    network_page,
    options_read_by,
    registered_adapters,
    undocumented,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from smm_bluesky import BlueskyAdapter, register_platforms
from smm_bluesky import adapter as bluesky_adapter
from smm_bluesky.facets import find_spans
from smm_bluesky.tid import TID_PATTERN, tid_for_key

from scheduler.adapter import (
    Account,
    AuthExpired,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    PostOptions,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    ThreadPart,
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
from scheduler.text import grapheme_count, graphemes

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bluesky"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


DID_DOC = fixture("did_doc.json")  # handle, DID and DID document of a real account
HANDLE, DID = DID_DOC["handle"], DID_DOC["did"]
PDS_HOST = "shimeji.us-east.host.bsky.network"  # the PDS its DID document names
PASSWORD = "app-pass-4f2a-9c1e"
KEY = "post-7-key"
RKEY = tid_for_key(KEY)
POST = "app.bsky.feed.post"
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "3000",
    "RateLimit-Remaining": "2999",
    "RateLimit-Reset": "1785600000",
}


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "sky", "bluesky", {"handle": HANDLE, **options}, secrets={"app_password": PASSWORD}
    )


def make_post(text: str = "Hello Bluesky", **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="post-7",
        account="sky",
        content_type="instruction",
        text=text,
        idempotency_key=KEY,
        due_at=datetime(2026, 8, 1, 9, 0, tzinfo=UTC),
    )
    return replace(post, **changes)


def xrpc_error(status: int, error: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": error, "message": message})


class FakePds(RecordingHandler):
    """Enough of an entryway and a PDS to publish to, answering with captured bodies.

    Records live in ``records`` by record key; ``fail`` injects an answer (or raises an
    httpx error) for a method id, ``once`` for the next call only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, httpx.Response | Exception] = {}
        self.once: dict[str, httpx.Response | Exception] = {}
        self.sessions = 0
        self.access = ""
        self.refresh = ""
        self.password = PASSWORD
        self.refresh_allowed = True
        #: How a create under a taken key fails: the reference PDS lets a 500 escape.
        self.duplicate = xrpc_error(500, "InternalServerError", "Internal Server Error")
        self.drop_create_answer = False
        self.counts = {"likeCount": 5, "repostCount": 2, "replyCount": 1, "quoteCount": 1}
        self.handles = {"bsky.app": fixture("resolve_handle.json")["did"]}

    def calls(self, nsid: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/xrpc/{nsid}"]

    def answer(self, request: httpx.Request) -> httpx.Response:
        nsid = request.url.path.removeprefix("/xrpc/")
        injected = self.once.pop(nsid, None) or self.fail.get(nsid)
        if isinstance(injected, Exception):
            raise injected
        if injected is not None:
            return injected
        response = getattr(self, nsid.replace(".", "_"))(request)
        response.headers.update(
            {
                "RateLimit-Limit": "3000",
                "RateLimit-Remaining": "2999",
                "RateLimit-Reset": "1785600000",
            }
        )
        return response

    # -- sessions --------------------------------------------------------------------------

    def _new_session(self) -> httpx.Response:
        self.sessions += 1
        self.access, self.refresh = f"access-{self.sessions}", f"refresh-{self.sessions}"
        return httpx.Response(
            200,
            json={
                "did": DID,
                "handle": HANDLE,
                "didDoc": DID_DOC["didDoc"],
                "accessJwt": self.access,
                "refreshJwt": self.refresh,
                "active": True,
            },
        )

    def expire_access_token(self) -> None:
        self.access = "expired"

    def com_atproto_server_createSession(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "bsky.social"
        body = json.loads(request.content)
        if (body["identifier"], body["password"]) != (HANDLE, self.password):
            return xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        return self._new_session()

    def com_atproto_server_refreshSession(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "bsky.social"
        assert request.content == b"", "refreshSession takes no body"
        if not self.refresh_allowed or request.headers["authorization"] != f"Bearer {self.refresh}":
            return xrpc_error(400, "ExpiredToken", "Token has been revoked")
        return self._new_session()

    def _authorized(self, request: httpx.Request) -> httpx.Response | None:
        assert request.url.host == PDS_HOST
        if request.headers.get("authorization") == f"Bearer {self.access}":
            return None
        return xrpc_error(400, "ExpiredToken", "Token has expired")

    # -- repository ------------------------------------------------------------------------

    def com_atproto_identity_resolveHandle(self, request: httpx.Request) -> httpx.Response:
        handle = request.url.params["handle"]
        if handle not in self.handles:
            return xrpc_error(400, "InvalidRequest", "Unable to resolve handle")
        return httpx.Response(200, json={"did": self.handles[handle]})

    def com_atproto_repo_uploadBlob(self, request: httpx.Request) -> httpx.Response:
        if refused := self._authorized(request):
            return refused
        blob = {
            "$type": "blob",
            "ref": {"$link": f"bafkrei{len(request.content)}"},
            "mimeType": request.headers["content-type"],
            "size": len(request.content),
        }
        return httpx.Response(200, json={"blob": blob})

    def com_atproto_repo_createRecord(self, request: httpx.Request) -> httpx.Response:
        if refused := self._authorized(request):
            return refused
        body = json.loads(request.content)
        assert (body["repo"], body["collection"]) == (DID, POST)
        if body["rkey"] in self.records:
            return self.duplicate
        self.records[body["rkey"]] = body["record"]
        if self.drop_create_answer:
            raise httpx.ReadTimeout("the answer never came")
        return httpx.Response(
            200, json={"uri": f"at://{DID}/{POST}/{body['rkey']}", "cid": "bafyreiabc"}
        )

    def com_atproto_repo_getRecord(self, request: httpx.Request) -> httpx.Response:
        if refused := self._authorized(request):
            return refused
        params = request.url.params
        uri = f"at://{params['repo']}/{params['collection']}/{params['rkey']}"
        if params["rkey"] not in self.records:
            return xrpc_error(400, "RecordNotFound", f"Could not locate record: {uri}")
        body = fixture("post_record.json")
        body.update(uri=uri, value=self.records[params["rkey"]])
        return httpx.Response(200, json=body)

    def app_bsky_feed_getPosts(self, request: httpx.Request) -> httpx.Response:
        if refused := self._authorized(request):
            return refused
        uris = request.url.params.get_list("uris")
        assert len(uris) <= 25
        captured = fixture("thread_view_post_with_embed_media.json")["thread"]["post"]
        views = [
            {**copy.deepcopy(captured), "uri": uri, **self.counts}
            for uri in uris
            if uri.rsplit("/", 1)[-1] in self.records
        ]
        return httpx.Response(200, json={"posts": views})

    def app_bsky_actor_getProfile(self, request: httpx.Request) -> httpx.Response:
        if refused := self._authorized(request):
            return refused
        return httpx.Response(200, json={"did": DID, "handle": HANDLE, "followersCount": 42})


def run(handler: Handler, call: Callable[[BlueskyAdapter], Awaitable[T]]) -> T:
    return run_adapter(BlueskyAdapter, handler, call)


def publish(
    handler: Handler, post: OutgoingPost | None = None, key: str = KEY, **options: Any
) -> Published:
    return run(handler, lambda a: a.publish(post or make_post(), make_account(**options), key))


# --------------------------------------------------------------------------- publishing


def test_publish_creates_the_post_under_the_record_key_derived_from_the_idempotency_key() -> None:
    pds = FakePds()
    published = publish(pds, langs=["en"])
    assert published == Published(
        remote_id=f"at://{DID}/{POST}/{RKEY}",
        url=f"https://bsky.app/profile/{HANDLE}/post/{RKEY}",
    )
    record = pds.records[RKEY]
    assert record["$type"] == POST
    assert record["text"] == "Hello Bluesky"
    assert record["langs"] == ["en"]
    assert datetime.fromisoformat(record["createdAt"]).tzinfo is not None
    assert record["createdAt"].endswith("Z")


def test_login_goes_to_the_service_and_the_rest_to_the_pds_of_the_did_document() -> None:
    pds = FakePds()
    publish(pds)
    hosts = {r.url.path.removeprefix("/xrpc/"): r.url.host for r in pds.requests}
    assert hosts == {
        "com.atproto.server.createSession": "bsky.social",
        "com.atproto.repo.createRecord": PDS_HOST,
    }


def test_the_session_is_reused_across_publishes() -> None:
    pds = FakePds()

    async def call(adapter: BlueskyAdapter) -> None:
        await adapter.publish(make_post(), make_account(), "key-a")
        await adapter.publish(make_post(), make_account(), "key-b")

    run(pds, call)
    assert pds.sessions == 1
    assert len(pds.records) == 2


def test_content_ids_are_remembered_for_the_latest_records_only() -> None:
    # A thread's parts need the CIDs of the records just made; one per post ever published
    # would grow with the daemon's lifetime.
    pds = FakePds()
    kept: list[int] = []

    async def call(adapter: BlueskyAdapter) -> None:
        for i in range(bluesky_adapter._CIDS_KEPT + 50):
            await adapter.publish(make_post(), make_account(), f"key-{i}")
        kept.append(len(adapter._cids))
        await adapter.publish(
            make_post("One", options=PostOptions(thread=("Two",))), make_account(), "t"
        )

    run(pds, call)
    assert kept == [bluesky_adapter._CIDS_KEPT]
    assert [r["text"] for r in pds.records.values()][-2:] == ["One", "Two"]


def test_an_expired_token_is_refreshed_and_the_call_retried_once() -> None:
    pds = FakePds()

    async def call(adapter: BlueskyAdapter) -> Published:
        await adapter.publish(make_post(), make_account(), "key-a")
        pds.expire_access_token()
        return await adapter.publish(make_post(), make_account(), KEY)

    published = run(pds, call)
    assert published.remote_id.endswith(RKEY)
    (refresh,) = pds.calls("com.atproto.server.refreshSession")
    assert refresh.headers["authorization"] == "Bearer refresh-1"
    assert pds.calls("com.atproto.repo.createRecord")[-1].headers["authorization"] == (
        "Bearer access-2"
    )


def test_a_refused_refresh_falls_back_to_one_fresh_login() -> None:
    pds = FakePds()
    pds.refresh_allowed = False

    async def call(adapter: BlueskyAdapter) -> Published:
        await adapter.publish(make_post(), make_account(), "key-a")
        pds.expire_access_token()
        return await adapter.publish(make_post(), make_account(), KEY)

    assert run(pds, call).remote_id.endswith(RKEY)
    assert len(pds.calls("com.atproto.server.createSession")) == 2


def test_a_revoked_app_password_is_auth_expired() -> None:
    pds = FakePds()
    pds.password = "another"
    with pytest.raises(AuthExpired, match="Invalid identifier or password") as info:
        publish(pds)
    assert PASSWORD not in str(info.value)


def test_a_token_refused_even_after_renewal_is_auth_expired() -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.createRecord"] = xrpc_error(
        401, "AuthenticationRequired", "Authentication Required"
    )
    with pytest.raises(AuthExpired):
        publish(pds)
    assert len(pds.calls("com.atproto.repo.createRecord")) == 2  # tried again once, renewed


@pytest.mark.parametrize(
    "duplicate",
    [
        xrpc_error(500, "InternalServerError", "Internal Server Error"),
        xrpc_error(400, "InvalidSwap", "Record was at bafyreiabc"),
        xrpc_error(400, "InvalidRequest", "Record already exists"),
        xrpc_error(409, "Conflict", "conflict"),
    ],
    ids=["reference-pds-500", "invalid-swap", "already-exists", "409"],
)
def test_a_retry_after_a_lost_answer_finds_the_post_instead_of_duplicating(
    duplicate: httpx.Response,
) -> None:
    pds = FakePds()
    pds.duplicate = duplicate
    pds.drop_create_answer = True

    async def call(adapter: BlueskyAdapter) -> Published:
        with pytest.raises(OutcomeUnknown):
            await adapter.publish(make_post(), make_account(), KEY)
        pds.drop_create_answer = False
        return await adapter.publish(make_post(), make_account(), KEY)

    published = run(pds, call)
    assert published.remote_id == f"at://{DID}/{POST}/{RKEY}"
    assert list(pds.records) == [RKEY]
    assert len(pds.calls("com.atproto.repo.getRecord")) == 1


def test_a_5xx_before_the_record_exists_is_transient() -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.createRecord"] = xrpc_error(503, "NotEnoughResources", "busy")
    with pytest.raises(Transient, match="busy"):
        publish(pds)
    assert len(pds.calls("com.atproto.repo.getRecord")) == 1  # it checked before saying so


def test_a_5xx_whose_check_also_fails_is_an_unknown_outcome() -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.createRecord"] = xrpc_error(500, "InternalServerError", "oops")
    pds.fail["com.atproto.repo.getRecord"] = httpx.ReadTimeout("no answer")
    with pytest.raises(OutcomeUnknown):
        publish(pds)


def test_429_is_rate_limited_until_the_ratelimit_reset_header() -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.createRecord"] = xrpc_error(
        429,
        "RateLimitExceeded",
        "Rate Limit Exceeded",
        **{"RateLimit-Limit": "5000", "RateLimit-Remaining": "0", "RateLimit-Reset": "1785600300"},
    )

    async def call(adapter: BlueskyAdapter) -> Any:
        with pytest.raises(RateLimited) as info:
            await adapter.publish(make_post(), make_account(), KEY)
        return info.value, adapter.rate_limit_status["sky"]

    error, status = run(pds, call)
    assert error.retry_at == datetime.fromtimestamp(1785600300, UTC)
    assert (status.limit, status.remaining) == (5000, 0)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            xrpc_error(400, "InvalidRequest", "Invalid app.bsky.feed.post record: text too long"),
            Rejected,
        ),
        (xrpc_error(400, "BlobTooLarge", "This file is too large"), Rejected),
        (xrpc_error(400, "AccountTakedown", "Account has been taken down"), AuthExpired),
        (xrpc_error(401, "InvalidToken", "Bad token"), AuthExpired),
    ],
)
def test_an_error_answer_to_the_create_call_is_classified(
    answer: httpx.Response, expected: type[PublishError]
) -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.createRecord"] = answer
    with pytest.raises(expected) as info:
        publish(pds)
    assert type(info.value) is expected
    assert info.value.message == answer.json()["message"]
    assert info.value.code == answer.json()["error"]


@pytest.mark.parametrize(
    ("nsid", "fault", "expected"),
    [
        ("com.atproto.server.createSession", httpx.ConnectError("refused"), Transient),
        ("com.atproto.server.createSession", httpx.ReadTimeout("slow"), Transient),
        ("com.atproto.repo.uploadBlob", httpx.ReadTimeout("slow"), Transient),
        ("com.atproto.repo.createRecord", httpx.ConnectError("refused"), Transient),
        ("com.atproto.repo.createRecord", httpx.ReadTimeout("slow"), OutcomeUnknown),
        ("com.atproto.repo.createRecord", httpx.RemoteProtocolError("gone"), OutcomeUnknown),
        ("com.atproto.repo.createRecord", httpx.Response(200, html="<h1>hi</h1>"), OutcomeUnknown),
        ("com.atproto.server.createSession", httpx.Response(200, html="<h1>hi</h1>"), Transient),
    ],
)
def test_a_transport_failure_is_classified_by_whether_the_post_may_exist(
    tmp_path: Path, nsid: str, fault: httpx.Response | Exception, expected: type[PublishError]
) -> None:
    pds = FakePds()
    pds.fail[nsid] = fault
    image = tmp_path / "a.png"
    image.write_bytes(PNG_SIGNATURE)
    with pytest.raises(expected):
        publish(pds, make_post(media=(str(image),)))


def test_an_overlong_post_is_rejected_before_anything_is_sent() -> None:
    pds = FakePds()
    with pytest.raises(Rejected, match="301 characters"):
        publish(pds, make_post("🇺🇦" * 301))
    assert pds.requests == []


# --------------------------------------------------------------------------- rich text, images


def test_links_mentions_and_tags_become_facets_with_byte_offsets() -> None:
    pds = FakePds()
    text = "👋 Привет @bsky.app: read https://example.com/путь, then #SMM!"
    publish(pds, make_post(text))
    record = pds.records[RKEY]
    raw = text.encode("utf-8")
    found = {}
    for f in record["facets"]:
        piece = raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode("utf-8")
        found[piece] = f["features"][0]
    assert found == {
        "@bsky.app": {
            "$type": "app.bsky.richtext.facet#mention",
            "did": fixture("resolve_handle.json")["did"],
        },
        "https://example.com/путь": {
            "$type": "app.bsky.richtext.facet#link",
            "uri": "https://example.com/путь",
        },
        "#SMM": {"$type": "app.bsky.richtext.facet#tag", "tag": "SMM"},
    }
    (resolve,) = pds.calls("com.atproto.identity.resolveHandle")
    assert resolve.url.params["handle"] == "bsky.app"


def test_a_mention_of_an_unknown_handle_stays_plain_text() -> None:
    pds = FakePds()
    publish(pds, make_post("hi @nobody.example"))
    assert "facets" not in pds.records[RKEY]


def test_images_are_uploaded_and_embedded(tmp_path: Path) -> None:
    pds = FakePds()
    (tmp_path / "a.png").write_bytes(PNG_SIGNATURE + b"fake")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 fake jpeg")
    publish(pds, make_post(media=(str(tmp_path / "a.png"), str(tmp_path / "b.jpg"))))
    uploads = pds.calls("com.atproto.repo.uploadBlob")
    assert [u.headers["content-type"] for u in uploads] == ["image/png", "image/jpeg"]
    assert uploads[0].content == PNG_SIGNATURE + b"fake"
    embed = pds.records[RKEY]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["image"]["mimeType"] for i in embed["images"]] == ["image/png", "image/jpeg"]


def test_a_missing_image_is_rejected() -> None:
    with pytest.raises(Rejected, match="cannot read media file"):
        publish(FakePds(), make_post(media=("/nonexistent/a.png",)))


# --------------------------------------------------------------------------- lookup, metrics


def test_lookup_finds_a_post_published_under_the_derived_key() -> None:
    pds = FakePds()
    pds.records[RKEY] = {"$type": POST, "text": "Hello Bluesky", "createdAt": "2026-08-01T09:00Z"}
    found = run(pds, lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(
        remote_id=f"at://{DID}/{POST}/{RKEY}",
        url=f"https://bsky.app/profile/{HANDLE}/post/{RKEY}",
    )


def test_lookup_reads_a_captured_record_with_fields_it_does_not_know() -> None:
    extended = fixture("extended_post_record.json")  # a record with an unknown "lol" field
    pds = FakePds()
    pds.fail["com.atproto.repo.getRecord"] = httpx.Response(200, json=extended)
    found = run(pds, lambda a: a.lookup(make_post(), make_account()))
    assert found is not None
    assert found.remote_id == extended["uri"]


def test_lookup_says_none_when_the_record_is_not_there() -> None:
    assert run(FakePds(), lambda a: a.lookup(make_post(), make_account())) is None


def test_lookup_that_cannot_ask_is_an_unknown_outcome() -> None:
    pds = FakePds()
    pds.fail["com.atproto.repo.getRecord"] = xrpc_error(502, "BadGateway", "upstream")
    with pytest.raises(OutcomeUnknown, match="upstream"):
        run(pds, lambda a: a.lookup(make_post(), make_account()))


def test_metrics_come_25_posts_per_call_and_leave_out_deleted_posts() -> None:
    pds = FakePds()
    posts = [make_post(remote_id=f"at://{DID}/{POST}/{tid_for_key(str(i))}") for i in range(30)]
    for post in posts[:-1]:  # the last one was deleted
        assert post.remote_id is not None
        pds.records[post.remote_id.rsplit("/", 1)[-1]] = {}
    metrics = run(pds, lambda a: a.fetch_metrics(posts, make_account()))
    batches = [r.url.params.get_list("uris") for r in pds.calls("app.bsky.feed.getPosts")]
    assert [len(b) for b in batches] == [25, 5]
    assert set(metrics) == {p.remote_id for p in posts[:-1]}
    m = metrics[str(posts[0].remote_id)]
    assert (m.likes, m.comments, m.shares, m.followers) == (5, 1, 3, 42)
    assert m.reach is None


def test_metrics_read_the_counts_of_a_captured_post_view() -> None:
    captured = fixture("thread_view_post_with_embed_media.json")["thread"]["post"]
    pds = FakePds()
    pds.fail["app.bsky.feed.getPosts"] = httpx.Response(200, json={"posts": [captured]})
    post = make_post(remote_id=captured["uri"])
    metrics = run(pds, lambda a: a.fetch_metrics([post], make_account()))
    m = metrics[captured["uri"]]
    assert (m.likes, m.comments, m.shares) == (0, 0, 0)


def test_metrics_go_on_without_followers_when_the_profile_cannot_be_read() -> None:
    pds = FakePds()
    pds.records[RKEY] = {}
    pds.fail["app.bsky.actor.getProfile"] = xrpc_error(500, "InternalServerError", "oops")
    post = make_post(remote_id=f"at://{DID}/{POST}/{RKEY}")
    metrics = run(pds, lambda a: a.fetch_metrics([post], make_account()))
    assert metrics[str(post.remote_id)].followers is None
    assert metrics[str(post.remote_id)].likes == 5


# --------------------------------------------------------------------------- validation, length


def adapter() -> BlueskyAdapter:
    return offline_adapter(BlueskyAdapter)


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("https://example.com/a/long/path", 31),  # links count in full on Bluesky
        ("👨‍👩‍👧‍👦", 1),  # ZWJ sequence
        ("🧑🏻‍🤝‍🧑🏿", 1),  # ZWJ sequence with skin tones
        ("🇺🇦🇫🇷🇯🇵", 3),  # flags pair regional indicators
        ("🇺🇦🇫", 2),  # an unpaired indicator stands alone
        ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", 1),  # tag sequence
        ("1️⃣", 1),  # keycap
        ("👍🏽", 1),
        ("e\u0301\u0302", 1),  # stacked combining marks
        ("Z̤͔ͧ̑̓", 1),
        ("漢字テスト", 5),
        ("한국어", 3),
        ("\u1100\u1161\u11a8\u1100\u1161", 2),  # conjoining jamo: 각 + 가
        ("नमस्ते", 3),  # Devanagari conjunct (Unicode 15.1 rule GB9c)
        ("กำ", 1),  # Thai SARA AM is a spacing mark
        ("a\r\nb", 3),
    ],
)
def test_length_is_counted_in_graphemes(text: str, length: int) -> None:
    assert grapheme_count(text) == length
    assert len(list(graphemes(text))) == length
    assert adapter().text_length(text) == length


def test_validate_takes_300_graphemes_of_emoji_and_flags_301() -> None:
    flag = "🇺🇦"
    assert adapter().validate(make_post(flag * 300), make_account()) == []
    (issue,) = adapter().validate(make_post(flag * 301), make_account())
    assert issue.field == "text"
    assert "301 characters" in issue.message


def test_validate_flags_text_over_3000_bytes_even_under_300_graphemes() -> None:
    family = "👨‍👩‍👧‍👦"  # 25 bytes of UTF-8
    assert adapter().validate(make_post(family * 120), make_account()) == []
    (issue,) = adapter().validate(make_post(family * 121), make_account())
    assert issue.field == "text"
    assert "3025 bytes" in issue.message


def test_validate_flags_what_is_not_an_image_and_images_over_a_megabyte(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * 1_000_001)
    issues = adapter().validate(make_post(media=("deck.pdf", str(big))), make_account())
    assert [i.field for i in issues] == ["media", "media"]
    assert "1000001 bytes" in issues[1].message


@given(st.text(max_size=40), st.text(max_size=40))
def test_a_line_break_adds_exactly_one_grapheme(a: str, b: str) -> None:
    assume(not a.endswith("\r"))  # CR LF is one grapheme
    assert grapheme_count(a + "\n" + b) == grapheme_count(a) + 1 + grapheme_count(b)


@given(st.text(max_size=60))
def test_graphemes_partition_the_text(text: str) -> None:
    pieces = list(graphemes(text))
    assert "".join(pieces) == text
    assert all(pieces)
    assert grapheme_count(text) == len(pieces) <= len(text)


# --------------------------------------------------------------------------- facets, TIDs


def spans(text: str) -> list[tuple[str, str, str]]:
    raw = text.encode("utf-8")
    return [
        (s.kind, raw[s.byte_start : s.byte_end].decode("utf-8"), s.value) for s in find_spans(text)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com.", [("link", "https://example.com", "https://example.com")]),
        (
            "(https://en.wikipedia.org/wiki/Foo_(bar))",
            [("link", *["https://en.wikipedia.org/wiki/Foo_(bar)"] * 2)],
        ),
        ("ping @Alice.bsky.social!", [("mention", "@Alice.bsky.social", "alice.bsky.social")]),
        ("mail bob@example.com", []),  # not after white space: an address
        ("@nodot", []),  # a handle is a domain
        ("#tag, #1 and #️⃣", [("tag", "#tag", "tag")]),  # numbers and keycaps are not tags
        ("＃全角タグ", [("tag", "＃全角タグ", "全角タグ")]),
        ("https://x.com/#frag", [("link", "https://x.com/#frag", "https://x.com/#frag")]),
    ],
)
def test_facet_detection(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert spans(text) == expected


def test_record_keys_are_valid_stable_tids_in_the_past() -> None:
    keys = [tid_for_key(f"post-{i}") for i in range(200)]
    assert all(TID_PATTERN.match(k) for k in keys)
    assert len(set(keys)) == 200
    assert tid_for_key("post-1") == keys[1]  # same key, same record, every time
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    for k in keys:
        value = 0
        for ch in k:
            value = value * 32 + alphabet.index(ch)
        assert datetime.fromtimestamp((value >> 10) / 1e6, UTC) < datetime.now(UTC)


def test_the_plugin_registers_the_adapter() -> None:
    assert registered_adapters(register_platforms) == [BlueskyAdapter]
    assert BlueskyAdapter.platform == "bluesky"


def test_every_option_the_adapter_reads_is_documented() -> None:
    options = options_read_by(smm_bluesky)
    assert options
    assert undocumented(options, network_page("bluesky")) == []


# --------------------------------------------------------------------------- the contract


def _contract_handler(scenario: str) -> Handler:
    pds = FakePds()
    if scenario == "rate_limited":
        pds.fail["com.atproto.repo.createRecord"] = xrpc_error(
            429, "RateLimitExceeded", "Rate Limit Exceeded", **{"RateLimit-Reset": "1893920700"}
        )
    elif scenario == "server_error":
        # The PDS is overloaded; reading the record back shows nothing was created.
        pds.fail["com.atproto.repo.createRecord"] = xrpc_error(503, "ServiceUnavailable", "busy")
    elif scenario == "auth_expired":
        pds.password = "the app password was revoked"
    elif scenario == "rejected":
        pds.fail["com.atproto.repo.createRecord"] = xrpc_error(
            400, "InvalidRequest", "Invalid app.bsky.feed.post record: Record/text is too long"
        )
    return pds


class TestBlueskyContract(AdapterContract):
    adapter_class = BlueskyAdapter
    secret_values = (PASSWORD, "access-1", "refresh-1")

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        return _contract_handler(scenario)


def test_alt_text_goes_into_each_image_of_the_embed(tmp_path: Path) -> None:
    # app.bsky.embed.images#image: {"alt": string, "image": blob} (the lexicon; the recorded
    # thread_view_post_with_embed_media.json carries the same field on the live network).
    pds = FakePds()
    (tmp_path / "a.png").write_bytes(PNG_SIGNATURE + b"fake")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 fake jpeg")
    meta = (MediaMeta("A red bike"), MediaMeta())
    post = make_post(media=(str(tmp_path / "a.png"), str(tmp_path / "b.jpg")), media_meta=meta)
    publish(pds, post)
    images = pds.records[RKEY]["embed"]["images"]
    assert [i["alt"] for i in images] == ["A red bike", ""]
    recorded = fixture("thread_view_post_with_embed_media.json")["thread"]["post"]["record"]
    assert set(recorded["embed"]["media"]["images"][0]) == set(images[0])  # alt, image


def test_the_posts_language_replaces_the_accounts_langs() -> None:
    pds = FakePds()
    publish(pds, make_post(options=PostOptions(language="lv")))
    assert pds.records[RKEY]["langs"] == ["lv"]


def test_a_thread_is_a_chain_of_replies_under_keys_of_their_own() -> None:
    # app.bsky.feed.post#replyRef: root and parent, each a com.atproto.repo.strongRef
    # {uri, cid} (the lexicon).
    pds = FakePds()
    first = publish(pds, make_post("One", options=PostOptions(thread=("Two", "Three"))))
    assert first.remote_id == f"at://{DID}/{POST}/{RKEY}"  # metrics are the first part's
    parts = {k: v for k, v in pds.records.items() if k != RKEY}
    assert [r["text"] for r in parts.values()] == ["Two", "Three"]
    two, three = parts.values()
    root = {"uri": first.remote_id, "cid": "bafyreiabc"}
    assert two["reply"] == {"root": root, "parent": root}
    two_uri = f"at://{DID}/{POST}/{tid_for_key(f'{KEY}-part2')}"
    assert three["reply"] == {"root": root, "parent": {"uri": two_uri, "cid": "bafyreiabc"}}
    assert list(parts) == [tid_for_key(f"{KEY}-part2"), tid_for_key(f"{KEY}-part3")]


def test_a_threads_part_embeds_its_own_images_with_alt_text(tmp_path: Path) -> None:
    # app.bsky.embed.images: images[] of {alt, image: blob} (the lexicon), on the part.
    pds = FakePds()
    (tmp_path / "a.png").write_bytes(PNG_SIGNATURE + b"fake")
    part = ThreadPart("Two", (str(tmp_path / "a.png"),), (MediaMeta("A cup"),))
    publish(pds, make_post("One", options=PostOptions(thread=(part, "Three"))))
    records = list(pds.records.values())
    assert [r["text"] for r in records] == ["One", "Two", "Three"]
    assert "embed" not in records[0]
    assert "embed" not in records[2]
    embed = records[1]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["alt"] for i in embed["images"]] == ["A cup"]
    assert records[1]["reply"]["parent"]["uri"].endswith(RKEY)


def test_a_thread_failing_at_part_2_of_3_resumes_without_reposting() -> None:
    pds = FakePds()
    created: list[str] = []
    original = pds.com_atproto_repo_createRecord

    def flaky(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["record"]["text"]
        if text == "Two" and "Two" not in created:
            created.append("Two")
            return xrpc_error(400, "InvalidRequest", "the PDS is reindexing")
        return original(request)

    pds.com_atproto_repo_createRecord = flaky  # type: ignore[method-assign]
    post = make_post("One", options=PostOptions(thread=("Two", "Three")))
    with pytest.raises(PublishError, match=r"thread part 2 of 3: .*reindexing"):
        publish(pds, post)
    assert [r["text"] for r in pds.records.values()] == ["One"]
    publish(pds, post)  # the daemon's retry: same key, same record keys
    assert sorted(r["text"] for r in pds.records.values()) == ["One", "Three", "Two"]
    assert len(pds.records) == 3  # none twice
