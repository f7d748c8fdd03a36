"""The Bluesky adapter against the reference PDS (``@atproto/dev-env``, run by tests/pds).

A real server, not recorded answers: posts with facets and an image published through
``smm`` and read back with ``com.atproto.repo.getRecord``, an expired access token renewed
with ``refreshSession``, a wrong password pausing the account, the same post sent twice
making one record, and the PDS's own 429 when its rate limits are on. Metrics come from the
AppView (``@atproto/bsky``, started by dev-env's ``TestNetwork`` on a database of the local
PostgreSQL server): another account follows, likes, reposts and replies, and ``smm er collect``
reads the counts back through the PDS, which answers ``app.bsky.*`` reads from that AppView.

The PDS needs Node 22 and its packages, installed by ``.ci/run`` from tests/pds (a pinned
``package-lock.json``) into a cache outside the repository, named by ``SMM_PDS_DIR``. Without
it the suite is skipped, except in CI, where that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from smm_bluesky import BlueskyAdapter
from sqlalchemy import text

from scheduler.adapter import Account, AuthExpired, OutgoingPost, RateLimited
from scheduler.config import CredentialRef
from scheduler.db.engine import make_engine

HERE = Path(__file__).resolve().parent
PDS_DIR = os.environ.get("SMM_PDS_DIR", "")
PG_SOCKET_DIR = "/var/run/postgresql"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

# The PDS takes up to a minute to start, and a test as long again, on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _installed() -> Path | None:
    root = Path(PDS_DIR) if PDS_DIR else None
    if root is None or not (root / "node_modules" / "@atproto" / "dev-env").is_dir():
        return None
    return root


class PDS:
    """A running reference PDS with two accounts (alice, bob), and the AppView behind it
    when ``appview`` gives its environment (DB_POSTGRES_URL, REDIS_HOST)."""

    def __init__(self, rate_limits: bool = False, appview: dict[str, str] | None = None) -> None:
        root = _installed()
        if root is None:
            if os.environ.get("CI"):
                pytest.fail("SMM_PDS_DIR names no installed PDS (bash .ci/run installs it)")
            pytest.skip("the reference PDS is not installed (SMM_PDS_DIR; see tests/pds)")
        shutil.copy(HERE / "pds" / "start.mjs", root / "start.mjs")
        env = {
            **os.environ,
            "PATH": f"{root / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
            "PDS_RATE_LIMITS": "1" if rate_limits else "0",
            "PDS_APPVIEW": "1" if appview else "0",
            **(appview or {}),
        }
        self.process = subprocess.Popen(
            ["node", "start.mjs"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            pytest.fail(f"the PDS did not start (exit code {self.process.returncode})")
        info = json.loads(line)
        self.url: str = info["pds"]
        self.appview: str | None = info["appview"]
        self.accounts: dict[str, dict[str, str]] = info["accounts"]

    def process_all(self) -> None:
        """Wait until the AppView has indexed everything written to the PDS so far."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("process\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the PDS ended before it had processed everything"
        assert json.loads(answer) == {"processed": True}, answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # start.mjs closes the network when stdin ends
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        finally:
            assert self.process.stdout is not None
            self.process.stdout.close()

    def get_record(self, uri: str) -> dict[str, Any]:
        did, collection, rkey = uri.removeprefix("at://").split("/")
        response = httpx.get(
            f"{self.url}/xrpc/com.atproto.repo.getRecord",
            params={"repo": did, "collection": collection, "rkey": rkey},
        )
        response.raise_for_status()
        record: dict[str, Any] = response.json()
        return record

    def records(self, did: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/xrpc/com.atproto.repo.listRecords",
            params={"repo": did, "collection": "app.bsky.feed.post", "limit": "100"},
        )
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["records"]
        return found


@pytest.fixture(scope="module")
def pds() -> Iterator[PDS]:
    server = PDS()
    try:
        yield server
    finally:
        server.close()


def _account(pds: PDS, name: str = "alice", password: str | None = None) -> Account:
    os.environ[f"SMM_TEST_BSKY_{name.upper()}"] = password or pds.accounts[name]["password"]
    return Account(
        name=f"sky-{name}",
        platform="bluesky",
        timezone="UTC",
        options={"handle": pds.accounts[name]["handle"], "pds": pds.url},
        credentials={"app_password": CredentialRef("env", f"SMM_TEST_BSKY_{name.upper()}")},
    )


def _smm(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("smm")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "scheduler.cli"]
    return subprocess.run(
        [
            *command,
            "--config",
            str(tmp_path / "config.toml"),
            "--db",
            f"sqlite:///{tmp_path / 'smm.db'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _config(tmp_path: Path, pds: PDS, password: str) -> dict[str, str]:
    (tmp_path / "config.toml").write_text(
        f"""
[accounts.sky]
platform = "bluesky"
timezone = "UTC"
options = {{ handle = "{pds.accounts["alice"]["handle"]}", pds = "{pds.url}" }}
credentials = {{ app_password = {{ env = "SMM_TEST_BSKY_PASSWORD" }} }}
""",
        encoding="utf-8",
    )
    return {"SMM_TEST_BSKY_PASSWORD": password}


def _plan(tmp_path: Path, key: str, text: str, image: bool) -> tuple[Path, datetime]:
    plans = tmp_path / "plans"
    plans.mkdir(exist_ok=True)
    (plans / "cat.png").write_bytes(PNG)
    due = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    at = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    media = ", media: [cat.png]" if image else ""
    plan = plans / f"{key}.yaml"
    item = f"id: {key}, account: sky, type: launch, text: {json.dumps(text)}, at: '{at}'"
    plan.write_text(f"- {{{item}{media}}}\n", encoding="utf-8")
    return plan, due


def _import_and_run(
    tmp_path: Path, planned: tuple[Path, datetime], env: dict[str, str]
) -> dict[str, Any]:
    plan, due = planned
    imported = _smm(tmp_path, "plan", "import", str(plan), env=env)
    if imported.returncode != 0 and "is in the past" in imported.stderr:
        # A loaded machine took longer than the margin to start smm: plan it again, later.
        later = (datetime.now(UTC) + timedelta(seconds=30)).replace(microsecond=0)
        text = plan.read_text(encoding="utf-8")
        plan.write_text(
            text.replace(due.strftime("%Y-%m-%dT%H:%M:%SZ"), later.strftime("%Y-%m-%dT%H:%M:%SZ")),
            encoding="utf-8",
        )
        due = later
        imported = _smm(tmp_path, "plan", "import", str(plan), env=env)
    assert imported.returncode == 0, imported.stderr
    wait = (due - datetime.now(UTC)).total_seconds() + 0.5
    asyncio.run(asyncio.sleep(max(0.0, wait)))  # until the post is due
    ran = _smm(tmp_path, "run", "--once", env=env)
    assert ran.returncode == 0, ran.stderr
    listed = _smm(tmp_path, "queue", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (post,) = json.loads(listed.stdout)
    return dict(post)


def test_a_post_with_facets_and_an_image_is_published_through_smm(pds: PDS, tmp_path: Path) -> None:
    env = _config(tmp_path, pds, pds.accounts["alice"]["password"])
    text = "Launch day! https://example.com/launch with @bob.test #launch"
    post = _import_and_run(tmp_path, _plan(tmp_path, "launch-1", text, image=True), env)
    assert post["state"] == "published", post
    record = pds.get_record(post["remote_id"])["value"]
    assert record["text"] == text
    raw = text.encode()
    facets = {
        f["features"][0]["$type"]: (
            raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(),
            f["features"][0],
        )
        for f in record["facets"]
    }
    link_text, link = facets["app.bsky.richtext.facet#link"]
    assert (link_text, link["uri"]) == ("https://example.com/launch", "https://example.com/launch")
    mention_text, mention = facets["app.bsky.richtext.facet#mention"]
    assert (mention_text, mention["did"]) == ("@bob.test", pds.accounts["bob"]["did"])
    tag_text, tag = facets["app.bsky.richtext.facet#tag"]
    assert (tag_text, tag["tag"]) == ("#launch", "launch")
    (image,) = record["embed"]["images"]
    assert record["embed"]["$type"] == "app.bsky.embed.images"
    assert image["image"]["mimeType"] == "image/png"
    assert image["image"]["size"] == len(PNG)


def test_a_wrong_password_pauses_the_account(pds: PDS, tmp_path: Path) -> None:
    env = _config(tmp_path, pds, "not-the-password")
    post = _import_and_run(tmp_path, _plan(tmp_path, "launch-2", "Hello", image=False), env)
    assert post["state"] != "published"
    status = _smm(tmp_path, "status", "--json", env=env)
    report = json.loads(status.stdout)
    (paused,) = report["paused_accounts"]
    assert paused["account"] == "sky"
    assert paused["auth_expired"] is True
    assert "not-the-password" not in status.stdout


def _publish(account: Account, post: OutgoingPost, adapter: BlueskyAdapter | None = None) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(timeout=30) as client:
            return await (adapter or BlueskyAdapter(client)).publish(
                post, account, post.idempotency_key
            )

    return asyncio.run(go())


def _post(key: str, text: str) -> OutgoingPost:
    return OutgoingPost(
        key=key,
        account="sky-alice",
        content_type="launch",
        text=text,
        idempotency_key=f"{key}-key",
        due_at=datetime.now(UTC),
    )


def test_the_same_post_sent_twice_makes_one_record(pds: PDS) -> None:
    account = _account(pds)
    post = _post("again-1", "Sent twice, stored once")
    first = _publish(account, post)
    second = _publish(account, post)  # a resend after a lost answer: same record key
    assert first.remote_id == second.remote_id
    texts = [r["value"]["text"] for r in pds.records(pds.accounts["alice"]["did"])]
    assert texts.count("Sent twice, stored once") == 1


def test_an_expired_access_token_is_renewed_with_refresh_session(pds: PDS) -> None:
    account = _account(pds)
    calls: list[str] = []

    async def seen(request: httpx.Request) -> None:
        calls.append(request.url.path.rsplit("/", 1)[-1])

    async def go() -> Any:
        async with httpx.AsyncClient(timeout=30, event_hooks={"request": [seen]}) as client:
            adapter = BlueskyAdapter(client)
            await adapter.publish(_post("renew-1", "Before"), account, "renew-1-key")
            live = adapter.sessions.cached(account)
            assert live is not None
            # The PDS refuses this access token as it refuses an expired one.
            adapter.sessions._sessions[account.name] = replace(live, access_jwt="expired")
            return await adapter.publish(_post("renew-2", "After"), account, "renew-2-key")

    second = asyncio.run(go())
    assert pds.get_record(second.remote_id)["value"]["text"] == "After"
    assert calls.count("com.atproto.server.createSession") == 1
    assert calls.count("com.atproto.server.refreshSession") == 1


def test_the_pds_rate_limit_on_logins_is_rate_limited() -> None:
    server = PDS(rate_limits=True)
    try:
        account = _account(server)
        outcomes: list[str] = []
        # Each fresh adapter logs in again; the PDS allows 30 logins per 5 minutes.
        for i in range(35):
            try:
                _publish(account, _post(f"flood-{i}", f"post {i}"))
                outcomes.append("published")
            except RateLimited:
                outcomes.append("rate_limited")
                break
            except AuthExpired:
                outcomes.append("auth_expired")
                break
    finally:
        server.close()
    assert outcomes[-1] == "rate_limited", outcomes
    assert outcomes.count("published") >= 10


# -- metrics through the AppView ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_host() -> Iterator[str]:
    """A private Redis server on a free loopback port, stopped afterwards.

    dev-env's ``TestNetwork`` refuses to start without one (``REDIS_HOST``); the pinned AppView
    does not connect to it, but a later one may.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (bash .ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"redis-server did not answer on port {port}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def appview(postgres_server: Any, redis_host: str) -> Iterator[PDS]:
    """The PDS with the AppView behind it, on a database of its own, dropped afterwards."""
    # Named as the suite's test databases are, so that a killed run's is dropped by the next.
    name = postgres_server.create_database(
        template="template0", name=f"smm_test_{os.getpid()}_appview"
    )
    url = f"postgresql://{getpass.getuser()}@/{name}?host={PG_SOCKET_DIR}"
    try:
        server = PDS(appview={"DB_POSTGRES_URL": url, "REDIS_HOST": redis_host})
        try:
            yield server
        finally:
            server.close()
    finally:
        postgres_server.drop_database(name)


def _as(pds: PDS, name: str) -> tuple[httpx.Client, str]:
    """A client logged in as ``name`` on the PDS, and that account's DID."""
    client = httpx.Client(base_url=f"{pds.url}/xrpc/", timeout=30)
    login = client.post(
        "com.atproto.server.createSession",
        json={
            "identifier": pds.accounts[name]["handle"],
            "password": pds.accounts[name]["password"],
        },
    )
    login.raise_for_status()
    client.headers["Authorization"] = f"Bearer {login.json()['accessJwt']}"
    return client, str(login.json()["did"])


def _write(client: httpx.Client, did: str, collection: str, record: dict[str, Any]) -> None:
    record = {"$type": collection, "createdAt": datetime.now(UTC).isoformat(), **record}
    made = client.post(
        "com.atproto.repo.createRecord",
        json={"repo": did, "collection": collection, "record": record},
    )
    made.raise_for_status()


def test_metrics_after_another_account_likes_reposts_and_replies(
    appview: PDS, tmp_path: Path
) -> None:
    env = _config(tmp_path, appview, appview.accounts["alice"]["password"])
    post = _import_and_run(tmp_path, _plan(tmp_path, "er-1", "Read me back", image=False), env)
    assert post["state"] == "published", post
    found = appview.get_record(post["remote_id"])
    subject = {"uri": found["uri"], "cid": found["cid"]}

    bob, bob_did = _as(appview, "bob")
    try:
        _write(bob, bob_did, "app.bsky.graph.follow", {"subject": appview.accounts["alice"]["did"]})
        _write(bob, bob_did, "app.bsky.feed.like", {"subject": subject})
        _write(bob, bob_did, "app.bsky.feed.repost", {"subject": subject})
        _write(
            bob,
            bob_did,
            "app.bsky.feed.post",
            {"text": "Read it!", "reply": {"root": subject, "parent": subject}},
        )
    finally:
        bob.close()
    appview.process_all()

    collected = _smm(tmp_path, "er", "collect", "--now", "--json", env=env)
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout) == {"snapshots": 1}
    engine = make_engine(f"sqlite:///{tmp_path / 'smm.db'}")
    try:
        with engine.connect() as conn:
            snapshot = conn.execute(
                text("SELECT likes, comments, shares, followers FROM metric_snapshots")
            ).one()
    finally:
        engine.dispose()
    assert tuple(snapshot) == (1, 1, 1, 1)
