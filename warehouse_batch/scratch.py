"""Scratch folders for one pass's files (request payloads, downloaded results), and the
sweep of folders left behind by processes that were killed.

A pass writes its uploads and downloads into a temporary folder that is removed when the pass
ends. A process killed in the middle (SIGKILL, OOM killer, a pod evicted) cannot remove it,
and on a machine that runs a job every few minutes such folders pile up. Every folder is
named for the process that made it (`warehouse-batch-<pid>-<random>`); before making a new
one, folders whose process is gone and which have not changed for an hour are removed.
The hour guards against another PID namespace sharing the temporary folder (a container
whose process IDs this one cannot see): such a process keeps its folder's mtime fresh
while it writes.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PREFIX = "warehouse-batch-"
STALE_SECONDS = 3600
_NAME = re.compile(rf"{re.escape(PREFIX)}(\d+)-[^/]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def sweep(folder: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the scratch folders in `folder` (default: the system's temporary folder) left
    by processes that no longer run and untouched for `STALE_SECONDS`; return them."""
    root = Path(folder or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(root.glob(PREFIX + "*"))
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            if now - entry.stat().st_mtime < STALE_SECONDS or not entry.is_dir():
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder for one pass, named for this process, removed afterwards (after
    sweeping what killed processes left)."""
    sweep()
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
