"""Odnoklassniki adapter: signed mediatopic.post, photo uploads, errors in HTTP 200, metrics,
the flood budget, and a publisher killed with SIGKILL before the topic's answer."""

from __future__ import annotations

import hashlib
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
import smm_ok
from adapter_support import (
    REPO,
    form,
    network_page,
    options_read_by,
    png,
    registered_adapters,
    undocumented,
)
from smm_ok import OKAdapter
from smm_ok.api import classify_error, session_secret, signature

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
from scheduler.budgets import Ledger, plan_warnings
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


@pytest.fixture(autouse=True)
def _state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The topics ledger of each test's adapters in its own directory."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


T = TypeVar("T")
FIXTURES = REPO / "tests" / "fixtures" / "ok"
TOKEN = "tkn1x0Y8zFakeOkAccessToken"
APP_SECRET = "E1B2C3D4E5F6A7B8C9D0E1F2"
APP_KEY = "CBAFJIICABABABABA"
SESSION_SECRET = "5f3e4b1c9d8a7b6c5d4e3f2a1b0c9d8e"
GROUP = "70000001952510"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


ERRORS: dict[str, dict[str, Any]] = fixture("errors.json")


def make_account(group_id: object = GROUP, **secrets: str) -> Account:
    options = {} if group_id is None else {"group_id": group_id}
    return account_with_secrets(
        "brand-ok",
        "ok",
        options,
        secrets=secrets
        or {
            "access_token": TOKEN,
            "application_key": APP_KEY,
            "application_secret_key": APP_SECRET,
        },
        timezone="Europe/Moscow",
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="o1",
        account="brand-ok",
        content_type="instruction",
        text="Top 5 checklists of the year",
        link="https://blog.example.com/checklists",
        tags=("checklist",),
        idempotency_key="o1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def ok_error(code: int) -> httpx.Response:
    return httpx.Response(200, json=ERRORS[str(code)])


class FakeOK(RecordingHandler):
    """api.ok.ru and its upload server, answering with the documented shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[dict[str, str]] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "vu.mycdn.me":
            return httpx.Response(200, json=fixture("photo_upload.json"))
        params = form(request)
        method = params.get("method")
        if method == "mediatopic.post":
            self.topics.append(params)
            return httpx.Response(200, json=fixture("mediatopic_post.json"))
        if method == "photosV2.getUploadUrl":
            return httpx.Response(200, json=fixture("photos_get_upload_url.json"))
        if method == "mediatopic.getByIds":
            return httpx.Response(200, json=fixture("mediatopic_get_by_ids.json"))
        if method == "mediatopic.getTopics":
            return httpx.Response(200, json=fixture("mediatopic_get_topics.json"))
        if method == "group.getInfo":
            return httpx.Response(200, json=fixture("group_get_info.json"))
        return httpx.Response(200, json={"error_code": 3, "error_msg": "METHOD : no method"})


def run(handler: Handler, call: Callable[[OKAdapter], Awaitable[T]]) -> T:
    return run_adapter(OKAdapter, handler, call)


def publish(
    handler: Handler, post: OutgoingPost | None = None, account: Account | None = None
) -> Any:
    post = post or make_post()
    account = account or make_account()
    return run(handler, lambda a: a.publish(post, account, post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestOKContract(AdapterContract):
    adapter_class = OKAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN, APP_SECRET)

    @pytest.fixture(autouse=True)
    def _scratch(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def make_account(self) -> Account:
        return make_account()

    def make_adapter(self, client: httpx.AsyncClient) -> OKAdapter:
        return OKAdapter(client, Ledger(self.tmp / "budgets"))

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeOK()
        code = {"rate_limited": 8, "server_error": 2, "auth_expired": 102, "rejected": 100}
        return lambda request: ok_error(code[scenario])


# --------------------------------------------------------------------------- signature


def test_the_signature_matches_the_worked_examples_of_a_public_ok_client() -> None:
    # aiookru's docs/api.md (BSD-2-Clause; tests/fixtures/ok/SOURCE.txt): events.get signed
    # with an application secret, then with a session secret.
    params = {"application_key": "ABCDEFGHIGKLMNOPK", "format": "json", "method": "events.get"}
    secret = session_secret(
        "-s-84W-s3egarWUsbkq-IWTucuedzTKT8VUXIA.s4Xx8IW7", "ABC123DEF456GHI789JKL123"
    )
    assert secret == "b1a2b89707a94624c43afae67d59274c"
    assert signature(params, secret) == "232c8eb921951c4dba9b72606f9ddb4c"
    assert signature(params, "ae5362b5b588cc7294c2414d71b74d5d") == (
        "03a41413523ea8092507949d6e711963"
    )


def test_the_signature_is_md5_of_sorted_pairs_and_the_session_secret() -> None:
    # Worked by hand from the rule on OK's "signing requests" page.
    params = {
        "application_key": "CBAFJIICABABABABA",
        "format": "json",
        "method": "users.getCurrentUser",
    }
    secret = hashlib.md5(b"tkn1" + b"secret").hexdigest()
    expected = hashlib.md5(
        (
            "application_key=CBAFJIICABABABABAformat=jsonmethod=users.getCurrentUser" + secret
        ).encode()
    ).hexdigest()
    assert signature({**params, "access_token": "tkn1"}, secret) == expected
    assert expected == expected.lower()


def test_a_group_topic_is_signed_and_carries_its_attachment_json() -> None:
    ok = FakeOK()
    result = publish(ok)
    (request,) = ok.requests
    assert (request.method, str(request.url)) == ("POST", "https://api.ok.ru/fb.do")
    sent = form(request)
    assert json.loads(sent["attachment"]) == {
        "media": [
            {"type": "text", "text": "Top 5 checklists of the year\n\n#checklist"},
            {"type": "link", "url": "https://blog.example.com/checklists"},
        ]
    }
    assert (sent["type"], sent["gid"], sent["method"], sent["format"]) == (
        "GROUP_THEME",
        GROUP,
        "mediatopic.post",
        "json",
    )
    assert sent["access_token"] == TOKEN
    secret = hashlib.md5((TOKEN + APP_SECRET).encode()).hexdigest()
    unsigned = {k: v for k, v in sent.items() if k not in ("sig", "access_token")}
    pairs = "".join(f"{k}={unsigned[k]}" for k in sorted(unsigned))
    assert sent["sig"] == hashlib.md5((pairs + secret).encode()).hexdigest()
    assert APP_SECRET not in request.content.decode()
    assert TOKEN not in str(request.url)
    assert result == Published(
        "1567228473452", url=f"https://ok.ru/group/{GROUP}/topic/1567228473452"
    )


def test_a_session_secret_key_signs_instead_of_the_application_secret() -> None:
    ok = FakeOK()
    account = make_account(
        access_token=TOKEN, application_key=APP_KEY, session_secret_key=SESSION_SECRET
    )
    publish(ok, account=account)
    sent = form(ok.requests[0])
    unsigned = {k: v for k, v in sent.items() if k not in ("sig", "access_token")}
    pairs = "".join(f"{k}={unsigned[k]}" for k in sorted(unsigned))
    assert sent["sig"] == hashlib.md5((pairs + SESSION_SECRET).encode()).hexdigest()


def test_a_user_topic_has_type_user_and_no_group() -> None:
    ok = FakeOK()
    result = publish(ok, account=make_account(group_id=None))
    sent = form(ok.requests[0])
    assert sent["type"] == "USER"
    assert "gid" not in sent
    assert result.url is None  # no user_id option: OK's URL needs it


def test_photos_are_uploaded_then_listed_by_token(tmp_path: Path) -> None:
    ok = FakeOK()
    publish(ok, make_post(media=(png(tmp_path, "chart.png"),)))
    assert [
        r.url.host if r.url.host == "vu.mycdn.me" else form(r)["method"] for r in ok.requests
    ] == [
        "photosV2.getUploadUrl",
        "vu.mycdn.me",
        "mediatopic.post",
    ]
    assert form(ok.requests[0])["gid"] == GROUP
    assert b'name="pic1"; filename="chart.png"' in ok.requests[1].content
    media = json.loads(form(ok.requests[2])["attachment"])["media"]
    token = fixture("photo_upload.json")["photos"]["rFmS8t5p0xkPQmIu8VGyH0"]["token"]
    assert media[-1] == {"type": "photo", "list": [{"id": token}]}


def test_an_upload_without_a_token_fails_before_any_topic(tmp_path: Path) -> None:
    ok = FakeOK()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "vu.mycdn.me":
            return httpx.Response(200, json={"photos": {}})
        return ok(request)

    with pytest.raises(Transient, match="without a token"):
        publish(handler, make_post(media=(png(tmp_path, "a.png"),)))
    assert ok.topics == []


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    import httpx
    from smm_ok import OKAdapter
    from test_ok import FakeOK, make_account, make_post
    from scheduler import media
    from scheduler.budgets import Ledger

    photo, state = sys.argv[1], Path(sys.argv[2])
    fake = FakeOK()

    def server(request):
        answer = fake(request)
        if fake.topics:  # OK made the topic; the publisher dies before it hears back
            (state / "topics.json").write_text(json.dumps(fake.topics))
            time.sleep(60)
        return answer

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            post = make_post(media=(photo,))
            adapter = OKAdapter(client, Ledger(state / "budgets"))
            await adapter.publish(post, make_account(), post.idempotency_key)

    with media.using(media.MediaPolicy((Path(photo).resolve().parent,))):
        asyncio.run(main())
    """
)


def test_a_sigkill_before_the_topics_answer_leaves_one_topic_found_by_lookup(
    tmp_path: Path,
) -> None:
    photo = png(tmp_path, "chart.png")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests"), str(REPO)]),
        "STATE_DIRECTORY": str(tmp_path / "state"),
    }
    child = subprocess.Popen([sys.executable, "-c", _CHILD, photo, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "topics.json").exists():
            assert time.monotonic() < deadline, "the child never posted its topic"
            assert child.poll() is None, f"the child ended ({child.returncode})"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    (made,) = json.loads((tmp_path / "topics.json").read_text())
    # OK as the killed publisher left it: the topic exists, its id never reached the daemon.
    ok = FakeOK()
    media = json.loads(made["attachment"])["media"]
    listing = {
        "media_topics": [
            {"id": "1567228473452", "created_ms": int(time.time() * 1000), "media": media}
        ],
        "has_more": False,
    }

    def after(request: httpx.Request) -> httpx.Response:
        if form(request).get("method") == "mediatopic.getTopics":
            return httpx.Response(200, json=listing)
        return ok(request)

    post = make_post(media=(photo,), due_at=datetime.now(UTC))
    found = run(after, lambda a: a.lookup(post, make_account()))
    assert found == Published(
        "1567228473452", url=f"https://ok.ru/group/{GROUP}/topic/1567228473452"
    )
    assert ok.topics == []  # settled by lookup: no second topic


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (102, AuthExpired),
        (103, AuthExpired),
        (104, AuthExpired),
        (10, AuthExpired),
        (50, AuthExpired),
        (200, AuthExpired),
        (8, RateLimited),
        (9, RateLimited),
        (11, RateLimited),
        (26, RateLimited),
        (2, Transient),
        (9999, OutcomeUnknown),
        (100, Rejected),
        (300, Rejected),
        (4242, Rejected),
    ],
)
def test_ok_error_codes_map_to_the_taxonomy(code: int, expected: type[PublishError]) -> None:
    with pytest.raises(expected) as caught:
        publish(lambda request: ok_error(code))
    assert caught.value.code == code
    assert ERRORS[str(code)]["error_msg"] in caught.value.message
    if expected is RateLimited:
        assert caught.value.retry_at is not None
        assert caught.value.retry_at > datetime.now(UTC) + timedelta(minutes=5)


def test_a_system_error_on_a_read_is_transient() -> None:
    error = classify_error(ERRORS["9999"], method="mediatopic.getByIds", mutating=False)
    assert isinstance(error, Transient)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # mediatopic.post takes no idempotency key: a 5xx may follow the topic's creation.
        (503, OutcomeUnknown),
        (502, OutcomeUnknown),
        (500, OutcomeUnknown),
        (429, RateLimited),
        (504, OutcomeUnknown),
        (403, Rejected),
    ],
)
def test_http_errors_from_oks_front_end(status: int, expected: type[PublishError]) -> None:
    with pytest.raises(expected, match=f"HTTP {status}"):
        publish(lambda r: httpx.Response(status, text="<html>error</html>"))


def test_a_token_echoed_in_an_error_message_is_redacted() -> None:
    body = {"error_code": 102, "error_msg": f"PARAM_SESSION_EXPIRED : {TOKEN} expired"}
    with pytest.raises(AuthExpired) as caught:
        publish(lambda r: httpx.Response(200, json=body))
    assert TOKEN not in caught.value.message


# --------------------------------------------------------------------------- flood budget


def test_the_topics_budget_is_declared_per_account_over_24_hours() -> None:
    adapter = offline_adapter(OKAdapter)
    (budget,) = adapter.budgets(make_account())
    assert (budget.key, budget.limit, budget.period, budget.scope) == (
        "ok-topics",
        100,
        timedelta(hours=24),
        "brand-ok",
    )
    tight = replace(make_account(), options={"group_id": GROUP, "topics_per_day": 3})
    assert adapter.budgets(tight)[0].limit == 3
    assert adapter.budget_cost(make_post(), tight) == {"ok-topics": 1}


@pytest.mark.parametrize("value", [0, -1, "ten", 2.5, True])
def test_validate_flags_a_bad_topics_per_day(value: object) -> None:
    account = replace(make_account(), options={"group_id": GROUP, "topics_per_day": value})
    (issue,) = offline_adapter(OKAdapter).validate(make_post(), account)
    assert issue.field == "account"
    assert "topics_per_day" in issue.message


def test_past_the_budget_a_topic_waits_without_any_request(tmp_path: Path) -> None:
    ok = FakeOK()
    account = replace(make_account(), options={"group_id": GROUP, "topics_per_day": 2})
    ledger = Ledger(tmp_path / "budgets")

    def go(post: OutgoingPost) -> Any:
        return run_adapter(
            lambda client: OKAdapter(client, ledger),
            ok,
            lambda a: a.publish(post, account, post.idempotency_key),
        )

    for key in ("o1", "o2"):
        go(make_post(key=key, idempotency_key=f"{key}-key"))
    sent = len(ok.requests)
    with pytest.raises(RateLimited, match="2 topics in 24 hours") as caught:
        go(make_post(key="o3", idempotency_key="o3-key", media=(png(tmp_path, "a.png"),)))
    assert len(ok.requests) == sent  # not even the photo upload
    assert len(ok.topics) == 2
    assert caught.value.code == "flood_budget"
    assert caught.value.retry_at is not None
    wait = caught.value.retry_at - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < wait <= timedelta(hours=24)


def test_plan_warnings_name_the_topics_past_the_budget() -> None:
    from scheduler.budgets import PlannedPost

    account = replace(make_account(), options={"group_id": GROUP, "topics_per_day": 2})
    adapter = offline_adapter(OKAdapter)
    posts = [
        PlannedPost(f"t{i}", f"plan.yaml:{i}", DUE + timedelta(hours=i), {"ok-topics": 1})
        for i in range(4)
    ]
    warnings = plan_warnings(adapter.budgets(account), posts)
    assert [key for w in warnings for key in w["posts"]] == ["t2", "t3"]
    assert "OK topics (flood control): 2 per 24 h would be exceeded" in warnings[0]["message"]
    # The same four a day apart fit.
    spread = [replace(p, at=DUE + timedelta(days=i)) for i, p in enumerate(posts)]
    assert plan_warnings(adapter.budgets(account), spread) == []


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("group", ["club123", 0, "-5"])
def test_validate_flags_a_malformed_group_id(group: object) -> None:
    issues = offline_adapter(OKAdapter).validate(make_post(), make_account(group_id=group))
    assert [i.field for i in issues] == ["account"]


def test_validate_flags_text_over_the_limit_and_video_files() -> None:
    post = make_post(text="я" * 16001, tags=(), media=("/srv/media/clip.mp4",))
    issues = offline_adapter(OKAdapter).validate(post, make_account())
    assert sorted(i.field for i in issues) == ["media", "text"]


# --------------------------------------------------------------------------- metrics, lookup


def test_fetch_metrics_reads_the_topics_and_the_groups_members() -> None:
    ok = FakeOK()
    posts = [make_post(remote_id="1567228473452"), make_post(remote_id="1567228473460")]
    metrics = run(ok, lambda a: a.fetch_metrics(posts, make_account()))
    assert [form(r)["method"] for r in ok.requests] == ["group.getInfo", "mediatopic.getByIds"]
    assert form(ok.requests[1])["topic_ids"] == "1567228473452,1567228473460"
    assert form(ok.requests[1])["media_limit"] == "1"  # required for several topics
    m = metrics["1567228473452"]
    assert (m.likes, m.comments, m.shares, m.views, m.followers) == (41, 9, 6, 2874, 15230)
    assert metrics["1567228473460"].views is None  # OK did not give it


def test_lookup_finds_the_topic_by_its_text_after_the_due_time() -> None:
    found = run(FakeOK(), lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(
        "1567228473452", url=f"https://ok.ru/group/{GROUP}/topic/1567228473452"
    )


def test_lookup_says_not_published_when_the_latest_topics_are_older() -> None:
    later = make_post(due_at=DUE + timedelta(days=400))
    assert run(FakeOK(), lambda a: a.lookup(later, make_account())) is None


def test_every_option_the_adapter_reads_is_documented() -> None:
    options = options_read_by(smm_ok)
    assert options >= {"group_id", "user_id", "api_base"}
    assert undocumented(options, network_page("ok")) == []


def test_the_plugin_registers_the_ok_platform() -> None:
    assert registered_adapters(smm_ok.register_platforms) == [OKAdapter]
