"""The simulated network: seeded audience, engagement over a post's life, failures, ledger."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import smm_sim
from smm_sim import (
    SimAdapter,
    SimPlainAdapter,
    posts_per_key,
    read_ledger,
    requests_per_key,
    reset_worlds,
)

from scheduler import plugins
from scheduler.adapter import (
    Account,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.testing import AdapterContract
from scheduler.timeutil import Clock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AGES = [timedelta(hours=h) for h in (1, 6, 24, 72, 168)]


class ManualClock(Clock):
    """Virtual time that moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


@pytest.fixture(autouse=True)
def empty_network() -> Iterator[None]:
    reset_worlds()
    yield
    reset_worlds()


def account(**options: Any) -> Account:
    options.setdefault("start", T0.isoformat())
    return Account(name="brand", platform="sim", timezone="UTC", options=options)


def post(
    key: str, content_type: str = "instruction", text: str = "Five ways to plan"
) -> OutgoingPost:
    return OutgoingPost(
        key=key, account="brand", content_type=content_type, text=text, idempotency_key=key
    )


class Sim:
    """A sim adapter on a manual clock, with sync helpers for tests."""

    def __init__(self, acct: Account, adapter_class: type[SimAdapter] = SimAdapter) -> None:
        self.account = acct
        self.clock = ManualClock()
        self.adapter = adapter_class(httpx.AsyncClient(), clock=self.clock)

    def publish(self, p: OutgoingPost) -> Published:
        return asyncio.run(self.adapter.publish(p, self.account, p.idempotency_key))

    def try_publish(self, p: OutgoingPost) -> Published | PublishError:
        try:
            return self.publish(p)
        except PublishError as exc:
            return exc

    def metrics(self, p: OutgoingPost, published: Published) -> Metrics:
        done = replace(p, remote_id=published.remote_id)
        return asyncio.run(self.adapter.fetch_metrics([done], self.account))[published.remote_id]

    def lookup(self, p: OutgoingPost) -> Published | None:
        return asyncio.run(self.adapter.lookup(p, self.account))

    def world(self) -> smm_sim.SimWorld:
        return self.adapter.world(self.account)


def engagements(m: Metrics) -> int:
    return (m.likes or 0) + (m.comments or 0) + (m.shares or 0) + (m.saves or 0)


def snapshot(sim: Sim, posts: list[OutgoingPost], age: timedelta) -> dict[str, Metrics]:
    """Publish ``posts`` at T0 (in the given order) and read them all at ``age``."""
    sim.clock.current = T0
    published = {p.key: sim.publish(p) for p in posts}
    sim.clock.current = T0 + age
    return {p.key: sim.metrics(p, published[p.key]) for p in posts}


def measured_er(metrics: list[Metrics]) -> float:
    return sum(engagements(m) for m in metrics) / sum(m.reach or 0 for m in metrics)


# --------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_numbers() -> None:
    posts = [post(f"p{i}") for i in range(20)]
    first = snapshot(Sim(account(seed=7)), posts, timedelta(hours=24))
    reset_worlds()
    second = snapshot(Sim(account(seed=7)), posts, timedelta(hours=24))
    assert first == second


def test_the_order_of_calls_does_not_change_the_numbers() -> None:
    posts = [post(f"p{i}", "laugh" if i % 3 else "medal") for i in range(30)]
    forward = snapshot(Sim(account(seed=7)), posts, timedelta(hours=24))
    reset_worlds()
    backward = snapshot(Sim(account(seed=7)), posts[::-1], timedelta(hours=24))
    assert forward == backward


def test_reading_metrics_at_other_ages_first_does_not_change_them() -> None:
    sim = Sim(account(seed=3))
    p = post("p1")
    published = sim.publish(p)
    sim.clock.current = T0 + timedelta(hours=24)
    direct = sim.metrics(p, published)
    reset_worlds()
    sim = Sim(account(seed=3))
    published = sim.publish(p)
    for age in (timedelta(hours=1), timedelta(hours=72), timedelta(hours=24)):
        sim.clock.current = T0 + age
        later = sim.metrics(p, published)
    assert later == direct


def test_a_different_seed_gives_different_numbers() -> None:
    posts = [post(f"p{i}") for i in range(20)]
    a = snapshot(Sim(account(seed=1)), posts, timedelta(hours=24))
    reset_worlds()
    b = snapshot(Sim(account(seed=2)), posts, timedelta(hours=24))
    assert [m.likes for m in a.values()] != [m.likes for m in b.values()]


# --------------------------------------------------------------------------- the audience


def test_higher_true_er_gives_higher_measured_er_on_average() -> None:
    sim = Sim(account(seed=11, followers=5000, true_er={"provocation": 0.02, "instruction": 0.04}))
    posts = [post(f"p{i}", "provocation" if i % 2 else "instruction") for i in range(400)]
    metrics = snapshot(sim, posts, timedelta(hours=72))
    er = {
        ct: measured_er([metrics[p.key] for p in posts if p.content_type == ct])
        for ct in ("provocation", "instruction")
    }
    assert er["instruction"] > er["provocation"]
    assert er["provocation"] == pytest.approx(0.02, rel=0.15)
    assert er["instruction"] == pytest.approx(0.04, rel=0.15)


def test_an_unknown_content_type_gets_the_default_er() -> None:
    sim = Sim(account(default_er=0.05, true_er={"laugh": 0.01}))
    assert sim.world().true_er("announcement", T0) == 0.05
    assert sim.world().true_er("laugh", T0) == 0.01


def test_reach_is_about_the_reach_ratio_of_followers() -> None:
    sim = Sim(account(seed=5, followers=2000, reach_ratio=0.25))
    metrics = snapshot(sim, [post(f"p{i}") for i in range(200)], timedelta(days=7))
    mean_reach = sum(m.reach or 0 for m in metrics.values()) / len(metrics)
    assert mean_reach == pytest.approx(0.25 * 2000, rel=0.1)
    assert all(0 <= (m.reach or 0) <= 2000 for m in metrics.values())


def test_followers_grow_by_growth_per_day() -> None:
    sim = Sim(account(followers=1000, growth=10))
    sim.clock.current = T0 + timedelta(days=30)
    published = sim.publish(post("p1"))
    assert published.followers == 1300
    sim.clock.current = T0 + timedelta(days=40)
    assert sim.metrics(post("p1"), published).followers == 1400


def test_engagement_grows_then_saturates_by_72_hours() -> None:
    sim = Sim(account(seed=2, followers=20000, true_er={"instruction": 0.05}))
    p = post("viral")
    published = sim.publish(p)
    series = []
    for age in AGES:
        sim.clock.current = T0 + age
        series.append(sim.metrics(p, published))
    for field in ("likes", "comments", "shares", "saves", "reach", "impressions"):
        values = [getattr(m, field) for m in series]
        assert values == sorted(values), f"{field} decreased: {values}"
    totals = [engagements(m) for m in series]
    at_1h, at_24h, at_72h, at_7d = totals[0], totals[2], totals[3], totals[4]
    assert at_1h < 0.1 * at_7d
    assert 0.6 * at_7d < at_24h < 0.9 * at_7d
    assert at_72h >= 0.93 * at_7d


def test_metrics_before_publication_time_are_zero() -> None:
    sim = Sim(account())
    p = post("p1")
    sim.clock.current = T0 + timedelta(hours=5)
    published = sim.publish(p)
    sim.clock.current = T0  # a virtual clock moved back: age is clamped at zero
    assert engagements(sim.metrics(p, published)) == 0


def test_metrics_leave_out_posts_the_network_does_not_hold() -> None:
    sim = Sim(account())
    unknown = replace(post("p1"), remote_id="sim-0000")
    assert asyncio.run(sim.adapter.fetch_metrics([unknown], sim.account)) == {}


def test_drift_switches_the_er_table_at_its_day() -> None:
    sim = Sim(
        account(
            seed=4,
            followers=5000,
            true_er={"laugh": 0.05, "instruction": 0.01},
            drift={"day": 45, "true_er": {"laugh": 0.01, "instruction": 0.05}},
        )
    )
    world = sim.world()
    assert world.true_er("laugh", T0 + timedelta(days=44.9)) == 0.05
    assert world.true_er("laugh", T0 + timedelta(days=45)) == 0.01

    def er_of(ct: str, day: int) -> float:
        sim.clock.current = T0 + timedelta(days=day)
        posts = [post(f"{ct}-{day}-{i}", ct) for i in range(100)]
        published = [sim.publish(p) for p in posts]
        sim.clock.current += timedelta(days=3)
        return measured_er([sim.metrics(p, r) for p, r in zip(posts, published, strict=True)])

    assert er_of("laugh", 10) > er_of("instruction", 10)
    assert er_of("laugh", 50) < er_of("instruction", 50)


def test_drift_can_be_a_list_of_switches() -> None:
    sim = Sim(
        account(
            true_er={"laugh": 0.05},
            drift=[
                {"day": 60, "true_er": {"laugh": 0.02}, "default_er": 0.001},
                {"day": 30, "true_er": {"laugh": 0.03}},
            ],
        )
    )
    world = sim.world()
    rates = [world.true_er("laugh", T0 + timedelta(days=d)) for d in (0, 30, 59, 60)]
    assert rates == [0.05, 0.03, 0.03, 0.02]
    assert world.true_er("other", T0 + timedelta(days=61)) == 0.001


def test_a_drift_changes_only_the_types_it_names() -> None:
    sim = Sim(
        account(
            true_er={"laugh": 0.05, "instruction": 0.01, "medal": 0.02},
            drift={"day": 30, "true_er": {"medal": 0.06}},
        )
    )
    world = sim.world()
    after = T0 + timedelta(days=31)
    rates = {t: world.true_er(t, after) for t in ("laugh", "instruction", "medal")}
    assert rates == {"laugh": 0.05, "instruction": 0.01, "medal": 0.06}


# --------------------------------------------------------------------------- publishing


def test_a_repeated_key_returns_the_same_post_and_is_counted_once() -> None:
    sim = Sim(account())
    first = sim.publish(post("p1"))
    again = sim.publish(post("p1"))
    assert again == first
    world = sim.world()
    assert world.published["p1"] == 1
    assert world.requests["p1"] == 2


def test_sim_plain_ignores_idempotency_keys() -> None:
    sim = Sim(account(), SimPlainAdapter)
    first = sim.publish(post("p1"))
    again = sim.publish(post("p1"))
    assert again.remote_id != first.remote_id
    assert sim.world().published["p1"] == 2
    assert not SimPlainAdapter.capabilities.idempotent


def test_lookup_finds_a_published_key_and_not_an_unknown_one() -> None:
    sim = Sim(account())
    published = sim.publish(post("p1"))
    assert sim.lookup(post("p1")) == published
    assert sim.lookup(post("never-sent")) is None


def test_published_post_has_a_url_and_the_followers_at_publish_time() -> None:
    published = Sim(account(followers=321)).publish(post("p1"))
    assert published.remote_id.startswith("sim-")
    assert published.url == f"https://sim.invalid/brand/{published.remote_id}"
    assert published.followers == 321


def test_text_over_5000_characters_is_rejected() -> None:
    sim = Sim(account())
    long_post = post("p1", text="x" * 5001)
    assert [i.field for i in sim.adapter.validate(long_post, sim.account)] == ["text"]
    with pytest.raises(Rejected, match="over the limit of 5000"):
        sim.publish(long_post)
    assert sim.world().published["p1"] == 0


def test_bad_options_are_reported_by_validate_and_rejected_by_publish() -> None:
    sim = Sim(account(true_er={"laugh": 2.0}))
    issues = sim.adapter.validate(post("p1"), sim.account)
    assert [i.field for i in issues] == ["account"]
    assert "true_er" in issues[0].message
    with pytest.raises(Rejected, match=r"'true_er\.laugh' must be between 0 and 1"):
        sim.publish(post("p1"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "blue"}, "unknown sim option 'colour'"),
        ({"seed": "x"}, "'seed' must be a whole number"),
        ({"followers": -5}, "'followers' must be at least 0"),
        ({"tau": "soon"}, "'tau': not a duration"),
        ({"drift": {"day": 4}}, "needs 'day' and 'true_er'"),
        ({"fail_mix": {"meteor": 1}}, "unknown failure 'meteor'"),
        ({"start": "yesterday"}, "'start' must be an ISO 8601 time"),
    ],
)
def test_each_bad_option_is_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(smm_sim.SimOptionError, match=message):
        smm_sim.SimSettings.from_options(options)


def test_the_clock_can_come_from_the_account_options() -> None:
    clock = ManualClock(T0 + timedelta(days=2))
    acct = account(followers=100, growth=50, clock=clock)
    adapter = SimAdapter(httpx.AsyncClient())  # its own clock is the system clock
    published = asyncio.run(adapter.publish(post("p1"), acct, "p1"))
    assert published.followers == 200


def test_a_hundred_thousand_publishes_cost_little_cpu() -> None:
    acct = account(true_er={"laugh": 0.03})
    adapter = SimAdapter(httpx.AsyncClient(), clock=ManualClock())
    posts = [post(f"p{i}", "laugh") for i in range(100_000)]

    async def publish_all() -> None:
        for p in posts:
            await adapter.publish(p, acct, p.key)

    started = time.process_time()
    asyncio.run(publish_all())
    # About half a second on a quiet machine; the budget leaves room for a loaded CI runner
    # and still catches anything superlinear.
    assert time.process_time() - started < 1.5


# --------------------------------------------------------------------------- failures


def outcomes(seed: int, keys: int = 3000, **options: Any) -> list[str]:
    sim = Sim(account(seed=seed, **options))
    return [type(sim.try_publish(post(f"k{i}"))).__name__ for i in range(keys)]


def test_failure_injection_draws_the_seeded_mix() -> None:
    mix = {"transient": 0.5, "rate_limited": 0.3, "outcome_unknown": 0.2}
    counts = Counter(outcomes(9, fail_rate=0.4, fail_mix=mix))
    total = sum(counts.values())
    assert counts["Published"] / total == pytest.approx(0.6, abs=0.03)
    assert counts["Transient"] / total == pytest.approx(0.4 * 0.5, abs=0.03)
    assert counts["RateLimited"] / total == pytest.approx(0.4 * 0.3, abs=0.03)
    assert counts["OutcomeUnknown"] / total == pytest.approx(0.4 * 0.2, abs=0.03)


def test_failures_repeat_exactly_for_the_same_seed() -> None:
    first = outcomes(9, keys=300, fail_rate=0.3)
    reset_worlds()
    assert outcomes(9, keys=300, fail_rate=0.3) == first
    reset_worlds()
    assert outcomes(10, keys=300, fail_rate=0.3) != first


def test_a_retry_draws_afresh_and_eventually_succeeds() -> None:
    sim = Sim(account(seed=1, fail_rate=0.5, fail_mix={"transient": 1}))
    results = [sim.try_publish(post("p1")) for _ in range(30)]
    assert any(isinstance(r, Transient) for r in results)
    assert any(isinstance(r, Published) for r in results)
    assert sim.world().attempts["p1"] == 30


def test_an_unknown_outcome_is_sometimes_a_post_the_network_took() -> None:
    sim = Sim(account(seed=3, fail_rate=1.0, fail_mix={"outcome_unknown": 1}, unknown_accepted=0.5))
    keys = [f"k{i}" for i in range(400)]
    for key in keys:
        with pytest.raises(OutcomeUnknown):
            sim.publish(post(key))
    found = sum(sim.lookup(post(key)) is not None for key in keys)
    assert found == pytest.approx(200, abs=40)


def test_rate_limited_says_when_to_retry() -> None:
    sim = Sim(account(fail_rate=1.0, fail_mix={"rate_limited": 1}, retry_after="90s"))
    with pytest.raises(RateLimited) as caught:
        sim.publish(post("p1"))
    assert caught.value.retry_at == T0 + timedelta(seconds=90)
    assert caught.value.code == "sim.rate_limited"


# --------------------------------------------------------------------------- the ledger


def test_the_ledger_counts_deliveries_across_two_adapter_instances(tmp_path: Path) -> None:
    ledger = str(tmp_path / "delivered.log")
    first = Sim(account(ledger=ledger))
    published = first.publish(post("p1"))
    first.publish(post("p2"))
    reset_worlds()  # as if the daemon restarted: only the file remembers
    second = Sim(account(ledger=ledger))
    assert second.publish(post("p1")) == published  # the key holds across processes
    assert second.lookup(post("p2")) is not None
    assert posts_per_key(ledger) == {"p1": 1, "p2": 1}
    assert requests_per_key(ledger) == {"p1": 2, "p2": 1}


_CHILD = """
import asyncio, sys
import httpx
from scheduler.adapter import Account, OutgoingPost
from smm_sim import SimAdapter

account = Account("brand", "sim", "UTC", {"ledger": sys.argv[1], "start": sys.argv[2]})
adapter = SimAdapter(httpx.AsyncClient())

async def main():
    for i in range(int(sys.argv[3])):
        post = OutgoingPost(key=f"k{i}", account="brand", content_type="laugh", text="hi")
        await adapter.publish(post, account, f"k{i}")

asyncio.run(main())
"""


def test_two_processes_publishing_the_same_keys_create_each_post_once(tmp_path: Path) -> None:
    ledger = str(tmp_path / "delivered.log")
    keys = 40
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, ledger, T0.isoformat(), str(keys)],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not read_ledger(ledger) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # wait until the child is publishing, so the two overlap
    sim = Sim(account(ledger=ledger))
    for i in reversed(range(keys)):  # the child goes up, we go down: they meet mid-way
        sim.publish(post(f"k{i}", "laugh"))
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr.decode()
    assert posts_per_key(ledger) == {f"k{i}": 1 for i in range(keys)}
    assert requests_per_key(ledger) == {f"k{i}": 2 for i in range(keys)}


def test_the_ledger_records_every_post_of_a_network_without_keys(tmp_path: Path) -> None:
    ledger = str(tmp_path / "delivered.log")
    Sim(account(ledger=ledger), SimPlainAdapter).publish(post("p1"))
    reset_worlds()
    Sim(account(ledger=ledger), SimPlainAdapter).publish(post("p1"))
    assert posts_per_key(ledger) == {"p1": 2}


def test_the_ledger_sees_a_post_another_instance_wrote_meanwhile(tmp_path: Path) -> None:
    ledger = str(tmp_path / "delivered.log")
    reader = Sim(account(ledger=ledger))
    assert reader.lookup(post("p1")) is None
    reset_worlds()  # the writer gets a world of its own: the two share only the file
    writer = Sim(account(ledger=ledger))
    writer.publish(post("p1"))
    assert writer.world() is not reader.world()
    assert reader.lookup(post("p1")) is not None


def test_the_ledger_keeps_what_a_publish_needs_to_be_found_again(tmp_path: Path) -> None:
    ledger = str(tmp_path / "delivered.log")
    published = Sim(account(ledger=ledger, followers=77)).publish(post("p1", "laugh"))
    [entry] = read_ledger(ledger)
    assert (entry.key, entry.remote_id, entry.account) == ("p1", published.remote_id, "brand")
    assert (entry.content_type, entry.followers, entry.published) == ("laugh", 77, T0)
    assert not entry.duplicate


def test_a_torn_last_line_is_skipped_and_the_next_entry_stays_whole(tmp_path: Path) -> None:
    ledger = tmp_path / "delivered.log"
    Sim(account(ledger=str(ledger))).publish(post("p1"))
    with ledger.open("a") as f:
        f.write('{"key":"p2","remote')  # a writer killed mid-line
    reset_worlds()
    Sim(account(ledger=str(ledger))).publish(post("p3"))
    assert posts_per_key(ledger) == {"p1": 1, "p3": 1}


def test_a_missing_ledger_reads_as_empty(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "nothing.log") == []


# --------------------------------------------------------------------------- plugin


def test_the_documented_example_account_is_valid() -> None:
    doc = Path(__file__).parent.parent / "docs/plugins/networks/sim.md"
    example = doc.read_text(encoding="utf-8").split("```toml\n")[1].split("```")[0]
    options = tomllib.loads(example)["accounts"]["demo"]["options"]
    settings = smm_sim.SimSettings.from_options(options)
    assert settings.seed == 42
    assert settings.drift[0].day == 45
    assert settings.ledger == "/var/tmp/smm-demo-deliveries.jsonl"


def test_the_plugin_registers_both_sim_platforms() -> None:
    registered: list[type] = []
    smm_sim.register_platforms(register=registered.append)
    assert registered == [SimAdapter, SimPlainAdapter]


def test_the_sim_loads_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMM_LOAD_PLUGINS", "sim")
    plugins.reset()
    try:
        found: Mapping[str, plugins.PlatformInfo] = plugins.platforms()
        assert found["sim"].adapter is SimAdapter
        assert found["sim-plain"].adapter is SimPlainAdapter
    finally:
        plugins.reset()


class TestSimContract(AdapterContract):
    adapter_class = SimAdapter
    supports_network = False

    def make_account(self) -> Account:
        return account(seed=1)


class TestSimPlainContract(AdapterContract):
    adapter_class = SimPlainAdapter
    supports_network = False

    def make_account(self) -> Account:
        return account(seed=1)
