"""Redaction: time to mask a 1 KB message with 20 registered secrets, beside exact matching.

The peer is what a redactor matching only exact values does: one regex alternation of the
secrets and their percent-encoded forms (it misses every other encoding). Both run the same
free-text patterns (Bearer, key=value, JSON fields, URL passwords) after it, so the ratio is the
cost of finding every encoding and fragment.

    python benchmarks/bench_redaction.py [--secrets 20] [--repeat 3000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import statistics
import time
from collections.abc import Callable
from urllib.parse import quote

from scheduler import logging as smm_logging
from scheduler.logging import MASK, redact, register_secret

WORDS = ("the", "network", "refused", "request", "because", "access", "was", "denied", "for")


def exact_alternation(values: list[str]) -> Callable[[str], str]:
    forms = sorted({f for v in values for f in (v, quote(v, safe=""))}, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, forms)))

    def run(text: str) -> str:
        text = pattern.sub(MASK, text)
        lowered = text.lower()
        for needle, free_text in smm_logging._PATTERNS:
            if needle in lowered:
                text = free_text.sub(smm_logging._REPLACEMENT, text)
        return text

    return run


def per_call(fn: Callable[[str], object], text: str, repeat: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn(text)
        runs.append((time.perf_counter() - start) / repeat)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3000)
    args = parser.parse_args()
    rng = random.Random(1)
    values = [secrets.token_urlsafe(30) + "/x" for _ in range(args.secrets)]
    for value in values:
        register_secret(value)
    baseline = exact_alternation(values)
    prose = " ".join(rng.choice(WORDS) for _ in range(300))[:1000]
    echoed = json.dumps(values[7]).replace("/", "\\/")
    messages = {
        "clean prose": prose,
        "JSON body, secret echoed as \\/": json.dumps({"error": prose[:900]})[:-2]
        + f' {echoed}"}}',
        "key=value, Bearer, URL": (
            prose[:850] + f" Authorization: Bearer {values[3]} GET https://x.test/?q=1&a=b"
        ),
    }
    print(f"{args.secrets} registered secrets; median of 5 x {args.repeat} calls")
    print(f"{'message':34} {'bytes':>5} {'exact only':>11} {'every form':>11} {'ratio':>6}")
    for name, text in messages.items():
        before = per_call(baseline, text, args.repeat)
        after = per_call(redact, text, args.repeat)
        print(
            f"{name:34} {len(text.encode()):5} {before * 1e6:9.1f}us {after * 1e6:9.1f}us "
            f"{after / before:6.2f}"
        )


if __name__ == "__main__":
    main()
