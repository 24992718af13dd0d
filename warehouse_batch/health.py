"""`warehouse-batch check`: alerts for the jobs nobody watches, read from the state only.

* a batch in `validating` or `finalizing` (or `cancelling`) longer than a threshold (default
  30 minutes), or a submit left half done by a crash for that long;
* an error rate above a threshold (default 5%) over each job's most recent collected batches;
* spend (billed + reserved) past 80% of a job's `budget_usd`, or of the daily cap for today
  (`--daily-budget-usd`, else the cap the latest submit used), as `budget.py` counts it;
* a job whose `deadline` has fallen due while rows recorded before it are still pending (a
  time of day, '06:00': the latest 06:00 UTC; an ISO instant: that instant);
* a notification (`on_complete` / `on_failure`) still pending longer than the stuck
  threshold: its hook failed, and only a command that does more than poll tries it again.

Each alert names its kind, job and batch; the command exits `EXIT_ALERTS` (5) when there is
any, so a cron job or a monitoring system can act on the exit code or on `--json`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import duckdb

from . import budget
from .clock import Clock, SystemClock
from .db import reading_state
from .errors import EXIT_ALERTS, EXIT_OK
from .sqlutil import load_sql


@dataclass
class Alert:
    kind: str   # 'stuck_batch', 'error_rate', 'budget', 'daily_budget', 'deadline' or
    #             'stuck_notification'
    job: str
    message: str
    batch_id: str | None = None   # (a stuck notification: its notification_id)
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
                max_error_rate: float, recent_batches: int,
                daily_budget_usd: float | None = None) -> list[Alert]:
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
    alerts += budget_alerts(con, now, daily_budget_usd)
    alerts += deadline_alerts(con, now)
    alerts += notification_alerts(con, now, stuck_minutes)
    return alerts


def notification_alerts(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                        stuck_minutes: float) -> list[Alert]:
    """Notifications pending longer than `stuck_minutes`, with their last error."""
    alerts = []
    for job, nid, event, hook, created, attempts, error in con.execute(
            load_sql("health_notifications.sql"),
            {"now": now, "stuck_minutes": stuck_minutes}).fetchall():
        minutes = (now - created).total_seconds() / 60
        tried = (f"tried {attempts} time(s), last error: {error}" if attempts
                 else "not tried yet")
        alerts.append(Alert("stuck_notification", job, (
            f"the {event} notification {nid} to {hook} has been pending for {minutes:,.0f} "
            f"minutes (threshold {stuck_minutes:g}); {tried}. The next command on the job "
            "that does more than poll (run, submit, collect of an ended batch) tries it "
            "again"), nid, round(minutes, 1)))
    return alerts


def budget_alerts(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                  daily_budget_usd: float | None) -> list[Alert]:
    """Spend past `budget.ALERT_SHARE` of a job's budget or of today's daily cap."""
    jobs = [(job, cap) for job, cap, _ in budget.job_budgets(con) if cap is not None]
    states = [(job, budget.cap_states(con, job, budget.Caps(cap, None, now.date()))[0])
              for job, cap in jobs]
    daily = daily_budget_usd if daily_budget_usd is not None else budget.recorded_daily(con)
    if daily is not None:
        states += [("all jobs", s) for s in budget.cap_states(
            con, "", budget.Caps(None, daily, now.date()))]
    alerts = []
    for job, s in states:
        share = s.spent_usd / s.cap_usd
        if share > budget.ALERT_SHARE:
            kind = "daily_budget" if s.cap == "daily" else "budget"
            alerts.append(Alert(kind, job, f"{share:.0%} of the cap is spent: {s.describe()} "
                                f"(alert above {budget.ALERT_SHARE:.0%})", None,
                                round(share, 4)))
    return alerts


def deadline_alerts(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> list[Alert]:
    """Jobs whose deadline fell due while rows recorded before it are still pending."""
    alerts = []
    for job, _, text in budget.job_budgets(con):
        if text is None:
            continue
        due = budget.parse_deadline(text).last_due(now)
        if due is None:
            continue
        pending, since = con.execute(load_sql("health_deadline.sql"),
                                     {"job": job, "due": due}).fetchone()
        if pending:
            late = (now - due).total_seconds() / 60
            alerts.append(Alert("deadline", job, (
                f"{pending:,} row(s) still pending {late:,.0f} minutes past the deadline "
                f"{due:%Y-%m-%d %H:%M} UTC (deadline={text!r}; pending since "
                f"{since:%Y-%m-%d %H:%M} UTC)"), None, pending))
    return alerts


def check(db: str, *, stuck_minutes: float = 30, max_error_rate: float = 0.05,
          recent_batches: int = 10, clock: Clock | None = None,
          memory_limit: str | None = None, state_db: str | None = None,
          daily_budget_usd: float | None = None) -> HealthReport:
    """Check the state in `db` (or in `state_db`, its own file: then `db` is not opened),
    read-only."""
    now = dt.datetime.fromtimestamp((clock or SystemClock()).now(), dt.timezone.utc)
    thresholds = {"stuck_minutes": stuck_minutes, "max_error_rate": max_error_rate,
                  "recent_batches": recent_batches, "budget_share": budget.ALERT_SHARE,
                  "daily_budget_usd": daily_budget_usd}
    with reading_state(db, state_db, memory_limit) as con:
        alerts = find_alerts(con, now.replace(tzinfo=None), stuck_minutes=stuck_minutes,
                             max_error_rate=max_error_rate, recent_batches=recent_batches,
                             daily_budget_usd=daily_budget_usd)
    return HealthReport(now.isoformat(timespec="seconds"), thresholds, alerts)
