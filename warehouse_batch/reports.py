"""What the library's commands report: plain dataclasses, shared by the pipeline (`api`,
`submit`, `collect`, `output`) and the cheap poll path (`pollpath`), which must not import
the pipeline; `--json` prints their `to_dict()`."""
from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from .errors import EXIT_FAILED_ROWS, EXIT_OK, EXIT_PENDING
from .sqlutil import load_sql
from .state import SCHEMA, now_utc


def new_run_id() -> str:
    """A command's run id: its start time and 24 random bits (`runs.run_id`)."""
    return now_utc().strftime("r%Y%m%dT%H%M%S") + "_" + secrets.token_hex(3)


def iso_now() -> str:
    """The time now as a timezone-aware ISO 8601 string (UTC), as JSON reports carry it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def job_cost(con: duckdb.DuckDBPyConnection, job_name: str) -> float | None:
    """What the job's answers have cost so far at batch prices: 0.0 before anything is
    billed, None when a billed model has no price.

    Read from the ledger: each collected batch is settled to what its attempts were billed
    (the costs view's pricing, at the prices of the day it was collected, as budgets count
    it). A batch collected but not settled, or settled without a price, is judged by the
    costs view (`warehouse_batch.costs`), which reads every attempt of the job."""
    billed, unpriced, unsettled = con.execute(load_sql("job_cost.sql"),
                                              {"job": job_name}).fetchone()
    if not unpriced and not unsettled:
        return round(float(billed or 0.0), 6)
    row = con.execute(f"SELECT count(*), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL "
                      f"AND answers_billed > 0) FROM {SCHEMA}.costs WHERE job_name = ?",
                      [job_name]).fetchone()
    if not row[0]:
        return 0.0
    if row[2]:
        return None
    return round(float(row[1] or 0.0), 6)


@dataclass(kw_only=True)
class Timed:
    """When a command ran and what the job has cost so far: fields every report carries
    (`--json`), so a pipeline can log and alert on them without parsing text."""

    started_at: str | None = None        # ISO 8601, timezone-aware (UTC)
    finished_at: str | None = None
    elapsed_seconds: float | None = None
    cost_usd: float | None = None        # the job's answers so far, batch prices

    def start(self) -> None:
        self.started_at = iso_now()
        self._t0 = time.monotonic()

    def started_like(self, other: "Timed") -> None:
        """Take the start of `other` (a report built after its command began)."""
        self.started_at, self._t0 = other.started_at, getattr(other, "_t0", time.monotonic())

    def finish(self, cost_usd: float | None = None) -> None:
        if self.started_at is None:
            self.start()
        self.finished_at = iso_now()
        self.elapsed_seconds = round(time.monotonic() - getattr(self, "_t0", time.monotonic()),
                                     3)
        if cost_usd is not None:
            self.cost_usd = cost_usd


def stamp(d: dict, exit_code: int, started_at: str, elapsed: float,
          cost_usd: Any = None) -> dict:
    """Add the fields every `--json` report carries to `d` (a report's `to_dict()` or an
    error's): exit code, timestamps and elapsed seconds of the whole command, cost so far."""
    d["exit_code"] = exit_code
    d["started_at"] = started_at
    d["finished_at"] = iso_now()
    d["elapsed_seconds"] = round(elapsed, 3)
    d.setdefault("cost_usd", cost_usd)
    return d


@dataclass
class RowCounts:
    """How many selected rows are in each `_status`."""

    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SubmitReport:
    """What a pass submitted: batches created, resumed or held back, and requests sent."""

    batches_created: int = 0
    batches_resumed: int = 0
    batches_pending_create: int = 0
    batches_waiting: int = 0      # intents held back: the enqueued-token limit is full
    waiting: list[str] = field(default_factory=list)   # why, one line per waiting batch
    held: dict | None = None      # batches not created: a budget cap (budget.Hold)
    requests_submitted: int = 0
    requests_realtime: int = 0    # of them, sent through the synchronous API (realtime.py)
    bytes_submitted: int = 0
    batch_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CollectReport:
    """What a pass collected: batches polled and ended, and the outcomes recorded."""

    batches_polled: int = 0
    batches_collected: int = 0
    batches_in_progress: int = 0
    succeeded: int = 0
    failed: int = 0
    not_processed: int = 0
    batches_released: int = 0    # adopted batches proven foreign (their requests go again)
    lost: list[dict] = field(default_factory=list)   # batches the provider no longer knows
    warnings: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunReport(Timed):
    """What a submit / collect / run did, and where the job stands now."""

    run_id: str
    job: str
    command: str
    rows: RowCounts = field(default_factory=RowCounts)
    submitted: SubmitReport = field(default_factory=SubmitReport)
    collected: CollectReport = field(default_factory=CollectReport)
    polls: int = 0
    rows_rendered: int = 0           # prompts rendered (rows changed or not yet answered)
    table: str = ""
    stopped: str | None = None       # the transient provider error that ended the last pass
    transient_errors: int = 0        # passes ended early by transient provider trouble
    retry_after: float | None = None  # the wait the provider asked for with `stopped`
    notifications: list[dict] = field(default_factory=list)   # hooks called (notify.py)

    @property
    def pending(self) -> bool:
        return self.rows.pending > 0 or self.stopped is not None

    @property
    def exit_code(self) -> int:
        if self.stopped is not None or self.submitted.held:
            return EXIT_PENDING   # provider trouble, a budget cap: nothing to fix, later
        if self.command == "submit":
            return EXIT_OK
        if self.rows.pending:
            return EXIT_PENDING
        return EXIT_FAILED_ROWS if self.rows.failed else EXIT_OK

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = "pending" if self.pending else ("failed" if self.rows.failed
                                                      else "succeeded")
        d["exit_code"] = self.exit_code
        return d


@dataclass
class StatusReport(Timed):
    """Where a job stands: its batches as the ledger has them (each with `completed`,
    `failed` and `total` requests as the provider last reported them) and its rows by
    `_status`."""

    job: str
    batches: list[dict]   # every batch of the job, `lost` ones included (with the reason)
    rows: RowCounts
    warnings: list[str] = field(default_factory=list)
    held: dict | None = None   # rows the latest submit held back for a budget cap

    @property
    def exit_code(self) -> int:
        if self.rows.pending:
            return EXIT_PENDING
        return EXIT_FAILED_ROWS if self.rows.failed else EXIT_OK

    def to_dict(self) -> dict:
        return {"job": self.job, "batches": self.batches, "rows": self.rows.to_dict(),
                "warnings": self.warnings, "held": self.held, "exit_code": self.exit_code,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "elapsed_seconds": self.elapsed_seconds, "cost_usd": self.cost_usd}
