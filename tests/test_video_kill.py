"""A publisher killed with SIGKILL in the middle of a video upload: the next attempt, in a new
process, resumes the same upload from its checkpoint note and makes one video and one post.
With PostgreSQL the note is in the database and the next attempt runs on another host
(checkpoint directories of its own): it resumes all the same.

LinkedIn: killed after the second of three parts reached LinkedIn but before its answer (the
ETag) came back; Facebook: killed after the second of three chunks was taken, its answer
lost. The network's side is kept as the killed publisher left it (files the fake server
writes after each request) and the next attempt talks to a fake holding that state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_support import REPO, mp4

# The second attempt reads the video from tmp_path, as the daemon would under its media root.
pytestmark = pytest.mark.usefixtures("media_roots")

_LINKEDIN_CHILD = textwrap.dedent(
    """
    import asyncio, base64, json, sys, time
    from pathlib import Path
    import httpx
    from smm_linkedin import LinkedInAdapter
    from test_linkedin_video import FakeLinkedIn, make_account, make_post
    from scheduler import checkpoints, media
    from scheduler.checkpoints import Checkpoints
    from scheduler.db.engine import make_engine

    notes, video, state = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    if len(sys.argv) > 4:  # the database the daemon keeps its notes in
        checkpoints.keep_in(make_engine(sys.argv[4]))
    fake = FakeLinkedIn()

    def server(request):
        answer = fake(request)
        kept = {
            "initialized": fake.initialized,
            "puts": fake.puts,
            "posts": fake.posts,
            "parts": {n: base64.b64encode(b).decode() for n, b in fake.parts.items()},
        }
        (state / "state.json").write_text(json.dumps(kept))
        if request.url.params.get("part") == "1":
            (state / "second-part").touch()
            time.sleep(60)  # the part is in; the publisher dies before it hears back
        return answer

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            adapter = LinkedInAdapter(client, checkpoints=Checkpoints(notes))
            post = make_post(video)
            await adapter.publish(post, make_account(), post.idempotency_key)

    with media.using(media.MediaPolicy((Path(video).resolve().parent,))):
        asyncio.run(main())
    """
)

_FACEBOOK_CHILD = textwrap.dedent(
    """
    import asyncio, base64, json, sys, time
    from pathlib import Path
    import httpx
    from smm_meta import FacebookAdapter
    from test_facebook_video import FakeVideos, make_account, make_post, multipart_field
    from scheduler import checkpoints, media
    from scheduler.checkpoints import Checkpoints
    from scheduler.db.engine import make_engine

    notes, video, state, size = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:  # the database the daemon keeps its notes in
        checkpoints.keep_in(make_engine(sys.argv[5]))
    fake = FakeVideos(size)

    def server(request):
        answer = fake(request)
        kept = {
            "transfers": fake.transfers,
            "finished": fake.finished,
            "received": base64.b64encode(fake.received).decode(),
        }
        (state / "state.json").write_text(json.dumps(kept))
        if fake.transfers == 2:
            (state / "second-chunk").touch()
            time.sleep(60)  # the chunk is in; the publisher dies before it hears back
        return answer

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            adapter = FacebookAdapter(client, checkpoints=Checkpoints(notes))
            post = make_post(video)
            await adapter.publish(post, make_account(), post.idempotency_key)

    with media.using(media.MediaPolicy((Path(video).resolve().parent,))):
        asyncio.run(main())
    """
)


def _kill_when(child: subprocess.Popen[bytes], flag: Path) -> None:
    try:
        deadline = time.monotonic() + 30
        while not flag.exists():
            assert time.monotonic() < deadline, f"the child never reached {flag.name}"
            assert child.poll() is None, f"the child ended ({child.returncode})"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def _spawn(tmp_path: Path, code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests"), str(REPO)]),
        "STATE_DIRECTORY": str(tmp_path / "state"),
    }
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env)


@pytest.fixture(params=["one-host", "two-hosts-on-postgres"])
def hosts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Path, list[str]]]:
    """(the killed publisher's notes, the next attempt's, the publisher's extra arguments):
    one directory on one host, or one PostgreSQL database and a directory per host."""
    if request.param == "one-host":
        yield tmp_path / "notes", tmp_path / "notes", []
        return
    from scheduler.checkpoints import keep_in
    from scheduler.db.engine import make_engine

    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    keep_in(engine)  # the next attempt's daemon
    try:
        yield tmp_path / "host-a", tmp_path / "host-b", [url]
    finally:
        keep_in(None)
        engine.dispose()


def test_linkedin_a_sigkill_between_parts_leaves_one_video_and_one_post(
    tmp_path: Path, hosts: tuple[Path, Path, list[str]]
) -> None:
    import base64

    from test_linkedin_video import SIZE, FakeLinkedIn, attempt, make_post

    video = mp4(tmp_path, size=SIZE)  # three parts of 40 KB, 40 KB and 20 KB
    state = tmp_path / "server"
    state.mkdir()
    notes, resumed_with, database = hosts
    child = _spawn(tmp_path, _LINKEDIN_CHILD, str(notes), video, str(state), *database)
    _kill_when(child, state / "second-part")
    assert not database or not notes.exists(), "the notes went to files, not the database"
    kept = json.loads((state / "state.json").read_text())
    fake = FakeLinkedIn()
    fake.initialized, fake.puts, fake.posts = kept["initialized"], kept["puts"], kept["posts"]
    fake.parts = {int(n): base64.b64decode(b) for n, b in kept["parts"].items()}
    assert (fake.initialized, sorted(fake.parts), fake.posts) == (1, [0, 1], [])
    published = attempt(fake, resumed_with, make_post(video))
    assert fake.initialized == 1, "a second video was started"
    # Part 1 (its answer never heard) goes again; part 0, acknowledged, does not.
    assert fake.puts == 2 + 2
    assert b"".join(fake.parts[n] for n in range(3)) == Path(video).read_bytes()
    assert len(fake.posts) == 1
    assert published.remote_id == "urn:li:share:7199"


def test_facebook_a_sigkill_between_chunks_leaves_one_video(
    tmp_path: Path, hosts: tuple[Path, Path, list[str]]
) -> None:
    import base64

    from test_facebook_video import FakeVideos, attempt, make_post

    size = 2500  # three chunks of 1000, 1000 and 500 bytes
    video = mp4(tmp_path, size=size)
    state = tmp_path / "server"
    state.mkdir()
    notes, resumed_with, database = hosts
    child = _spawn(tmp_path, _FACEBOOK_CHILD, str(notes), video, str(state), str(size), *database)
    _kill_when(child, state / "second-chunk")
    assert not database or not notes.exists(), "the notes went to files, not the database"
    kept = json.loads((state / "state.json").read_text())
    fake = FakeVideos(size)
    fake.transfers, fake.finished = kept["transfers"], kept["finished"]
    fake.received = base64.b64decode(kept["received"])
    assert (len(fake.received), fake.finished) == (2000, 0)
    published = attempt(fake, resumed_with, make_post(video))
    # The note said chunk 2; Facebook had it and asked for chunk 3 (subcode 1363037).
    assert fake.received == Path(video).read_bytes()
    assert fake.finished == 1, "finished (published) more than once"
    assert published.remote_id == "1234567890123456"
