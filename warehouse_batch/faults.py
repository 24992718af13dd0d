"""Named crash points, for the kill-and-resume tests and for anyone auditing crash safety.

Set `WAREHOUSE_BATCH_CRASH_AT` to a point's name and the process kills itself with SIGKILL
when it gets there (no cleanup, no flushing: exactly what a power cut or OOM-kill does).
Points: after_intent, after_upload_unrecorded, after_upload, after_create, during_collect,
after_collect_commit.
"""
from __future__ import annotations

import os
import signal

ENV = "WAREHOUSE_BATCH_CRASH_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
