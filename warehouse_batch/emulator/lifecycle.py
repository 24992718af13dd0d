"""Batch lifecycle as a pure function of the batch record and the clock.

Nothing runs in the background: every access calls :func:`derive`, which works
out from the record's schedule where the batch is *now*. The schedule of a
batch is fixed when it is created (timing knobs are copied into the record):

* ``validating`` for ``validate`` seconds (0 for Anthropic), then either
  ``failed`` (validation errors) or ``in_progress``;
* the M runnable requests (those without the ``never`` marker) finish one by
  one, evenly over ``process`` seconds, in a seeded shuffled order: the k-th
  finishes at ``in_progress_at + process * k / M``;
* when all N requests are runnable and done: ``finalizing`` for ``finalize``
  seconds, then ``completed``. Requests marked ``never`` keep the batch
  ``in_progress`` until it expires (or forever, for Azure without a knob);
* ``expired`` at ``expires_at`` (24 h; none for Azure) or as soon as
  ``ceil(expire_fraction * N)`` requests are done, if that comes first and
  before finalizing starts; the requests done by then keep their results;
* ``cancelling`` from a user cancel (recorded time) or from ``cancel_fraction``
  (provider-side), then ``cancelled`` ``cancel`` seconds later; the requests done
  when cancelling began keep their results.

The earliest of those terminal paths wins (ties: cancel, failed, expired,
completed). Once a batch is terminal the engine freezes the outcome into
``record["final"]`` and :func:`derive` returns that from then on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

TIME_KEYS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})


@dataclass
class View:
    """Where a batch stands at one moment.

    ``processed`` counts requests (in processing order) that have finished;
    ``everything`` is set by a forced completion, where even ``never``
    requests are processed.
    """

    status: str
    processed: int
    times: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(TIME_KEYS))
    terminal: bool = False
    everything: bool = False

    def end_time(self) -> float | None:
        """Return when the batch reached its terminal state (None while running)."""
        key = {"failed": "failed_at", "completed": "completed_at", "expired": "expired_at",
               "cancelled": "cancelled_at"}.get(self.status)
        return None if key is None else self.times.get(key)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form, used to freeze a terminal view into a record."""
        return {"status": self.status, "processed": self.processed, "times": dict(self.times),
                "everything": self.everything}


def threshold(fraction: float | None, total: int) -> int | None:
    """Return how many requests must be done for a fraction knob to fire (None = knob off)."""
    if fraction is None:
        return None
    if fraction <= 0:
        return 0
    return max(1, math.ceil(fraction * total - 1e-9))


class Schedule:
    """The fixed timetable of one batch, computed from its record."""

    def __init__(self, rec: dict[str, Any]) -> None:
        timing = rec["timing"]
        self.created = float(rec["created_at"])
        self.start = self.created + float(timing["validate"])
        self.process = float(timing["process"])
        self.finalize = float(timing["finalize"])
        self.cancel = float(timing["cancel"])
        self.total = int(rec["total"])
        self.runnable = int(rec["runnable"])
        self.invalid = bool(rec.get("errors"))
        all_runnable = self.runnable == self.total and self.total > 0
        self.finalize_at = self.start + self.process if all_runnable and not self.invalid else None

    def finish_time(self, k: int) -> float:
        """Return when the k-th runnable request (1-based) finishes."""
        if self.runnable == 0 or k <= 0:
            return self.start
        return self.start + self.process * k / self.runnable

    def done_by(self, moment: float) -> int:
        """Return how many runnable requests have finished at ``moment``."""
        if self.invalid or moment < self.start:
            return 0
        if self.process <= 0 or self.runnable == 0:
            return self.runnable
        return max(0, min(self.runnable, math.floor((moment - self.start) * self.runnable / self.process + 1e-9)))

    def phase(self, moment: float) -> str:
        """Return the non-terminal status at ``moment`` ignoring cancel/expiry."""
        if moment < self.start:
            return "validating"
        if self.finalize_at is not None and moment >= self.finalize_at:
            return "finalizing"
        return "in_progress"

    def running_times(self, moment: float) -> dict[str, float | None]:
        """Return the timestamps already set at ``moment`` on the normal path."""
        times: dict[str, float | None] = dict.fromkeys(TIME_KEYS)
        if moment >= self.start and not self.invalid:
            times["in_progress_at"] = self.start
        if self.finalize_at is not None and moment >= self.finalize_at:
            times["finalizing_at"] = self.finalize_at
        return times


def _events(rec: dict[str, Any], sch: Schedule) -> list[tuple[float, int, str, int]]:
    """Return candidate terminal paths as (time, tie-priority, kind, processed)."""
    timing = rec["timing"]
    events: list[tuple[float, int, str, int]] = []
    if sch.invalid:
        events.append((sch.start, 2, "failed", 0))
    else:
        expiries: list[tuple[float, int]] = []
        if rec.get("expires_at") is not None:
            at = float(rec["expires_at"])
            expiries.append((at, sch.done_by(at)))
        k = threshold(timing.get("expire_fraction"), sch.total)
        if k is not None and k <= sch.runnable:
            expiries.append((sch.finish_time(k), k))
        for at, done in expiries:
            if sch.finalize_at is None or at <= sch.finalize_at:
                events.append((at, 3, "expired", done))
        k = threshold(timing.get("cancel_fraction"), sch.total)
        if k is not None and k <= sch.runnable:
            events.append((sch.finish_time(k), 1, "cancel", k))
        if sch.finalize_at is not None:
            events.append((sch.finalize_at + sch.finalize, 4, "completed", sch.runnable))
    if rec.get("cancel_at") is not None:
        at = float(rec["cancel_at"])
        events.append((at, 1, "cancel", sch.done_by(at)))
    return events


def derive(rec: dict[str, Any], now: float) -> View:
    """Return the state of a batch at ``now`` (see the module docstring for the rules)."""
    final = rec.get("final")
    if final:
        return View(final["status"], int(final["processed"]), dict(final["times"]), True,
                    bool(final.get("everything")))
    sch = Schedule(rec)
    events = _events(rec, sch)
    event = min(events) if events else None
    if event is None or now < event[0]:
        return View(sch.phase(now), sch.done_by(now), sch.running_times(now))
    at, _prio, kind, done = event
    times = sch.running_times(at)
    if kind == "failed":
        times["failed_at"] = at
        return View("failed", 0, times, True)
    if kind == "expired":
        times["expired_at"] = at
        return View("expired", done, times, True)
    if kind == "completed":
        times["completed_at"] = at
        return View("completed", done, times, True)
    times["cancelling_at"] = at
    if now < at + sch.cancel:
        return View("cancelling", done, times)
    times["cancelled_at"] = at + sch.cancel
    return View("cancelled", done, times, True)


def forced(rec: dict[str, Any], now: float, status: str) -> View:
    """Return the terminal view for an admin 'force' to ``status`` at ``now``.

    ``completed`` processes every request, including ``never`` ones; the other
    end states keep what was processed so far (the usual partial-result rules).
    """
    current = derive(rec, now)
    times = dict(current.times)
    if status == "failed":
        times["failed_at"] = now
        return View("failed", 0, times, True)
    if status == "expired":
        times["expired_at"] = now
        return View("expired", current.processed, times, True)
    if status == "cancelled":
        times["cancelling_at"] = times.get("cancelling_at") or now
        times["cancelled_at"] = now
        return View("cancelled", current.processed, times, True)
    if status == "completed":
        times["in_progress_at"] = times.get("in_progress_at") or now
        times["finalizing_at"] = times.get("finalizing_at") or now
        times["completed_at"] = now
        return View("completed", int(rec["total"]), times, True, everything=True)
    raise ValueError(f"cannot force status {status!r}")
