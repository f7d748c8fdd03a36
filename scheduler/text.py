"""Extended grapheme clusters (Unicode UAX #29), the unit Bluesky and Mastodon count text in.

A reader sees one "character" where Python sees several code points: ``👨‍👩‍👧`` is five code
points joined by ZERO WIDTH JOINERs, ``🇺🇦`` two regional indicators, ``é`` may be ``e`` plus a
combining accent, ``각`` may be three conjoining jamo. Networks that count "characters" the
way people do count extended grapheme clusters, so limits must be checked the same way.

This is the segmentation algorithm of UAX #29 (rules GB3 to GB13, including GB9c for Indic
conjuncts and GB11 for emoji ZWJ sequences) written out without a dependency. General
categories and combining classes come from the running Python's ``unicodedata``; the few
properties it lacks (Extended_Pictographic, Prepend, Indic_Conjunct_Break and the
Grapheme_Extend exceptions) are tabulated below from Unicode 15.1. Emoji ranges include the
code points Unicode reserves for future pictographs, so emoji newer than the Python's own
Unicode version still join correctly.
"""

from __future__ import annotations

import enum
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["grapheme_count", "graphemes"]

Ranges = Sequence[tuple[int, int]]


class _Gcb(enum.Enum):
    """Grapheme_Cluster_Break property values."""

    OTHER = enum.auto()
    CR = enum.auto()
    LF = enum.auto()
    CONTROL = enum.auto()
    EXTEND = enum.auto()
    ZWJ = enum.auto()
    REGIONAL_INDICATOR = enum.auto()
    PREPEND = enum.auto()
    SPACING_MARK = enum.auto()
    L = enum.auto()
    V = enum.auto()
    T = enum.auto()
    LV = enum.auto()
    LVT = enum.auto()


# Extended_Pictographic (emoji-data.txt, Unicode 15.1).
_EXTENDED_PICTOGRAPHIC: Ranges = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049),
    (0x2122, 0x2122), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA),
    (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721),
    (0x2728, 0x2728), (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747),
    (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F),
    (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5), (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A),
    (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA),
    (0x1F400, 0x1F53D), (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945),
    (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD),
)  # fmt: skip

# Prepended_Concatenation_Mark and the other Prepend characters (GraphemeBreakProperty.txt).
_PREPEND: Ranges = (
    (0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
    (0x08E2, 0x08E2), (0x0D4E, 0x0D4E), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941), (0x11A3A, 0x11A3A),
    (0x11A84, 0x11A89), (0x11D46, 0x11D46), (0x11F02, 0x11F02),
)  # fmt: skip

# Other_Grapheme_Extend (PropList.txt): spacing vowel parts, ZWNJ, halfwidth voicing marks,
# emoji tag characters... They extend a cluster although their category is not Mn/Me.
_OTHER_GRAPHEME_EXTEND: Ranges = (
    (0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57),
    (0x0BBE, 0x0BBE), (0x0BD7, 0x0BD7), (0x0CC2, 0x0CC2), (0x0CD5, 0x0CD6),
    (0x0D3E, 0x0D3E), (0x0D57, 0x0D57), (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF),
    (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F), (0xFF9E, 0xFF9F),
    (0x1133E, 0x1133E), (0x11357, 0x11357), (0x114B0, 0x114B0), (0x114BD, 0x114BD),
    (0x115AF, 0x115AF), (0x11930, 0x11930), (0x1D165, 0x1D165), (0x1D16E, 0x1D172),
    (0xE0020, 0xE007F),
)  # fmt: skip

# Emoji_Modifier (skin tones) are Extend although their category is Sk.
_EMOJI_MODIFIER: Ranges = ((0x1F3FB, 0x1F3FF),)

# Spacing marks UAX #29 excludes from SpacingMark (Myanmar, Tai Tham... vowels that do not
# attach in practice), and the two it adds (Thai and Lao SARA AM, category Lo).
_NOT_SPACING_MARK: Ranges = (
    (0x102B, 0x102C), (0x1038, 0x1038), (0x1062, 0x1064), (0x1067, 0x106D),
    (0x1083, 0x1083), (0x1087, 0x108C), (0x108F, 0x108F), (0x109A, 0x109C),
    (0x1A61, 0x1A61), (0x1A63, 0x1A64), (0xAA7B, 0xAA7B), (0xAA7D, 0xAA7D),
    (0x11720, 0x11721),
)  # fmt: skip
_EXTRA_SPACING_MARK = frozenset({0x0E33, 0x0EB3})

# Unassigned Default_Ignorable_Code_Point ranges: they break like controls.
_IGNORABLE_UNASSIGNED: Ranges = (
    (0x2065, 0x2065), (0xFFF0, 0xFFF8), (0xE0000, 0xE0000), (0xE0002, 0xE001F),
    (0xE0080, 0xE00FF), (0xE01F0, 0xE0FFF),
)  # fmt: skip

# Indic_Conjunct_Break (DerivedCoreProperties.txt, Unicode 15.1): the consonants and viramas
# of the six scripts whose conjuncts rule GB9c keeps in one cluster.
_INCB_CONSONANT: Ranges = (
    (0x0915, 0x0939), (0x0958, 0x095F), (0x0978, 0x097F),  # Devanagari
    (0x0995, 0x09A8), (0x09AA, 0x09B0), (0x09B2, 0x09B2), (0x09B6, 0x09B9),
    (0x09DC, 0x09DD), (0x09DF, 0x09DF), (0x09F0, 0x09F1),  # Bengali
    (0x0A95, 0x0AA8), (0x0AAA, 0x0AB0), (0x0AB2, 0x0AB3), (0x0AB5, 0x0AB9),
    (0x0AF9, 0x0AF9),  # Gujarati
    (0x0B15, 0x0B28), (0x0B2A, 0x0B30), (0x0B32, 0x0B33), (0x0B35, 0x0B39),
    (0x0B5C, 0x0B5D), (0x0B5F, 0x0B5F), (0x0B71, 0x0B71),  # Oriya
    (0x0C15, 0x0C28), (0x0C2A, 0x0C39), (0x0C58, 0x0C5A),  # Telugu
    (0x0D15, 0x0D3A),  # Malayalam
)  # fmt: skip
_INCB_LINKER = frozenset({0x094D, 0x09CD, 0x0ACD, 0x0B4D, 0x0C4D, 0x0D4D})

_CR, _LF, _ZWJ = 0x0D, 0x0A, 0x200D
_HANGUL_BASE, _HANGUL_END, _HANGUL_T_COUNT = 0xAC00, 0xD7A3, 28


def _in(cp: int, ranges: Ranges) -> bool:
    i = bisect_right(ranges, (cp, 0x10FFFF)) - 1
    return i >= 0 and ranges[i][0] <= cp <= ranges[i][1]


def _hangul(cp: int) -> _Gcb | None:
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return _Gcb.L
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return _Gcb.V
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return _Gcb.T
    if _HANGUL_BASE <= cp <= _HANGUL_END:
        # Precomposed syllables with no trailing consonant are LV, the others LVT.
        return _Gcb.LV if (cp - _HANGUL_BASE) % _HANGUL_T_COUNT == 0 else _Gcb.LVT
    return None


@lru_cache(maxsize=8192)
def _gcb(cp: int) -> _Gcb:
    """The Grapheme_Cluster_Break value of code point ``cp``."""
    if cp == _CR:
        return _Gcb.CR
    if cp == _LF:
        return _Gcb.LF
    if cp == _ZWJ:
        return _Gcb.ZWJ
    category = unicodedata.category(chr(cp))
    if category in ("Mn", "Me") or _in(cp, _OTHER_GRAPHEME_EXTEND) or _in(cp, _EMOJI_MODIFIER):
        return _Gcb.EXTEND
    if _in(cp, _PREPEND):
        return _Gcb.PREPEND
    if category in ("Cc", "Cf", "Zl", "Zp") or (
        category == "Cn" and _in(cp, _IGNORABLE_UNASSIGNED)
    ):
        return _Gcb.CONTROL
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return _Gcb.REGIONAL_INDICATOR
    hangul = _hangul(cp)
    if hangul is not None:
        return hangul
    if (category == "Mc" and not _in(cp, _NOT_SPACING_MARK)) or cp in _EXTRA_SPACING_MARK:
        return _Gcb.SPACING_MARK
    return _Gcb.OTHER


@lru_cache(maxsize=8192)
def _pictographic(cp: int) -> bool:
    return _in(cp, _EXTENDED_PICTOGRAPHIC)


@lru_cache(maxsize=8192)
def _incb_extend(cp: int) -> bool:
    # InCB=Extend: the Extend characters with a non-zero combining class (nukta, vowel
    # signs...), and ZWJ; a virama is a Linker instead.
    return cp == _ZWJ or (
        cp not in _INCB_LINKER and _gcb(cp) is _Gcb.EXTEND and unicodedata.combining(chr(cp)) != 0
    )


_HANGUL_JOINS = {
    _Gcb.L: frozenset({_Gcb.L, _Gcb.V, _Gcb.LV, _Gcb.LVT}),  # GB6
    _Gcb.LV: frozenset({_Gcb.V, _Gcb.T}),  # GB7
    _Gcb.V: frozenset({_Gcb.V, _Gcb.T}),  # GB7
    _Gcb.LVT: frozenset({_Gcb.T}),  # GB8
    _Gcb.T: frozenset({_Gcb.T}),  # GB8
}
_BREAKERS = frozenset({_Gcb.CONTROL, _Gcb.CR, _Gcb.LF})


@dataclass
class _State:
    """What the rules that look further back than one code point need to know."""

    prev: _Gcb = _Gcb.OTHER
    ri_run: int = 0  # regional indicators in a row, ending at prev (GB12, GB13)
    after_pictographic: bool = False  # prev ends ExtPict Extend* (GB11)
    pictographic_zwj: bool = False  # prev is the ZWJ of ExtPict Extend* ZWJ (GB11)
    conjunct: int = 0  # 0: none; 1: after a consonant; 2: consonant ... linker (GB9c)

    def joins(self, cp: int, cur: _Gcb) -> bool:
        """True when no cluster boundary falls between prev and ``cp``."""
        prev = self.prev
        if prev is _Gcb.CR and cur is _Gcb.LF:  # GB3
            return True
        if prev in _BREAKERS or cur in _BREAKERS:  # GB4, GB5
            return False
        if cur in _HANGUL_JOINS.get(prev, ()):  # GB6, GB7, GB8
            return True
        if cur in (_Gcb.EXTEND, _Gcb.ZWJ, _Gcb.SPACING_MARK) or prev is _Gcb.PREPEND:
            return True  # GB9, GB9a, GB9b
        if self.conjunct == 2 and _in(cp, _INCB_CONSONANT):  # GB9c
            return True
        if self.pictographic_zwj and _pictographic(cp):  # GB11
            return True
        return cur is _Gcb.REGIONAL_INDICATOR and self.ri_run % 2 == 1  # GB12, GB13; GB999

    def advance(self, cp: int, cur: _Gcb) -> None:
        """Move past ``cp``."""
        self.pictographic_zwj = self.after_pictographic and cur is _Gcb.ZWJ
        self.after_pictographic = _pictographic(cp) or (
            self.after_pictographic and cur is _Gcb.EXTEND
        )
        self.ri_run = self.ri_run + 1 if cur is _Gcb.REGIONAL_INDICATOR else 0
        if _in(cp, _INCB_CONSONANT):
            self.conjunct = 1
        elif self.conjunct and cp in _INCB_LINKER:
            self.conjunct = 2
        elif not (self.conjunct and _incb_extend(cp)):
            self.conjunct = 0
        self.prev = cur


def _boundaries(text: str) -> Iterator[int]:
    """Indexes (into ``text``) where a new grapheme cluster starts, after the first."""
    state = _State()
    for i, ch in enumerate(text):
        cp = ord(ch)
        cur = _gcb(cp)
        if i > 0 and not state.joins(cp, cur):
            yield i
        state.advance(cp, cur)


def graphemes(text: str) -> Iterator[str]:
    """The extended grapheme clusters of ``text``, in order."""
    start = 0
    for boundary in _boundaries(text):
        yield text[start:boundary]
        start = boundary
    if text:
        yield text[start:]


def grapheme_count(text: str) -> int:
    """How many extended grapheme clusters (user-perceived characters) ``text`` has."""
    if text.isascii():
        # In ASCII only CR LF forms a cluster of more than one code point.
        return len(text) - text.count("\r\n")
    return sum(1 for _ in _boundaries(text)) + (1 if text else 0)
