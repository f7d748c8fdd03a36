"""Text as people see it: grapheme clusters, width on a terminal, and safe printing.

A reader sees one "character" where Python sees several code points: ``👨‍👩‍👧`` is five code
points joined by ZERO WIDTH JOINERs, ``🇺🇦`` two regional indicators, ``é`` may be ``e`` plus a
combining accent, ``각`` may be three conjoining jamo. Networks that count "characters" the
way people do (Bluesky, Mastodon) count extended grapheme clusters (Unicode UAX #29), so
limits must be checked the same way. The clusters come from the ``regex`` module's ``\\X``,
which carries its own, current Unicode data (the interpreter's may be older than the emoji in
a post) and runs the segmentation in C.

Stored text is hostile when printed: an ESC starts a terminal escape sequence, a CR rewrites
the line, RIGHT-TO-LEFT OVERRIDE reverses what follows, zero-width characters hide. ``safe``
shows them escaped (``\\x1b``, ``\\u202e``); ``display_width`` says how many terminal columns
a string takes, so tables line up with wide (CJK, emoji) and combining characters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from functools import lru_cache

import regex

__all__ = ["display_width", "grapheme_count", "graphemes", "safe"]

_CLUSTER = regex.compile(r"\X")
#: Characters that change how a terminal shows what follows, or are invisible: controls (Cc),
#: format characters (Cf: bidi overrides and isolates, zero-width space and joiners, BOM...),
#: line and paragraph separators.
_UNSAFE = regex.compile(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]")
#: What ``safe`` leaves alone among those, because text needs it and it moves nothing: a
#: joiner or non-joiner between two visible characters (emoji sequences such as 👩‍💻 and
#: 👨‍👩‍👧, Persian and Indic words), and the tag characters of a subdivision flag (🏴 + tags +
#: cancel tag: the flag of Scotland or Wales).
_KEPT = regex.compile(
    r"(?<=[^\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}])[\u200c\u200d](?=[^\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}])"
    r"|\U0001F3F4[\U000E0020-\U000E007E]{1,16}\U000E007F"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def graphemes(text: str) -> Iterator[str]:
    """The extended grapheme clusters of ``text``, in order."""
    return iter(_CLUSTER.findall(text))


def grapheme_count(text: str) -> int:
    """How many extended grapheme clusters (user-perceived characters) ``text`` has."""
    if text.isascii():
        # In ASCII only CR LF forms a cluster of more than one code point.
        return len(text) - text.count("\r\n")
    return len(_CLUSTER.findall(text))


def _escape(match: regex.Match[str]) -> str:
    ch = match.group()
    if ch in _SHORT:
        return _SHORT[ch]
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control, format (bidi, zero-width) and separator characters escaped,
    except the joiners and flag tags that emoji and some scripts are written with (``_KEPT``).

    ``keep_newlines`` leaves LF alone (multi-line text printed line by line)."""
    if keep_newlines and "\n" in text:
        return "\n".join(safe(line) for line in text.split("\n"))
    if text.isascii() and text.isprintable():
        return text
    if "\u200c" in text or "\u200d" in text or "\U0001f3f4" in text:
        kept = _KEPT.finditer(text)
        out, at = [], 0
        for match in kept:
            out.append(_UNSAFE.sub(_escape, text[at : match.start()]))
            out.append(match.group())
            at = match.end()
        out.append(_UNSAFE.sub(_escape, text[at:]))
        return "".join(out)
    return _UNSAFE.sub(_escape, text)


@lru_cache(maxsize=4096)
def _cluster_width(cluster: str) -> int:
    first = cluster[0]
    if unicodedata.combining(first) or unicodedata.category(first) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.east_asian_width(first) in ("W", "F"):
        return 2
    # An emoji presentation selector or an emoji sequence makes a cluster two columns wide.
    if "\ufe0f" in cluster or "\u200d" in cluster or 0x1F1E6 <= ord(first) <= 0x1F1FF:
        return 2
    return 1


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes (wide characters two, marks none)."""
    if text.isascii():
        return len(text)
    return sum(_cluster_width(c) for c in _CLUSTER.findall(text))
