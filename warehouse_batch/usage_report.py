"""`warehouse-batch report`: per job and day, what was enriched, sent, billed, spent and saved,
what failed and how long batches took, from the state's own tables (read-only).

The numbers come from set-based SQL over the attempts history and the `costs` view
(`sql/report_days.sql`, `sql/report_failures.sql`); this module only shapes them for text and
JSON (`report_html` draws the HTML page)."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import duckdb

from .clock import Clock, SystemClock
from .db import reading_state
from .sqlutil import load_sql


@dataclass
class DayRow:
    """One job on one day (UTC)."""

    job: str
    day: dt.date
    rows_enriched: int
    requests: int
    failed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    realtime_cost_usd: float | None
    savings_usd: float | None
    batches: int
    p50_batch_seconds: float | None
    p95_batch_seconds: float | None


@dataclass
class FailureRow:
    job: str
    day: dt.date
    kind: str
    count: int


@dataclass
class UsageReport:
    """The report over [since, until] (UTC days, inclusive)."""

    since: dt.date
    until: dt.date
    generated_at: str
    days: list[DayRow] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)

    def totals(self) -> dict:
        """Sums over every job and day (costs None when nothing reported was priced)."""
        def total(name: str) -> float | None:
            values = [getattr(d, name) for d in self.days if getattr(d, name) is not None]
            return round(sum(values), 6) if values else None
        return {"rows_enriched": sum(d.rows_enriched for d in self.days),
                "requests": sum(d.requests for d in self.days),
                "failed": sum(d.failed for d in self.days),
                "input_tokens": sum(d.input_tokens for d in self.days),
                "output_tokens": sum(d.output_tokens for d in self.days),
                "batches": sum(d.batches for d in self.days),
                "cost_usd": total("cost_usd"), "realtime_cost_usd": total("realtime_cost_usd"),
                "savings_usd": total("savings_usd")}

    def failure_kinds(self) -> dict[str, int]:
        """Failures by kind over the whole period, most frequent first."""
        kinds: dict[str, int] = {}
        for f in self.failures:
            kinds[f.kind] = kinds.get(f.kind, 0) + f.count
        return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))

    def daily(self) -> list[dict]:
        """Per day over every job: rows enriched and cost (what the charts draw)."""
        by_day: dict[dt.date, dict] = {}
        for d in self.days:
            row = by_day.setdefault(d.day, {"day": d.day.isoformat(), "rows_enriched": 0,
                                            "cost_usd": 0.0})
            row["rows_enriched"] += d.rows_enriched
            row["cost_usd"] = round(row["cost_usd"] + (d.cost_usd or 0.0), 6)
        return [by_day[k] for k in sorted(by_day)]

    def to_dict(self) -> dict:
        def plain(row) -> dict:
            return {k: (v.isoformat() if isinstance(v, dt.date) else v)
                    for k, v in asdict(row).items()}
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "generated_at": self.generated_at, "totals": self.totals(),
                "failure_kinds": self.failure_kinds(),
                "days": [plain(d) for d in self.days],
                "failures": [plain(f) for f in self.failures]}

    def to_text(self) -> str:
        lines = [f"warehouse-batch report, {self.since} to {self.until} (UTC days)", ""]
        if not self.days:
            return "\n".join(lines + ["nothing was collected in this period"])
        header = ("day", "job", "rows", "requests", "failed", "tokens in", "tokens out",
                  "cost $", "real-time $", "saved $", "batches", "p50 s", "p95 s")
        rows = [header] + [(d.day.isoformat(), d.job, f"{d.rows_enriched:,}", f"{d.requests:,}",
                            f"{d.failed:,}", f"{d.input_tokens:,}", f"{d.output_tokens:,}",
                            _money(d.cost_usd), _money(d.realtime_cost_usd),
                            _money(d.savings_usd), f"{d.batches:,}",
                            _seconds(d.p50_batch_seconds), _seconds(d.p95_batch_seconds))
                           for d in self.days]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        t = self.totals()
        lines += ["", f"total: {t['rows_enriched']:,} rows enriched, {t['requests']:,} requests, "
                  f"{t['failed']:,} failed, cost ${_money(t['cost_usd'])}, saved "
                  f"${_money(t['savings_usd'])} against real-time prices"]
        kinds = self.failure_kinds()
        if kinds:
            lines.append("failures by kind: " + ", ".join(f"{k} {n:,}" for k, n in kinds.items()))
        return "\n".join(lines)


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.4f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def build_report(con: duckdb.DuckDBPyConnection, since: dt.date, until: dt.date,
                 generated_at: str) -> UsageReport:
    """The report for UTC days [since, until] from the state on `con` (reads only)."""
    params = {"since": since, "until": until}
    days = [DayRow(*row) for row in con.execute(load_sql("report_days.sql"), params).fetchall()]
    failures = [FailureRow(*row) for row in
                con.execute(load_sql("report_failures.sql"), params).fetchall()]
    return UsageReport(since, until, generated_at, days, failures)


def report(db: str, since_days: int = 7, *, clock: Clock | None = None,
           memory_limit: str | None = None, state_db: str | None = None) -> UsageReport:
    """The report over the last `since_days` UTC days (today included) of the state in `db`
    (or in `state_db`, its own file: then `db` is not opened), read-only: it never migrates,
    writes or waits for a writer's transaction."""
    if since_days < 1:
        raise ValueError("since_days must be at least 1")
    now = dt.datetime.fromtimestamp((clock or SystemClock()).now(), dt.timezone.utc)
    until = now.date()
    since = until - dt.timedelta(days=since_days - 1)
    with reading_state(db, state_db, memory_limit) as con:
        return build_report(con, since, until, now.isoformat(timespec="seconds"))
