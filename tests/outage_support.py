"""Database outages for the daemon tests: a private PostgreSQL cluster that can be stopped and
started, and a size-limited file system (tmpfs) that can be filled up.

Both need root (the test suite runs as root in CI); elsewhere the tests that use them skip,
saying why. Nothing here touches the shared cluster the other tests use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_VERSION = "15"
PG_SOCKET_DIR = "/var/run/postgresql"


def _run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


#: What a PostgreSQL server logs when it stops, crashes or becomes ready.
_LIFE_EVENTS = (
    "shutdown request",
    "database system is shut down",
    "terminated by signal",
    "terminating any other active server processes",
    "database system was interrupted",
    "ready to accept connections",
)


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of the test's own, on its own port."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg:///smm?host={PG_SOCKET_DIR}&port={self.port}"

    def ready(self) -> bool:
        return (
            _run("pg_isready", "-q", "-h", PG_SOCKET_DIR, "-p", str(self.port), check=False)
        ).returncode == 0

    def stop(self) -> None:
        """Stop the server at once, as a crash or a failover would (``-m immediate``)."""
        _run("pg_ctlcluster", PG_VERSION, self.name, "stop", "-m", "immediate")

    def start(self) -> None:
        _run("pg_ctlcluster", PG_VERSION, self.name, "start")
        deadline = time.monotonic() + 30
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster {self.name} did not come up")
            time.sleep(0.05)

    def starts_and_stops(self) -> list[str]:
        """The server's own log lines on its stops, crashes and starts, in order."""
        log = Path(f"/var/log/postgresql/postgresql-{PG_VERSION}-{self.name}.log")
        try:
            text = log.read_text(errors="replace")
        except OSError as exc:
            return [f"(no server log: {exc})"]
        return [line for line in text.splitlines() if any(w in line for w in _LIFE_EVENTS)]

    def psql(self, sql: str) -> None:
        _run("su", "postgres", "-c", f'psql -q -p {self.port} -c "{sql}"')


def free_port(first: int) -> int:
    """A port in 5440-5499, from ``first`` on, that no cluster of this machine uses."""
    listed = _run("pg_lsclusters", "--no-header", check=False).stdout.split("\n")
    taken = {int(line.split()[2]) for line in listed if len(line.split()) > 2}
    for offset in range(60):
        port = 5440 + (first - 5440 + offset) % 60
        if port not in taken and not Path(f"{PG_SOCKET_DIR}/.s.PGSQL.{port}").exists():
            return port
    raise RuntimeError("no free port for a private cluster in 5440-5499")


@contextlib.contextmanager
def private_cluster(port: int) -> Iterator[PrivateCluster]:
    """A new cluster (``pg_createcluster``), with a database ``smm`` root owns; dropped after.
    ``port`` is where to start looking for a free one."""
    if os.geteuid() != 0 or shutil.which("pg_createcluster") is None:
        _unavailable("a private PostgreSQL cluster needs root and postgresql-common")
    cluster = PrivateCluster(f"smmoutage{os.getpid()}", free_port(port))
    port = cluster.port
    _run("pg_dropcluster", PG_VERSION, cluster.name, "--stop", check=False)
    # Durability is not what these tests are about: let the server go fast.
    _run(
        "pg_createcluster",
        PG_VERSION,
        cluster.name,
        "--port",
        str(port),
        "-o",
        "fsync=off",
        "-o",
        "synchronous_commit=off",
        "-o",
        "full_page_writes=off",
        "-o",
        "max_connections=100",
        timeout=120,
    )
    try:
        cluster.start()
        cluster.psql("CREATE ROLE root SUPERUSER LOGIN")
        cluster.psql("CREATE DATABASE smm OWNER root")
        yield cluster
    finally:
        _run("pg_dropcluster", PG_VERSION, cluster.name, "--stop", check=False, timeout=120)


@dataclass
class SmallDisk:
    """A tmpfs of a few MiB mounted for the test; ``fill`` takes all its free space."""

    path: Path
    _filler: Path | None = None

    def fill(self) -> None:
        self._filler = self.path / "filler"
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Big writes first, then every last byte a smaller write could still take.
            for size in (256 * 1024, 16384, 1024, 64, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while os.write(fd, block) == size:
                        pass
        finally:
            os.close(fd)

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink(missing_ok=True)
            self._filler = None

    def full(self) -> bool:
        return shutil.disk_usage(self.path).free < 4096


@contextlib.contextmanager
def small_disk(path: Path, size_mib: int) -> Iterator[SmallDisk]:
    """A tmpfs of ``size_mib`` MiB mounted on ``path`` (made); unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        _unavailable("mounting a size-limited tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path), check=False)
    if done.returncode != 0:
        # A container without CAP_SYS_ADMIN cannot mount: the one reason to skip.
        pytest.skip(f"this machine cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        _run("umount", "-l", str(path), check=False)
