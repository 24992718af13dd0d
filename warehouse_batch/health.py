"""`warehouse-batch check`: alerts for the jobs nobody watches, read from the state only.

* a batch in `validating` or `finalizing` (or `cancelling`) longer than a threshold (default
  30 minutes), or a submit left half done by a crash for that long;
* an error rate above a threshold (default 5%) over each job's most recent collected batches.

Each alert names its kind, job and batch; the command exits `EXIT_ALERTS` (5) when there is
any, so a cron job or a monitoring system can act on the exit code or on `--json`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import duckdb

from .clock import Clock, SystemClock
from .db import reading_state
from .errors import EXIT_ALERTS, EXIT_OK
from .sqlutil import load_sql


@dataclass
class Alert:
    kind: str                  # 'stuck_batch' or 'error_rate'
    job: str
    message: str
    batch_id: str | None = None
    value: float | None = None   # minutes in the status, or the error rate


@dataclass
class HealthReport:
    checked_at: str
    thresholds: dict
    alerts: list[Alert] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_ALERTS if self.alerts else EXIT_OK

    def to_dict(self) -> dict:
        return {"checked_at": self.checked_at, "exit_code": self.exit_code,
                "thresholds": self.thresholds, "alerts": [asdict(a) for a in self.alerts]}


def find_alerts(con: duckdb.DuckDBPyConnection, now: dt.datetime, *, stuck_minutes: float,
                max_error_rate: float, recent_batches: int) -> list[Alert]:
    """The alerts for the state on `con` at `now` (naive UTC, as the ledger stores time)."""
    alerts = []
    for job, batch_id, provider_id, status, since in con.execute(
            load_sql("health_stuck.sql"), {"now": now, "stuck_minutes": stuck_minutes}
    ).fetchall():
        minutes = (now - since).total_seconds() / 60
        alerts.append(Alert("stuck_batch", job,
                            f"batch {batch_id} ({provider_id or 'not created'}) has been "
                            f"{status} for {minutes:,.0f} minutes (threshold {stuck_minutes:g})",
                            batch_id, round(minutes, 1)))
    for job, batches, sends, errored in con.execute(
            load_sql("health_errors.sql"), {"recent_batches": recent_batches}).fetchall():
        rate = errored / sends if sends else 0.0
        if rate > max_error_rate:
            alerts.append(Alert("error_rate", job,
                                f"{errored:,} of {sends:,} sends errored ({rate:.1%}) over the "
                                f"last {batches} collected batch(es) (threshold "
                                f"{max_error_rate:.1%})", None, round(rate, 4)))
    return alerts


def check(db: str, *, stuck_minutes: float = 30, max_error_rate: float = 0.05,
          recent_batches: int = 10, clock: Clock | None = None,
          memory_limit: str | None = None, state_db: str | None = None) -> HealthReport:
    """Check the state in `db` (or in `state_db`, its own file: then `db` is not opened),
    read-only."""
    now = dt.datetime.fromtimestamp((clock or SystemClock()).now(), dt.timezone.utc)
    thresholds = {"stuck_minutes": stuck_minutes, "max_error_rate": max_error_rate,
                  "recent_batches": recent_batches}
    with reading_state(db, state_db, memory_limit) as con:
        alerts = find_alerts(con, now.replace(tzinfo=None), stuck_minutes=stuck_minutes,
                             max_error_rate=max_error_rate, recent_batches=recent_batches)
    return HealthReport(now.isoformat(timespec="seconds"), thresholds, alerts)
