"""A small site for the web app's tests: a config with a Mastodon, an X and a simulated
account (the last one needs approval), a plan imported through the real CLI, and users."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from sqlalchemy import Engine

from scheduler.cli import cli
from scheduler.config import Config, load_config
from scheduler.db.engine import immediate, make_engine
from scheduler.timeutil import utcnow
from scheduler.web import auth

RIGA = ZoneInfo("Europe/Riga")
#: A text whose length the two networks count differently: the URL counts 23 on both, the
#: emoji 1 on Mastodon (a grapheme) and 2 on X (weighted).
TEXT = "Hello 🌍 world https://example.com/" + "x" * 60
MASTODON_COUNT, X_COUNT = 37, 38
PASSWORD = "correct horse battery"

# Tests hash with argon2id at its lowest cost: the same code path, a fraction of the time
# (the shipped parameters take ~50 ms and 64 MiB per hash, by design).
auth._hasher = auth.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

CONFIG = """
[web]
horizon = "30d"

[accounts.riga_masto]
platform = "mastodon"
timezone = "Europe/Riga"
options = {{ instance = "https://mastodon.example" }}
credentials = {{ access_token = {{ env = "SMM_TEST_WEB_TOKEN" }} }}
slots = {{ weekdays = ["09:00"] }}

[accounts.ny_x]
platform = "x"
timezone = "America/New_York"
credentials = {{ access_token = {{ env = "SMM_TEST_WEB_TOKEN" }} }}

[accounts.acme_sim]
platform = "sim"
timezone = "Europe/Riga"
approval = "required"
[accounts.acme_sim.options]
seed = 7
followers = 1000
{extra}
"""


@dataclass
class Site:
    config_path: Path
    db_url: str
    config: Config
    engine: Engine
    #: The Monday (Riga) of next week, and the planned posts' times.
    next_monday: datetime
    approve_due: datetime

    def cli(self, *args: str, input: str | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--config", str(self.config_path), "--db", self.db_url, *args], input=input
        )
        return result.exit_code, result.output


def next_monday(now: datetime) -> datetime:
    local = now.astimezone(RIGA)
    return (local + timedelta(days=7 - local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def build_site(
    tmp_path: Path,
    *,
    approve_in: timedelta = timedelta(minutes=30),
    extra: str = "",
    db_url: str | None = None,
) -> Site:
    """The config, the database and the plan; users alice (admin), maria (approver), ed
    (editor) and vic (viewer), all with ``PASSWORD``."""
    now = utcnow()
    monday = next_monday(now)
    tuesday = (monday + timedelta(days=1, hours=10)).strftime("%Y-%m-%d %H:%M")
    wednesday = (monday + timedelta(days=2, hours=15)).strftime("%Y-%m-%d %H:%M")
    approve_due = (now + approve_in).astimezone(RIGA).replace(second=0, microsecond=0)
    if approve_due <= now:
        approve_due += timedelta(minutes=1)
    config_path = tmp_path / "config.toml"
    config_path.write_text(textwrap.dedent(CONFIG.format(extra=extra)))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(
            f"""
            - id: launch-001
              account: riga_masto
              type: instruction
              text: "{TEXT}"
              at: {tuesday}
            - id: tip-002
              account: ny_x
              type: laugh
              text: "A joke for the week"
              at: {wednesday}
            - id: sim-approve-001
              account: acme_sim
              type: medal
              text: "Needs a manager's eye"
              at: {approve_due.strftime("%Y-%m-%d %H:%M")}
            - id: sim-reject-002
              account: acme_sim
              type: provocation
              text: "A hot take"
              at: {(approve_due + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")}
            """
        )
    )
    db_url = db_url or f"sqlite:///{tmp_path / 'smm.db'}"
    site = Site(
        config_path,
        db_url,
        load_config(config_path),
        make_engine(db_url),
        monday,
        approve_due,
    )
    code, out = site.cli("plan", "import", str(plan))
    assert code == 0, out
    with immediate(site.engine) as conn:
        for name, role in (
            ("alice", "admin"),
            ("maria", "approver"),
            ("ed", "editor"),
            ("vic", "viewer"),
        ):
            auth.add_user(conn, name, role, PASSWORD, now)
    return site


class Server:
    """The app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = 100
        while not self.server.started and deadline:
            import time

            time.sleep(0.05)
            deadline -= 1
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def csrf_of(html: str) -> str:
    import re

    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: object, name: str, password: str = PASSWORD) -> object:
    """Sign ``client`` (an httpx.Client on the server) in; returns the final response."""
    page = client.get("/login")  # type: ignore[attr-defined]
    return client.post(  # type: ignore[attr-defined]
        "/login",
        data={"csrf": csrf_of(page.text), "name": name, "password": password, "next": "/calendar"},
    )
