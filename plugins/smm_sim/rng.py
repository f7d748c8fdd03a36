"""Seeded randomness that depends only on names, never on the order of calls.

Every random number the sim draws comes from a hash of what it is about (seed, account, post,
purpose), so the same inputs give the same numbers however the calls interleave.
"""

from __future__ import annotations

import hashlib
import math
import random

__all__ = ["binomial", "derive", "rng_for", "token", "unit"]

_SCALE = float(2**64)


def derive(*parts: object) -> int:
    """A 64-bit integer determined by ``parts`` alone (stable across processes and runs)."""
    text = "\x1f".join(map(str, parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def token(*parts: object) -> str:
    """16 hex digits determined by ``parts`` alone: for identifiers."""
    text = "\x1f".join(map(str, parts))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def unit(*parts: object) -> float:
    """A float in [0, 1) determined by ``parts`` alone."""
    return derive(*parts) / _SCALE


def rng_for(*parts: object) -> random.Random:
    """A generator seeded from ``parts``: for drawing several numbers about one thing."""
    return random.Random(derive(*parts))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw: exact by inversion for a small variance, normal otherwise.

    The normal approximation is the textbook one (variance of at least 10); the sim needs
    plausible counts, not exact tails.
    """
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    variance = n * p * (1.0 - p)
    if variance >= 10.0:
        draw = round(rng.gauss(n * p, math.sqrt(variance)))
        return max(0, min(n, draw))
    # Inversion on the rarer outcome, so the walk takes about min(np, n(1-p)) steps.
    flip = p > 0.5
    q = 1.0 - p if flip else p
    ratio = q / (1.0 - q)
    prob = (1.0 - q) ** n
    u = rng.random()
    k = 0
    while u > prob and k < n:
        u -= prob
        prob *= ratio * (n - k) / (k + 1)
        k += 1
    return n - k if flip else k
