"""The sim network's account options, read and checked in one place (see docs/plugins)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler.timeutil import parse_duration

__all__ = ["FAULTS", "Drift", "SimOptionError", "SimSettings"]

#: The failures ``fail_mix`` may name, mapped by the adapter to the error taxonomy.
FAULTS = ("transient", "rate_limited", "outcome_unknown", "auth_expired", "rejected")

_DEFAULT_MIX = {"transient": 0.5, "rate_limited": 0.3, "outcome_unknown": 0.2}

_KNOWN = {
    "seed",
    "followers",
    "growth",
    "true_er",
    "default_er",
    "reach_ratio",
    "noise",
    "tau",
    "drift",
    "start",
    "fail_rate",
    "fail_mix",
    "unknown_accepted",
    "retry_after",
    "ledger",
    # Read by the adapter, not the world:
    "clock",
    "max_characters",
}


class SimOptionError(ValueError):
    """An account option the sim cannot use; the message names the option and the fix."""


@dataclass(frozen=True)
class Drift:
    """From simulated ``day`` on, posts draw their true ER from ``true_er``."""

    day: float
    true_er: Mapping[str, float]
    default_er: float | None = None


@dataclass(frozen=True)
class SimSettings:
    """Everything that shapes one simulated audience."""

    seed: int = 0
    followers: int = 1000
    growth: float = 0.0
    true_er: Mapping[str, float] = field(default_factory=dict)
    default_er: float = 0.03
    reach_ratio: float = 0.3
    noise: float = 0.25
    tau: timedelta = timedelta(hours=20)
    drift: tuple[Drift, ...] = ()
    start: datetime | None = None
    fail_rate: float = 0.0
    fail_mix: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_MIX))
    unknown_accepted: float = 0.5
    retry_after: timedelta = timedelta(seconds=60)
    ledger: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimSettings:
        """Read account options; raise SimOptionError naming the first bad one."""
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise SimOptionError(
                f"unknown sim option {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}"
            )
        d = cls()
        ledger = options.get("ledger")
        if ledger is not None and not isinstance(ledger, str):
            raise SimOptionError(f"option 'ledger' must be a file path, got {ledger!r}")
        return cls(
            seed=_int(options, "seed", d.seed),
            followers=_int(options, "followers", d.followers, low=0),
            growth=_number(options, "growth", d.growth),
            true_er=_er_table(options.get("true_er", {}), "true_er"),
            default_er=_number(options, "default_er", d.default_er, low=0.0, high=1.0),
            reach_ratio=_number(options, "reach_ratio", d.reach_ratio, low=0.0, high=1.0),
            noise=_number(options, "noise", d.noise, low=0.0, high=5.0),
            tau=_duration(options, "tau", d.tau, positive=True),
            drift=_drifts(options.get("drift")),
            start=_instant(options.get("start")),
            fail_rate=_number(options, "fail_rate", d.fail_rate, low=0.0, high=1.0),
            fail_mix=_mix(options.get("fail_mix", d.fail_mix)),
            unknown_accepted=_number(
                options, "unknown_accepted", d.unknown_accepted, low=0.0, high=1.0
            ),
            retry_after=_duration(options, "retry_after", d.retry_after),
            ledger=ledger,
        )

    def er_table(self, day: float) -> tuple[Mapping[str, float], float]:
        """The true ER table and default in force on simulated ``day``: each drift changes
        only the types it names (the rest keep their rates)."""
        table, default = dict(self.true_er), self.default_er
        for drift in self.drift:  # sorted by day
            if day < drift.day:
                break
            table.update(drift.true_er)
            if drift.default_er is not None:
                default = drift.default_er
        return table, default


def _number(
    options: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    name: str | None = None,
) -> float:
    """``options[key]`` as a float in [low, high]; errors call it ``name`` (default ``key``)."""
    value = options.get(key, default)
    name = name or key
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SimOptionError(f"option {name!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise SimOptionError(f"option {name!r} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _int(options: Mapping[str, Any], key: str, default: int, *, low: int | None = None) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimOptionError(f"option {key!r} must be a whole number, got {value!r}")
    if low is not None and value < low:
        raise SimOptionError(f"option {key!r} must be at least {low}, got {value}")
    return value


def _duration(
    options: Mapping[str, Any], key: str, default: timedelta, *, positive: bool = False
) -> timedelta:
    value = options.get(key, default)
    if not isinstance(value, timedelta):
        try:
            value = parse_duration(value)
        except (TypeError, ValueError) as exc:
            raise SimOptionError(f"option {key!r}: {exc}") from None
    if positive and value <= timedelta(0):
        raise SimOptionError(f"option {key!r} must be longer than zero")
    return value


def _er_table(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise SimOptionError(
            f"option {where!r} must be a table of content type -> rate, e.g. "
            "{ provocation = 0.03, instruction = 0.04 }"
        )
    return {str(k): _number(value, k, 0.0, low=0.0, high=1.0, name=f"{where}.{k}") for k in value}


def _drifts(value: Any) -> tuple[Drift, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list | tuple):
        raise SimOptionError("option 'drift' must be a table or a list of tables")
    drifts = []
    for item in items:
        if not isinstance(item, Mapping) or "day" not in item or "true_er" not in item:
            raise SimOptionError(
                "each 'drift' entry needs 'day' and 'true_er', e.g. "
                "{ day = 45, true_er = { laugh = 0.05 } }"
            )
        extra = sorted(set(item) - {"day", "true_er", "default_er"})
        if extra:
            raise SimOptionError(f"unknown key {extra[0]!r} in 'drift'")
        default = item.get("default_er")
        drifts.append(
            Drift(
                day=_number(item, "day", 0.0, low=0.0, name="drift.day"),
                true_er=_er_table(item["true_er"], "drift.true_er"),
                default_er=None
                if default is None
                else _number(item, "default_er", 0.0, low=0.0, high=1.0, name="drift.default_er"),
            )
        )
    return tuple(sorted(drifts, key=lambda d: d.day))


def _mix(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise SimOptionError("option 'fail_mix' must be a table of failure kind -> weight")
    unknown = sorted(set(value) - set(FAULTS))
    if unknown:
        raise SimOptionError(
            f"unknown failure {unknown[0]!r} in 'fail_mix'; known: {', '.join(FAULTS)}"
        )
    weights = {str(k): _number(value, k, 0.0, low=0.0, name=f"fail_mix.{k}") for k in value}
    total = sum(weights.values())
    if total <= 0:
        raise SimOptionError("option 'fail_mix' needs at least one positive weight")
    return {k: w / total for k, w in weights.items()}


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise SimOptionError(
                f"option 'start' must be an ISO 8601 time, got {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise SimOptionError(f"option 'start' must be a date and time, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
