"""Record keys chosen by us, so that a retried publish can never create a second post.

Bluesky posts are records in the account's repository, named by a record key (``rkey``). A
client may choose the key; creating a record under a key that exists fails. Deriving the key
from the idempotency key makes every attempt at one post target the same record: a retry
after a lost answer either creates it or finds it there.

Post keys must be TIDs (timestamp identifiers): 64-bit integers, top bit zero, 53 bits of
microseconds since the Unix epoch then 10 bits of clock id, written as 13 characters of
"base32-sortable". Ours take both fields from a SHA-256 of the idempotency key. The timestamp
is folded into a window in 2023, so it is always in the past (relays distrust TIDs from the
future); nothing reads meaning into it, since posts carry their own ``createdAt``.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["TID_PATTERN", "tid_for_key"]

_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
#: The syntax of a TID (atproto specification): the first character keeps the top bit zero.
TID_PATTERN = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")

_WINDOW_START_US = 1_672_531_200 * 1_000_000  # 2023-01-01T00:00:00Z
_WINDOW_BITS = 45  # about 407 days of microseconds
_CLOCK_BITS = 10
_NAMESPACE = b"smm-scheduler/bluesky-rkey\x00"


def _encode(value: int, length: int = 13) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def tid_for_key(key: str) -> str:
    """The record key every attempt to publish under ``key`` uses: a valid, stable TID."""
    if not key:
        raise ValueError("an idempotency key is needed to derive a record key")
    digest = hashlib.sha256(_NAMESPACE + key.encode("utf-8")).digest()
    bits = int.from_bytes(digest[:8], "big")
    micros = _WINDOW_START_US + (bits >> _CLOCK_BITS) % (1 << _WINDOW_BITS)
    clock_id = bits & ((1 << _CLOCK_BITS) - 1)
    return _encode((micros << _CLOCK_BITS) | clock_id)
