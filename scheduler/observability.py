"""Prometheus metrics: counters the daemon feeds as it works, gauges read from the database.

Two kinds of numbers, two paths (docs/monitoring.md lists every metric):

* Events — attempts, outcomes, lateness, rate-limit waits, rescued leases — happen inside one
  daemon, which counts them with the ``record_*`` functions. They are no-ops until
  :func:`start_metrics_server` (or :func:`enable`) turns metrics on, so the daemon calls them
  unconditionally.
* State — the queue by state, ER and weights per content type, token expiry, heartbeats — lives
  in the database and is read when Prometheus scrapes (:class:`DatabaseCollector`). Every
  daemon on a shared database reports the same state; aggregate it with ``max``, not ``sum``.

prometheus-client is optional (``pip install 'smm-scheduler[metrics]'``): without it the daemon
runs as usual and says once, in a warning, that metrics are off.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, func, select

from scheduler import __version__
from scheduler.db.models import (
    Account,
    ContentTypePriority,
    DaemonHeartbeat,
    Outcome,
    Post,
    PostState,
)
from scheduler.timeutil import Clock, SystemClock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily, Metric

    from scheduler.adapter import Account as AdapterAccount
    from scheduler.config import AccountConfig, Config
    from scheduler.daemon.store import Claimed, Result
    from scheduler.queue import Change

__all__ = [
    "LATENESS_BUCKETS",
    "DaemonMetrics",
    "DatabaseCollector",
    "MetricsServer",
    "disable",
    "enable",
    "parse_listen",
    "record_claimed",
    "record_rate_limit_wait",
    "record_rescued",
    "record_results",
    "record_token",
    "start_metrics_server",
]

log = structlog.get_logger("scheduler.observability")

posts_t = Post.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]
priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]
daemons_t = DaemonHeartbeat.__table__  # type: ignore[attr-defined]

#: Seconds, from 10 ms (on time) to 1 h (a missed morning): lateness and request durations.
LATENESS_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
#: Daemons whose last heartbeat is older than this are no longer reported (crashed long ago).
HEARTBEAT_HORIZON = timedelta(days=1)
UNKNOWN = "unknown"


class DaemonMetrics:
    """The counters and histograms one daemon feeds, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        by_account = ["platform", "account"]
        self.attempts = Counter(
            "smm_publish_attempts",
            "Publish attempts started (posts claimed under a lease).",
            by_account,
            registry=registry,
        )
        self.outcomes = Counter(
            "smm_publish_outcomes",
            "Finished publish attempts by outcome class (published, transient, rate_limited, "
            "auth_expired, rejected, outcome_unknown, plugin_error, abandoned).",
            [*by_account, "outcome"],
            registry=registry,
        )
        self.missed = Counter(
            "smm_posts_missed",
            "Posts marked missed: later than the misfire grace when a daemon came to them.",
            registry=registry,
        )
        self.lateness = Histogram(
            "smm_publish_lateness_seconds",
            "From the time a post was due (its retry time, for a retry) to the moment its "
            "request went to the network.",
            ["platform"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "smm_publish_duration_seconds",
            "How long a network took to answer a publish request.",
            ["platform"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.rate_limit_waits = Counter(
            "smm_rate_limit_waits",
            "Times a post waited for a network's rate limit (before sending, or after a 429).",
            by_account,
            registry=registry,
        )
        self.rate_limit_wait_seconds = Counter(
            "smm_rate_limit_wait_seconds",
            "Seconds posts were told to wait for a network's rate limit.",
            by_account,
            registry=registry,
        )
        self.rescued = Counter(
            "smm_leases_rescued",
            "Expired leases recovered from a daemon that stopped mid-attempt, by what became "
            "of the post (requeued: resent under its idempotency key; unconfirmed: left for a "
            "lookup or a person).",
            ["result"],
            registry=registry,
        )
        for result in ("requeued", "unconfirmed"):
            self.rescued.labels(result=result)
        self.token_expiry = Gauge(
            "smm_token_expiry_timestamp_seconds",
            "When each refreshable access token expires (Unix time), as of its last refresh "
            "or failed attempt: alert on it being less than a few hours away.",
            by_account,
            registry=registry,
        )
        self.token_refresh_failures = Counter(
            "smm_token_refresh_failures",
            "Failed refreshes of access tokens.",
            by_account,
            registry=registry,
        )
        self.degraded = Gauge(
            "smm_daemon_degraded",
            "1 while this daemon cannot use the database (it waits and retries, holding the "
            "outcomes it could not write), else 0.",
            registry=registry,
        )

    def record_claimed(
        self, claimed: Sequence[Claimed], missed: Sequence[Change], config: Config
    ) -> None:
        for c in claimed:
            self.attempts.labels(platform=_platform(config, c.account), account=c.account).inc()
        if missed:
            self.missed.inc(len(missed))

    def record_results(self, results: Sequence[Result], config: Config) -> None:
        for r in results:
            account = r.claimed.account
            platform = _platform(config, account)
            self.outcomes.labels(platform=platform, account=account, outcome=str(r.outcome)).inc()
            if r.latency_ms is not None:  # the request went out
                took = max(0.0, r.latency_ms / 1000)
                self.duration.labels(platform=platform).observe(took)
                due = r.claimed.row.next_attempt_at
                if due is not None:
                    sent = r.finished_at - timedelta(seconds=took)
                    late = max(0.0, (sent - due).total_seconds())
                    self.lateness.labels(platform=platform).observe(late)
            if r.outcome == Outcome.RATE_LIMITED and r.retry_at is not None:
                wait = max(0.0, (r.retry_at - r.finished_at).total_seconds())
                self.rate_limit_waits.labels(platform=platform, account=account).inc()
                self.rate_limit_wait_seconds.labels(platform=platform, account=account).inc(wait)

    def record_rate_limit_wait(self, account: AccountConfig, seconds: float) -> None:
        labels = {"platform": account.platform, "account": account.name}
        self.rate_limit_waits.labels(**labels).inc()
        self.rate_limit_wait_seconds.labels(**labels).inc(max(0.0, seconds))

    def record_token(
        self, account: AdapterAccount, expires_at: datetime | None, failed: bool
    ) -> None:
        labels = {"platform": account.platform, "account": account.name}
        if expires_at is not None:
            self.token_expiry.labels(**labels).set(expires_at.timestamp())
        if failed:
            self.token_refresh_failures.labels(**labels).inc()

    def record_degraded(self, degraded: bool) -> None:
        self.degraded.set(1 if degraded else 0)

    def record_rescued(self, requeued: int, unconfirmed: int) -> None:
        self.rescued.labels(result="requeued").inc(requeued)
        self.rescued.labels(result="unconfirmed").inc(unconfirmed)


def _platform(config: Config, account: str) -> str:
    acc = config.accounts.get(account)
    return acc.platform if acc is not None else UNKNOWN


# --------------------------------------------------------------------------- scrape time


class DatabaseCollector:
    """Gauges read from the database at each scrape: what every daemon shares.

    A failed read does not fail the scrape: ``smm_database_up`` drops to 0 and the other
    database gauges are left out until the database answers again.
    """

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()

    def describe(self) -> list[Metric]:
        # Names only, so registering the collector does not query the database.
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        up = families.pop("up")
        try:
            self._fill(families)
        except Exception as exc:  # an unreachable database must not break the whole scrape
            log.error("metrics_database_read_failed", error=repr(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families.values()

    def _families(self) -> dict[str, GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily as G

        acc = ["platform", "account"]
        spec = [
            ("up", G("smm_database_up", "1 when the last scrape could read the database.")),
            ("queue", G("smm_queue_posts", "Posts by state and account.", labels=[*acc, "state"])),
            (
                "due",
                G(
                    "smm_queue_due_posts",
                    "Posts whose time has come, waiting for a daemon to claim them (queued or "
                    "retry_wait, due time passed, account not paused).",
                    labels=acc,
                ),
            ),
            (
                "er",
                G(
                    "smm_content_type_er",
                    "Engagement rate per account and content type, as the ER loop last "
                    "estimated it (a ratio; absent until measured).",
                    labels=[*acc, "content_type"],
                ),
            ),
            (
                "weight",
                G(
                    "smm_content_type_weight",
                    "Share of an account's queue slots given to a content type (0-1).",
                    labels=[*acc, "content_type"],
                ),
            ),
            (
                "paused",
                G("smm_account_paused", "1 when an account is paused.", labels=acc),
            ),
            (
                "auth",
                G(
                    "smm_account_auth_expired",
                    "1 when the network rejected an account's credentials (the account is "
                    "paused until they are renewed).",
                    labels=acc,
                ),
            ),
            (
                "token",
                G(
                    "smm_account_token_expires_in_seconds",
                    "Seconds until an account's token expires (negative: expired), where the "
                    "network says.",
                    labels=acc,
                ),
            ),
            (
                "heartbeat",
                G(
                    "smm_daemon_heartbeat_age_seconds",
                    "Seconds since each running daemon's last heartbeat (any daemon on the "
                    "database; cleanly stopped ones are left out).",
                    labels=["daemon", "hostname", "version"],
                ),
            ),
        ]
        return dict(spec)

    def _fill(self, f: Mapping[str, GaugeMetricFamily]) -> None:
        now = self.clock.now()
        with self.engine.connect() as conn:
            accounts = conn.execute(
                select(
                    accounts_t.c.id,
                    accounts_t.c.name,
                    accounts_t.c.platform,
                    accounts_t.c.paused,
                    accounts_t.c.auth_state,
                    accounts_t.c.token_expires_at,
                )
            ).all()
            counts = {
                (row.account_id, row.state): int(row.n)
                for row in conn.execute(
                    select(posts_t.c.account_id, posts_t.c.state, func.count().label("n")).group_by(
                        posts_t.c.account_id, posts_t.c.state
                    )
                )
            }
            due: dict[int, int] = {
                account_id: int(n)
                for account_id, n in conn.execute(
                    select(posts_t.c.account_id, func.count())
                    .where(
                        posts_t.c.state.in_((PostState.QUEUED, PostState.RETRY_WAIT)),
                        posts_t.c.next_attempt_at <= now,
                    )
                    .group_by(posts_t.c.account_id)
                )
            }
            priorities = conn.execute(
                select(
                    priorities_t.c.account_id,
                    priorities_t.c.content_type,
                    priorities_t.c.weight,
                    priorities_t.c.er,
                )
            ).all()
            daemons = conn.execute(
                select(daemons_t).where(
                    daemons_t.c.status != "stopped",
                    daemons_t.c.last_seen >= now - HEARTBEAT_HORIZON,
                )
            ).all()
        labels: dict[int, list[str]] = {}
        for a in accounts:
            labels[a.id] = lv = [a.platform, a.name]
            for state in PostState:
                f["queue"].add_metric([*lv, state.value], counts.get((a.id, state.value), 0))
            f["due"].add_metric(lv, 0 if a.paused else due.get(a.id, 0))
            f["paused"].add_metric(lv, int(bool(a.paused)))
            f["auth"].add_metric(lv, int(a.auth_state == "expired"))
            if a.token_expires_at is not None:
                f["token"].add_metric(lv, (a.token_expires_at - now).total_seconds())
        for p in priorities:
            owner = labels.get(p.account_id)
            if owner is None:
                continue
            f["weight"].add_metric([*owner, p.content_type], p.weight)
            if p.er is not None:
                f["er"].add_metric([*owner, p.content_type], p.er)
        for d in daemons:
            age = max(0.0, (now - d.last_seen).total_seconds())
            f["heartbeat"].add_metric([d.id, d.hostname, d.version], age)


# --------------------------------------------------------------------------- switching on

_lock = threading.Lock()
_active: DaemonMetrics | None = None
_warned = False


def enable(registry: CollectorRegistry | None = None) -> DaemonMetrics | None:
    """Turn the ``record_*`` functions on, counting into ``registry`` (a new one by default).

    Returns None, after one warning, when prometheus-client is not installed.
    """
    global _active, _warned
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        with _lock:
            if not _warned:
                _warned = True
                log.warning(
                    "metrics_unavailable",
                    reason="prometheus-client is not installed",
                    fix="pip install 'smm-scheduler[metrics]'",
                )
        return None
    with _lock:
        _active = DaemonMetrics(registry if registry is not None else CollectorRegistry())
        return _active


def disable() -> None:
    """Turn the ``record_*`` functions back into no-ops (tests, shutdown)."""
    global _active
    with _lock:
        _active = None


def record_claimed(claimed: Sequence[Claimed], missed: Sequence[Change], config: Config) -> None:
    """Count the attempts a claim started and the posts it found too late (``missed``)."""
    if _active is not None:
        _active.record_claimed(claimed, missed, config)


def record_results(results: Sequence[Result], config: Config) -> None:
    """Count finished attempts: outcome, request duration, lateness, rate-limit waits."""
    if _active is not None:
        _active.record_results(results, config)


def record_rate_limit_wait(account: AccountConfig, seconds: float) -> None:
    """Count a wait for ``account``'s rate limit that happens before a request is sent."""
    if _active is not None:
        _active.record_rate_limit_wait(account, seconds)


def record_token(account: AdapterAccount, expires_at: datetime | None, *, failed: bool) -> None:
    """Record a token refresh (or failed attempt) and when the token expires."""
    if _active is not None:
        _active.record_token(account, expires_at, failed)


def record_rescued(requeued: int, unconfirmed: int) -> None:
    """Count expired leases recovered by ``Worker.rescue``."""
    if _active is not None:
        _active.record_rescued(requeued, unconfirmed)


def record_degraded(degraded: bool) -> None:
    """Whether the daemon is riding out a database outage (``smm_daemon_degraded``)."""
    if _active is not None:
        _active.record_degraded(degraded)


# --------------------------------------------------------------------------- the endpoint


@dataclass
class MetricsServer:
    """The running ``/metrics`` endpoint."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and stop counting."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        disable()


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"``, ``"localhost:9464"`` -> (host, port).

    ``":9464"`` means this machine only (127.0.0.1): the endpoint has no authentication, so
    every interface must be asked for by name, ``"0.0.0.0:9464"`` or ``"[::]:9464"``.
    """
    text = listen.strip()
    host, sep, port_text = text.rpartition(":")
    bad = f"bad metrics address {text[:60]!r}: write host:port, e.g. 127.0.0.1:9464"
    if not sep or not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError(bad)
    port = int(port_text)
    if port > 65535:
        raise ValueError(bad)
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(bad) from None
        return host[1:-1], port
    if not host:
        return "127.0.0.1", port
    if not _HOSTNAME.match(host):  # an IPv6 address without brackets lands here too
        raise ValueError(bad)
    return host, port


#: A host name or an IPv4 address (letters, digits, hyphens, dots; at most 253 characters).
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def start_metrics_server(
    listen: str | None,
    engine: Engine,
    *,
    daemon_id: str | None = None,
    clock: Clock | None = None,
) -> MetricsServer | None:
    """Serve ``/metrics`` on ``listen`` (``[metrics] listen``) and turn counting on.

    Returns None — and the daemon goes on without metrics — when ``listen`` is None,
    prometheus-client is missing (one warning) or the address cannot be bound (an error
    naming it). Port 0 binds a free port (``MetricsServer.port`` says which).
    """
    if not listen:
        return None
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        log.error("metrics_server_failed", listen=listen, error=str(exc))
        return None
    try:
        from prometheus_client import (
            GC_COLLECTOR,
            PLATFORM_COLLECTOR,
            PROCESS_COLLECTOR,
            CollectorRegistry,
            Info,
            start_http_server,
        )
    except ImportError:
        enable()  # warns once
        return None
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(ValueError):  # already in this registry
            registry.register(collector)
    Info("smm_daemon", "This daemon: its id, host and version.", registry=registry).info(
        {
            "daemon": daemon_id or "",
            "hostname": socket.gethostname(),
            "version": __version__,
        }
    )
    registry.register(DatabaseCollector(engine, clock))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error(
            "metrics_server_failed",
            listen=listen,
            error=exc.strerror or str(exc),
            fix="choose a free address in [metrics] listen",
        )
        return None
    enable(registry)
    bound = MetricsServer(host, int(server.server_port), registry, server, thread)
    log.info("metrics_serving", url=bound.url)
    return bound
