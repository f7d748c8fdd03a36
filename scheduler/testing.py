"""The adapter contract suite and fixtures for network plugin authors.

Every adapter, built-in or third-party, proves it honours the contract of
:class:`scheduler.adapter.Adapter` by subclassing :class:`AdapterContract` in its own tests.
The subclass says how to build an account and how the network answers in a handful of
scenarios; the suite supplies the tests::

    import httpx
    from scheduler.adapter import Account
    from scheduler.testing import AdapterContract, file_credential

    class TestMastodonContract(AdapterContract):
        adapter_class = MastodonAdapter
        secret_values = ("tok-123",)  # must never appear in any error message

        def make_account(self) -> Account:
            return Account(
                name="contract",
                platform="mastodon",
                timezone="UTC",
                options={"instance": "https://social.example"},
                credentials={"token": file_credential("tok-123")},
            )

        def make_handler(self, scenario: str):
            def handler(request: httpx.Request) -> httpx.Response:
                if scenario == "rate_limited":
                    return httpx.Response(429, headers={"X-RateLimit-Reset": "..."})
                ...
            return handler

Scenarios a handler must answer (``SCENARIOS``): every request the adapter makes goes to the
handler, for ``publish``, then ``fetch_metrics`` and ``lookup`` of the published post.

``"ok"``
    every request succeeds, as the network answers a valid post;
``"rate_limited"``
    the network refuses for now (HTTP 429 or its own rate-limit error);
``"server_error"``
    a 5xx (the network's documented "nothing was created" error, where it has one);
``"auth_expired"``
    the token is invalid, expired or revoked;
``"rejected"``
    a permanent validation error, with the network's own message.

The suite adds the transport faults itself (``TRANSPORT_FAULTS``): a refused connection, a
read timeout, a dropped connection, an HTML page where JSON was expected and a proxy's 502
page (a 5xx that may come after the network accepted the request). The simulated
transport errors quote the request URL, as some real ones do, so an adapter that puts a token
in a URL has to keep it out of its error messages.

Adapters that make no HTTP requests (the ``sim`` network) set ``supports_network = False``:
the HTTP scenario and fault tests are then skipped for that class, with that reason.

What the suite checks, one test each: capabilities are sane; ``validate`` flags text over the
limit and media over the count and accepts the sample post; ``text_length`` is non-negative
and never shrinks as text is appended; ``publish`` returns a ``Published`` with a remote id
and sends its requests through the injected client; each scenario and fault maps to the right
``PublishError`` subclass and nothing else; no error message, ``repr`` or the chain of causes
a traceback would print contains a secret; ``fetch_metrics`` and ``lookup`` after a publish
return what their contracts allow. Every network call runs under ``call_timeout`` seconds, so
a hanging adapter fails instead of hanging the test run.

The tests are plain synchronous methods that run coroutines with ``asyncio.run``: no
pytest-asyncio needed. Failures are ``AssertionError`` with a message that names the rule.
This module imports pytest; import it only from tests.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import pytest

from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.config import CredentialRef

__all__ = [
    "SCENARIOS",
    "TRANSPORT_FAULTS",
    "AdapterContract",
    "Handler",
    "RecordingHandler",
    "account_with_secrets",
    "fault_handler",
    "file_credential",
    "mock_client",
    "offline_adapter",
    "run_adapter",
]

T = TypeVar("T")
A = TypeVar("A", bound=Adapter)

#: A stand-in for the network: one request in, one response out (or a raised httpx error).
Handler = Callable[[httpx.Request], httpx.Response]

#: The scenarios ``AdapterContract.make_handler`` must answer.
SCENARIOS = ("ok", "rate_limited", "server_error", "auth_expired", "rejected")

#: Failures the suite simulates itself, on every request.
TRANSPORT_FAULTS = (
    "connect_error",
    "read_timeout",
    "dropped_connection",
    "html_body",
    "bad_gateway",
)

_METRIC_FIELDS = frozenset(f.name for f in fields(Metrics)) - {"remote_id"}

# A 1x1 transparent PNG: media files that exist and are what their extension says.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


# --------------------------------------------------------------------------- fixtures


def mock_client(handler: Handler, *, timeout: float = 5.0) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes to ``handler``, never the network.

    Use it as ``async with mock_client(handler) as client:`` and pass the client to the adapter.
    """
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=timeout)


def run_adapter(
    make_adapter: Callable[[httpx.AsyncClient], A],
    handler: Handler,
    call: Callable[[A], Awaitable[T]],
) -> T:
    """Run ``call(adapter)`` to its end and return what it returned (or raise what it raised).

    The adapter is ``make_adapter(client)`` on a ``mock_client(handler)`` that is closed
    afterwards. ``make_adapter`` is the adapter class, or a function of the client for an
    adapter that needs more than the client::

        published = run_adapter(
            NtfyAdapter, FakeNtfy(), lambda ntfy: ntfy.publish(post, account, "key-1")
        )
    """

    async def main() -> T:
        async with mock_client(handler) as client:
            return await call(make_adapter(client))

    return asyncio.run(main())


def offline_adapter(make_adapter: Callable[[httpx.AsyncClient], A]) -> A:
    """An adapter for the methods that must not reach the network (``validate``,
    ``text_length``): its client fails the test on any request. It holds no connections, so
    it needs no closing."""
    return make_adapter(mock_client(_refuse))


class RecordingHandler:
    """Wraps a handler and keeps every request it saw, in order, in ``requests``.

    The request bodies are already read, so ``request.content`` and ``request.url`` can be
    asserted on after the call.

    A fake of a network that keeps state (what was published, to answer a lookup) can
    subclass it instead: called without a handler, it answers with its ``answer`` method::

        class FakeNtfy(RecordingHandler):
            def __init__(self) -> None:
                super().__init__()
                self.messages: dict[str, dict[str, Any]] = {}

            def answer(self, request: httpx.Request) -> httpx.Response:
                ...
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler if handler is not None else self.answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        """The answer of a subclass that plays the network (used when no handler is given)."""
        raise NotImplementedError(f"{type(self).__name__} must define answer(request)")


_tmp_root: Path | None = None


def _scratch_dir() -> Path:
    """A private directory for the process's test files, removed when the process exits."""
    global _tmp_root
    if _tmp_root is None:
        _tmp_root = Path(tempfile.mkdtemp(prefix="smm-testing-"))
        atexit.register(shutil.rmtree, _tmp_root, True)
    return _tmp_root


def file_credential(value: str) -> CredentialRef:
    """A ``CredentialRef("file", path)`` to a new private (0600) temp file holding ``value``."""
    fd, path = tempfile.mkstemp(prefix="credential-", dir=_scratch_dir())
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    return CredentialRef("file", path)


def account_with_secrets(
    name: str,
    platform: str,
    options: Mapping[str, Any] | None = None,
    *,
    secrets: Mapping[str, str],
    timezone: str = "UTC",
) -> Account:
    """An ``Account`` whose credentials resolve to ``secrets`` (credential name -> value),
    each held in a ``file_credential``::

        account_with_secrets("alerts", "ntfy", {"topic": "news"}, secrets={"token": "tk_1"})
    """
    return Account(
        name=name,
        platform=platform,
        timezone=timezone,
        options=dict(options or {}),
        credentials={key: file_credential(value) for key, value in secrets.items()},
    )


def _media_files(count: int) -> tuple[str, ...]:
    """``count`` real PNG files, for validators that look at the files."""
    paths = []
    for _ in range(count):
        fd, path = tempfile.mkstemp(prefix="media-", suffix=".png", dir=_scratch_dir())
        with os.fdopen(fd, "wb") as f:
            f.write(_PNG)
        paths.append(path)
    return tuple(paths)


# --------------------------------------------------------------------------- simulated faults


def fault_handler(fault: str) -> Handler:
    """A handler that fails every request with ``fault``, one of ``TRANSPORT_FAULTS``.

    The exceptions quote the request's method and URL, as real ones do.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        where = f"{request.method} {request.url}"
        if fault == "connect_error":
            raise httpx.ConnectError(f"[Errno 111] Connection refused: {where}", request=request)
        if fault == "read_timeout":
            raise httpx.ReadTimeout(f"timed out reading the response to {where}", request=request)
        if fault == "dropped_connection":
            raise httpx.RemoteProtocolError(
                f"Server disconnected without sending a response: {where}", request=request
            )
        if fault == "html_body":
            return httpx.Response(
                200,
                headers={"content-type": "text/html; charset=utf-8"},
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
        if fault == "bad_gateway":
            return httpx.Response(
                502,
                headers={"content-type": "text/html; charset=utf-8"},
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
        raise ValueError(f"unknown fault {fault!r}")

    return handler


def _offline_handler(request: httpx.Request) -> httpx.Response:
    """What an adapter with ``supports_network = False`` reaches if it sends a request anyway."""
    return httpx.Response(503, text="this adapter declared supports_network = False")


# --------------------------------------------------------------------------- checks


def _expect(condition: object, message: str) -> None:
    # An explicit raise rather than ``assert``: this module is not rewritten by pytest and
    # must keep checking under ``python -O``.
    if not condition:
        raise AssertionError(message)


def _describe(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__module__}.{type(value).__qualname__}: {value}"
    return repr(value)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the causes a traceback would print with it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__


def _texts(exc: BaseException) -> Iterator[tuple[str, str]]:
    for e in _chain(exc):
        name = type(e).__qualname__
        yield f"str({name})", str(e)
        yield f"repr({name})", repr(e)
        yield f"{name}.args", repr(e.args)
        message = getattr(e, "message", None)
        if message is not None:
            yield f"{name}.message", str(message)


class _Outcome:
    """What a call did: returned ``value`` or raised ``error``."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error

    def describe(self) -> str:
        if self.error is not None:
            return f"raised {_describe(self.error)}"
        return f"returned {_describe(self.value)}"


# --------------------------------------------------------------------------- the suite


class AdapterContract:
    """Subclass as ``TestXxxContract`` to run the adapter contract tests against an adapter.

    Required: ``adapter_class``, ``make_account()`` and, unless ``supports_network`` is False,
    ``make_handler(scenario)``. Optional: ``secret_values``, ``make_post()``,
    ``make_adapter(client)``, ``call_timeout``.
    """

    #: The adapter under test.
    adapter_class: ClassVar[type[Adapter]]
    #: Strings (tokens, passwords) that must never appear in an error message.
    secret_values: ClassVar[tuple[str, ...]] = ()
    #: False for adapters that make no HTTP requests: the HTTP scenario tests are skipped.
    supports_network: ClassVar[bool] = True
    #: Seconds any one adapter call may take before the test fails as hung.
    call_timeout: ClassVar[float] = 10.0
    #: What ``publish`` raises when the answer to its requests is lost (a read timeout, a
    #: dropped connection): ``OutcomeUnknown`` for a network whose publish is the one request
    #: that creates the post, so the suite checks that exact class. None (the default) also
    #: accepts ``Transient``, for adapters whose first request creates nothing yet.
    lost_answer: ClassVar[type[PublishError] | None] = None

    # -- what the subclass provides ------------------------------------------------------

    def make_account(self) -> Account:
        """The account every call is made for; its credentials must resolve."""
        raise NotImplementedError(f"{type(self).__name__} must define make_account()")

    def make_handler(self, scenario: str) -> Handler:
        """An ``httpx.MockTransport`` handler that plays the network in ``scenario``.

        ``scenario`` is one of ``SCENARIOS``; see the module docstring for what each means.
        """
        if not self.supports_network:
            return _offline_handler
        raise NotImplementedError(f"{type(self).__name__} must define make_handler(scenario)")

    def make_post(self) -> OutgoingPost:
        """A short post every network accepts: text with a link, no media."""
        return OutgoingPost(
            key="contract-1",
            account=self.make_account().name,
            content_type="instruction",
            text="Hello from the contract suite https://example.com/x",
            idempotency_key="contract-1-attempt-key",
            due_at=datetime(2030, 1, 7, 9, 0, tzinfo=UTC),
        )

    def make_adapter(self, client: httpx.AsyncClient) -> Adapter:
        """The adapter under test, on ``client`` (override to pass extra settings)."""
        return self.adapter_class(client)

    # -- running calls -------------------------------------------------------------------

    def _offline_adapter(self) -> Adapter:
        """An adapter for the offline methods (validate, text_length)."""
        return offline_adapter(self.make_adapter)

    def _handler(self, scenario: str) -> Handler:
        if scenario in TRANSPORT_FAULTS:
            return fault_handler(scenario)
        return self.make_handler(scenario)

    def _run(self, handler: Handler, call: Callable[[Adapter, Account], Awaitable[T]]) -> _Outcome:
        """Run ``call`` on a fresh adapter whose client answers with ``handler``."""
        account = self.make_account()

        def timed(adapter: Adapter) -> Awaitable[T]:
            return asyncio.wait_for(call(adapter, account), self.call_timeout)

        try:
            return _Outcome(value=run_adapter(self.make_adapter, handler, timed))
        except TimeoutError:
            raise AssertionError(
                f"{self.adapter_class.__name__} did not answer within {self.call_timeout}s "
                "(a hung call must time out and raise a PublishError)"
            ) from None
        except Exception as exc:
            return _Outcome(error=exc)

    def _publish(self, handler: Handler) -> _Outcome:
        post = self.make_post()
        return self._run(
            handler, lambda adapter, account: adapter.publish(post, account, post.idempotency_key)
        )

    def _published_post(self, published: Published) -> OutgoingPost:
        return replace(
            self.make_post(),
            remote_id=published.remote_id,
            remote_url=published.url,
            published_at=datetime.now(UTC) - timedelta(hours=1),
        )

    def _publish_then(
        self,
        handler: Handler,
        then: Callable[[Adapter, Account, OutgoingPost], Awaitable[T]],
    ) -> _Outcome:
        """Publish on ``handler``, then run ``then`` with the published post, same adapter."""
        post = self.make_post()

        async def call(adapter: Adapter, account: Account) -> T:
            published = await adapter.publish(post, account, post.idempotency_key)
            _expect(
                isinstance(published, Published),
                f"publish on 'ok' should return Published, it returned {published!r}",
            )
            return await then(adapter, account, self._published_post(published))

        return self._run(handler, call)

    def _needs_network(self) -> None:
        if not self.supports_network:
            pytest.skip(f"{self.adapter_class.__name__} makes no HTTP requests")

    def _expect_publish_raises(
        self, scenario: str, allowed: tuple[type[PublishError], ...], what: str
    ) -> PublishError:
        """Publish in ``scenario`` (an HTTP one: skipped without network); one of ``allowed``
        must be raised."""
        self._needs_network()
        return self._expect_raises(self._publish(self._handler(scenario)), allowed, what)

    def _expect_raises(
        self, outcome: _Outcome, allowed: tuple[type[PublishError], ...], what: str
    ) -> PublishError:
        names = " or ".join(c.__name__ for c in allowed)
        _expect(
            isinstance(outcome.error, allowed),
            f"publish {what} should raise {names}; it {outcome.describe()}",
        )
        assert isinstance(outcome.error, PublishError)  # narrowed above, for the type checker
        return outcome.error

    # -- capabilities and offline checks -------------------------------------------------

    def test_capabilities_are_sane(self) -> None:
        cls = self.adapter_class
        caps = cls.capabilities
        _expect(
            isinstance(cls.platform, str) and cls.platform.strip(),
            f"platform must be a non-empty string, got {getattr(cls, 'platform', None)!r}",
        )
        _expect(caps.text_limit > 0, f"text_limit must be > 0, got {caps.text_limit}")
        _expect(caps.max_media >= 0, f"max_media must be >= 0, got {caps.max_media}")
        _expect(isinstance(caps.idempotent, bool), f"idempotent must be a bool: {caps.idempotent}")
        unknown = set(caps.metrics) - _METRIC_FIELDS
        _expect(not unknown, f"capabilities.metrics names unknown Metrics fields: {unknown}")
        _expect(
            caps.rate_limit.requests > 0,
            f"rate_limit.requests must be > 0, got {caps.rate_limit.requests}",
        )
        _expect(
            caps.rate_limit.per > timedelta(0),
            f"rate_limit.per must be positive, got {caps.rate_limit.per}",
        )
        _expect(
            caps.rate_limit.concurrency > 0,
            f"rate_limit.concurrency must be > 0, got {caps.rate_limit.concurrency}",
        )

    def test_validate_accepts_the_sample_post(self) -> None:
        issues = self._offline_adapter().validate(self.make_post(), self.make_account())
        _expect(issues == [], f"validate(make_post()) should find no issues, found {issues}")

    def test_validate_flags_text_over_the_limit(self) -> None:
        post = replace(self.make_post(), text="a" * 100_000)
        issues = self._offline_adapter().validate(post, self.make_account())
        _expect(
            any(i.field == "text" for i in issues),
            f"validate should flag 100,000 characters with an Issue on 'text', found {issues}",
        )

    def test_validate_flags_one_media_file_too_many(self) -> None:
        limit = self.adapter_class.capabilities.max_media
        post = replace(self.make_post(), media=_media_files(limit + 1))
        issues = self._offline_adapter().validate(post, self.make_account())
        _expect(
            any(i.field == "media" for i in issues),
            f"validate should flag {limit + 1} media files (max_media = {limit}) with an Issue "
            f"on 'media', found {issues}",
        )

    def test_text_length_is_non_negative_and_grows_with_text(self) -> None:
        adapter = self._offline_adapter()
        pieces = [
            "",
            "a",
            "Hello",
            " https://example.com/a/long/path?q=1",
            " #tag",
            " 👍🏽",
            " 漢字",
        ]
        text = ""
        previous = adapter.text_length(text)
        _expect(previous >= 0, f"text_length('') must be >= 0, got {previous}")
        for piece in pieces:
            text += piece
            length = adapter.text_length(text)
            _expect(
                length >= previous,
                f"text_length shrank from {previous} to {length} when {piece!r} was appended",
            )
            previous = length

    # -- publish -------------------------------------------------------------------------

    def test_publish_ok_returns_published_with_remote_id(self) -> None:
        outcome = self._publish(self._handler("ok"))
        _expect(
            isinstance(outcome.value, Published),
            f"publish on 'ok' should return Published; it {outcome.describe()}",
        )
        remote_id = outcome.value.remote_id
        _expect(
            isinstance(remote_id, str) and remote_id,
            f"Published.remote_id must be a non-empty str, got {remote_id!r}",
        )

    def test_publish_sends_requests_through_the_injected_client(self) -> None:
        self._needs_network()
        recorder = RecordingHandler(self._handler("ok"))
        outcome = self._publish(recorder)
        _expect(outcome.error is None, f"publish on 'ok' {outcome.describe()}")
        _expect(
            recorder.requests,
            "publish returned without a request through the injected client "
            "(every request must use the client the core passes in)",
        )

    def test_publish_rate_limited_raises_rate_limited(self) -> None:
        self._expect_publish_raises("rate_limited", (RateLimited,), "on 'rate_limited'")

    def test_publish_server_error_raises_transient_or_outcome_unknown(self) -> None:
        self._expect_publish_raises(
            "server_error", (Transient, OutcomeUnknown), "on 'server_error'"
        )

    def test_a_5xx_on_the_create_is_never_retried_blindly(self) -> None:
        # A proxy's 502 may come after the network took the post. Resent under a key the
        # network honours it is harmless; without one, only OutcomeUnknown is safe (for a
        # publish whose one request creates the post: ``lost_answer``).
        idempotent = self._offline_adapter().capabilities_for(self.make_account()).idempotent
        strict = self.lost_answer is OutcomeUnknown and not idempotent
        self._expect_publish_raises(
            "bad_gateway",
            (OutcomeUnknown,) if strict else (Transient, OutcomeUnknown),
            "on a 502 from a proxy (the post may have been made"
            + (", and the network takes no idempotency key)" if strict else ")"),
        )

    def test_publish_auth_expired_raises_auth_expired(self) -> None:
        self._expect_publish_raises("auth_expired", (AuthExpired,), "on 'auth_expired'")

    def test_publish_rejected_raises_rejected_with_message(self) -> None:
        error = self._expect_publish_raises("rejected", (Rejected,), "on 'rejected'")
        _expect(
            isinstance(error.message, str) and error.message.strip(),
            f"Rejected needs the network's message, got {error.message!r}",
        )

    def test_connection_refused_raises_transient(self) -> None:
        self._expect_publish_raises(
            "connect_error", (Transient,), "when the connection is refused (httpx.ConnectError)"
        )

    def _lost_answer(self) -> tuple[type[PublishError], ...]:
        return (self.lost_answer,) if self.lost_answer else (Transient, OutcomeUnknown)

    def test_read_timeout_raises_transient_or_outcome_unknown(self) -> None:
        self._expect_publish_raises(
            "read_timeout", self._lost_answer(), "on a read timeout (httpx.ReadTimeout)"
        )

    def test_dropped_connection_raises_transient_or_outcome_unknown(self) -> None:
        self._expect_publish_raises(
            "dropped_connection",
            self._lost_answer(),
            "on a dropped connection (httpx.RemoteProtocolError)",
        )

    def test_html_instead_of_json_raises_a_publish_error(self) -> None:
        self._expect_publish_raises(
            "html_body", (PublishError,), "when every response is a 200 text/html page"
        )

    def test_error_messages_never_contain_secrets(self) -> None:
        secrets = [s for s in self.secret_values if s]
        scenarios = (*SCENARIOS, *TRANSPORT_FAULTS) if self.supports_network else ("ok",)
        outcomes = [(f"publish on {s!r}", self._publish(self._handler(s))) for s in scenarios]
        outcomes += [
            ("fetch_metrics on 'ok'", self._publish_then(self._handler("ok"), _fetch_metrics)),
            ("lookup on 'ok'", self._publish_then(self._handler("ok"), _lookup)),
        ]
        errors = [(where, o.error) for where, o in outcomes if o.error is not None]
        for where, error in errors:
            for part, text in _texts(error):
                for secret in secrets:
                    _expect(
                        secret not in text,
                        f"{where}: {part} contains a secret value; redact it "
                        "(raise ... from None to drop a cause that quotes it)",
                    )

    # -- after publishing ----------------------------------------------------------------

    def test_fetch_metrics_after_publish_reports_declared_counters(self) -> None:
        outcome = self._publish_then(self._handler("ok"), _fetch_metrics)
        _expect(outcome.error is None, f"fetch_metrics on 'ok' {outcome.describe()}")
        result = outcome.value
        _expect(
            isinstance(result, Mapping),
            f"fetch_metrics must return a mapping of remote id -> Metrics, got {result!r}",
        )
        declared = self.adapter_class.capabilities.metrics
        for key, metrics in result.items():
            _expect(
                isinstance(metrics, Metrics),
                f"fetch_metrics value for {key!r} is not Metrics: {metrics!r}",
            )
            _expect(
                metrics.remote_id == key,
                f"fetch_metrics keyed {metrics!r} under {key!r}, not its remote_id",
            )
            for name in declared:
                value = getattr(metrics, name)
                _expect(
                    value is None
                    or (isinstance(value, int) and not isinstance(value, bool) and value >= 0),
                    f"Metrics.{name} must be a non-negative int or None, got {value!r}",
                )

    def test_lookup_after_publish_returns_published_none_or_outcome_unknown(self) -> None:
        outcome = self._publish_then(self._handler("ok"), _lookup)
        _expect(
            isinstance(outcome.error, OutcomeUnknown)
            or (
                outcome.error is None
                and (outcome.value is None or isinstance(outcome.value, Published))
            ),
            "lookup must return Published or None, or raise OutcomeUnknown; "
            f"it {outcome.describe()}",
        )


# --------------------------------------------------------------------------- internals


async def _fetch_metrics(
    adapter: Adapter, account: Account, post: OutgoingPost
) -> Mapping[str, Metrics]:
    return await adapter.fetch_metrics([post], account)


async def _lookup(adapter: Adapter, account: Account, post: OutgoingPost) -> Published | None:
    return await adapter.lookup(post, account)


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"an offline method sent a request: {request.method} {request.url}")
