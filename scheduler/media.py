"""Local media: read only from the operator's media roots, only regular files, checked by content.

A plan names media files; the plan is written by many people and is not trusted. A file is
accepted only when it lies under a media root (the plan file's own directory, and the
``[media] roots`` of the config), is a regular file (no device, FIFO, ``/proc`` or ``/sys``
entry) and its bytes are of a type the network takes, within the network's size limit. Plan
validation checks this (``locate``, ``inspect``) and the daemon checks it again when it opens
the file to publish (``read``), since the file may have changed since: the file is opened
without following a final symlink, and the opened descriptor — not the name — is checked
against the roots before a byte is read through it.

Adapters never open media themselves: they call ``read`` (a local file) or ``load`` (a file or
a URL, fetched through ``scheduler.fetch``). The module knows no network: each adapter's
``Capabilities`` say which types and sizes it takes. Which roots apply to a post is the core's
business: it sets the ``MediaPolicy`` (``using`` / ``confined``) around every plugin call;
without one, no local file is readable at all.
"""

from __future__ import annotations

import asyncio
import errno
import mimetypes
import os
import re
import stat
from collections.abc import Awaitable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import puremagic

from scheduler.adapter import Capabilities, Rejected, VideoLimits
from scheduler.config import MediaSettings
from scheduler.mp4 import duration_seconds

if TYPE_CHECKING:
    import httpx

    from scheduler.fetch import Resolver

__all__ = [
    "MediaError",
    "MediaFile",
    "MediaInfo",
    "MediaPolicy",
    "check_post",
    "confined",
    "current_policy",
    "guess_type",
    "inspect",
    "is_url",
    "load",
    "local_info",
    "locate",
    "normal_type",
    "open_local",
    "policy_for",
    "read",
    "read_range",
    "sniff",
    "takes",
    "using",
]

T = TypeVar("T")

#: Kernel pseudo-filesystems: their "regular files" are views of processes and devices.
_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))
#: Enough of a file for every signature the sniffer knows.
_HEAD = 8192
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: Spellings of the same type that sniffing and networks do not agree on.
_SAME_TYPE = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/heic": "image/heif",
    "video/x-quicktime": "video/quicktime",
    # WAV has five spellings in the wild (Mastodon's own list carries all of them).
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-pn-wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/vorbis": "audio/ogg",
}
#: Containers whose signature does not say what they hold: such a file is any of these.
_CONTAINERS = {
    "application/ogg": ("audio/ogg", "video/ogg", "audio/opus"),
}
#: File name extensions Python's table leaves out or spells differently from networks.
_EXTENSIONS = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".ogv": "video/ogg",
    ".weba": "audio/webm",
    ".webm": "video/webm",
    ".3gp": "audio/3gpp",
    ".asf": "video/x-ms-asf",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".mov": "video/quicktime",
}
#: ISO media (``ftyp``) brands of audio-only files, which puremagic does not name.
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")


def normal_type(kind: str) -> str:
    """One spelling of a MIME type: ``audio/x-wav`` and ``audio/wave`` are ``audio/wav``."""
    kind = kind.strip().lower()
    return _SAME_TYPE.get(kind, kind)


def guess_type(name: str) -> str | None:
    """The MIME type a file name or URL suggests, in its one spelling (``normal_type``);
    for checks by name only (validation still checks the content of local files)."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    suffix = os.path.splitext(path)[1].lower()
    kind = _EXTENSIONS.get(suffix) or mimetypes.guess_type(path)[0]
    return normal_type(kind) if kind else None


def takes(kind: str | None, accepted: Collection[str]) -> bool:
    """Whether a network that lists ``accepted`` takes ``kind`` (aliases count as the same)."""
    if kind is None:
        return False
    wanted = {normal_type(t) for t in accepted}
    kind = normal_type(kind)
    return kind in wanted or any(t in wanted for t in _CONTAINERS.get(kind, ()))


class MediaError(Exception):
    """A media file that must not be read or sent; the message says why (never its content)."""


@dataclass(frozen=True)
class MediaPolicy:
    """What a plugin call may read and fetch: the media roots and the fetch settings."""

    #: Absolute, resolved directories; an empty tuple allows no local file at all.
    roots: tuple[Path, ...] = ()
    settings: MediaSettings = field(default_factory=MediaSettings)
    #: How host names are resolved for fetches (None: the system resolver); tests replace it.
    resolver: Resolver | None = None


def policy_for(
    settings: MediaSettings, plan_file: str | None, resolver: Resolver | None = None
) -> MediaPolicy:
    """The policy of a post: the configured roots plus the directory of its plan file."""
    roots = list(settings.roots)
    if plan_file:
        plan_dir = Path(plan_file).resolve().parent
        if _root_allowed(plan_dir) and plan_dir not in roots:
            roots.append(plan_dir)
    return MediaPolicy(tuple(roots), settings, resolver)


def _root_allowed(root: Path) -> bool:
    return root != Path("/") and not any(root.is_relative_to(p) for p in _PSEUDO)


_policy: ContextVar[MediaPolicy | None] = ContextVar("smm_media_policy", default=None)
_NO_POLICY = MediaPolicy()


def current_policy() -> MediaPolicy:
    """The policy the core set for the current plugin call (no roots when none was set)."""
    return _policy.get() or _NO_POLICY


@contextmanager
def using(policy: MediaPolicy) -> Iterator[MediaPolicy]:
    """Make ``policy`` the current one inside the ``with`` block (and tasks started in it)."""
    token = _policy.set(policy)
    try:
        yield policy
    finally:
        _policy.reset(token)


async def confined(policy: MediaPolicy, call: Awaitable[T]) -> T:
    """Await ``call`` (a plugin's coroutine) with ``policy`` current."""
    token = _policy.set(policy)
    try:
        return await call
    finally:
        _policy.reset(token)


def is_url(entry: str) -> bool:
    """Whether a media entry is a URL (any scheme) rather than a file path."""
    return _URL.match(entry) is not None


# --------------------------------------------------------------------------- where


def _under(path: str, folder: Path) -> bool:
    # Strings, not Path.is_relative_to: validation asks this for every media entry.
    top = str(folder)
    return path == top or path.startswith(top if top.endswith("/") else top + "/")


def _outside(path: str, roots: Sequence[Path]) -> str | None:
    """Why the resolved ``path`` may not be read under ``roots`` (None: it may)."""
    if any(_under(path, p) for p in _PSEUDO):
        return f"{path} is a kernel or device file"
    if not any(_under(path, root) for root in roots):
        return f"{path} is outside the media roots ({', '.join(map(str, roots)) or 'none'})"
    return None


def locate(entry: str, base: Path, roots: Sequence[Path]) -> Path:
    """The resolved path of the media file ``entry`` names (relative to ``base``, the plan's
    directory), checked: under ``roots``, a regular file. Raises MediaError saying why not."""
    if "\0" in entry:
        raise MediaError("the path contains a NUL character")
    if entry.startswith("~"):
        raise MediaError(
            f"{entry!r}: '~' is not expanded in plans; write the path relative to the plan "
            "file, or an absolute path under a media root"
        )
    # Where it points first: whether a file exists outside the roots is not told.
    path = os.path.realpath(os.path.join(base, entry))
    problem = _outside(path, roots)
    if problem is not None:
        raise MediaError(problem if entry == path else f"{entry!r} ({problem})")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MediaError(f"{entry!r} not found (looked at {path})") from None
    except OSError as exc:  # a symlink loop, a permission denied on the way
        raise MediaError(f"{entry!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise MediaError(f"{path} is not a regular file")
    return Path(path)


# --------------------------------------------------------------------------- opening


_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW  # a final symlink is refused, never followed
    | os.O_NONBLOCK  # a FIFO swapped in must not block the open
    | os.O_NOCTTY
    | os.O_CLOEXEC
)


def _open(path: str, roots: Sequence[Path]) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading and check what was opened; returns the descriptor and its
    stat. The checks are on the descriptor, so a file swapped after the check is not read."""
    if "\0" in path:
        raise MediaError("the path contains a NUL character")
    if not roots:
        raise MediaError(f"{path}: no media roots apply, so no local file may be read")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the file itself is a symlink (O_NOFOLLOW)
            raise MediaError(f"{path} is a symbolic link") from None
        raise MediaError(f"cannot read media file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MediaError(f"{path} is not a regular file")
        problem = _outside(_opened_path(fd, path, info), roots)
        if problem is not None:
            raise MediaError(problem)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _opened_path(fd: int, path: str, info: os.stat_result) -> str:
    """Where the file open as ``fd`` really is, every symlink on the way resolved."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        # No /proc: resolve the name, and make sure it still names the file that is open.
        real = os.path.realpath(path)
        try:
            now = os.stat(real)
        except OSError:
            raise MediaError(f"{path} changed while it was opened") from None
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            raise MediaError(f"{path} changed while it was opened") from None
        return real


def _read_fd(fd: int, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes from ``fd`` (one more tells the file is too large)."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- content


#: The image formats nearly every post carries, told from their fixed signatures without
#: puremagic's scan of its whole table (about 0.8 ms a file): validating a large plan of
#: images stays fast. puremagic gives the same answers for these.
_COMMON = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(head: bytes) -> str | None:
    """The MIME type the bytes are (by their signature), or None when nothing is recognised.

    Only puremagic's best-scoring matches count; among them, the first with a MIME type.
    """
    for signature, kind in _COMMON:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return "audio/mp4"
    try:
        found = puremagic.magic_string(head[:_HEAD])
    except (puremagic.PureError, ValueError):
        return None
    if not found:
        return None
    best = max(m.confidence for m in found)
    for match in found:
        if match.confidence == best and match.mime_type:
            return _SAME_TYPE.get(match.mime_type, match.mime_type)
    return None


def _accepted(kind: str | None, accepted: Collection[str]) -> str | None:
    """The sniffed ``kind`` if ``accepted`` takes it (any type when it is empty)."""
    if not accepted:
        return kind or "application/octet-stream"
    if kind is None:
        return None
    wanted = {normal_type(t) for t in accepted}
    if kind in wanted:
        return kind
    # A container (Ogg) is sent as the first of its types the network lists.
    return next((t for t in _CONTAINERS.get(kind, ()) if t in wanted), None)


def _describe(accepted: Collection[str]) -> str:
    return ", ".join(sorted({t.split("/")[-1].upper() for t in accepted}))


def _network_limit(capabilities: Capabilities, kind: str | None) -> int | None:
    video = _video_limits(capabilities, kind)
    return video.max_bytes if video is not None else capabilities.max_media_bytes


def _limit(capabilities: Capabilities, policy: MediaPolicy, kind: str | None = None) -> int:
    limit = _network_limit(capabilities, kind)
    cap = policy.settings.fetch_max_bytes
    return cap if limit is None else min(limit, cap)


def _video_limits(capabilities: Capabilities, kind: str | None) -> VideoLimits | None:
    """The network's video limits when ``kind`` is one of the video types they cover."""
    video = capabilities.video
    if video is None or kind is None:
        return None
    return video if normal_type(kind) in {normal_type(t) for t in video.types} else None


#: Containers whose duration ``scheduler.mp4`` reads.
_ISO_MEDIA = ("video/mp4", "video/quicktime")


def _span(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def _too_large(
    path: str, size: int, limit: int, capabilities: Capabilities, kind: str | None = None
) -> MediaError:
    """A file over ``limit``, saying when the limit is the operator's setting rather than
    the network's (a 300 MB video a network takes is refused under the default 100 MiB)."""
    network = _network_limit(capabilities, kind)
    mine = network is None or network > limit
    why = " ([media] fetch_max_bytes; raise it to send larger files)" if mine else ""
    return MediaError(f"{path}: {size} bytes, more than the limit of {limit}{why}")


@dataclass(frozen=True)
class MediaInfo:
    """What validation learns of a local media file."""

    path: str
    size: int
    mime: str
    #: Seconds, for a video whose network declares ``VideoLimits`` and whose container
    #: states it; None otherwise.
    duration: float | None = None


@dataclass(frozen=True)
class MediaFile:
    """A media file as read for upload: its name, bytes, and the type its bytes are."""

    name: str
    content: bytes
    mime: str


def _check(
    path: str, head: bytes, size: int, capabilities: Capabilities, policy: MediaPolicy
) -> str:
    accepted = capabilities.media_types
    found = sniff(head)
    kind = _accepted(found, accepted)
    if kind is None:
        raise MediaError(
            f"{path}: its content is {found or 'not a recognised media type'}, "
            f"not {_describe(accepted)}"
        )
    limit = _limit(capabilities, policy, kind)
    if size > limit:
        raise _too_large(path, size, limit, capabilities, kind)
    video = _video_limits(capabilities, kind)
    if video is not None and size < video.min_bytes:
        raise MediaError(
            f"{path}: a video of {size} bytes, less than the {video.min_bytes} the network "
            "takes at least"
        )
    return kind


def _check_duration(path: str, seconds: float | None, video: VideoLimits) -> None:
    if seconds is None:
        return  # not stated plainly: the network judges
    if seconds < video.min_seconds:
        raise MediaError(
            f"{path}: a video of {seconds:.1f} s, shorter than the {_span(video.min_seconds)} "
            "the network takes at least"
        )
    if video.max_seconds is not None and seconds > video.max_seconds:
        raise MediaError(
            f"{path}: a video of {seconds:.1f} s, longer than the {_span(video.max_seconds)} "
            "the network takes at most"
        )


def inspect(path: str, capabilities: Capabilities, policy: MediaPolicy) -> MediaInfo:
    """Check a local media file without reading it whole (plan validation): confined, a
    regular file, of a type ``capabilities`` accept by its bytes, within its size limit; a
    video within the network's ``VideoLimits`` (size, and duration read from its container
    by ``scheduler.mp4``, seeking from box header to box header)."""
    fd, info = _open(path, policy.roots)
    try:
        head = os.read(fd, _HEAD)
        kind = _check(path, head, info.st_size, capabilities, policy)
        video = _video_limits(capabilities, kind)
        seconds = None
        if video is not None and kind in _ISO_MEDIA:
            # Only a video pays for a file object; images stay one read (validation's hot path).
            with os.fdopen(os.dup(fd), "rb") as f:
                seconds = duration_seconds(f)
            _check_duration(path, seconds, video)
    finally:
        os.close(fd)
    return MediaInfo(path, info.st_size, kind, seconds)


def _read_local(path: str, capabilities: Capabilities, policy: MediaPolicy) -> MediaFile:
    kind = guess_type(path)
    limit = _limit(capabilities, policy, kind)
    fd, info = _open(path, policy.roots)
    try:
        if info.st_size > limit:
            raise _too_large(path, info.st_size, limit, capabilities, kind)
        content = _read_fd(fd, limit)
    finally:
        os.close(fd)
    kind = _check(path, content, len(content), capabilities, policy)
    return MediaFile(Path(path).name, content, kind)


def local_info(entry: str, capabilities: Capabilities) -> MediaInfo:
    """``inspect`` under the current policy, for adapters that stream a large file: its
    size and type, checked; raises ``Rejected``. Then read it with ``read_range``."""
    try:
        return inspect(entry, capabilities, current_policy())
    except MediaError as exc:
        raise Rejected(str(exc)) from None


def read_range(entry: str, offset: int, length: int) -> bytes:
    """``length`` bytes of the local media file ``entry`` from ``offset`` (fewer at its end),
    opened and checked as ``read`` opens it; for chunked uploads. Raises ``Rejected``."""
    try:
        fd, _info = _open(entry, current_policy().roots)
    except MediaError as exc:
        raise Rejected(str(exc)) from None
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def open_local(entry: str) -> BinaryIO:
    """The local media file ``entry``, opened and checked as ``read`` opens it, as a binary
    file for parsers that seek (the caller closes it). Raises ``Rejected``."""
    try:
        fd, _info = _open(entry, current_policy().roots)
    except MediaError as exc:
        raise Rejected(str(exc)) from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


async def read(entry: str, capabilities: Capabilities) -> MediaFile:
    """Read the local media file ``entry`` for upload, under the current policy.

    Raises ``Rejected`` (the post cannot be sent as it is) when the file is outside the media
    roots, not a regular file, not of a type ``capabilities`` accept, or too large.
    """
    if is_url(entry):
        raise Rejected(f"{entry}: a URL where a local file is needed")
    policy = current_policy()
    try:
        return await asyncio.to_thread(_read_local, entry, capabilities, policy)
    except MediaError as exc:
        raise Rejected(str(exc)) from None


async def check_post(
    entries: Sequence[str], capabilities: Capabilities, policy: MediaPolicy
) -> str | None:
    """Why a post's media must not be sent (None: they may), checked by the core before the
    plugin is called: local files as ``inspect`` checks them, URLs by their address."""
    from scheduler import fetch

    for entry in entries:
        if is_url(entry):
            problem = await fetch.check_url(entry, policy.settings, policy.resolver)
            if problem is not None:
                return f"media URL {fetch.short_url(entry)!r} refused: {problem}"
            continue
        try:
            await asyncio.to_thread(inspect, entry, capabilities, policy)
        except MediaError as exc:
            return f"media file refused: {exc}"
    return None


async def load(client: httpx.AsyncClient, entry: str, capabilities: Capabilities) -> MediaFile:
    """The media ``entry`` names, a local file (``read``) or a URL fetched under the fetch
    policy (``scheduler.fetch``), checked the same way by content and size."""
    if not is_url(entry):
        return await read(entry, capabilities)
    from scheduler import fetch

    policy = current_policy()
    limit = _limit(capabilities, policy, guess_type(entry))
    got = await fetch.fetch(
        client, entry, settings=policy.settings, max_bytes=limit, resolver=policy.resolver
    )
    try:
        kind = _check(fetch.short_url(entry), got.content, len(got.content), capabilities, policy)
    except MediaError as exc:
        raise Rejected(str(exc)) from None
    return MediaFile(got.name, got.content, kind)
