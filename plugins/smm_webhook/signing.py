"""The webhook signature: HMAC-SHA256 over the timestamp and the raw body.

The sender puts the Unix time in ``X-SMM-Timestamp`` and
``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` in ``X-SMM-Signature``. Binding
the timestamp into the signature lets a receiver refuse replays of an old request.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-SMM-Signature"
TIMESTAMP_HEADER = "X-SMM-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-SMM-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """True when ``signature`` matches and ``timestamp`` is within ``tolerance`` s of ``now``.

    What a receiver written in Python can call (docs/plugins/networks/webhook.md has a
    standalone version); compares in constant time.
    """
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)
