"""Checkpoints: the durable notes adapters keep between the attempts of one post."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from scheduler import checkpoints
from scheduler.checkpoints import Checkpoints, default_directory


def test_a_note_is_saved_loaded_and_cleared(tmp_path: Path) -> None:
    notes = Checkpoints(tmp_path / "cp")
    assert notes.load("youtube", "k1") is None
    notes.save("youtube", "k1", {"session": "https://upload.example/s/1", "size": 10})
    assert notes.load("youtube", "k1") == {"session": "https://upload.example/s/1", "size": 10}
    assert notes.load("youtube", "k2") is None
    assert notes.load("tiktok", "k1") is None  # keyed by platform too
    notes.clear("youtube", "k1")
    notes.clear("youtube", "k1")  # clearing twice is fine
    assert notes.load("youtube", "k1") is None


def test_notes_are_private_and_leave_no_temporary_files(tmp_path: Path) -> None:
    notes = Checkpoints(tmp_path / "cp")
    notes.save("youtube", "k1", {"session": "secret-ish"})
    notes.save("youtube", "k1", {"session": "replaced"})
    assert stat.S_IMODE((tmp_path / "cp").stat().st_mode) == 0o700
    (path,) = (tmp_path / "cp").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "k1" not in path.name  # the key is hashed into the name
    assert notes.load("youtube", "k1") == {"session": "replaced"}


def test_an_unreadable_note_reads_as_none(tmp_path: Path) -> None:
    notes = Checkpoints(tmp_path / "cp")
    notes.save("youtube", "k1", {"a": 1})
    (path,) = (tmp_path / "cp").iterdir()
    path.write_text("{not json")
    assert notes.load("youtube", "k1") is None


def test_old_notes_are_removed_when_a_new_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = Checkpoints(tmp_path / "cp")
    notes.save("youtube", "old", {"a": 1})
    (old,) = (tmp_path / "cp").iterdir()
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    notes.save("youtube", "new", {"b": 2})
    # Looked through at most every PRUNE_EVERY_S, not at every note written.
    assert notes.load("youtube", "old") == {"a": 1}
    later = time.monotonic() + checkpoints.PRUNE_EVERY_S + 1
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: later)
    notes.save("youtube", "newer", {"c": 3})
    assert notes.load("youtube", "old") is None
    assert notes.load("youtube", "new") == {"b": 2}


def test_a_note_that_cannot_be_written_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError):
        Checkpoints(blocker / "cp").save("youtube", "k", {})


def test_the_default_directory_follows_systemds_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}:/other")
    assert default_directory() == tmp_path / "checkpoints"
