"""Checkpoint notes kept in the daemon's database: any daemon, on any host, resumes a reply
chain or an upload where another one stopped, and a database outage never lets a request
leave without its note.

Two hosts are two ``Checkpoints`` with directories of their own on one database (SQLite and
PostgreSQL alike); an outage is every statement failing as a dropped connection fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from smm_x import XAdapter
from smm_youtube import YouTubeAdapter
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import OperationalError
from test_x_threads import WHOLE_CHAIN, FakeX, make_account, make_post
from test_youtube import make_post as make_video_post
from test_youtube import video_file
from youtube_fake import FakeYouTube

from scheduler import checkpoints
from scheduler.adapter import OutcomeUnknown, Transient
from scheduler.budgets import Ledger
from scheduler.checkpoints import Checkpoints, NotesUnavailable, keep_in
from scheduler.db.models import CheckpointNote
from scheduler.logging import register_secret
from scheduler.testing import mock_client, run_adapter

notes_t = CheckpointNote.__table__  # type: ignore[attr-defined]


@contextmanager
def outage(engine: Engine) -> Iterator[None]:
    """Every statement on ``engine`` fails as one on a connection the server dropped."""

    def refuse(*_args: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(notes_t))]


# --------------------------------------------------------------------------- the notes


def test_a_note_written_on_one_host_is_read_on_another(engine: Engine, tmp_path: Path) -> None:
    here = Checkpoints(tmp_path / "here", database=engine)
    there = Checkpoints(tmp_path / "there", database=engine)
    here.save("x", "k1", {"parts": ["1"], "sending": 2})
    assert there.load("x", "k1") == {"parts": ["1"], "sending": 2}
    assert there.load("threads", "k1") is None  # keyed by platform too
    there.save("x", "k1", {"parts": ["1", "2"], "sending": None})  # replaced, not added
    assert here.load("x", "k1") == {"parts": ["1", "2"], "sending": None}
    assert len(rows(engine)) == 1
    here.clear("x", "k1")
    assert there.load("x", "k1") is None
    assert not (tmp_path / "here").exists()
    assert not (tmp_path / "there").exists()


def test_the_daemons_database_is_where_default_notes_go(engine: Engine, tmp_path: Path) -> None:
    assert keep_in(engine) is None
    Checkpoints().save("youtube", "k1", {"size": 1})
    assert [r["platform"] for r in rows(engine)] == ["youtube"]
    assert Checkpoints(tmp_path).load("youtube", "k1") == {"size": 1}


def test_a_note_an_earlier_version_left_in_a_file_is_still_read(
    engine: Engine, tmp_path: Path
) -> None:
    files = Checkpoints(tmp_path / "cp")  # as an earlier version wrote them
    files.save("x", "k1", {"parts": ["1"], "sending": 2})
    notes = Checkpoints(tmp_path / "cp", database=engine)
    assert notes.load("x", "k1") == {"parts": ["1"], "sending": 2}
    notes.save("x", "k1", {"parts": ["1", "2"], "sending": None})
    assert notes.load("x", "k1") == {"parts": ["1", "2"], "sending": None}  # the table's
    notes.clear("x", "k1")
    assert notes.load("x", "k1") is None  # the file is gone too: it does not come back
    assert list((tmp_path / "cp").glob("*.json")) == []


def test_notes_not_written_for_max_age_are_removed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = Checkpoints(tmp_path / "cp", database=engine)
    notes.save("youtube", "old", {"a": 1})
    with engine.begin() as conn:
        conn.execute(text("UPDATE checkpoint_notes SET updated_at = '2020-01-01 00:00:00+00'"))
    legacy = Checkpoints(tmp_path / "cp")
    legacy.save("youtube", "file", {"b": 2})
    month_ago = time.time() - 30 * 86400
    for path in (tmp_path / "cp").glob("*.json"):
        os.utime(path, (month_ago, month_ago))
    later = time.monotonic() + checkpoints.PRUNE_EVERY_S + 1
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: later)
    notes.save("youtube", "new", {"c": 3})
    assert notes.load("youtube", "old") is None
    assert notes.load("youtube", "file") is None  # old files age out as well
    assert notes.load("youtube", "new") == {"c": 3}
    assert len(rows(engine)) == 1


def test_a_registered_secret_never_reaches_a_note(engine: Engine, tmp_path: Path) -> None:
    token = "ya29.a-token-that-must-not-be-stored"
    register_secret(token)
    notes = Checkpoints(tmp_path / "cp", database=engine)
    upload = "https://open-upload.tiktokapis.com/video/?upload_id=67890&upload_token=Xza123"
    notes.save("tiktok", "k1", {"upload_url": upload, "oops": f"Bearer {token}"})
    (row,) = rows(engine)
    assert token[:8] not in row["note"]
    assert token[-8:] not in row["note"]
    # What the network issued for the upload is kept as it is: a resume needs it.
    assert json.loads(row["note"])["upload_url"] == upload


def test_an_outage_raises_notes_unavailable_an_oserror(engine: Engine, tmp_path: Path) -> None:
    notes = Checkpoints(tmp_path / "cp", database=engine)
    notes.save("x", "k1", {"parts": ["1"]})
    with outage(engine):
        for call in (
            lambda: notes.save("x", "k1", {"parts": ["1", "2"]}),
            lambda: notes.load("x", "k1"),
            lambda: notes.clear("x", "k1"),
        ):
            with pytest.raises(NotesUnavailable, match="cannot be used") as raised:
                call()
            assert isinstance(raised.value, OSError)
    assert notes.load("x", "k1") == {"parts": ["1"]}  # nothing half-written


# --------------------------------------------------------------------------- reply chains


def attempt(fake: FakeX, notes: Checkpoints, call: str = "publish") -> Any:
    async def main() -> Any:
        async with mock_client(fake) as client:
            adapter = XAdapter(client, checkpoints=notes)
            post = make_post()
            if call == "lookup":
                return await adapter.lookup(post, make_account())
            return await adapter.publish(post, make_account(), post.idempotency_key)

    return asyncio.run(main())


def test_a_chain_is_resumed_on_another_host_from_the_parts_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    fake = FakeX(fail={2: "drop"})  # part 2 made, its answer lost
    with pytest.raises(OutcomeUnknown, match="thread part 2 of 3"):
        attempt(fake, Checkpoints(tmp_path / "host-a", database=engine))
    other = Checkpoints(tmp_path / "host-b", database=engine)
    # The other host's lookup reads the record (no "no record of its other parts"): part 2
    # is found, part 3 is not out, so the post goes out again ...
    assert attempt(fake, other, "lookup") is None
    published = attempt(fake, other)  # ... and resumes with part 3
    assert fake.chain() == WHOLE_CHAIN
    assert fake.creates == 3
    assert published.remote_id == fake.posts[0]["id"]


def test_an_outage_before_a_part_sends_nothing_and_the_chain_resumes_after_it(
    engine: Engine, tmp_path: Path
) -> None:
    notes = Checkpoints(tmp_path / "cp", database=engine)

    class Cut(FakeX):
        """The database goes away right after part 1 reached X."""

        def __call__(self, request: Any) -> Any:
            answer = super().__call__(request)
            if request.method == "POST" and self.creates == 1:
                event.listen(engine, "before_cursor_execute", refuse)
            return answer

    def refuse(*_args: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    fake = Cut()
    try:
        # Part 1's id cannot be recorded: it is out, so the outcome is unknown, and part 2
        # never leaves without its "sending" note.
        with pytest.raises(OutcomeUnknown, match="cannot record the thread's progress"):
            attempt(fake, notes)
        assert fake.creates == 1
        # Still down at the next attempt: its record cannot be read, so nothing is sent.
        with pytest.raises(Transient, match="cannot read the thread's progress"):
            attempt(fake, notes)
        assert fake.creates == 1
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    # Back: part 1 (noted as in flight) is found in the timeline; parts 2 and 3 go out once.
    published = attempt(fake, notes)
    assert fake.chain() == WHOLE_CHAIN
    assert fake.creates == 3
    assert published.remote_id == fake.posts[0]["id"]


def test_an_outage_when_noting_part_2_is_transient_and_part_2_does_not_leave(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = Checkpoints(tmp_path / "cp", database=engine)
    saves: list[dict[str, Any]] = []
    save = Checkpoints.save

    def counting(self: Checkpoints, platform: str, key: str, note: Any) -> None:
        saves.append(dict(note))
        if note.get("sending") != 2:
            save(self, platform, key, note)
            return
        with outage(engine):  # the note that must precede part 2's create
            save(self, platform, key, note)

    monkeypatch.setattr(Checkpoints, "save", counting)
    fake = FakeX()
    with pytest.raises(Transient, match="cannot record the thread's progress"):
        attempt(fake, notes)
    assert fake.chain() == WHOLE_CHAIN[:1]  # part 2 never left
    monkeypatch.setattr(Checkpoints, "save", save)
    attempt(fake, notes)
    assert fake.chain() == WHOLE_CHAIN


# --------------------------------------------------------------------------- uploads


def upload(handler: Any, notes: Checkpoints, post: Any, tmp_path: Path) -> Any:
    from test_youtube import make_account as youtube_account

    account = youtube_account()
    ledger = Ledger(tmp_path / "budgets")
    return run_adapter(
        lambda client: YouTubeAdapter(client, notes, ledger),
        handler,
        lambda a: a.publish(post, account, post.idempotency_key),
    )


@pytest.mark.usefixtures("media_roots")
def test_an_upload_cut_on_one_host_is_resumed_on_another(engine: Engine, tmp_path: Path) -> None:
    import httpx

    fake = FakeYouTube()
    post = make_video_post((video_file(tmp_path),))
    puts = {"left": 1}

    def cut(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            if not puts["left"]:
                raise httpx.ConnectError("connection refused", request=request)
            puts["left"] -= 1
        return fake.handler(request)

    with pytest.raises(Transient):
        upload(cut, Checkpoints(tmp_path / "host-a", database=engine), post, tmp_path)
    upload(fake.handler, Checkpoints(tmp_path / "host-b", database=engine), post, tmp_path)
    assert len(fake.inits) == 1, "the other host opened a second upload session"
    assert len(fake.videos) == 1
    assert fake.ranges[1].startswith("bytes */")  # it asked the session how far it got


@pytest.mark.usefixtures("media_roots")
def test_an_outage_when_noting_the_upload_session_sends_no_byte(
    engine: Engine, tmp_path: Path
) -> None:
    fake = FakeYouTube()
    post = make_video_post((video_file(tmp_path),))
    notes = Checkpoints(tmp_path / "cp", database=engine)

    def down_after_the_session(request: Any) -> Any:
        answer = fake.handler(request)
        if request.method == "POST" and fake.inits:
            event.listen(engine, "before_cursor_execute", refuse)
        return answer

    def refuse(*_args: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    try:
        with pytest.raises(Transient, match="cannot write the upload checkpoint"):
            upload(down_after_the_session, notes, post, tmp_path)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    assert fake.ranges == []
    assert fake.videos == {}


@pytest.mark.usefixtures("media_roots")
def test_a_note_that_cannot_be_read_before_the_first_request_sends_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    fake = FakeYouTube()
    post = make_video_post((video_file(tmp_path),))
    with outage(engine), pytest.raises(Transient, match="cannot read the checkpoint note"):
        upload(fake.handler, Checkpoints(tmp_path / "cp", database=engine), post, tmp_path)
    assert fake.inits == []
    assert fake.ranges == []


def test_a_daemon_keeps_the_notes_of_its_adapters_in_its_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    from daemon_support import config_at, write_config

    from scheduler.daemon.worker import Worker
    from scheduler.db.engine import make_engine

    config = config_at(write_config(tmp_path / "config.toml", {"x-main": {"platform": "x"}}))
    engine = make_engine(sqlite_url)

    async def start() -> Any:
        async with mock_client(FakeX()) as client:
            worker = Worker(engine, config, client=client)
            await worker.start()
            try:
                assert worker.adapters is not None
                adapter = worker.adapters["x"]
                await asyncio.to_thread(adapter.checkpoints.save, "x", "k1", {"parts": ["1"]})  # type: ignore[attr-defined]
            finally:
                await worker.close()

    try:
        asyncio.run(start())
        assert [r["platform"] for r in rows(engine)] == ["x"]
    finally:
        engine.dispose()


def test_the_notes_of_a_published_post_go_those_of_a_failed_one_stay(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_db import add_account, add_post

    account = add_account(engine)
    add_post(engine, account, "p1", "key-published")
    add_post(engine, account, "p2", "key-failed")
    with engine.begin() as conn:
        conn.execute(text("UPDATE posts SET state = 'published' WHERE key = 'p1'"))
        conn.execute(text("UPDATE posts SET state = 'failed' WHERE key = 'p2'"))
    notes = Checkpoints(tmp_path / "cp", database=engine)
    notes.save("x", "key-published", {"parts": ["1", "2", "3"]})
    notes.save("x", "key-failed", {"parts": ["1"], "sending": None})  # a person may retry it
    later = time.monotonic() + checkpoints.PRUNE_EVERY_S + 1
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: later)
    notes.save("x", "another", {"parts": []})
    assert notes.load("x", "key-published") is None
    assert notes.load("x", "key-failed") == {"parts": ["1"], "sending": None}
    assert sorted(r["note_key"] for r in rows(engine)) == ["another", "key-failed"]
