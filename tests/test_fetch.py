"""Remote media (scheduler.fetch) and what the networks receive for hostile media.

The fetch takes http(s) only, refuses internal addresses (literal, resolved, reached through a
redirect), connects to the address it checked, and stops at the size limit and the timeout.
The adapters that download and re-upload media (LinkedIn, VK) and those that upload files
(Facebook, Pinterest) send nothing to the network for a refused entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest
from smm_linkedin import LinkedInAdapter
from smm_meta import FacebookAdapter
from smm_pinterest import PinterestAdapter
from smm_vk import VKAdapter

from scheduler import fetch, media
from scheduler.adapter import Account, Adapter, OutgoingPost, Rejected, Transient
from scheduler.config import MediaSettings
from scheduler.testing import account_with_secrets

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
PUBLIC = "93.184.216.34"
SETTINGS = MediaSettings()


class Recorder:
    """A MockTransport handler that records every request and answers with ``routes``."""

    def __init__(self, routes: dict[str, httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.routes = routes or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes.get(request.url.path, httpx.Response(200, content=PNG))


def resolver(table: dict[str, Sequence[str]]) -> fetch.Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


def get(
    handler: Recorder | httpx.MockTransport,
    url: str,
    *,
    names: dict[str, Sequence[str]] | None = None,
    settings: MediaSettings = SETTINGS,
    max_bytes: int = 10_000,
) -> fetch.Fetched:
    transport = (
        handler if isinstance(handler, httpx.MockTransport) else httpx.MockTransport(handler)
    )

    async def call() -> fetch.Fetched:
        async with httpx.AsyncClient(transport=transport) as client:
            return await fetch.fetch(
                client,
                url,
                settings=settings,
                max_bytes=max_bytes,
                resolver=resolver(names or {"cdn.example.com": [PUBLIC]}),
            )

    return asyncio.run(call())


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/a.png", "loopback"),
        ("http://[::1]/a.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/", "cloud metadata"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://[64:ff9b::a00:1]/a.png", "private"),
        ("http://10.1.2.3/a.png", "private"),
        ("http://192.168.1.1/a.png", "private"),
        ("http://100.64.0.1/a.png", "CGNAT"),
        ("http://224.0.0.251/a.png", "multicast"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://169.254.1.1/a.png", "link-local"),
        ("ftp://cdn.example.com/a.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("https://[::1", "not a valid URL"),
    ],
)
def test_internal_and_odd_urls_are_refused_before_any_request(url: str, why: str) -> None:
    recorder = Recorder()
    with pytest.raises(Rejected, match=why):
        get(recorder, url)
    assert recorder.requests == []
    assert why in (fetch.url_problem(url, SETTINGS) or "")


def test_a_name_resolving_to_an_internal_address_is_refused() -> None:
    recorder = Recorder()
    names = {"cdn.example.com": [PUBLIC, "10.0.0.7"]}  # one bad address is enough
    with pytest.raises(Rejected, match=r"resolves to 10\.0\.0\.7, a private address"):
        get(recorder, "https://cdn.example.com/a.png", names=names)
    assert recorder.requests == []


def test_the_request_goes_to_the_address_that_was_checked() -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # a rebinding name: public, then loopback

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)

    recorder = Recorder()

    async def call() -> fetch.Fetched:
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            return await fetch.fetch(
                client,
                "https://cdn.example.com/img/a.png?v=2",
                settings=SETTINGS,
                max_bytes=1000,
                resolver=rebinding,
            )

    got = asyncio.run(call())
    (request,) = recorder.requests
    assert (request.url.host, request.url.path, request.url.query) == (PUBLIC, "/img/a.png", b"v=2")
    assert request.headers["host"] == "cdn.example.com"
    assert request.extensions["sni_hostname"] == "cdn.example.com"
    assert (got.name, got.content) == ("a.png", PNG)


def test_a_redirect_to_an_internal_address_is_not_followed() -> None:
    recorder = Recorder(
        {"/a.png": httpx.Response(302, headers={"location": "http://169.254.169.254/latest"})}
    )
    with pytest.raises(Rejected, match=r"redirected from .* cloud metadata address"):
        get(recorder, "https://cdn.example.com/a.png")
    assert [r.url.host for r in recorder.requests] == [PUBLIC]


def test_redirects_are_followed_to_public_addresses_a_bounded_number_of_times() -> None:
    moved = httpx.Response(301, headers={"location": "/b.png"})
    recorder = Recorder({"/a.png": moved})
    assert get(recorder, "https://cdn.example.com/a.png").url == "https://cdn.example.com/b.png"
    loop = Recorder({"/a.png": httpx.Response(302, headers={"location": "/a.png"})})
    with pytest.raises(Rejected, match="more than 5 redirects"):
        get(loop, "https://cdn.example.com/a.png")
    assert len(loop.requests) == 6


def test_an_oversize_body_is_refused_by_its_length() -> None:
    recorder = Recorder({"/big.png": httpx.Response(200, content=PNG * 1000)})
    with pytest.raises(Rejected, match="more than the limit of 10000"):
        get(recorder, "https://cdn.example.com/big.png")


def test_an_oversize_body_without_a_length_is_read_no_further_than_the_limit() -> None:
    sent = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            sent.append(1)
            yield b"\0" * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with pytest.raises(Rejected, match="more than the limit of 10000"):
        get(httpx.MockTransport(handler), "https://cdn.example.com/stream.png")
    assert len(sent) == 3  # 12 KiB read, then the fetch stopped


def test_a_slow_server_is_given_up_after_the_timeout() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, content=PNG)

    quick = MediaSettings(fetch_timeout=timedelta(seconds=0.2))
    with pytest.raises(Transient, match=r"not fetched within 0\.2 s"):
        get(httpx.MockTransport(slow), "https://cdn.example.com/a.png", settings=quick)


def test_allow_lists_open_intranet_hosts_but_never_the_metadata_service() -> None:
    settings = MediaSettings(
        allow_hosts=frozenset({"media.intranet"}),
        allow_networks=(ip_network("10.0.0.0/8"), ip_network("169.254.0.0/16")),
    )
    names = {"media.intranet": ["192.168.5.5"]}
    assert get(Recorder(), "http://media.intranet/a.png", names=names, settings=settings)
    assert get(Recorder(), "http://10.1.2.3/a.png", settings=settings)
    with pytest.raises(Rejected, match="cloud metadata"):
        get(Recorder(), "http://169.254.169.254/latest", settings=settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png?token=s3cret-value",
        "http://user:s3cret-value@127.0.0.1/a.png",
        "http://[::1/a.png?token=s3cret-value",
        "http://user:s3cret-value@[::1/a.png",
    ],
)
def test_a_token_in_the_url_is_not_repeated_in_errors(url: str) -> None:
    with pytest.raises(Rejected) as info:
        get(Recorder(), url)
    assert "s3cret" not in info.value.message


# --------------------------------------------------------------------------- the networks


def publish(adapter_class: type[Adapter], account: Account, post: OutgoingPost) -> Recorder:
    """Publish ``post`` through a recording network; return what the network received."""
    recorder = Recorder()

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            await adapter_class(client).publish(post, account, "key-1")

    with pytest.raises(Rejected) as info:
        asyncio.run(call())
    recorder.error = info.value.message  # type: ignore[attr-defined]
    return recorder


ACCOUNTS = {
    "linkedin": (
        LinkedInAdapter,
        account_with_secrets(
            "li", "linkedin", {"author": "urn:li:organization:5"}, secrets={"access_token": "t"}
        ),
    ),
    "vk": (
        VKAdapter,
        account_with_secrets("vk", "vk", {"owner_id": -5}, secrets={"access_token": "t"}),
    ),
    "facebook": (
        FacebookAdapter,
        account_with_secrets(
            "fb", "facebook", {"page_id": "5"}, secrets={"page_access_token": "t"}
        ),
    ),
    "pinterest": (
        PinterestAdapter,
        account_with_secrets("pin", "pinterest", {"board_id": "5"}, secrets={"access_token": "t"}),
    ),
}


def post_with(entry: str) -> OutgoingPost:
    return OutgoingPost(key="p", account="a", content_type="t", text="hi", media=(entry,))


@pytest.mark.parametrize("network", ["linkedin", "vk"])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/admin.png",
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/role",
    ],
)
def test_networks_that_download_media_fetch_no_internal_address(network: str, url: str) -> None:
    adapter_class, account = ACCOUNTS[network]
    with media.using(media.MediaPolicy(())):
        received = publish(adapter_class, account, post_with(url))
    assert received.requests == []


@pytest.mark.parametrize("network", ["linkedin", "vk"])
def test_networks_that_download_media_do_not_follow_a_redirect_inside(network: str) -> None:
    adapter_class, account = ACCOUNTS[network]
    redirect = httpx.Response(302, headers={"location": "http://127.0.0.1/secret"})

    async def public(host: str, port: int) -> Sequence[str]:
        return [PUBLIC]

    recorder = Recorder({"/a.png": redirect})

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            await adapter_class(client).publish(
                post_with("https://cdn.example.com/a.png"), account, "key-1"
            )

    with media.using(media.MediaPolicy((), SETTINGS, public)), pytest.raises(Rejected):
        asyncio.run(call())
    assert [r.url.host for r in recorder.requests] == [PUBLIC]  # the image host only


@pytest.mark.parametrize("network", ["facebook", "pinterest", "vk", "linkedin"])
@pytest.mark.parametrize(
    "entry", ["/proc/self/environ", "/etc/passwd", "~/../etc/passwd", "../../../../etc/hostname"]
)
def test_networks_that_upload_files_send_nothing_outside_the_media_roots(
    network: str, entry: str, tmp_path: Path
) -> None:
    adapter_class, account = ACCOUNTS[network]
    with media.using(media.MediaPolicy((tmp_path.resolve(),))):
        received = publish(adapter_class, account, post_with(entry))
    assert received.requests == []


@pytest.mark.parametrize("network", ["facebook", "pinterest", "vk", "linkedin"])
def test_a_private_file_beside_the_media_root_is_not_uploaded(network: str, tmp_path: Path) -> None:
    root = tmp_path / "plans"
    root.mkdir()
    secret = tmp_path / "key.png"
    secret.write_bytes(PNG)
    secret.chmod(0o600)
    adapter_class, account = ACCOUNTS[network]
    with media.using(media.MediaPolicy((root.resolve(),))):
        received = publish(adapter_class, account, post_with(str(secret)))
    assert received.requests == []
    assert "outside the media roots" in received.error  # type: ignore[attr-defined]


def test_validation_lookups_are_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A plan naming many hosts whose DNS never answers does not stall validation.
    import socket
    import time

    def stuck(*args: object, **kwargs: object) -> list[object]:
        time.sleep(0.5)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    monkeypatch.setattr(fetch, "RESOLVE_WAIT", 0.05)
    monkeypatch.setattr(fetch, "RESOLVE_TIME", 0.3)
    monkeypatch.setattr(fetch, "_lookups", {"count": 0, "seconds": 0.0, "pid": 0})
    fetch._resolve_now.cache_clear()
    started = time.monotonic()
    for i in range(200):
        assert fetch.url_problem(f"https://h{i}.example.com/a.png", SETTINGS) is None
    assert time.monotonic() - started < 1.0
    fetch._resolve_now.cache_clear()
