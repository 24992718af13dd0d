"""Scripted faults for provider calls (``POST /_emulator/faults``).

A fault matches on method (optional) and path (exact, or a ``fnmatch`` glob
such as ``/v1/batches/*``; the query string is ignored) and applies to the next
``count`` matching calls, after letting ``skip`` matching calls through
(so "fail the 3rd listing call" is ``{"skip": 2}``). It can answer with a status (provider-shaped error
body, or the raw ``body`` text for Cloudflare-style non-JSON errors), add
``retry-after``/``retry-after-ms`` and ``x-should-retry`` headers, and/or
``delay`` the answer (a delay without a status slows down a normal answer,
for client-timeout tests). Faults are in-memory only: a restart forgets them.
"""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Fault:
    """One scripted fault and how many more calls it applies to."""

    path: str
    method: str | None = None
    status: int | None = None
    count: int = 1
    retry_after: float | None = None
    x_should_retry: bool | None = None
    body: str | None = None
    delay: float | None = None
    skip: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Return whether this fault applies to a call."""
        if self.method and self.method.upper() != method.upper():
            return False
        return path == self.path or fnmatch.fnmatchcase(path, self.path)

    def headers(self) -> dict[str, str]:
        """Return the extra response headers this fault adds."""
        out = {}
        if self.retry_after is not None:
            out["retry-after"] = f"{self.retry_after:g}"
            out["retry-after-ms"] = f"{self.retry_after * 1000:g}"
        if self.x_should_retry is not None:
            out["x-should-retry"] = "true" if self.x_should_retry else "false"
        return out


def parse_fault(spec: Any) -> Fault:
    """Validate an admin fault spec and return a Fault; raise ValueError if bad."""
    if not isinstance(spec, dict):
        raise ValueError("fault must be a JSON object")
    allowed = {"method", "path", "status", "count", "retry_after", "x_should_retry", "body", "delay", "skip"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown fault keys: {sorted(unknown)}")
    if not isinstance(spec.get("path"), str) or not spec["path"].startswith("/"):
        raise ValueError("fault needs a 'path' starting with '/'")
    status = spec.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code or null")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive integer")
    skip = spec.get("skip", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError("skip must be a non-negative integer")
    for key in ("retry_after", "delay"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{key} must be a non-negative number or null")
    if spec.get("x_should_retry") not in (None, True, False):
        raise ValueError("x_should_retry must be true, false or null")
    if spec.get("body") is not None and not isinstance(spec["body"], str):
        raise ValueError("body must be a string or null")
    if status is None and spec.get("delay") is None:
        raise ValueError("a fault needs a status, a delay, or both")
    method = spec.get("method")
    if method is not None and not isinstance(method, str):
        raise ValueError("method must be a string or null")
    return Fault(path=spec["path"], method=method, status=status, count=count,
                 retry_after=spec.get("retry_after"), x_should_retry=spec.get("x_should_retry"),
                 body=spec.get("body"), delay=spec.get("delay"), skip=skip)


class FaultBook:
    """The queue of pending faults (callers hold the emulator lock)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue a fault after the existing ones."""
        self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """Return the first fault matching a call and use up one of its count."""
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        """Return the queued faults as dicts."""
        return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()
