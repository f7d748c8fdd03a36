"""X's weighted post length, following twitter-text's version 3 configuration.

The rules, applied in this order:

1. the text is normalised to NFC (so ``e`` + combining acute counts as one ``é``);
2. every URL counts 23, however long it is (X wraps it in a t.co link);
3. every emoji counts 2, however many code points it is made of: a skin-tone modifier, a
   variation selector, a keycap, a flag's two regional indicators, a tag sequence or a whole
   zero-width-joiner sequence (``👨‍👩‍👧‍👦``) belongs to the emoji it follows;
4. every other code point counts 1 in U+0000-U+10FF, U+2000-U+200D, U+2010-U+201F and
   U+2032-U+2037 (Latin, Greek, Cyrillic, Arabic, Hebrew, Indic scripts, common
   punctuation), and 2 anywhere else (CJK, Hangul, most symbols, "…").

The limit is 280. twitter-text recognises URLs without a scheme by a list of some 1,500
top-level domains; this module knows the common generic ones and every two-letter country
code, so ``example.com`` counts 23 but ``example.photography`` counts its characters. Write
such links with ``https://`` to have them counted exactly.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_WEIGHTED_LENGTH", "URL_LENGTH", "find_urls", "weighted_length"]

MAX_WEIGHTED_LENGTH = 280
URL_LENGTH = 23

_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))

# --------------------------------------------------------------------------- emoji

# Code points that start an emoji (Unicode's Extended_Pictographic, by blocks). Including a
# few non-emoji symbols of these blocks costs nothing: alone they weigh 2 either way, and
# they are only grouped when followed by a modifier or joiner.
_PICTOGRAPHIC = (
    "\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u2388\u23cf"
    "\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u27bf"
    "\u2934\u2935\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
    "\U0001f000-\U0001faff"
)
_REGIONAL_INDICATOR = "[\U0001f1e6-\U0001f1ff]"
_MODIFIER = "(?:[\U0001f3fb-\U0001f3ff]\ufe0f?|\ufe0f)"
_TAGS = "[\U000e0020-\U000e007e]+\U000e007f"
# © and ® lie in the weight-1 range: they are emoji only in emoji presentation (with VS16).
_ELEMENT = f"(?:[{_PICTOGRAPHIC}](?:{_TAGS}|{_MODIFIER})?|[\u00a9\u00ae]\ufe0f)"
_EMOJI = re.compile(
    f"{_REGIONAL_INDICATOR}{{2}}"  # a flag
    "|[0-9#*]\ufe0f?\u20e3"  # a keycap
    f"|{_ELEMENT}(?:\u200d{_ELEMENT})*"
)

# --------------------------------------------------------------------------- URLs

# Order does not matter: the lookahead after the TLD makes the regex try every one.
_GENERIC_TLDS = (
    "academy|agency|app|art|asia|biz|blog|business|cat|center|club|cloud|co|codes|com|"
    "company|coop|design|dev|digital|edu|email|energy|events|expert|finance|fun|games|gay|"
    "global|gov|group|guru|health|host|info|int|io|jobs|life|link|live|ltd|market|marketing|"
    "media|mil|mobi|museum|name|net|network|news|ngo|one|online|org|page|photo|photos|pics|"
    "pro|pub|review|rocks|run|sale|school|services|shop|site|social|software|solutions|space|"
    "store|studio|style|support|systems|team|tech|tel|today|tools|top|travel|tv|university|"
    "website|wiki|work|works|world|xxx|xyz"
)
_TLD = f"(?:{_GENERIC_TLDS}|[a-z]{{2}})"
_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PATH = r"(?:[/?#][^\s<>\"]*)?"
# twitter-text links nothing glued to a letter, digit, @, # or $ (mentions, hashtags, emails).
_SCHEME_URL = r"(?<![a-z0-9@#$＠＃])https?://[^\s<>\"]+"
_BARE_URL = (
    rf"(?<![a-z0-9@#$＠＃_./-])(?P<domain>(?:{_LABEL}\.)+{_TLD})"
    rf"(?![a-z0-9-]|@)(?::\d{{1,5}})?(?P<path>{_PATH})"
)
_URL = re.compile(f"{_SCHEME_URL}|{_BARE_URL}", re.IGNORECASE)
_CC_ONLY = re.compile(rf"^{_LABEL}\.[a-z]{{2}}$", re.IGNORECASE)
_TRAILING = ".,:;!?'\")]}>"


def _trim(url: str) -> str:
    """Drop punctuation that ends the sentence rather than the URL (keep balanced parens)."""
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def find_urls(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` spans of the URLs in ``text``, as X would link them."""
    spans = []
    for match in _URL.finditer(text):
        url = _trim(match.group(0))
        domain = match.group("domain")
        # twitter-text does not link "name.cc" without a path (too often a file name), t.co aside.
        short = domain and not match.group("path") and domain.lower() != "t.co"
        if short and _CC_ONLY.match(domain):
            continue
        if url:
            spans.append((match.start(), match.start() + len(url)))
    return spans


def _weight(char: str) -> int:
    point = ord(char)
    return 1 if any(low <= point <= high for low, high in _LIGHT_RANGES) else 2


def weighted_length(text: str) -> int:
    """The length of ``text`` as X counts it against the 280 limit."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for start, end in find_urls(text):
        total += _plain_length(text[position:start]) + URL_LENGTH
        position = end
    return total + _plain_length(text[position:])


def _plain_length(text: str) -> int:
    total = 0
    position = 0
    for match in _EMOJI.finditer(text):
        total += sum(_weight(c) for c in text[position : match.start()]) + 2
        position = match.end()
    return total + sum(_weight(c) for c in text[position:])
