"""Scratch folders: a pass's folder is named for its process and removed afterwards; folders
left by killed processes are swept once they are an hour old, never a live process's."""
from __future__ import annotations

import os
import subprocess
import sys

from warehouse_batch import scratch


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _folder(root, pid: int, age: float, now: float):
    path = root / f"{scratch.PREFIX}{pid}-abc"
    path.mkdir()
    (path / "results.jsonl").write_text("{}\n")
    os.utime(path, (now - age, now - age))
    return path


def test_folders_of_killed_processes_are_swept_once_stale(tmp_path):
    now = 1_900_000_000.0
    dead = _dead_pid()
    old_dead = _folder(tmp_path, dead, 2 * 3600, now)
    fresh_dead = tmp_path / f"{scratch.PREFIX}{dead}-def"
    fresh_dead.mkdir()
    os.utime(fresh_dead, (now - 60, now - 60))
    live = _folder(tmp_path, os.getppid(), 5 * 3600, now)      # a running process
    mine = _folder(tmp_path, os.getpid(), 5 * 3600, now)
    other = tmp_path / "warehouse-batch-notapid"
    other.mkdir()
    os.utime(other, (now - 9 * 3600, now - 9 * 3600))
    assert scratch.sweep(tmp_path, now=now) == [old_dead]
    assert not old_dead.exists()
    assert fresh_dead.exists() and live.exists() and mine.exists() and other.exists()


def test_a_pass_folder_is_named_for_its_process_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch.tempfile, "tempdir", str(tmp_path))
    with scratch.scratch_dir() as path:
        assert path.parent == tmp_path
        assert path.name.startswith(f"{scratch.PREFIX}{os.getpid()}-")
        (path / "x").write_text("x")
    assert not path.exists()
