"""Reading a plan item's media entries: a path or URL, or a mapping with alt text and focus.

``media: [img.png, {path: b.jpg, alt: "A red bike", focus: [0.2, -0.1]}]`` in YAML; in CSV
the ``media`` cell holds the paths and a ``media_alt`` cell one alt text per line, in the
same order (docs/content-plan.md). Only the shape is judged here; where the files are and
what the network takes is checked afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from scheduler.adapter import MediaMeta
from scheduler.errors import excerpt

#: Keys of a media mapping.
MEDIA_KEYS = ("path", "alt", "focus")
#: What an alt text may not hold, as a post's text: control characters other than tab and
#: line breaks, lone surrogates.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LIST_SPLIT = re.compile(r"[;\n]")

Fail = Callable[[str, str, str], None]
#: How a message names the kind of a value that is not text (validation's own wording).
Kind = Callable[[Any], str]


def media_entries(
    value: Any, alt_value: Any, fail: Fail, kind: Kind
) -> tuple[tuple[str, ...], tuple[MediaMeta, ...]]:
    """The entries (paths or URLs as written) and their metadata; the metadata is empty when
    no entry has any. Problems are reported through ``fail(field, message, hint)``; ``kind``
    names a value that is not text."""
    if value is None or value == "":
        entries: list[tuple[str, MediaMeta]] = []
    elif isinstance(value, str):
        entries = [(p.strip(), MediaMeta()) for p in _LIST_SPLIT.split(value) if p.strip()]
    elif isinstance(value, list):
        entries = []
        for position, entry in enumerate(value, 1):
            read = _entry(entry, position, fail, kind)
            if read is not None:
                entries.append(read)
    else:
        fail("media", f"media must be a list, got {kind(value)}", "")
        return (), ()
    alts = _alt_lines(alt_value, fail, kind)
    if alts:
        if len(alts) > len(entries):
            fail(
                "media_alt",
                f"{len(alts)} alt texts for {len(entries)} media file(s)",
                "one line per media file, in the order of the media cell",
            )
        for index, alt in enumerate(alts[: len(entries)]):
            if not alt:
                continue
            path, meta = entries[index]
            if meta.alt is not None:
                fail("media_alt", f"media {index + 1} has alt text twice", "give it once")
                continue
            entries[index] = (path, MediaMeta(alt, meta.focus))
    paths = tuple(p for p, _ in entries)
    metas = tuple(m for _, m in entries)
    if all(m.alt is None and m.focus is None for m in metas):
        metas = ()
    return paths, metas


def _entry(entry: Any, position: int, fail: Fail, kind: Kind) -> tuple[str, MediaMeta] | None:
    if type(entry) is str:
        return (entry.strip(), MediaMeta()) if entry.strip() else None
    if not isinstance(entry, dict):
        fail(
            "media",
            f"media {position} must be a path or a mapping with 'path', got {type(entry).__name__}",
            "write img.png, or {path: img.png, alt: ...}",
        )
        return None
    unknown = sorted(str(k) for k in entry if k not in MEDIA_KEYS)
    if unknown:
        fail(
            "media",
            f"media {position}: unknown key {unknown[0]!r}",
            "a media mapping takes " + ", ".join(MEDIA_KEYS),
        )
        return None
    path = entry.get("path")
    if type(path) is not str or not path.strip():
        fail("media", f"media {position}: 'path' is missing or not text", "")
        return None
    alt = entry.get("alt")
    if alt is not None:
        alt = _alt_text(alt, f"media {position}", fail, "media", kind)
        if alt is None:
            return None
    focus = entry.get("focus")
    point = _focus(focus, position, fail) if focus is not None else None
    if focus is not None and point is None:
        return None
    return path.strip(), MediaMeta(alt or None, point)


def _alt_text(value: Any, where: str, fail: Fail, name: str, kind: Kind) -> str | None:
    if type(value) is not str:
        fail(name, f"{where}: alt must be text, got {kind(value)}", 'quote it: alt: "..."')
        return None
    bad = _CONTROL.search(value)
    if bad is not None:
        fail(
            name,
            f"{where}: alt text contains the control character U+{ord(bad.group()):04X}",
            "remove it: alt text may hold tabs and line breaks, no other control characters",
        )
        return None
    return value.strip()


def _alt_lines(value: Any, fail: Fail, kind: Kind) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        lines = value.split("\n")
    elif isinstance(value, list):
        lines = value
    else:
        fail("media_alt", f"media_alt must be text, got {kind(value)}", "")
        return []
    out = []
    for index, line in enumerate(lines, 1):
        text = _alt_text(line, f"alt text {index}", fail, "media_alt", kind)
        out.append(text or "")
    return out


def _focus(value: Any, position: int, fail: Fail) -> tuple[float, float] | None:
    if isinstance(value, str):
        parts: list[Any] = [p.strip() for p in value.split(",")]
    elif isinstance(value, list):
        parts = value
    else:
        parts = []
    numbers: list[float] = []
    for part in parts:
        if isinstance(part, bool):
            break
        try:
            number = float(part)
        except (TypeError, ValueError):
            break
        if not math.isfinite(number) or not -1.0 <= number <= 1.0:
            break
        numbers.append(number)
    if len(parts) != 2 or len(numbers) != 2:
        fail(
            "media",
            f"media {position}: focus must be two numbers from -1 to 1, got {excerpt(value)}",
            "focus: [x, y], e.g. [0.2, -0.1] (0, 0 is the centre)",
        )
        return None
    return numbers[0], numbers[1]
