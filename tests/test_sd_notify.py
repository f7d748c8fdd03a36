"""``smm run`` speaks the systemd notify protocol, stops cleanly on SIGTERM, reloads on SIGHUP.

A real daemon process on the simulated network, with ``NOTIFY_SOCKET`` pointing at a datagram
socket the test owns, exactly as systemd runs a ``Type=notify`` service.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The ``smm`` command of the interpreter running the tests.
SMM = [sys.executable, "-c", "from scheduler.cli import main; main()"]
START_TIMEOUT_S = 60.0
#: Small, so that pings come often: the daemon pings every WATCHDOG_USEC / 2.
WATCHDOG_USEC = 200_000

ACCOUNT = """
[accounts.{name}]
platform = "sim"
timezone = "UTC"
[accounts.{name}.options]
seed = 1
"""


def write_config(path: Path, db: Path, accounts: list[str]) -> None:
    text = f'[database]\nurl = "sqlite:///{db}"\n\n[daemon]\ntick = "1s"\n'
    text += "".join(ACCOUNT.format(name=name) for name in accounts)
    path.write_text(text, encoding="utf-8")


def smm(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMM, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


class NotifySocket:
    """The receiving end of sd_notify: every datagram, split into ``KEY=value`` lines.

    Read continuously from a thread, as systemd does: a notify socket nobody reads fills up
    after a few datagrams, and the sender then blocks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                self.messages.extend((now, line) for line in data.decode().splitlines())

    def wait_for(
        self,
        predicate: Callable[[list[str]], bool],
        timeout: float,
        what: str,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({proc.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; got {self.lines[-20:]}")
            time.sleep(0.02)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, line in self.messages]

    def timed(self, line: str) -> list[float]:
        with self._lock:
            return [t for t, text in self.messages if text == line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="smm-notify-") as d:
        yield Path(d)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[dict[str, Any]]:
    config = short_dir / "config.toml"
    db = short_dir / "smm.db"
    write_config(config, db, ["first"])
    notify = NotifySocket(short_dir / "notify")
    log_path = short_dir / "daemon.log"
    log = log_path.open("ab")  # O_APPEND: the test reads the file through its own handle
    env = dict(
        os.environ,
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        SMM_LOAD_PLUGINS="sim",
    )
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [*SMM, "--config", str(config), "run"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield {"proc": proc, "notify": notify, "config": config, "db": db, "log": log_path}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
        log.close()


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def write_plan(path: Path, account: str, key: str, at: datetime) -> None:
    path.write_text(
        "posts:\n"
        f"  - id: {key}\n"
        f"    account: {account}\n"
        "    type: tip\n"
        f"    text: A post for {account}\n"
        f"    at: {at.isoformat(timespec='seconds')}\n",
        encoding="utf-8",
    )


def wait_published(config: Path, key: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done = smm("queue", "list", "--json", config=config)
        assert done.returncode == 0, done.stderr
        posts = {p["id"]: p for p in json.loads(done.stdout)}
        post = posts.get(key)
        if post is not None and post["state"] not in ("queued", "claimed", "retry_wait"):
            return post
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} not settled within {timeout} s: {post}")
        time.sleep(0.3)


@pytest.mark.slow
def test_notify_protocol_reload_and_clean_stop(daemon: dict[str, Any], short_dir: Path) -> None:
    proc, notify, config = daemon["proc"], daemon["notify"], daemon["config"]

    try:
        notify.wait_for(lambda lines: "READY=1" in lines, START_TIMEOUT_S, "READY=1", proc)
    except AssertionError:
        print(daemon["log"].read_text(encoding="utf-8"))
        raise
    assert any(line.startswith("STATUS=") for line in notify.lines)

    # Watchdog pings keep coming, every WATCHDOG_USEC / 2 (0.1 s here; 15 s under the unit).
    (ready_at,) = notify.timed("READY=1")
    notify.wait_for(lambda lines: lines.count("WATCHDOG=1") >= 6, 10, "6 WATCHDOG=1 pings", proc)
    pings = [t for t in notify.timed("WATCHDOG=1") if t >= ready_at]
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert 0.05 <= gaps[len(gaps) // 2] <= 0.3, gaps

    # SIGHUP with a new account in the config: the daemon keeps running and publishes for it.
    write_config(config, daemon["db"], ["first", "second"])
    plan = short_dir / "plan.yaml"
    write_plan(plan, "second", "hup-1", datetime.now(UTC) + timedelta(seconds=10))
    imported = smm("plan", "import", str(plan), config=config)
    assert imported.returncode == 0, imported.stderr
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while not any(e.get("event") == "config_reloaded" for e in log_events(daemon["log"])):
        assert proc.poll() is None, "the daemon exited on SIGHUP"
        assert time.monotonic() < deadline, f"not reloaded: {log_events(daemon['log'])}"
        time.sleep(0.1)
    reloaded = next(e for e in log_events(daemon["log"]) if e.get("event") == "config_reloaded")
    assert reloaded["accounts"] == 2
    post = wait_published(config, "hup-1", 30)
    assert post["state"] == "published", post
    assert proc.poll() is None

    listed = smm("accounts", "list", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    assert {a["name"] for a in json.loads(listed.stdout)} == {"first", "second"}

    # SIGTERM: STOPPING=1, then exit 0 well within the shutdown deadline.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    notify.wait_for(lambda lines: "STOPPING=1" in lines, 5, "STOPPING=1")
    assert notify.lines.index("STOPPING=1") > notify.lines.index("READY=1")
    events = [e.get("event") for e in log_events(daemon["log"])]
    assert "daemon_stopped" in events


def test_notify_is_silent_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler.daemon import systemd

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd may hand out an abstract-namespace socket (``@name``)."""
    from scheduler.daemon import systemd

    name = f"smm-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("STATUS=testing", "READY=1") is True
        assert sock.recv(1024).decode().splitlines() == ["STATUS=testing", "READY=1"]
