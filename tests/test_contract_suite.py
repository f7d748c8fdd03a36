"""The adapter contract suite passes a correct adapter and catches each kind of wrong one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest

from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.testing import (
    SCENARIOS,
    TRANSPORT_FAULTS,
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    fault_handler,
    file_credential,
    mock_client,
    offline_adapter,
    run_adapter,
)

TOKEN = "toy-secret-token-9f2c"
API = "https://toy.example/api"


# --------------------------------------------------------------------------- a correct adapter


class ToyAdapter(Adapter):
    """A small, correct adapter for an imaginary JSON API."""

    platform = "toy"
    capabilities = Capabilities(
        text_limit=500,
        max_media=2,
        idempotent=True,
        metrics=frozenset({"likes", "reach"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=300, per=timedelta(minutes=5)),
    )

    async def _request(self, method: str, url: str, account: Account, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {account.secret('token')}"}
        try:
            response = await self.client.request(method, url, headers=headers, **kw)
        except httpx.ConnectError:
            raise Transient("could not connect to toy.example") from None
        except httpx.TransportError as exc:
            raise OutcomeUnknown(f"no answer from toy.example ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429:
            retry = datetime.now(UTC) + timedelta(seconds=int(response.headers["Retry-After"]))
            raise RateLimited("slow down", http_status=status, retry_at=retry)
        if status == 401:
            raise AuthExpired("token no longer valid", http_status=status)
        if status >= 500:
            raise Transient(f"toy.example answered {status}", http_status=status)
        try:
            body = response.json()
        except ValueError:
            raise OutcomeUnknown("toy.example answered with something that is not JSON") from None
        if status >= 400:
            raise Rejected(body.get("error", f"HTTP {status}"), http_status=status)
        return body

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        body = await self._request(
            "POST", f"{API}/posts", account, json={"text": post.text, "key": idempotency_key}
        )
        return Published(remote_id=str(body["id"]), url=f"https://toy.example/p/{body['id']}")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        result = {}
        for post in posts:
            body = await self._request("GET", f"{API}/posts/{post.remote_id}", account)
            result[str(body["id"])] = Metrics(
                remote_id=str(body["id"]), likes=body["likes"], reach=body["reach"]
            )
        return result

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        body = await self._request(
            "GET", f"{API}/posts", account, params={"key": post.idempotency_key}
        )
        if not body["items"]:
            return None
        return Published(remote_id=str(body["items"][0]["id"]))


def toy_network(scenario: str) -> Handler:
    """The toy API's answers in each contract scenario."""

    def handler(request: httpx.Request) -> httpx.Response:
        if scenario == "rate_limited":
            return httpx.Response(429, headers={"Retry-After": "30"}, json={"error": "slow"})
        if scenario == "server_error":
            return httpx.Response(503, text="Service Unavailable")
        if scenario == "auth_expired":
            return httpx.Response(401, json={"error": "invalid token"})
        if scenario == "rejected":
            return httpx.Response(422, json={"error": "Text contains a banned word"})
        if request.method == "POST":
            return httpx.Response(200, json={"id": 42})
        if request.url.path.endswith("/posts"):
            return httpx.Response(200, json={"items": [{"id": 42}]})
        return httpx.Response(200, json={"id": 42, "likes": 3, "reach": 120})

    return handler


class ToyContract(AdapterContract):
    """The contract wired to the toy network; subclasses swap in the adapter under test."""

    adapter_class: ClassVar[type[Adapter]] = ToyAdapter
    secret_values = (TOKEN,)
    call_timeout = 2.0

    def make_account(self) -> Account:
        return Account(
            name="toy-account",
            platform="toy",
            timezone="UTC",
            credentials={"token": file_credential(TOKEN)},
        )

    def make_handler(self, scenario: str) -> Handler:
        return toy_network(scenario)


class TestToyAdapterPassesTheContract(ToyContract):
    """Every contract test runs (and passes) against the correct toy adapter."""


# --------------------------------------------------------------------------- wrong adapters


class RawConnectError(ToyAdapter):
    """Lets httpx.ConnectError escape instead of mapping it to Transient."""

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        await self.client.post(f"{API}/posts", json={"text": post.text})
        return Published("1")


def reraising(
    name: str,
    caught: type[PublishError],
    instead: Callable[[PublishError, Account], PublishError],
) -> type[ToyAdapter]:
    """A toy adapter named ``name`` that publishes as the correct one, but raises
    ``instead(error, account)`` where that one raises a ``caught`` error."""

    async def publish(
        self: ToyAdapter, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        try:
            return await ToyAdapter.publish(self, post, account, idempotency_key)
        except caught as exc:
            raise instead(exc, account) from None

    return type(name, (ToyAdapter,), {"publish": publish})


RateLimitAsTransient = reraising(
    "RateLimitAsTransient", RateLimited, lambda e, _: Transient(e.message)
)
ServerErrorAsRejected = reraising(
    "ServerErrorAsRejected", Transient, lambda e, _: Rejected(e.message)
)
AuthAsRejected = reraising("AuthAsRejected", AuthExpired, lambda e, _: Rejected(e.message))
RejectedWithoutMessage = reraising("RejectedWithoutMessage", Rejected, lambda e, _: Rejected(""))
# Calls a timeout a permanent rejection (the post would be lost).
TimeoutAsRejected = reraising("TimeoutAsRejected", OutcomeUnknown, lambda e, _: Rejected(e.message))
TokenInMessage = reraising(
    "TokenInMessage",
    AuthExpired,
    lambda e, account: AuthExpired(f"token {account.secret('token')} was refused"),
)


class RawJsonError(ToyAdapter):
    """Parses the body without guarding against non-JSON answers."""

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        response = await self.client.post(f"{API}/posts", json={"text": post.text})
        return Published(str(json.loads(response.text)["id"]))


class TokenInUrl(ToyAdapter):
    """Puts the token in the URL and lets the transport error (which quotes it) be the cause."""

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        try:
            await self.client.post(f"{API}/bot{account.secret('token')}/posts")
        except httpx.ConnectError as exc:
            raise Transient("could not connect") from exc
        return Published("1")


class NoRequest(ToyAdapter):
    """Claims success without asking the network through the injected client."""

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        return Published("made-up")


class EmptyRemoteId(ToyAdapter):
    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        await super().publish(post, account, idempotency_key)
        return Published("")


class ZeroTextLimit(ToyAdapter):
    capabilities = Capabilities(text_limit=0)


class UnknownMetricName(ToyAdapter):
    capabilities = Capabilities(text_limit=500, metrics=frozenset({"likes", "hearts"}))


class IgnoresMedia(ToyAdapter):
    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        return [i for i in super().validate(post, account) if i.field != "media"]


class IgnoresLength(ToyAdapter):
    def text_length(self, text: str) -> int:
        return 0 if len(text) > 1000 else len(text)


class ShrinkingLength(ToyAdapter):
    def text_length(self, text: str) -> int:
        return 10 - len(text) % 10


class NegativeMetrics(ToyAdapter):
    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        return {p.remote_id or "": Metrics(remote_id=p.remote_id or "", likes=-1) for p in posts}


class MetricsAsDicts(ToyAdapter):
    async def fetch_metrics(self, posts: Sequence[OutgoingPost], account: Account) -> Any:
        return {p.remote_id: {"likes": 1} for p in posts}


class LookupRaisesTransient(ToyAdapter):
    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        raise Transient("try again")


class Hangs(ToyAdapter):
    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


WRONG_ADAPTERS = [
    (RawConnectError, "test_connection_refused_raises_transient"),
    (RawConnectError, "test_dropped_connection_raises_transient_or_outcome_unknown"),
    (RateLimitAsTransient, "test_publish_rate_limited_raises_rate_limited"),
    (ServerErrorAsRejected, "test_publish_server_error_raises_transient_or_outcome_unknown"),
    (ServerErrorAsRejected, "test_a_5xx_on_the_create_is_never_retried_blindly"),
    (AuthAsRejected, "test_publish_auth_expired_raises_auth_expired"),
    (RejectedWithoutMessage, "test_publish_rejected_raises_rejected_with_message"),
    (TimeoutAsRejected, "test_read_timeout_raises_transient_or_outcome_unknown"),
    (RawJsonError, "test_html_instead_of_json_raises_a_publish_error"),
    (TokenInMessage, "test_error_messages_never_contain_secrets"),
    (TokenInUrl, "test_error_messages_never_contain_secrets"),
    (NoRequest, "test_publish_sends_requests_through_the_injected_client"),
    (EmptyRemoteId, "test_publish_ok_returns_published_with_remote_id"),
    (ZeroTextLimit, "test_capabilities_are_sane"),
    (UnknownMetricName, "test_capabilities_are_sane"),
    (IgnoresMedia, "test_validate_flags_one_media_file_too_many"),
    (IgnoresLength, "test_validate_flags_text_over_the_limit"),
    (ShrinkingLength, "test_text_length_is_non_negative_and_grows_with_text"),
    (NegativeMetrics, "test_fetch_metrics_after_publish_reports_declared_counters"),
    (MetricsAsDicts, "test_fetch_metrics_after_publish_reports_declared_counters"),
    (LookupRaisesTransient, "test_lookup_after_publish_returns_published_none_or_outcome_unknown"),
]


def contract_for(adapter: type[Adapter], **attrs: Any) -> AdapterContract:
    """An instance of the toy contract pointed at ``adapter`` (not collected by pytest)."""
    return type(
        f"ContractFor{adapter.__name__}", (ToyContract,), {"adapter_class": adapter, **attrs}
    )()


@pytest.mark.parametrize(
    ("adapter", "test_name"), WRONG_ADAPTERS, ids=[f"{a.__name__}-{t}" for a, t in WRONG_ADAPTERS]
)
def test_the_contract_catches_a_wrong_adapter(adapter: type[Adapter], test_name: str) -> None:
    with pytest.raises(AssertionError):
        getattr(contract_for(adapter), test_name)()


def test_lost_answer_pins_the_class_a_lost_answer_must_raise() -> None:
    """The toy raises OutcomeUnknown for a lost answer: declared so, the suite passes; a
    contract that says Transient catches it."""
    contract_for(
        ToyAdapter, lost_answer=OutcomeUnknown
    ).test_read_timeout_raises_transient_or_outcome_unknown()
    with pytest.raises(AssertionError, match="should raise Transient"):
        contract_for(
            ToyAdapter, lost_answer=Transient
        ).test_dropped_connection_raises_transient_or_outcome_unknown()


class KeylessToy(ToyAdapter):
    """The toy on a network that ignores idempotency keys: its 5xx -> Transient is then a
    blind resend that could publish twice."""

    platform = "keyless-toy"
    capabilities = replace(ToyAdapter.capabilities, idempotent=False)


def test_a_5xx_on_a_create_without_an_honoured_key_must_be_an_unknown_outcome() -> None:
    # Resent under a key the network honours, a Transient is harmless: the toy passes.
    contract_for(
        ToyAdapter, lost_answer=OutcomeUnknown
    ).test_a_5xx_on_the_create_is_never_retried_blindly()
    with pytest.raises(
        AssertionError,
        match=r"should raise OutcomeUnknown; it raised scheduler\.adapter\.Transient",
    ):
        contract_for(
            KeylessToy, lost_answer=OutcomeUnknown
        ).test_a_5xx_on_the_create_is_never_retried_blindly()


def test_a_failure_names_the_expected_and_the_actual_outcome() -> None:
    with pytest.raises(
        AssertionError, match=r"should raise Transient; it raised httpx\.ConnectError"
    ):
        contract_for(RawConnectError).test_connection_refused_raises_transient()


def test_a_hung_call_fails_with_the_timeout_instead_of_hanging() -> None:
    contract = contract_for(Hangs, call_timeout=0.05)
    with pytest.raises(AssertionError, match=r"did not answer within 0\.05s"):
        contract.test_publish_ok_returns_published_with_remote_id()


def test_every_contract_test_is_exercised_against_the_toy_adapter() -> None:
    contract_tests = {name for name in dir(AdapterContract) if name.startswith("test_")}
    caught = {name for _, name in WRONG_ADAPTERS}
    # Each test either catches some wrong adapter here or is a pure acceptance check.
    assert contract_tests - caught == {"test_validate_accepts_the_sample_post"}


class OfflineToy(ToyAdapter):
    """Answers without HTTP, like the sim network."""

    platform = "offline-toy"

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        return Published(remote_id="offline-1")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        return {"offline-1": Metrics(remote_id="offline-1", likes=0, reach=None)}

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        return None


class OfflineContract(AdapterContract):
    adapter_class = OfflineToy
    supports_network = False

    def make_account(self) -> Account:
        return Account(name="offline", platform="offline-toy", timezone="UTC")


class TestOfflineAdapterPassesTheContract(OfflineContract):
    """An adapter without HTTP needs no handler; the HTTP scenario tests skip."""


@pytest.mark.parametrize(
    "test_name",
    [
        "test_publish_rate_limited_raises_rate_limited",
        "test_publish_sends_requests_through_the_injected_client",
        "test_connection_refused_raises_transient",
        "test_html_instead_of_json_raises_a_publish_error",
    ],
)
def test_http_scenarios_skip_for_an_adapter_without_network(test_name: str) -> None:
    with pytest.raises(pytest.skip.Exception, match="makes no HTTP requests"):
        getattr(OfflineContract(), test_name)()


def test_an_offline_contract_still_checks_publish() -> None:
    class Broken(OfflineToy):
        async def publish(
            self, post: OutgoingPost, account: Account, idempotency_key: str
        ) -> Published:
            raise RuntimeError("boom")

    contract = type("C", (OfflineContract,), {"adapter_class": Broken})()
    with pytest.raises(AssertionError, match="RuntimeError: boom"):
        contract.test_publish_ok_returns_published_with_remote_id()


def test_a_network_contract_without_make_handler_says_what_is_missing() -> None:
    contract = type("C", (AdapterContract,), {"adapter_class": ToyAdapter})()
    with pytest.raises(NotImplementedError, match="make_account"):
        contract.make_account()
    with pytest.raises(NotImplementedError, match="make_handler"):
        contract.make_handler("ok")


# --------------------------------------------------------------------------- helpers


def test_file_credential_resolves_to_the_value() -> None:
    ref = file_credential("s3cret")
    assert ref.kind == "file"
    assert ref.resolve() == "s3cret"


def test_recording_handler_keeps_every_request_sent_through_mock_client() -> None:
    recorder = RecordingHandler(toy_network("ok"))

    async def main() -> list[int]:
        async with mock_client(recorder) as client:
            first = await client.post(f"{API}/posts", json={"text": "hi"})
            second = await client.get(f"{API}/posts/42")
            return [first.status_code, second.status_code]

    assert asyncio.run(main()) == [200, 200]
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/api/posts"),
        ("GET", "/api/posts/42"),
    ]
    assert json.loads(recorder.requests[0].content) == {"text": "hi"}


def test_the_toy_network_answers_every_scenario() -> None:
    for scenario in SCENARIOS:
        response = toy_network(scenario)(httpx.Request("POST", f"{API}/posts"))
        assert (response.status_code == 200) == (scenario == "ok"), scenario


def test_account_with_secrets_keeps_each_secret_in_a_file_credential() -> None:
    account = account_with_secrets("a", "toy", {"x": 1}, secrets={"token": TOKEN, "key": "k"})
    assert (account.name, account.platform, account.timezone) == ("a", "toy", "UTC")
    assert account.options == {"x": 1}
    assert {name: ref.kind for name, ref in account.credentials.items()} == {
        "token": "file",
        "key": "file",
    }
    assert (account.secret("token"), account.secret("key")) == (TOKEN, "k")
    assert account_with_secrets("b", "toy", secrets={}, timezone="Asia/Tokyo").timezone == (
        "Asia/Tokyo"
    )


def test_run_adapter_runs_the_call_on_an_adapter_over_the_handler() -> None:
    recorder = RecordingHandler(toy_network("ok"))
    account = ToyContract().make_account()
    post = ToyContract().make_post()

    published = run_adapter(ToyAdapter, recorder, lambda toy: toy.publish(post, account, "k-1"))

    assert published == Published(remote_id="42", url="https://toy.example/p/42")
    assert [(r.method, str(r.url)) for r in recorder.requests] == [("POST", f"{API}/posts")]


def test_run_adapter_builds_the_adapter_with_the_function_it_is_given() -> None:
    clients: list[httpx.AsyncClient] = []

    def make(client: httpx.AsyncClient) -> ToyAdapter:
        clients.append(client)
        return ToyAdapter(client)

    async def call(toy: ToyAdapter) -> bool:
        return toy.client is clients[0] and not toy.client.is_closed

    assert run_adapter(make, toy_network("ok"), call) is True
    assert clients[0].is_closed


def test_an_offline_adapter_fails_on_any_request() -> None:
    toy = offline_adapter(ToyAdapter)
    assert toy.validate(ToyContract().make_post(), ToyContract().make_account()) == []

    async def main() -> None:
        await toy.client.get(f"{API}/posts")

    with pytest.raises(AssertionError, match="an offline method sent a request: GET"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("connect_error", httpx.ConnectError),
        ("read_timeout", httpx.ReadTimeout),
        ("dropped_connection", httpx.RemoteProtocolError),
    ],
)
def test_fault_handler_raises_the_transport_error_quoting_the_url(
    fault: str, raised: type[httpx.TransportError]
) -> None:
    request = httpx.Request("POST", f"{API}/posts")
    with pytest.raises(raised, match=f"POST {API}/posts"):
        fault_handler(fault)(request)


def test_fault_handler_answers_html_for_html_body_and_knows_every_fault() -> None:
    response = fault_handler("html_body")(httpx.Request("POST", f"{API}/posts"))
    assert (response.status_code, response.headers["content-type"]) == (
        200,
        "text/html; charset=utf-8",
    )
    gateway = fault_handler("bad_gateway")(httpx.Request("POST", f"{API}/posts"))
    assert (gateway.status_code, gateway.headers["content-type"]) == (
        502,
        "text/html; charset=utf-8",
    )
    assert set(TRANSPORT_FAULTS) == {
        "connect_error",
        "read_timeout",
        "dropped_connection",
        "html_body",
        "bad_gateway",
    }


def test_a_recording_handler_subclass_answers_with_its_answer_method() -> None:
    class Counter(RecordingHandler):
        def answer(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"seen": len(self.requests)})

    counter = Counter()
    first = counter(httpx.Request("GET", f"{API}/a"))
    second = counter(httpx.Request("GET", f"{API}/b"))
    assert (first.json(), second.json()) == ({"seen": 1}, {"seen": 2})
    assert [r.url.path for r in counter.requests] == ["/api/a", "/api/b"]
    with pytest.raises(NotImplementedError, match="must define answer"):
        RecordingHandler()(httpx.Request("GET", f"{API}/a"))
