"""Simulated worlds: what an audience truly does, read from a world file and checked.

A world is a set of accounts, each with the true ER of every content type (and the days it
changes), how much single posts vary, how often one goes viral, how the hour of the week
scales engagement, and what its network reports (reach, followers only, or reach declared
but never given). The ``Truth`` of an account is the one model both the simulated network and
the oracle read, so they cannot disagree: a drift changes only the types it names, and a type
without a true rate is an error, never a default.

World file (TOML; docs/er.md#worlds)::

    [world]
    name = "reference"
    days = 90

    [accounts.shop]
    posts_per_day = 3                 # or slots = ["09:00", "13:00", "19:00"]
    followers = 20000
    reach_ratio = 0.3                 # share of followers a post reaches, on average
    noise = 0.25                      # lognormal spread of a post's ER (or a table per type)
    basis = "reach"                   # or "followers", or "reach_missing" (declared, never given)
    true_er = { laugh = 0.03, instruction = 0.04 }
    viral = { rate = 0.02, low = 20, high = 50 }
    hours = [{ from = 18, to = 22, factor = 1.5 }, { from = 6, to = 10, factor = 0.8 }]
    learn = { daily = "08:00-22:00" }  # the loop moves the slots within these windows
    [[accounts.shop.drift]]
    day = 30
    true_er = { laugh = 0.06 }
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from scheduler.config import ERSettings
from scheduler.slots import Window, check_learning, parse_windows
from scheduler.timeutil import parse_duration

#: A Monday: simulations start there, so hour-of-week effects line up run after run.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
BASES = ("reach", "followers", "reach_missing")
_DAY = 86400.0


class WorldError(ValueError):
    """A world that cannot be simulated; the message names the file, account and field."""


# ============================================================================ the truth


@dataclass(frozen=True)
class HourEffect:
    """From local hour ``start`` to ``end`` (exclusive; may wrap past midnight) on ``days``
    (0 = Monday), engagement is multiplied by ``factor``."""

    start: int
    end: int
    factor: float
    days: frozenset[int] = frozenset(range(7))

    def covers(self, weekday: int, hour: int) -> bool:
        if weekday not in self.days:
            return False
        if self.start <= self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True)
class Truth:
    """The hidden truth of one account: true ER per type and day, and the hour effects."""

    true_er: Mapping[str, float]
    drift: tuple[tuple[float, Mapping[str, float]], ...] = ()
    hours: tuple[HourEffect, ...] = ()

    def __post_init__(self) -> None:
        for day, table in self.drift:
            unknown = sorted(set(table) - set(self.true_er))
            if unknown:
                raise WorldError(f"drift on day {day:g} names {unknown[0]!r}, which has no true_er")

    @property
    def types(self) -> list[str]:
        return sorted(self.true_er)

    def table(self, day: float) -> dict[str, float]:
        """The true ER of every type on ``day``: each drift changes only the types it names."""
        table = dict(self.true_er)
        for start, changed in self.drift:
            if day >= start:
                table.update(changed)
        return table

    def er(self, content_type: str, day: float) -> float:
        """The true ER of ``content_type`` on ``day``; a type without a truth is an error."""
        try:
            return self.table(day)[content_type]
        except KeyError:
            raise WorldError(f"content type {content_type!r} has no true_er") from None

    def hour_factor(self, weekday: int, hour: int) -> float:
        """How the hour of the week scales engagement (effects that overlap multiply)."""
        factor = 1.0
        for effect in self.hours:
            if effect.covers(weekday, hour):
                factor *= effect.factor
        return factor


# ============================================================================ the world


@dataclass(frozen=True)
class Viral:
    """A share ``rate`` of posts engages ``low``-``high`` times its usual rate."""

    rate: float = 0.0
    low: float = 20.0
    high: float = 50.0

    @property
    def mean_factor(self) -> float:
        return 1.0 - self.rate + self.rate * (self.low + self.high) / 2


@dataclass(frozen=True)
class AccountWorld:
    """One simulated account: its truth, its audience and what its network reports."""

    name: str
    truth: Truth
    slots: tuple[time, ...] = (time(8), time(14), time(20))
    followers: int = 20_000
    reach_ratio: float = 0.3
    noise: Mapping[str, float] = field(default_factory=dict)
    default_noise: float = 0.25
    basis: str = "reach"
    viral: Viral = Viral()
    #: Mixed into the audience's draws (the account's own ``seed``); 0: the run's seed alone.
    seed: int = 0
    #: Learning windows per weekday (``learn``): the loop moves the slots within them.
    learn: Mapping[int, tuple[Window, ...]] = field(default_factory=dict)
    #: Slots per weekday when they differ from day to day (a config's slots table); empty:
    #: ``slots`` every day.
    weekly: Mapping[int, tuple[time, ...]] = field(default_factory=dict)

    def week(self) -> dict[int, tuple[time, ...]]:
        """The account's slots as a weekly table (``weekly``, or ``slots`` every day)."""
        if self.weekly:
            return {d: tuple(self.weekly.get(d, ())) for d in range(7)}
        return dict.fromkeys(range(7), self.slots)

    def noise_of(self, content_type: str) -> float:
        return self.noise.get(content_type, self.default_noise)

    def expected_reach(self) -> float:
        """Mean reach of a post (the noise factors keep their means)."""
        return self.followers * self.reach_ratio

    def value(self, content_type: str, when: datetime, start: datetime) -> float:
        """Expected engagements of a post of this type at ``when``: what the oracle ranks by
        and what allocation quality sums (the luck of single posts left out)."""
        day = (when - start).total_seconds() / _DAY
        return (
            self.truth.er(content_type, day)
            * self.truth.hour_factor(when.weekday(), when.hour)
            * self.viral.mean_factor
            * self.expected_reach()
        )


@dataclass(frozen=True)
class World:
    """Accounts, how long, from when, and the loop's settings to run them with."""

    name: str
    accounts: tuple[AccountWorld, ...]
    days: int = 90
    start: datetime = DEFAULT_START
    er: ERSettings = field(default_factory=ERSettings)
    description: str = ""

    def with_er(self, **changes: Any) -> World:
        return replace(self, er=replace(self.er, **changes))


# ============================================================================ reading a file


def load_world(path: Path) -> World:
    """Read and check a world file; WorldError names the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorldError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise WorldError(f"{path}: not a TOML file: {exc}") from None
    try:
        return world_from_dict(data, default_name=path.stem)
    except WorldError as exc:
        raise WorldError(f"{path}: {exc}") from None


def world_from_dict(data: Mapping[str, Any], *, default_name: str = "world") -> World:
    """A world from its parsed TOML (see the module docstring)."""
    _only(data, {"world", "accounts", "er"}, "")
    head = _table(data.get("world", {}), "world")
    _only(head, {"name", "days", "start", "description"}, "world.")
    accounts_raw = _table(data.get("accounts"), "accounts")
    if not accounts_raw:
        raise WorldError("no [accounts.NAME] table: a world needs at least one account")
    accounts: list[AccountWorld] = []
    for name, raw in accounts_raw.items():
        accounts.extend(_accounts(str(name), _table(raw, f"accounts.{name}")))
    start = head.get("start", DEFAULT_START)
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            raise WorldError(f"world.start: not an ISO 8601 time: {start!r}") from None
    if not isinstance(start, datetime):
        raise WorldError(f"world.start: expected a date and time, got {start!r}")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return World(
        name=str(head.get("name", default_name)),
        accounts=tuple(accounts),
        days=_int(head, "days", 90, "world.", low=1, high=3650),
        start=start,
        er=_er_settings(_table(data.get("er", {}), "er")),
        description=str(head.get("description", "")),
    )


_ACCOUNT_KEYS = {
    "posts_per_day",
    "slots",
    "followers",
    "reach_ratio",
    "noise",
    "basis",
    "true_er",
    "drift",
    "viral",
    "hours",
    "copies",
    "seed",
    "learn",
}


def _accounts(name: str, raw: Mapping[str, Any]) -> list[AccountWorld]:
    where = f"accounts.{name}."
    _only(raw, _ACCOUNT_KEYS, where)
    true_er = _rates(raw.get("true_er"), f"{where}true_er")
    if not true_er:
        raise WorldError(f"{where}true_er: every account needs true rates, e.g. {{ laugh = 0.03 }}")
    drifts = []
    for i, d in enumerate(_list(raw.get("drift", []), f"{where}drift")):
        d = _table(d, f"{where}drift[{i}]")
        _only(d, {"day", "true_er"}, f"{where}drift[{i}].")
        if "day" not in d or "true_er" not in d:
            raise WorldError(f"{where}drift[{i}]: needs day and true_er")
        drifts.append(
            (
                _num(d, "day", 0, f"{where}drift[{i}].", low=0),
                _rates(d["true_er"], f"{where}drift[{i}].true_er"),
            )
        )
    hours = tuple(
        _hours(h, f"{where}hours[{i}]")
        for i, h in enumerate(_list(raw.get("hours", []), f"{where}hours"))
    )
    try:
        truth = Truth(true_er, tuple(sorted(drifts, key=lambda d: d[0])), hours)
    except WorldError as exc:
        raise WorldError(f"{where}drift: {exc}") from None
    noise_raw = raw.get("noise", 0.25)
    noise: dict[str, float] = {}
    default_noise = 0.25
    if isinstance(noise_raw, Mapping):
        noise = {str(k): _num(noise_raw, k, 0, f"{where}noise.", low=0, high=5) for k in noise_raw}
        unknown = sorted(set(noise) - set(true_er))
        if unknown:
            raise WorldError(f"{where}noise.{unknown[0]}: no such content type in true_er")
    else:
        default_noise = _num(raw, "noise", 0.25, where, low=0, high=5)
    viral_raw = _table(raw.get("viral", {}), f"{where}viral")
    _only(viral_raw, {"rate", "low", "high"}, f"{where}viral.")
    viral = Viral(
        _num(viral_raw, "rate", 0.0, f"{where}viral.", low=0, high=1),
        _num(viral_raw, "low", 20.0, f"{where}viral.", low=0),
        _num(viral_raw, "high", 50.0, f"{where}viral.", low=0),
    )
    if viral.high < viral.low:
        raise WorldError(f"{where}viral: high ({viral.high:g}) is below low ({viral.low:g})")
    basis = raw.get("basis", "reach")
    if basis not in BASES:
        raise WorldError(f"{where}basis: one of {', '.join(BASES)}, got {basis!r}")
    base = AccountWorld(
        name=name,
        truth=truth,
        slots=_slots(raw, where),
        followers=_int(raw, "followers", 20_000, where, low=1),
        reach_ratio=_num(raw, "reach_ratio", 0.3, where, low=0.0001, high=1),
        noise=noise,
        default_noise=default_noise,
        basis=basis,
        viral=viral,
        seed=_int(raw, "seed", 0, where),
    )
    learn, problems = parse_windows(raw.get("learn", {}))
    if problems:
        suffix, message = problems[0]
        raise WorldError(f"{where}learn{suffix}: {message}")
    wrong = check_learning(base.week(), learn)
    if wrong:
        raise WorldError(f"{where}learn: {wrong[0]}")
    base = replace(base, learn=learn)
    copies = _int(raw, "copies", 1, where, low=1, high=100)
    if copies == 1:
        return [base]
    return [replace(base, name=f"{name}{i + 1}") for i in range(copies)]


def _slots(raw: Mapping[str, Any], where: str) -> tuple[time, ...]:
    if "slots" in raw and "posts_per_day" in raw:
        raise WorldError(f"{where}slots: give slots or posts_per_day, not both")
    if "slots" in raw:
        out = []
        for i, s in enumerate(_list(raw["slots"], f"{where}slots")):
            try:
                out.append(time.fromisoformat(s) if isinstance(s, str) else s)
            except ValueError:
                raise WorldError(f"{where}slots[{i}]: not a time of day (HH:MM): {s!r}") from None
            if not isinstance(out[-1], time):
                raise WorldError(f"{where}slots[{i}]: not a time of day (HH:MM): {s!r}")
        if not out:
            raise WorldError(f"{where}slots: at least one slot")
        return tuple(sorted(set(out)))
    n = _int(raw, "posts_per_day", 3, where, low=1, high=48)
    return spread_slots(n)


def spread_slots(n: int, first: int = 8, last: int = 20) -> tuple[time, ...]:
    """``n`` slots a day spread from ``first`` to ``last`` o'clock (one slot: ``first``)."""
    if n == 1:
        return (time(first),)
    minutes = [first * 60 + round(i * (last - first) * 60 / (n - 1)) for i in range(n)]
    return tuple(time(m // 60 % 24, m % 60) for m in minutes)


def _hours(raw: Any, where: str) -> HourEffect:
    raw = _table(raw, where)
    _only(raw, {"from", "to", "factor", "days"}, f"{where}.")
    days = raw.get("days", list(range(7)))
    if days == "weekdays":
        days = [0, 1, 2, 3, 4]
    elif days == "weekend":
        days = [5, 6]
    if not isinstance(days, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days
    ):
        raise WorldError(f"{where}.days: a list of weekdays 0-6 (0 = Monday), or weekdays/weekend")
    return HourEffect(
        _int(raw, "from", 0, f"{where}.", low=0, high=23),
        _int(raw, "to", 24, f"{where}.", low=1, high=24) % 24,
        _num(raw, "factor", 1.0, f"{where}.", low=0, high=100),
        frozenset(days),
    )


_ER_KEYS = {"half_life", "floor", "ceiling", "max_change", "min_posts", "frozen", "exploration"}


def _er_settings(raw: Mapping[str, Any]) -> ERSettings:
    known = set(ERSettings.__dataclass_fields__) & _ER_KEYS
    _only(raw, known, "er.")
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "half_life":
            try:
                changes[key] = parse_duration(value)
            except (TypeError, ValueError) as exc:
                raise WorldError(f"er.half_life: {exc} (examples: 90s, 15m, 1h30m, 2d)") from None
        elif key == "frozen":
            if not isinstance(value, bool):
                raise WorldError(f"er.frozen: true or false, got {value!r}")
            changes[key] = value
        elif key == "min_posts":
            changes[key] = _int(raw, key, 5, "er.", low=1)
        else:
            changes[key] = _num(raw, key, 0, "er.", low=0, high=1)
    return replace(ERSettings(), **changes)


# ============================================================================ small checks


def _only(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise WorldError(f"{where}{unknown[0]}: unknown key; known: {', '.join(sorted(allowed))}")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorldError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if isinstance(value, Mapping):
        return [value]
    if not isinstance(value, list):
        raise WorldError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _num(
    raw: Mapping[str, Any],
    key: str,
    default: float,
    where: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise WorldError(f"{where}{key}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise WorldError(f"{where}{key}: must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _int(
    raw: Mapping[str, Any],
    key: str,
    default: int,
    where: str,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorldError(f"{where}{key}: expected a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise WorldError(f"{where}{key}: must be between {low} and {high}, got {value}")
    return value


def _rates(value: Any, where: str) -> dict[str, float]:
    table = _table(value, where)
    return {str(k): _num(table, k, 0, f"{where}.", low=0, high=1) for k in table}


def day_of(when: datetime, start: datetime) -> float:
    """Simulated days since ``start``."""
    return (when - start) / timedelta(days=1)
