"""The real-time path (`realtime_below`, `try`): a bad threshold is refused at plan, and
`try` refuses every job the other commands refuse, sending nothing (not to the trap, not to
the emulator's synchronous endpoints) and writing nothing."""
from __future__ import annotations

from . import BASE, Case

CASES = [
    Case("realtime-below-zero", BASE + ",\nrealtime_below=0",
         message=r"job\.sql:\d+:\d+: realtime_below must be at least 1"),
    Case("realtime-below-text", BASE + ",\nrealtime_below='10'",
         message=r"job\.sql:\d+:\d+: config key 'realtime_below' must be a positive whole "
                 r"number, got '10'"),
    Case("try-untrusted-base-url", BASE + ",\nrealtime_below=10, base_url='{trap}/v1'",
         commands=("plan", "run", "try"),
         message=r"base_url names the host 127\.0\.0\.2:\d+, which the operator has not "
                 r"allowed"),
    Case("try-write-in-select", BASE + ",\nrealtime_below=10",
         sql="WITH x AS (DELETE FROM reviews RETURNING *) SELECT id, text FROM x",
         commands=("try",), message=r"job\.sql:\d+:\d+:"),
]
