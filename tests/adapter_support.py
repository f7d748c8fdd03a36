"""Helpers the network adapter tests (tests/test_<network>.py) share.

What a third-party plugin's tests could use too lives in the public kit, ``scheduler.testing``;
this module holds what only makes sense inside this repository (its docs, its entry points)
or is too small a convenience to publish.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs

import httpx
import pytest

from scheduler import plugins
from scheduler.adapter import Adapter

REPO = Path(__file__).resolve().parent.parent
NETWORK_DOCS = REPO / "docs" / "plugins" / "networks"

#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def form(request: httpx.Request) -> dict[str, str]:
    """The fields of a url-encoded request body, the first value of each."""
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def png(tmp_path: Path, name: str) -> str:
    """The path of a new file ``name`` in ``tmp_path`` that starts as a PNG does."""
    path = tmp_path / name
    path.write_bytes(PNG_SIGNATURE + b"\0" * 16)
    return str(path)


def mp4(tmp_path: Path, name: str = "clip.mp4", *, size: int = 4096, seconds: int = 30) -> str:
    """The path of a new MP4 file of ``size`` bytes whose moov/mvhd says it lasts
    ``seconds`` (ISO/IEC 14496-12 boxes: ftyp, moov/mvhd version 0, then mdat)."""
    mvhd_payload = struct.pack(">B3xIIII", 0, 0, 0, 1000, seconds * 1000) + b"\0" * 80
    mvhd = struct.pack(">I4s", 8 + len(mvhd_payload), b"mvhd") + mvhd_payload
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    head = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0" + moov
    body = bytes(i % 251 for i in range(size - len(head) - 8))
    path = tmp_path / name
    path.write_bytes(head + struct.pack(">I4s", size - len(head), b"mdat") + body)
    return str(path)


def registered_adapters(
    register_platforms: Callable[..., None],
) -> list[type[Adapter]]:
    """The adapter classes a plugin's ``register_platforms`` hook registers, in order."""
    registered: list[type[Adapter]] = []
    register_platforms(register=registered.append)
    return registered


def adapter_from_entry_point(monkeypatch: pytest.MonkeyPatch, platform: str) -> type[Adapter]:
    """The adapter class the plugin manager finds for ``platform`` when only the plugin of
    that name is loaded from its entry point."""
    monkeypatch.setenv("SMM_LOAD_PLUGINS", platform)
    plugins.reset()
    try:
        return plugins.adapter_class(platform)
    finally:
        plugins.reset()


def options_read_by(package: ModuleType) -> set[str]:
    """The account options a plugin package reads (every ``option("name"`` in its sources)."""
    source = "".join(
        p.read_text(encoding="utf-8") for p in Path(str(package.__file__)).parent.glob("*.py")
    )
    return set(re.findall(r'option\("(\w+)"', source))


def network_page(network: str) -> str:
    """The text of the network's page in docs/plugins/networks."""
    return (NETWORK_DOCS / f"{network}.md").read_text(encoding="utf-8")


def undocumented(options: set[str], page: str) -> list[str]:
    """The options that have no row (``| `name` |``) in the options table of ``page``."""
    return sorted(o for o in options if f"| `{o}` |" not in page)
