"""Prometheus metrics: what the daemon counts, what a scrape reads from the database."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from scheduler import __version__, observability
from scheduler.config import Config, parse_config
from scheduler.daemon import store
from scheduler.daemon.store import Claimed, Result
from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine
from scheduler.db.models import Outcome, PostState
from scheduler.queue import Change, accounts_t, posts_t
from scheduler.timeutil import Clock, utcnow

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parent.parent / "docs"

CONFIG = parse_config(
    """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
[accounts.riga.options]
seed = 3

[accounts.ny]
platform = "sim-plain"
timezone = "America/New_York"
""",
    "config.toml",
)


class FixedClock(Clock):
    def now(self) -> datetime:
        return NOW


@pytest.fixture(autouse=True)
def _metrics_off() -> Iterator[None]:
    """Every test starts and ends with counting switched off."""
    observability.disable()
    yield
    observability.disable()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    assert observability.enable(registry) is not None
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def claimed(account: str = "riga", due: datetime = NOW, key: str = "p1") -> Claimed:
    row = type("Row", (), {"next_attempt_at": due, "key": key})()
    return Claimed(1, 1, 1, 1, account, row)


def result(
    outcome: Outcome,
    *,
    account: str = "riga",
    due: datetime = NOW,
    finished: datetime = NOW,
    latency_ms: float | None = 100.0,
    retry_at: datetime | None = None,
) -> Result:
    return Result(
        claimed(account, due),
        outcome,
        PostState.PUBLISHED if outcome == Outcome.PUBLISHED else PostState.RETRY_WAIT,
        finished,
        latency_ms=latency_ms,
        retry_at=retry_at,
    )


# ----------------------------------------------------------------------------- counting


def test_outcomes_are_counted_by_platform_account_and_class(registry: CollectorRegistry) -> None:
    observability.record_results(
        [
            result(Outcome.PUBLISHED),
            result(Outcome.PUBLISHED),
            result(Outcome.TRANSIENT, account="ny"),
        ],
        CONFIG,
    )
    name = "smm_publish_outcomes_total"
    assert value(registry, name, platform="sim", account="riga", outcome="published") == 2
    assert value(registry, name, platform="sim-plain", account="ny", outcome="transient") == 1
    assert value(registry, name, platform="sim", account="riga", outcome="transient") is None


def test_lateness_runs_from_the_due_time_to_the_moment_the_request_went_out(
    registry: CollectorRegistry,
) -> None:
    # Due at 12:00:00, answered at 12:00:03 after a 1 s request: sent 2 s late.
    finished = NOW + timedelta(seconds=3)
    observability.record_results(
        [result(Outcome.PUBLISHED, finished=finished, latency_ms=1000.0)], CONFIG
    )
    hist = "smm_publish_lateness_seconds"
    assert value(registry, f"{hist}_count", platform="sim") == 1
    assert value(registry, f"{hist}_sum", platform="sim") == pytest.approx(2.0)
    assert value(registry, f"{hist}_bucket", platform="sim", le="1.0") == 0
    assert value(registry, f"{hist}_bucket", platform="sim", le="2.5") == 1
    assert value(registry, "smm_publish_duration_seconds_sum", platform="sim") == 1.0


def test_attempts_that_never_reached_the_network_have_no_lateness(
    registry: CollectorRegistry,
) -> None:
    observability.record_results([result(Outcome.PLUGIN_ERROR, latency_ms=None)], CONFIG)
    assert value(registry, "smm_publish_lateness_seconds_count", platform="sim") is None
    assert (
        value(
            registry,
            "smm_publish_outcomes_total",
            platform="sim",
            account="riga",
            outcome="plugin_error",
        )
        == 1
    )


def test_rate_limited_results_count_as_waits_until_their_retry_time(
    registry: CollectorRegistry,
) -> None:
    observability.record_results(
        [result(Outcome.RATE_LIMITED, latency_ms=None, retry_at=NOW + timedelta(seconds=90))],
        CONFIG,
    )
    labels = {"platform": "sim", "account": "riga"}
    assert value(registry, "smm_rate_limit_waits_total", **labels) == 1
    assert value(registry, "smm_rate_limit_wait_seconds_total", **labels) == 90


def test_waits_before_sending_are_counted(registry: CollectorRegistry) -> None:
    observability.record_rate_limit_wait(CONFIG.accounts["ny"], 1.5)
    observability.record_rate_limit_wait(CONFIG.accounts["ny"], 2.0)
    labels = {"platform": "sim-plain", "account": "ny"}
    assert value(registry, "smm_rate_limit_waits_total", **labels) == 2
    assert value(registry, "smm_rate_limit_wait_seconds_total", **labels) == 3.5


def test_claims_count_attempts_and_missed_posts(registry: CollectorRegistry) -> None:
    missed = [Change(9, "late", "queued", "missed")]
    observability.record_claimed([claimed(), claimed(key="p2")], missed, CONFIG)
    assert value(registry, "smm_publish_attempts_total", platform="sim", account="riga") == 2
    assert value(registry, "smm_posts_missed_total") == 1


def test_rescued_leases_are_counted_by_result(registry: CollectorRegistry) -> None:
    assert value(registry, "smm_leases_rescued_total", result="unconfirmed") == 0
    observability.record_rescued(3, 1)
    assert value(registry, "smm_leases_rescued_total", result="requeued") == 3
    assert value(registry, "smm_leases_rescued_total", result="unconfirmed") == 1


def test_an_account_missing_from_the_config_is_counted_as_platform_unknown(
    registry: CollectorRegistry,
) -> None:
    observability.record_results([result(Outcome.PUBLISHED, account="gone")], CONFIG)
    labels = {"platform": "unknown", "account": "gone", "outcome": "published"}
    assert value(registry, "smm_publish_outcomes_total", **labels) == 1


def test_recording_is_a_no_op_until_metrics_are_enabled() -> None:
    registry = CollectorRegistry()
    observability.record_results([result(Outcome.PUBLISHED)], CONFIG)
    observability.record_rescued(1, 1)
    observability.enable(registry)
    observability.disable()
    observability.record_claimed([claimed()], [], CONFIG)
    assert list(registry.collect()) != []  # the metrics exist ...
    assert value(registry, "smm_publish_attempts_total", platform="sim", account="riga") is None


# ----------------------------------------------------------------------------- the database


def add_account(engine: Engine, name: str, platform: str = "sim", **values: Any) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                accounts_t.insert()
                .values(
                    {
                        "name": name,
                        "platform": platform,
                        "timezone": "UTC",
                        "paused": False,
                        "auth_state": "ok",
                        "created_at": NOW,
                        "updated_at": NOW,
                        **values,
                    }
                )
                .returning(accounts_t.c.id)
            ).scalar_one()
        )


def add_posts(engine: Engine, account_id: int, due: Sequence[datetime], **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            posts_t.insert(),
            [
                {
                    "key": f"p-{uuid.uuid4().hex[:10]}",
                    "account_id": account_id,
                    "content_type": "laugh",
                    "text": "hello",
                    "schedule": "fixed",
                    "content_hash": "h",
                    "state": PostState.QUEUED,
                    "due_at": d,
                    "next_attempt_at": d,
                    "idempotency_key": uuid.uuid4().hex,
                    "created_at": NOW,
                    "updated_at": NOW,
                    **values,
                }
                for d in due
            ],
        )


def gauges(engine: Engine) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    collector = observability.DatabaseCollector(engine, FixedClock())
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def g(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_a_scrape_reads_the_queue_by_state_and_what_is_due(engine: Engine) -> None:
    riga = add_account(engine, "riga")
    add_posts(engine, riga, [NOW - timedelta(minutes=1), NOW, NOW + timedelta(hours=1)])
    add_posts(engine, riga, [NOW], state=PostState.FAILED)
    paused = add_account(engine, "held", paused=True)
    add_posts(engine, paused, [NOW], state=PostState.PAUSED)
    found = gauges(engine)
    assert found[g("smm_database_up")] == 1
    riga_l = {"platform": "sim", "account": "riga"}
    assert found[g("smm_queue_posts", **riga_l, state="queued")] == 3
    assert found[g("smm_queue_posts", **riga_l, state="failed")] == 1
    assert found[g("smm_queue_posts", **riga_l, state="published")] == 0
    assert found[g("smm_queue_due_posts", **riga_l)] == 2
    held = {"platform": "sim", "account": "held"}
    assert found[g("smm_queue_posts", **held, state="paused")] == 1
    assert found[g("smm_account_paused", **held)] == 1
    assert found[g("smm_account_paused", **riga_l)] == 0


def test_a_scrape_reads_er_weights_token_expiry_and_auth(engine: Engine) -> None:
    a = add_account(engine, "riga", token_expires_at=NOW + timedelta(days=2), auth_state="expired")
    add_account(engine, "ny")
    with engine.begin() as conn:
        conn.execute(
            observability.priorities_t.insert(),
            [
                {"account_id": a, "content_type": "laugh", "weight": 0.6, "er": 0.031,
                 "updated_at": NOW},
                {"account_id": a, "content_type": "medal", "weight": 0.4, "er": None,
                 "updated_at": NOW},
            ],
        )  # fmt: skip
    found = gauges(engine)
    riga = {"platform": "sim", "account": "riga"}
    assert found[g("smm_content_type_weight", **riga, content_type="laugh")] == 0.6
    assert found[g("smm_content_type_weight", **riga, content_type="medal")] == 0.4
    assert found[g("smm_content_type_er", **riga, content_type="laugh")] == 0.031
    assert g("smm_content_type_er", **riga, content_type="medal") not in found  # not measured
    assert found[g("smm_account_token_expires_in_seconds", **riga)] == 2 * 86400
    assert g("smm_account_token_expires_in_seconds", platform="sim", account="ny") not in found
    assert found[g("smm_account_auth_expired", **riga)] == 1


def test_a_scrape_reports_heartbeat_ages_of_running_daemons_only(engine: Engine) -> None:
    info = {"hostname": "h", "pid": 1, "version": "1.0"}
    store.heartbeat(engine, "live", info, NOW - timedelta(seconds=12), "running")
    store.heartbeat(engine, "gone", info, NOW - timedelta(seconds=5), "stopped")
    store.heartbeat(engine, "ancient", info, NOW - timedelta(days=3), "running")
    found = {k: v for k, v in gauges(engine).items() if k[0] == "smm_daemon_heartbeat_age_seconds"}
    assert found == {
        g("smm_daemon_heartbeat_age_seconds", daemon="live", hostname="h", version="1.0"): 12
    }


def test_an_unreadable_database_reports_down_without_failing_the_scrape(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")
    try:
        with capture_logs() as logs:
            found = gauges(engine)
    finally:
        engine.dispose()
    assert found == {g("smm_database_up"): 0}
    assert [e["event"] for e in logs] == ["metrics_database_read_failed"]


# ----------------------------------------------------------------------------- the endpoint


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("[::]:9464", ("::", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
    ids=["ipv4", "ipv6", "port-only-means-loopback", "all-ipv4", "all-ipv6", "hostname"],
)
def test_listen_addresses_parse(listen: str, expected: tuple[str, int]) -> None:
    assert observability.parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen",
    [
        "9464",
        "host:",
        "host:port",
        "host:70000",
        "[::]:x",
        "::1:9464",
        "[nope]:9464",
        "a b:1",
        ":１",
    ],
)
def test_bad_listen_addresses_are_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        observability.parse_listen(listen)


def test_no_listen_address_means_no_server(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    assert observability.start_metrics_server(None, engine) is None
    engine.dispose()


def test_without_prometheus_client_the_daemon_warns_once_and_counts_nothing(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.setattr(observability, "_warned", False)
    engine = make_engine(sqlite_url)
    try:
        with capture_logs() as logs:
            assert observability.start_metrics_server("127.0.0.1:0", engine) is None
            assert observability.start_metrics_server("127.0.0.1:0", engine) is None
            observability.record_results([result(Outcome.PUBLISHED)], CONFIG)
    finally:
        engine.dispose()
    assert [(e["event"], e["log_level"]) for e in logs] == [("metrics_unavailable", "warning")]
    assert "smm-scheduler[metrics]" in logs[0]["fix"]


def test_an_address_in_use_is_logged_and_the_daemon_goes_on(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = make_engine(sqlite_url)
        try:
            with capture_logs() as logs:
                assert observability.start_metrics_server(f"127.0.0.1:{port}", engine) is None
        finally:
            engine.dispose()
    assert [e["event"] for e in logs] == ["metrics_server_failed"]
    observability.record_rescued(1, 0)  # still a harmless no-op


# ----------------------------------------------------------------------------- a real run


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_during_a_sim_run_shows_published_posts_and_their_lateness(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    config: Config = parse_config(
        '[accounts.riga]\nplatform = "sim"\ntimezone = "Europe/Riga"\n', "config.toml"
    )
    server = observability.start_metrics_server("127.0.0.1:0", engine, daemon_id="d-test")
    assert server is not None

    async def run() -> str:
        worker = Worker(engine, config, owner="d-test")
        await worker.start()
        with engine.connect() as conn:
            riga = conn.execute(select(accounts_t.c.id)).scalar_one()
        now = utcnow()
        # Six posts became due 3 s ago (the daemon was busy), two are for later.
        add_posts(engine, riga, [now - timedelta(seconds=3)] * 6 + [now + timedelta(hours=1)] * 2)
        try:
            while await worker.claim_and_dispatch():
                await worker.drain()
            async with httpx.AsyncClient() as client:
                response = await client.get(server.url)
        finally:
            await worker.close()
        assert response.status_code == 200
        return response.text

    try:
        found = scrape(asyncio.run(run()))
    finally:
        server.close()
    sim = {"platform": "sim", "account": "riga"}
    assert found[g("smm_publish_outcomes_total", **sim, outcome="published")] == 6
    assert found[g("smm_publish_attempts_total", **sim)] == 6
    late = "smm_publish_lateness_seconds"
    assert found[g(f"{late}_count", platform="sim")] == 6
    assert found[g(f"{late}_sum", platform="sim")] >= 6 * 3
    assert found[g(f"{late}_bucket", platform="sim", le="2.5")] == 0
    assert found[g(f"{late}_bucket", platform="sim", le="30.0")] == 6
    assert found[g("smm_queue_posts", **sim, state="published")] == 6
    assert found[g("smm_queue_posts", **sim, state="queued")] == 2
    assert found[g("smm_database_up")] == 1
    assert found[g("smm_daemon_info", daemon="d-test", hostname=socket.gethostname(),
                   version=__version__)] == 1  # fmt: skip
    assert any(name.startswith("process_") for name, _ in found)


def test_closing_the_server_stops_counting(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    server = observability.start_metrics_server("127.0.0.1:0", engine)
    assert server is not None
    server.close()
    engine.dispose()
    observability.record_rescued(1, 0)
    assert server.registry.get_sample_value("smm_leases_rescued_total", {"result": "requeued"}) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


# ----------------------------------------------------------------------------- the docs


@pytest.fixture
def exported(sqlite_url: str) -> dict[str, str]:
    """Every smm_ metric the endpoint serves, by its name in the exposition, with its type."""
    engine = make_engine(sqlite_url)
    server = observability.start_metrics_server("127.0.0.1:0", engine)
    assert server is not None
    try:
        suffix = {"counter": "_total", "info": "_info"}
        return {
            family.name + suffix.get(family.type, ""): family.type
            for family in server.registry.collect()
            if family.name.startswith("smm_")
        }
    finally:
        server.close()
        engine.dispose()


def referenced(text: str, exported: dict[str, str]) -> set[str]:
    """smm_ metric names in ``text``, with the histogram series suffixes taken off."""
    names = set()
    for name in re.findall(r"\bsmm_[a-z_]+", text):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        names.add(base if exported.get(base) == "histogram" else name)
    return names


def test_every_metric_is_documented(exported: dict[str, str]) -> None:
    doc = (DOCS / "monitoring.md").read_text(encoding="utf-8")
    assert {f"`{name}`" for name in exported if f"`{name}`" not in doc} == set()


def test_the_docs_and_the_dashboard_name_only_metrics_that_exist(
    exported: dict[str, str],
) -> None:
    doc = (DOCS / "monitoring.md").read_text(encoding="utf-8")
    dashboard = (DOCS / "grafana-dashboard.json").read_text(encoding="utf-8")
    assert referenced(doc, exported) - set(exported) == set()
    assert referenced(dashboard, exported) - set(exported) == set()
    assert len(referenced(dashboard, exported)) >= 12
