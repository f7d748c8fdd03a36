"""Fetching remote media: http(s) only, public addresses only, redirects checked, bounded.

Some networks need the media's bytes, so a plan's media URL is downloaded by the daemon and
uploaded again: a URL pointing inside the operator's network (``127.0.0.1``, a LAN host, the
cloud metadata service at ``169.254.169.254``) would hand what it answers to the network,
where it can be read back. So every fetch:

- takes ``http`` and ``https`` URLs only;
- resolves the host once, refuses it when any of its addresses is loopback, private,
  link-local, shared (CGNAT), multicast, unspecified, reserved or a metadata address (an IPv4
  address inside IPv6 — mapped, 6to4, NAT64 — is judged as the IPv4 address), unless the
  host or network is in ``[media] allow_hosts`` / ``allow_networks``;
- connects to the very address it checked (the URL's host is kept in the ``Host`` header and
  in TLS's server name, so certificates are verified as usual): a name that resolves
  differently a moment later (DNS rebinding) changes nothing;
- follows redirects itself, at most ``[media] max_redirects``, checking each new URL the same
  way;
- stops reading past the size limit, and gives up after ``[media] fetch_timeout`` in all.

Plan validation calls ``url_problem`` to refuse such URLs up front (literal addresses, and
host names that resolve to them when they resolve at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from scheduler.adapter import Rejected, Transient
from scheduler.config import MediaSettings

__all__ = [
    "Fetched",
    "Resolver",
    "address_problem",
    "check_url",
    "fetch",
    "short_url",
    "system_resolver",
    "url_problem",
]

#: ``resolver(host, port)`` -> the host's addresses, as text.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
IPAddress = IPv4Address | IPv6Address

#: Cloud instance metadata services: never fetched, whatever the allow-list says.
METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS / metadata neighbour
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
_CGNAT = ip_network("100.64.0.0/10")
_NAT64 = ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USERINFO = re.compile(r"//[^/?#@]*@")


def _embedded_v4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, settings: MediaSettings) -> str | None:
    """Why ``ip`` may not be fetched from (None: it may): what kind of address it is."""
    if ip.version == 6:
        assert isinstance(ip, IPv6Address)
        inner = _embedded_v4(ip)
        if inner is not None:
            return address_problem(inner, settings)
        if ip.scope_id:
            ip = IPv6Address(str(ip).split("%", 1)[0])
    if ip in METADATA:
        return "a cloud metadata address"
    if any(ip in net for net in settings.allow_networks):
        return None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # as written, lower case, no brackets
    port: int
    literal: IPAddress | None


def _target(url: str) -> _Target:
    """The URL, parsed and checked for scheme and host; raises ValueError saying what is wrong."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"only http and https URLs are fetched, not {parsed.scheme or 'none'}")
    host = parsed.host.lower().rstrip(".")
    if not host:
        raise ValueError("the URL has no host")
    try:
        literal: IPAddress | None = ip_address(host)
    except ValueError:
        literal = None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _Target(parsed, host, port, literal)


def _name_problem(target: _Target, addresses: Sequence[str], settings: MediaSettings) -> str | None:
    """Why the host may not be fetched from, given the addresses it resolves to."""
    if target.literal is None and target.host in settings.allow_hosts:
        return None
    if target.literal is None and _is_localhost(target.host):
        return f"{target.host} is a loopback name"
    for text in addresses:
        try:
            ip = ip_address(text)
        except ValueError:
            return f"{target.host} resolves to {text!r}, not an address"
        problem = address_problem(ip, settings)
        if problem is not None:
            if target.literal is not None:
                return f"{target.host} is {problem}"
            return f"{target.host} resolves to {ip}, {problem}"
    return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


#: Validation's lookups: at most this many distinct host names per process, each given at
#: most ``RESOLVE_WAIT`` seconds and all of them ``RESOLVE_TIME`` seconds in all, so a plan
#: naming thousands of hosts (or hosts whose DNS never answers) cannot stall validation. The
#: names left unresolved are checked when they are fetched.
RESOLVE_BUDGET = 256
RESOLVE_WAIT = 2.0
RESOLVE_TIME = 10.0
_lookups: dict[str, float] = {"count": 0, "seconds": 0.0}


@functools.lru_cache(maxsize=1024)
def _resolve_now(host: str, port: int) -> tuple[str, ...] | None:
    if _lookups["count"] >= RESOLVE_BUDGET or _lookups["seconds"] >= RESOLVE_TIME:
        return None
    _lookups["count"] += 1
    # One short-lived thread per lookup, not a pool: once the lookup answers, no thread of
    # ours is left running, so the plan importer may still fork its validating process (it
    # forks only while this is the process's one thread). A lookup that never answers keeps
    # its daemon thread, and the import then validates in this process instead.
    answer: list[Any] = []

    def lookup() -> None:
        with contextlib.suppress(OSError, UnicodeError):
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))

    started = time.monotonic()
    worker = threading.Thread(target=lookup, name="smm-dns", daemon=True)
    worker.start()
    worker.join(RESOLVE_WAIT)
    _lookups["seconds"] += time.monotonic() - started
    if not answer:
        return None
    return tuple(dict.fromkeys(str(info[4][0]) for info in answer[0]))


def url_problem(url: str, settings: MediaSettings, *, resolve: bool = True) -> str | None:
    """Why plan validation refuses the media URL ``url`` (None: it may be fetched later).

    A literal address is judged as it is; a host name by what it resolves to now, when it
    resolves (``resolve``): a name that does not resolve here is checked again at fetch time.
    """
    try:
        target = _target(url)
    except ValueError as exc:
        return str(exc)
    if target.literal is not None:
        return _name_problem(target, [str(target.literal)], settings)
    addresses = _resolve_now(target.host, target.port) if resolve else None
    return _name_problem(target, addresses or (), settings)


async def check_url(
    url: str, settings: MediaSettings, resolver: Resolver | None = None
) -> str | None:
    """``url_problem`` at send time, through ``resolver``: a literal address, or a host name
    that resolves to a refused address. A name that does not resolve is left to the fetch
    (or to the network, when the network fetches the URL itself)."""
    try:
        target = _target(url)
    except ValueError as exc:
        return str(exc)
    addresses: Sequence[str] = [str(target.literal)] if target.literal is not None else ()
    if target.literal is None and target.host not in settings.allow_hosts:
        lookup = (resolver or system_resolver)(target.host, target.port)
        try:
            addresses = await asyncio.wait_for(lookup, RESOLVE_WAIT)
        except (OSError, UnicodeError, TimeoutError):
            addresses = ()
    return _name_problem(target, addresses, settings)


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses the system resolver gives for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Fetched:
    """A fetched media body, with the URL it finally came from."""

    url: str
    name: str
    content: bytes
    content_type: str | None


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    settings: MediaSettings,
    max_bytes: int,
    resolver: Resolver | None = None,
) -> Fetched:
    """GET ``url`` under the fetch policy (module docstring) through ``client``.

    Raises ``Rejected`` for a URL that must not be fetched, a body over ``max_bytes``, too
    many redirects or a 4xx answer; ``Transient`` when the server could not be reached or
    answered 5xx/429, or the whole fetch took longer than ``settings.fetch_timeout``.
    """
    timeout = settings.fetch_timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout):
            return await _follow(client, url, settings, max_bytes, resolver or system_resolver)
    except TimeoutError:
        raise Transient(f"media {short_url(url)}: not fetched within {timeout:g} s") from None


def short_url(url: str) -> str:
    """The URL without its user info and query (either may carry a token), for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: cut by hand
        return _USERINFO.sub("//", re.split(r"[?#]", url, maxsplit=1)[0])[:200]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:200]


async def _follow(
    client: httpx.AsyncClient,
    url: str,
    settings: MediaSettings,
    max_bytes: int,
    resolver: Resolver,
) -> Fetched:
    first = url
    for _ in range(settings.max_redirects + 1):
        try:
            target = _target(url)
        except ValueError as exc:
            raise Rejected(f"media {short_url(url)}: {exc}") from None
        if target.literal is not None:
            addresses: Sequence[str] = [str(target.literal)]
        else:
            try:
                addresses = await resolver(target.host, target.port)
            except (OSError, UnicodeError) as exc:
                raise Transient(
                    f"media {short_url(url)}: cannot resolve {target.host} ({exc})"
                ) from None
            if not addresses:
                raise Transient(f"media {short_url(url)}: {target.host} has no address")
        problem = _name_problem(target, addresses, settings)
        if problem is not None:
            where = "" if url == first else f" (redirected from {short_url(first)})"
            raise Rejected(f"media {short_url(url)}{where}: {problem}; not fetched")
        response = await _send(client, target, addresses[0], url)
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise Rejected(f"media {short_url(url)}: a redirect without a Location")
                url = urljoin(url, location)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(f"media {short_url(url)}: HTTP {response.status_code}")
            if response.status_code >= 300:
                raise Rejected(f"media {short_url(url)}: HTTP {response.status_code}")
            content = await _body(response, url, max_bytes)
        finally:
            await response.aclose()
        name = unquote(target.url.path.rsplit("/", 1)[-1]) or "media"
        return Fetched(url, name, content, response.headers.get("content-type"))
    raise Rejected(f"media {short_url(first)}: more than {settings.max_redirects} redirects")


async def _send(
    client: httpx.AsyncClient, target: _Target, address: str, url: str
) -> httpx.Response:
    """Send the GET to ``address`` itself, naming the URL's host in Host and TLS SNI."""
    ip = ip_address(address)
    host_header = target.url.netloc.decode("ascii").rpartition("@")[2]
    extensions = {}
    if target.literal is None and target.url.scheme == "https":
        extensions["sni_hostname"] = target.host
    request = client.build_request(
        "GET",
        target.url.copy_with(host=str(ip), username=None, password=None),
        headers={"Host": host_header},
        extensions=extensions,
    )
    try:
        return await client.send(request, stream=True, follow_redirects=False)
    except httpx.HTTPError as exc:
        kind = type(exc).__name__
        raise Transient(f"media {short_url(url)}: could not download ({kind})") from None


async def _body(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    """The body, read until ``max_bytes`` are exceeded (then refused, nothing more read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Rejected(
            f"media {short_url(url)}: {declared} bytes, more than the limit of {max_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise Rejected(f"media {short_url(url)}: more than the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise Transient(
            f"media {short_url(url)}: the download broke off ({type(exc).__name__})"
        ) from None
    return b"".join(chunks)
