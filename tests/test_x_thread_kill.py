"""X threads and kill -9: the process publishing a chain is killed with SIGKILL after part 2
reached X but before X's answer did; a new process resumes from the durable record. Part 2
is found in the timeline, not posted again; part 3 goes out once; part 1 is not touched.
With PostgreSQL the record is in the database, and the process that resumes is on another
host (checkpoint directories of its own): it goes on from the parts the first one recorded.

X is a local HTTP server speaking the documented shapes (POST /2/tweets, GET /2/users/me,
GET /2/users/:id/tweets with referenced_tweets; docs.x.com), reached through the account's
``api_base`` option; the publishing process is a real child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from smm_x import XAdapter

from scheduler.adapter import OutgoingPost, PostOptions
from scheduler.checkpoints import Checkpoints
from scheduler.testing import account_with_secrets

TOKEN = "x-kill-test-token"
USER_ID = "2244994945"
TEXTS = ("Part one of the launch", "Part two of the launch", "Part three of the launch")


class FakeX:
    """The posts X holds, and the create that hangs (X took it; its answer never leaves)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.hang_on: str | None = None
        #: Whether the create that hangs made its post (False: it never got that far).
        self.hung_makes = True
        self.hanging = threading.Event()

    def create(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        if payload["text"] == self.hang_on and not self.hung_makes:
            self.hanging.set()
            return None
        with self.lock:
            post_id = str(1445880548472328192 + len(self.posts))
            reply = payload.get("reply", {}).get("in_reply_to_tweet_id")
            self.posts.append({"id": post_id, "text": payload["text"], "reply": reply})
        if payload["text"] == self.hang_on:
            self.hanging.set()
            return None
        return {
            "data": {"id": post_id, "text": payload["text"], "edit_history_tweet_ids": [post_id]}
        }

    def timeline(self) -> dict[str, Any]:
        with self.lock:
            items = [
                {
                    "id": p["id"],
                    "text": p["text"],
                    "created_at": "2026-01-07T09:00:02.000Z",
                    **(
                        {"referenced_tweets": [{"type": "replied_to", "id": p["reply"]}]}
                        if p["reply"]
                        else {}
                    ),
                }
                for p in reversed(self.posts)
            ]
        return {"data": items, "meta": {"result_count": len(items)}}


@pytest.fixture
def x_server() -> Iterator[tuple[FakeX, str]]:
    fake = FakeX()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = fake.create(payload)
            if answer is None:
                time.sleep(60)  # the publishing process is killed meanwhile
                return
            self._send(201, answer)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/2/users/me":
                self._send(200, {"data": {"id": USER_ID, "username": "smm"}})
            elif path == f"/2/users/{USER_ID}/tweets":
                assert "referenced_tweets" in parse_qs(urlparse(self.path).query)["tweet.fields"][0]
                self._send(200, fake.timeline())
            else:
                self._send(404, {"title": "Not Found", "status": 404})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_post() -> OutgoingPost:
    return OutgoingPost(
        key="k1",
        account="x-main",
        content_type="instruction",
        text=TEXTS[0],
        idempotency_key="k1-key",
        due_at=datetime(2026, 1, 7, 9, 0, tzinfo=UTC),
        options=PostOptions(thread=TEXTS[1:]),
    )


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import httpx
    from smm_x import XAdapter
    from scheduler import checkpoints
    from scheduler.checkpoints import Checkpoints
    from scheduler.db.engine import make_engine
    from scheduler.testing import account_with_secrets
    from test_x_thread_kill import TOKEN, make_post

    if len(sys.argv) > 3:  # the database the daemon keeps its notes in
        checkpoints.keep_in(make_engine(sys.argv[3]))

    async def main():
        account = account_with_secrets(
            "x-main", "x", {"api_base": sys.argv[1]}, secrets={"access_token": TOKEN}
        )
        async with httpx.AsyncClient(timeout=120) as client:
            adapter = XAdapter(client, checkpoints=Checkpoints(Path(sys.argv[2])))
            await adapter.publish(make_post(), account, "k1-key")

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_kill_9_after_part_2_left_resumes_without_posting_it_again(
    x_server: tuple[FakeX, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base = x_server
    notes = tmp_path / "notes"
    fake.hang_on = TEXTS[1]
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, base, str(notes)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            assert fake.hanging.wait(30), f"part 2 never reached X:\n{log.read_text()}"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert [p["text"] for p in fake.posts] == list(TEXTS[:2])

    # A new process, after X's timeline has had time to show what it has.
    fake.hang_on = None
    later = datetime.now(UTC) + timedelta(minutes=3)
    monkeypatch.setattr("smm_x.adapter.utcnow", lambda: later)

    async def resume() -> str:
        account = account_with_secrets(
            "x-main", "x", {"api_base": base}, secrets={"access_token": TOKEN}
        )
        async with httpx.AsyncClient(timeout=30) as client:
            adapter = XAdapter(client, checkpoints=Checkpoints(notes))
            return (await adapter.publish(make_post(), account, "k1-key")).remote_id

    first = asyncio.run(resume())
    texts = {p["id"]: p["text"] for p in fake.posts}
    chain = [(p["text"], texts.get(p["reply"])) for p in fake.posts]
    assert chain == [(TEXTS[0], None), (TEXTS[1], TEXTS[0]), (TEXTS[2], TEXTS[1])]
    assert first == fake.posts[0]["id"]


@pytest.mark.slow
@pytest.mark.parametrize("made", [True, False], ids=["part-3-made", "part-3-not-made"])
def test_kill_9_during_part_3_another_host_finishes_the_chain_from_the_database(
    x_server: tuple[FakeX, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    made: bool,
) -> None:
    from scheduler.checkpoints import keep_in
    from scheduler.db.engine import make_engine

    fake, base = x_server
    fake.hang_on, fake.hung_makes = TEXTS[2], made
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "host-a.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, base, str(tmp_path / "host-a"), postgres_url],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            assert fake.hanging.wait(30), f"part 3 never reached X:\n{log.read_text()}"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert [p["text"] for p in fake.posts] == list(TEXTS if made else TEXTS[:2])
    assert not (tmp_path / "host-a").exists(), "the notes went to files, not the database"

    # Host B: a daemon's notes in the same database, its own (empty) checkpoint directory,
    # after X's timeline has had time to show what it has.
    fake.hang_on = None
    later = datetime.now(UTC) + timedelta(minutes=3)
    monkeypatch.setattr("smm_x.adapter.utcnow", lambda: later)
    engine = make_engine(postgres_url)
    keep_in(engine)

    async def resume() -> str:
        account = account_with_secrets(
            "x-main", "x", {"api_base": base}, secrets={"access_token": TOKEN}
        )
        async with httpx.AsyncClient(timeout=30) as client:
            adapter = XAdapter(client)  # its default Checkpoints(), as the daemon builds it
            return (await adapter.publish(make_post(), account, "k1-key")).remote_id

    try:
        first = asyncio.run(resume())
    finally:
        engine.dispose()
    texts = {p["id"]: p["text"] for p in fake.posts}
    chain = [(p["text"], texts.get(p["reply"])) for p in fake.posts]
    # Every part once, each replying to the one before: none repeated, none skipped.
    assert chain == [(TEXTS[0], None), (TEXTS[1], TEXTS[0]), (TEXTS[2], TEXTS[1])]
    assert first == fake.posts[0]["id"]


@pytest.mark.slow
def test_two_daemons_on_postgres_the_second_finishes_a_chain_the_first_was_killed_in(
    x_server: tuple[FakeX, str], tmp_path: Path, postgres_url: str
) -> None:
    """``smm run`` on "host A" is killed with SIGKILL while part 3 of 3 is out but unanswered;
    ``smm run`` on "host B" (a state directory of its own, the same database) rescues the
    post: its lookup reads the chain's record from the database and finds part 3 in the
    timeline (the rescue leaves the post unconfirmed, the next reconcile settles it as
    published). No part is sent twice."""
    from daemon_support import Daemons, post_rows, wait_dispatching, wait_until

    from scheduler.adapter import PostOptions
    from scheduler.config import load_config
    from scheduler.db.engine import make_engine
    from scheduler.plan.importer import apply_plan
    from scheduler.plan.items import PlanItem

    fake, base = x_server
    fake.hang_on = TEXTS[2]
    token = tmp_path / "x-token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [logging]
            level = "info"
            [daemon]
            tick = "0.2s"
            lease = "1s"
            reconcile = "1s"
            shutdown_deadline = "3s"
            [policies]
            misfire_grace = "1h"
            [accounts.x-main]
            platform = "x"
            timezone = "UTC"
            options.api_base = "{base}"
            credentials.access_token = {{ file = "{token}" }}
            """
        )
    )
    engine = make_engine(postgres_url)
    now = datetime.now(UTC)
    item = PlanItem(
        "k1", "x-main", "instruction", TEXTS[0], (), None, (), False, now, "plan.yaml", 1,
        "line", 0, options=PostOptions(thread=TEXTS[1:]),
    )  # fmt: skip
    with engine.begin() as conn:
        apply_plan(conn, [item], load_config(config), now)

    def host(name: str) -> Daemons:
        state = tmp_path / name
        return Daemons(config, postgres_url, tmp_path, env={"STATE_DIRECTORY": str(state)})

    try:
        with host("host-a") as a, host("host-b") as b:
            first = a.start(log="host-a.log")
            wait_dispatching(first, engine)
            assert fake.hanging.wait(60), f"part 3 never reached X:\n{a.logs()}"
            first.kill()
            fake.hang_on = None
            second = b.start(log="host-b.log")
            try:
                wait_until(
                    lambda: post_rows(engine)["k1"].state == "published",
                    timeout=60,
                    what="host B to settle the chain",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{a.logs()}\n{b.logs()}") from None
            assert second.terminate() == 0, second.tail()
        row = post_rows(engine)["k1"]
    finally:
        engine.dispose()
    texts = {p["id"]: p["text"] for p in fake.posts}
    chain = [(p["text"], texts.get(p["reply"])) for p in fake.posts]
    assert chain == [(TEXTS[0], None), (TEXTS[1], TEXTS[0]), (TEXTS[2], TEXTS[1])]
    assert row.remote_id == fake.posts[0]["id"]
    assert not (tmp_path / "host-a" / "checkpoints").exists()  # the notes were in the database
