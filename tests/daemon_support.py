"""Helpers for the daemon tests (tests/test_daemon_*.py).

* configs written as TOML, posts seeded through the plan importer (``apply_plan``), and
  readers for what the database and the sim's delivery ledger say happened;
* running the real ``smm`` in subprocesses (``Daemons``), and the daemon's ``Service``
  in-process (``run_service``);
* test networks, registered like any plugin (``TestNetworks``): ``slow-sim`` and
  ``slow-sim-plain`` (the sim network with latency and stalls) and ``badnet`` (a plugin that
  raises, hangs, returns garbage... as its account's ``mode`` option says).

Run as a script, this module is ``smm`` with the test networks registered:
``python tests/daemon_support.py --config ... run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
from smm_sim import SimAdapter, SimPlainAdapter
from smm_sim.ledger import read_ledger
from sqlalchemy import Engine, func, select

from scheduler import outgoing, plugins
from scheduler.adapter import (
    Account,
    Adapter,
    Capabilities,
    OutgoingPost,
    Published,
    RateLimitPolicy,
)
from scheduler.config import Config, load_config
from scheduler.daemon.service import Service
from scheduler.daemon.worker import Worker
from scheduler.db.models import Attempt, PostState
from scheduler.hookspecs import hookimpl
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem
from scheduler.queue import accounts_t, events_t, posts_t

attempts_t = Attempt.__table__  # type: ignore[attr-defined]

THIS_FILE = Path(__file__).resolve()
REPO_ROOT = THIS_FILE.parent.parent
#: States the daemon still acts on by itself: a run is over when no post is in one.
PENDING = (PostState.QUEUED, PostState.RETRY_WAIT, PostState.CLAIMED)

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


# =============================================================================================
# Configs
# =============================================================================================


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(header: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{header}]", *(f"{k} = {_toml(v)}" for k, v in values.items()), ""]


def write_config(
    path: Path,
    accounts: Mapping[str, Mapping[str, Any]],
    *,
    daemon: Mapping[str, Any] | None = None,
    policies: Mapping[str, Any] | None = None,
) -> Path:
    """Write a config: ``accounts`` maps a name to ``platform``, ``options``, ``policies``."""
    lines = ['[logging]\nlevel = "info"\n']
    lines += _table("daemon", daemon or {})
    lines += _table("policies", policies or {})
    for name, acc in accounts.items():
        lines += _table(
            f"accounts.{json.dumps(name)}",
            {"platform": acc["platform"], "timezone": acc.get("timezone", "UTC")},
        )
        if acc.get("options"):
            lines += _table(f"accounts.{json.dumps(name)}.options", acc["options"])
        if acc.get("policies"):
            lines += _table(f"accounts.{json.dumps(name)}.policies", acc["policies"])
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def config_at(path: Path) -> Config:
    return load_config(path)


# =============================================================================================
# Posts and what became of them
# =============================================================================================


def seed_posts(
    engine: Engine,
    config: Config,
    posts: Iterable[tuple[str, str, datetime]],
    *,
    now: datetime | None = None,
) -> int:
    """Import fixed-time posts ``(key, account, due)`` through the plan importer.

    The validated items are built directly, so due times may lie in the past (a daemon that
    was down, posts due "right now"); everything else is what ``smm plan import`` does.
    """
    items = [
        PlanItem(
            key=key,
            account=account,
            content_type="laugh",
            text=f"post {key}",
            media=(),
            link=None,
            tags=(),
            evergreen=False,
            at=due,
            file="plan.yaml",
            line=i + 1,
            unit="line",
            order=i,
        )
        for i, (key, account, due) in enumerate(posts)
    ]
    with engine.begin() as conn:
        apply_plan(conn, items, config, now or utcnow())
    return len(items)


def post_rows(engine: Engine) -> dict[str, Any]:
    """Every post by key, with its account's name as ``account``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(posts_t, accounts_t.c.name.label("account"))
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            .order_by(posts_t.c.id)
        ).all()
    return {r.key: r for r in rows}


def attempt_rows(engine: Engine) -> list[Any]:
    """Every attempt, with its post's key as ``key``, in order."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(attempts_t, posts_t.c.key.label("key"), posts_t.c.due_at)
                .join(posts_t, posts_t.c.id == attempts_t.c.post_id)
                .order_by(attempts_t.c.id)
            ).all()
        )


def event_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(events_t, posts_t.c.key.label("key"))
                .join(posts_t, posts_t.c.id == events_t.c.post_id)
                .order_by(events_t.c.id)
            ).all()
        )


def state_counts(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(
            {
                str(state): int(n)
                for state, n in conn.execute(
                    select(posts_t.c.state, func.count()).group_by(posts_t.c.state)
                )
            }
        )


def pending_count(engine: Engine) -> int:
    """Posts the daemon still has to act on (queued, retry_wait or claimed)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(posts_t).where(posts_t.c.state.in_(PENDING))
            ).scalar_one()
        )


def daemon_pids(engine: Engine) -> set[int]:
    """Pids of the daemons that have written a heartbeat."""
    with engine.connect() as conn:
        return {int(p) for p in conn.execute(select(func.distinct(_daemons().c.pid))).scalars()}


def _daemons() -> Any:
    from scheduler.daemon.store import daemons_t

    return daemons_t


def ledger_posts(path: Path) -> dict[str, list[str]]:
    """Remote ids of the posts the sim network created, per idempotency key."""
    out: dict[str, list[str]] = {}
    for e in read_ledger(path):
        if not e.duplicate:
            out.setdefault(e.key, []).append(e.remote_id)
    return out


def detached(rows: Mapping[str, Any]) -> dict[str, Any]:
    """Rows as plain attribute objects (picklable, usable after the engine is gone)."""
    return {k: types.SimpleNamespace(**r._mapping) for k, r in rows.items()}


def once_per_session(factory: Any, name: str, compute: Callable[[Path], T]) -> T:
    """``compute(workdir)`` once per test session, even across xdist workers.

    For expensive runs that several tests check: the first worker to ask runs it and pickles
    the result; the others wait for it and read it.
    """
    root: Path = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    result = root / f"{name}.pickle"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result.exists():
            value: T = pickle.loads(result.read_bytes())
            return value
        workdir = root / name
        workdir.mkdir(exist_ok=True)
        value = compute(workdir)
        result.write_bytes(pickle.dumps(value))
        return value


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


# =============================================================================================
# The real daemon in subprocesses
# =============================================================================================


def smm_command(*, test_networks: bool = False) -> list[str]:
    """The ``smm`` command: the installed console script, or this module (test networks)."""
    if test_networks:
        return [sys.executable, str(THIS_FILE)]
    script = Path(sys.executable).with_name("smm")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from scheduler.cli import main; main()"]


@dataclass
class DaemonProcess:
    """One ``smm ... run`` process; its output goes to ``log``."""

    argv: list[str]
    log: Path
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> DaemonProcess:
        with self.log.open("ab") as out:
            out.write(f"\n=== {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env),
                cwd=REPO_ROOT,
            )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL and reap."""
        self.send(signal.SIGKILL)
        return self.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM; SIGKILL if it does not exit within ``timeout`` (then fail loudly)."""
        self.send(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"smm run did not exit within {timeout} s of SIGTERM") from None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Daemons:
    """Starts ``smm run`` processes and makes sure none outlives the test."""

    config: Path
    db_url: str
    workdir: Path
    test_networks: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    procs: list[DaemonProcess] = field(default_factory=list)

    def start(
        self, *args: str, log: str = "daemon.log", config: Path | None = None
    ) -> DaemonProcess:
        argv = [
            *smm_command(test_networks=self.test_networks),
            "--config",
            str(config or self.config),
            "--db",
            self.db_url,
            "run",
            *args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        p = DaemonProcess(argv, self.workdir / log, env).start()
        self.procs.append(p)
        return p

    def __enter__(self) -> Daemons:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.alive():
                with contextlib.suppress(Exception):
                    p.kill()

    def logs(self) -> str:
        seen: set[Path] = set()
        out = []
        for p in self.procs:
            if p.log not in seen:
                seen.add(p.log)
                out.append(f"--- {p.log.name}\n{p.tail(60)}")
        return "\n".join(out)


def wait_dispatching(d: DaemonProcess, engine: Engine) -> None:
    """Wait until daemon ``d`` has registered (it dispatches) or has died."""
    wait_until(
        lambda: d.pid in daemon_pids(engine) or not d.alive(),
        timeout=60,
        interval=0.02,
        what="the daemon to start",
    )


def finish_after_kills(daemons: Daemons, engine: Engine, what: str) -> None:
    """After a run of kills: start one last daemon, wait until nothing is pending (``what``
    names that wait) and assert that it then stops cleanly."""
    final = daemons.start()
    wait_until(
        lambda: final.pid in daemon_pids(engine),
        timeout=60,
        what="the last daemon to start",
    )
    wait_until(lambda: pending_count(engine) == 0, timeout=120, interval=0.2, what=what)
    assert final.terminate() == 0, final.tail()


# =============================================================================================
# The daemon in-process
# =============================================================================================


@dataclass
class ServiceRun:
    """What ``run_service`` saw."""

    service: Service
    worker: Worker
    ended_by_itself: bool
    seconds: float


async def run_service(
    engine: Engine,
    config: Config,
    *,
    until: Callable[[], bool],
    timeout: float = 60.0,
    client: httpx.AsyncClient | None = None,
    adapters: dict[str, Adapter] | None = None,
) -> ServiceRun:
    """Run ``Service`` (the loop ``smm run`` runs) until ``until()`` holds, then stop it.

    Fails if the service returns or raises on its own before that, or after ``timeout``.
    """
    worker = Worker(engine, config, client=client, adapters=adapters)
    service = Service(engine, config, worker=worker)
    # In-process: stop through request_stop(), leave the test runner's signal handlers alone.
    service._install_signals = lambda loop: None  # type: ignore[method-assign]
    started = time.monotonic()
    task = asyncio.create_task(service.run())
    ended = False
    try:
        while True:
            if task.done():
                ended = True
                task.result()  # re-raise what stopped it
                break
            if await asyncio.to_thread(until):
                break
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"the condition was not met within {timeout:.0f} s; "
                    f"states: {dict(state_counts(engine))}"
                )
            await asyncio.sleep(0.1)
    finally:
        service.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout=30)
    return ServiceRun(service, worker, ended, time.monotonic() - started)


def no_pending(engine: Engine) -> Callable[[], bool]:
    return lambda: pending_count(engine) == 0


# =============================================================================================
# Test networks
# =============================================================================================

_SLOW_OPTIONS = frozenset({"latency", "stall_rate", "stall", "stall_before", "stall_after"})


class _Slow:
    """Latency for the sim network, from account options.

    ``latency``: at most this many seconds, split before and after the network takes the
    post. ``stall`` seconds more for a share ``stall_rate`` of requests (before or after the
    network takes the post, drawn by key and attempt), and for the posts listed in
    ``stall_before`` (the network has not taken them yet) and ``stall_after`` (it has; the
    answer is late) on their first request in the process.
    """

    _plain: dict[str, tuple[Mapping[str, Any], Account]]
    _calls: Counter[str]

    def _sim_account(self, account: Account) -> Account:
        if not _SLOW_OPTIONS & set(account.options):
            return account
        cache = self.__dict__.setdefault("_plain", {})
        hit = cache.get(account.name)
        if hit is not None and hit[0] is account.options:
            return hit[1]
        plain = replace(
            account, options={k: v for k, v in account.options.items() if k not in _SLOW_OPTIONS}
        )
        cache[account.name] = (account.options, plain)
        return plain

    def world(self, account: Account) -> Any:
        return super().world(self._sim_account(account))  # type: ignore[misc]

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        calls = self.__dict__.setdefault("_calls", Counter())
        calls[idempotency_key] += 1
        first = calls[idempotency_key] == 1
        rng = random.Random(f"{idempotency_key}:{calls[idempotency_key]}")
        opts = account.options
        latency = float(opts.get("latency", 0.0))
        stall = float(opts.get("stall", 30.0))
        before, after = rng.uniform(0, latency / 2), rng.uniform(0, latency / 2)
        if rng.random() < float(opts.get("stall_rate", 0.0)):
            if rng.random() < 0.5:
                before += stall
            else:
                after += stall
        if first and post.key in opts.get("stall_before", ()):
            before += stall
        if first and post.key in opts.get("stall_after", ()):
            after += stall
        await asyncio.sleep(before)
        published = await super().publish(post, self._sim_account(account), idempotency_key)  # type: ignore[misc]
        await asyncio.sleep(after)
        return published


_SLOW_CAPS = {
    "text_limit": 5000,
    "metrics": frozenset({"likes"}),
    "rate_limit": RateLimitPolicy(requests=6000, per=timedelta(minutes=1), concurrency=4),
}


class SlowSimAdapter(_Slow, SimAdapter):
    """The sim (honours idempotency keys) with latency."""

    platform = "slow-sim"
    capabilities = Capabilities(idempotent=True, **_SLOW_CAPS)  # type: ignore[arg-type]


class SlowSimPlainAdapter(_Slow, SimPlainAdapter):
    """The sim without idempotency, with latency."""

    platform = "slow-sim-plain"
    capabilities = Capabilities(idempotent=False, **_SLOW_CAPS)  # type: ignore[arg-type]


#: Limits that do not bind: for tests of claims and leases, not of rate limits (the daemons
#: alive on one database share each account's declared limits; see tests/test_dispatch.py).
_ROOMY = RateLimitPolicy(requests=1_000_000, per=timedelta(minutes=1), concurrency=64)


class RoomySimAdapter(SimAdapter):
    """The sim (honours idempotency keys) with limits that do not bind."""

    platform = "roomy-sim"
    capabilities = replace(SimAdapter.capabilities, rate_limit=_ROOMY)


class RoomySimPlainAdapter(SimPlainAdapter):
    """The sim without idempotency, with limits that do not bind."""

    platform = "roomy-sim-plain"
    capabilities = replace(SimPlainAdapter.capabilities, rate_limit=_ROOMY)


class ThreadSimAdapter(SimAdapter):
    """The sim (honours idempotency keys) whose thread parts take ``PART_DELAY`` seconds each,
    so that a kill lands between two parts of a chain."""

    platform = "thread-sim"
    capabilities = replace(SimAdapter.capabilities, rate_limit=_ROOMY)
    PART_DELAY: ClassVar[float] = 0.25

    async def between_parts(self, account: Account) -> None:
        await asyncio.sleep(self.PART_DELAY)


class PluginBug(Exception):
    """What the misbehaving plugin raises."""


class BadAdapter(Adapter):
    """A plugin that misbehaves as its account's ``mode`` option says.

    ``ok`` publishes; ``raise`` raises; ``hang`` never answers; ``garbage-dict``,
    ``garbage-none`` and ``garbage-empty-id`` return something that is not a usable
    ``Published``; ``exit`` calls ``sys.exit``; ``stubborn-hang`` never answers and ignores
    cancellation.
    """

    platform = "badnet"
    capabilities = Capabilities(
        text_limit=5000,
        idempotent=False,
        rate_limit=RateLimitPolicy(requests=6000, per=timedelta(minutes=1), concurrency=4),
    )
    calls: ClassVar[Counter[str]] = Counter()

    async def publish(self, post: OutgoingPost, account: Account, idempotency_key: str) -> Any:
        mode = account.option("mode", "ok")
        BadAdapter.calls[post.key] += 1
        if mode == "raise":
            raise PluginBug(f"kaboom while publishing {post.key}")
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "stubborn-hang":
            end = time.monotonic() + 3600
            while time.monotonic() < end:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue
        if mode == "garbage-dict":
            return {"id": 1, "ok": True}
        if mode == "garbage-none":
            return None
        if mode == "garbage-empty-id":
            return Published(remote_id="")
        if mode == "exit":
            sys.exit(3)
        return Published(remote_id=f"bad-{post.key}", url=f"https://badnet.invalid/{post.key}")


class BrokenStartAdapter(Adapter):
    """A plugin whose adapter cannot even be created."""

    platform = "broken-start"
    capabilities = Capabilities(text_limit=5000)

    def __init__(self, client: httpx.AsyncClient) -> None:
        raise PluginBug("cannot start: missing native library")

    async def publish(self, post: OutgoingPost, account: Account, idempotency_key: str) -> Any:
        raise AssertionError("never created")


class TestNetworks:
    """The plugin that contributes the test networks."""

    @hookimpl
    def register_platforms(self, register: Callable[[type[Adapter]], None]) -> None:
        for adapter in (
            SlowSimAdapter,
            SlowSimPlainAdapter,
            RoomySimAdapter,
            RoomySimPlainAdapter,
            ThreadSimAdapter,
            BadAdapter,
            BrokenStartAdapter,
        ):
            register(adapter)


TEST_PLUGIN_NAME = "daemon-test-networks"


@contextlib.contextmanager
def registered(*extra: tuple[str, object]) -> Iterator[None]:
    """Register the test networks (and ``extra`` (name, plugin) pairs) for a block."""
    names = []
    try:
        for name, plugin in ((TEST_PLUGIN_NAME, TestNetworks()), *extra):
            plugins.register_plugin(plugin, name=name)
            names.append(name)
        outgoing.clear_caches()
        yield
    finally:
        for name in names:
            plugins.unregister_plugin(name)
        outgoing.clear_caches()


def group_by(rows: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def describe(rows: Sequence[Any], limit: int = 10) -> str:
    return "; ".join(
        f"{r.key}: {r.state} ({r.error_class}: {r.last_error})" for r in list(rows)[:limit]
    )


#: Set in a daemon's environment to skip the sim ledger's fsync: for runs with no crash, where
#: the ledger only needs to be shared between processes (the page cache does that), not durable.
NO_FSYNC_ENV = "SMM_TEST_LEDGER_NO_FSYNC"

if __name__ == "__main__":
    if os.environ.get(NO_FSYNC_ENV):
        os.fsync = lambda fd: None
    plugins.register_plugin(TestNetworks(), name=TEST_PLUGIN_NAME)
    from scheduler.cli import main

    main()
