"""How Mastodon counts the length of a status.

Mastodon's ``StatusLengthValidator`` counts the text after two rewrites, in extended grapheme
clusters (Ruby's ``each_grapheme_cluster``), so ``👨‍👩‍👧`` or ``🇺🇦`` is one character:

* every URL with a scheme counts as ``characters_reserved_per_url`` characters (23 unless
  the instance says otherwise), however long it is;
* a mention of a remote account, ``@user@example.social``, counts as ``@user``: the domain
  is free.
"""

from __future__ import annotations

import re

from scheduler.text import grapheme_count

__all__ = ["DEFAULT_URL_LENGTH", "countable_text", "status_length"]

DEFAULT_URL_LENGTH = 23

# A URL needs its scheme (Mastodon extracts URLs "without protocol: false") and must not be
# glued to a word, a mention or a hashtag.
_URL = re.compile(r"(?<![A-Za-z0-9@＠$#＃])https?://[^\s<>\"]+", re.IGNORECASE)
# Account::MENTION_RE: "@" not after a word character, "=" or "/"; ASCII usernames with
# inner dots and dashes; an optional "@domain".
_MENTION = re.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@\w+(?:[.-]+\w+)*)?", re.IGNORECASE
)
_URL_TRAILING = ".,;:!?'\""


def _trim_url(url: str) -> str:
    """Drop the sentence punctuation after a URL, and a ``)`` it does not open."""
    while url:
        unbalanced = url[-1] == ")" and url.count("(") < url.count(")")
        if url[-1] not in _URL_TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def countable_text(text: str, url_length: int = DEFAULT_URL_LENGTH) -> str:
    """``text`` as Mastodon measures it: URLs as placeholders, mentions without domains."""

    def placeholder(match: re.Match[str]) -> str:
        url = _trim_url(match.group())
        return "x" * url_length + match.group()[len(url) :]

    return _MENTION.sub(r"@\1", _URL.sub(placeholder, text))


def status_length(text: str, url_length: int = DEFAULT_URL_LENGTH) -> int:
    """The length Mastodon checks against ``max_characters``."""
    return grapheme_count(countable_text(text, url_length))
