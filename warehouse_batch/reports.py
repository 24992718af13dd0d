"""What the library's commands report: plain dataclasses, shared by the pipeline (`api`,
`submit`, `collect`, `output`) and the cheap poll path (`pollpath`), which must not import
the pipeline; `--json` prints their `to_dict()`."""
from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field

from .errors import EXIT_FAILED_ROWS, EXIT_OK, EXIT_PENDING
from .state import now_utc


def new_run_id() -> str:
    """A command's run id: its start time and 24 random bits (`runs.run_id`)."""
    return now_utc().strftime("r%Y%m%dT%H%M%S") + "_" + secrets.token_hex(3)


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
    requests_submitted: int = 0
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
class RunReport:
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

    @property
    def pending(self) -> bool:
        return self.rows.pending > 0 or self.stopped is not None

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return EXIT_PENDING   # provider trouble: nothing to fix, come back later
        if self.command == "submit":
            return EXIT_OK
        if self.rows.pending:
            return EXIT_PENDING
        return EXIT_FAILED_ROWS if self.rows.failed else EXIT_OK

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = "pending" if self.pending else ("failed" if self.rows.failed
                                                      else "succeeded")
        return d


@dataclass
class StatusReport:
    """Where a job stands: its batches as the ledger has them and its rows by `_status`."""

    job: str
    batches: list[dict]   # every batch of the job, `lost` ones included (with the reason)
    rows: RowCounts
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.rows.pending:
            return EXIT_PENDING
        return EXIT_FAILED_ROWS if self.rows.failed else EXIT_OK

    def to_dict(self) -> dict:
        return {"job": self.job, "batches": self.batches, "rows": self.rows.to_dict(),
                "warnings": self.warnings}
