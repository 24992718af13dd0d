"""Budgets: a per-job cap (`budget_usd`) and a daily cap per state database
(`--daily-budget-usd`), held across processes.

* **Reserve.** Before a batch is created, its worst-case cost at batch prices (its estimated
  input tokens, `batches.est_tokens`, plus `max_tokens` x its requests, plus each request's
  write of a cached system prompt where the provider caches it) is written on its
  ledger row (`reserved_usd`, `budget_day`: the UTC day of the command's clock) in the
  transaction that records the intent (`submit.create_intents` calls `reserve`). In that same
  transaction the caps are checked against what is already spent: a batch that would cross
  one is not recorded at all, nor any batch after it; its rows stay pending, and the reason
  is kept in `budget_holds` (shown by `status` and `plan`, and the command exits 75).
* **Settle.** Collecting a batch sets `billed_usd` to what its attempts were billed (the
  `batch_costs` view prices them as the `costs` view does), in the collect's transaction.
* **Spend** under a cap is, per batch: its billed cost once settled, its reservation while
  it may still run, nothing once abandoned or lost. The job cap counts the job's batches over
  its whole life; the daily cap every batch in the state database reserved that UTC day (a
  batch counts against the day it was reserved on, also when collected later, so a day that
  passed its check never passes its cap afterwards).
* **Two processes** never cross a cap together: DuckDB lets one process write the state file
  at a time, and within one process every reserving transaction updates the same
  `meta` row, so two on one snapshot conflict and the second is refused
  (`BudgetConflictError`, exit 75) rather than both passing.

A model with no price cannot be held to a budget: `budget_usd` on one is refused at `plan`
(and by every command that submits); the daily cap does not count unpriced batches.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from .errors import BudgetConflictError, JobFileError, Location
from .models import output_limit
from .settings import env_setting
from .sqlutil import load_sql
from .state import SCHEMA, fetch_dicts, now_utc

if TYPE_CHECKING:
    from .clock import Clock
    from .spec import JobSpec

DAILY_ENV = "WAREHOUSE_BATCH_DAILY_BUDGET_USD"
ALERT_SHARE = 0.8          # `check` alerts when spend passes this share of a cap
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


# -- settings -----------------------------------------------------------------------------------

def check_usd(value: Any) -> float:
    """An amount of US dollars for a cap: a finite number > 0; ValueError otherwise."""
    try:
        usd = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an amount in USD") from None
    if isinstance(value, bool) or not math.isfinite(usd) or usd <= 0:
        raise ValueError(f"{value!r} is not an amount in USD greater than 0")
    return usd


def default_daily_budget() -> float | None:
    """`--daily-budget-usd` default: $WAREHOUSE_BATCH_DAILY_BUDGET_USD (which the project
    file's `daily_budget_usd` fills in), else no daily cap."""
    return env_setting(DAILY_ENV, check_usd, None)


def parse_budget(value: Any, where: Location) -> float:
    """The job's `budget_usd` config value: a number (not a string) greater than 0."""
    try:
        if not isinstance(value, (int, float)):
            raise ValueError(value)
        return check_usd(value)
    except ValueError:
        raise JobFileError(f"budget_usd must be an amount in USD greater than 0, got {value!r}",
                           where, hint="e.g. budget_usd=25 (the job's whole life: billed + "
                                       "reserved)") from None


@dataclass(frozen=True)
class Deadline:
    """A job's `deadline`: a time of day in UTC ('06:00': every day) or one instant (ISO 8601;
    UTC when it names no offset)."""

    text: str
    time_of_day: dt.time | None = None
    instant: dt.datetime | None = None     # naive UTC

    def last_due(self, now: dt.datetime) -> dt.datetime | None:
        """The latest moment the deadline fell due at or before `now` (naive UTC); None when
        it has not fallen due yet."""
        if self.instant is not None:
            return self.instant if self.instant <= now else None
        assert self.time_of_day is not None
        due = dt.datetime.combine(now.date(), self.time_of_day)
        return due if due <= now else due - dt.timedelta(days=1)


def parse_deadline(value: Any, where: Location | None = None) -> Deadline:
    """`deadline='06:00'` (a time of day, UTC, every day) or `deadline='2026-12-01T06:00Z'`
    (an instant; ISO 8601, UTC when it names no offset)."""
    def bad(why: str) -> JobFileError:
        return JobFileError(f"deadline {value!r} {why}", where or Location(),
                            hint="write a time of day in UTC, deadline='06:00' (every day), "
                                 "or an instant, deadline='2026-12-01T06:00:00+00:00'")
    if not isinstance(value, str) or not value.strip():
        raise bad("must be a string")
    text = value.strip()
    m = _TIME_OF_DAY.fullmatch(text)
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise bad("is not a time of day")
        return Deadline(text, time_of_day=dt.time(hour, minute, second))
    try:
        instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad("is neither a time of day ('06:00') nor an ISO 8601 timestamp") from None
    if instant.tzinfo is not None:
        instant = instant.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return Deadline(text, instant=instant)


@dataclass(frozen=True)
class Caps:
    """The caps a command respects: the job's `budget_usd`, the state database's daily cap,
    and the UTC day of the command's clock."""

    job_usd: float | None
    daily_usd: float | None
    day: dt.date

    @classmethod
    def of(cls, spec: "JobSpec", daily_usd: float | None, clock: "Clock | None") -> "Caps":
        now = clock.now() if clock is not None else dt.datetime.now(dt.timezone.utc).timestamp()
        day = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
        return cls(getattr(spec, "budget_usd", None), daily_usd, day)

    @property
    def any(self) -> bool:
        return self.job_usd is not None or self.daily_usd is not None


# -- prices and worst cases ------------------------------------------------------------------------

def price(con: duckdb.DuckDBPyConnection, provider: str, model: str) -> dict | None:
    """The batch price row for `model` (the longest name prefix in `prices`), or None."""
    row = con.execute(f"""SELECT arg_max(p, length(p.model)) FROM {SCHEMA}.prices p
                          WHERE p.provider = ? AND starts_with(?, p.model)""",
                      [provider, model]).fetchone()
    return row[0] if row else None


def max_output_tokens(spec: "JobSpec") -> int:
    """The most output tokens one answer may bill: the job's `max_tokens` (or
    `max_completion_tokens`, in the config or `params`), else the model's documented limit;
    0 for embeddings."""
    if spec.endpoint == "embeddings":
        return 0
    for source in (spec.generation, spec.params):
        for key in _OUTPUT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return output_limit(spec.provider, spec.model).tokens


def cache_write_extra(p: dict) -> float:
    """What a token written to the prompt cache costs beyond the input price, per million
    tokens: the 1-hour TTL's multiplier (the TTL warehouse-batch asks for) less the input
    itself; 0 where the price row has no cache-write multiplier."""
    multiplier = p.get("cache_write_1h") or p.get("cache_write") or 1.0
    return max(float(multiplier) - 1.0, 0.0) * float(p["input"])


def worst_case_sql(p: dict, max_out: int, tokens: str, requests: str,
                   cache_tokens: int = 0) -> str:
    """SQL for the worst-case cost of a batch of `requests` requests with `tokens` estimated
    input tokens: every input token at the input price, every answer using all of
    `max_out` at the output price, and, where each request writes `cache_tokens` to the
    prompt cache (Anthropic's `cache_system_prompt`), every request paying for that write
    (requests of one batch run in parallel: none can count on another's cache)."""
    return (f"(coalesce({tokens}, 0) * {float(p['input'])!r} "
            f"+ {requests} * {int(max_out)} * {float(p['output'])!r} "
            f"+ {requests} * {int(cache_tokens)} * {cache_write_extra(p)!r}) / 1e6")


def require_price(con: duckdb.DuckDBPyConnection, spec: "JobSpec", provider: str) -> None:
    """Refuse `budget_usd` on a model with no price: its spend could not be counted."""
    if getattr(spec, "budget_usd", None) is None or price(con, provider, spec.model):
        return
    raise JobFileError(
        f"budget_usd is set but {provider} model {spec.model!r} has no price in "
        "warehouse_batch.prices (data/prices.json), so its spend cannot be counted",
        spec.location_of("budget_usd"),
        hint="remove budget_usd, or use a priced model (the list is the prices table)")


# -- spend ----------------------------------------------------------------------------------------

def spend(con: duckdb.DuckDBPyConnection, *, job: str | None = None,
          day: dt.date | None = None, leave_out: list[str] | None = None
          ) -> tuple[float, float]:
    """(billed, reserved) USD under a cap: of `job` over its life, or of `day` over every
    job (or both filters); `leave_out`: batch ids not to count."""
    billed, reserved = con.execute(load_sql("budget_spend.sql"), {
        "job": job, "day": day, "leave_out": list(leave_out or [])}).fetchone()
    return float(billed), float(reserved)


def usd(amount: float) -> str:
    """Dollars as people read them: cents for a dollar or more, else six decimals."""
    return f"${amount:,.2f}" if abs(amount) >= 1 else f"${amount:.6f}"


@dataclass
class CapState:
    """One cap as it stands: what is spent under it (billed + reserved) and what is left."""

    cap: str                 # 'job' or 'daily'
    cap_usd: float
    billed_usd: float
    reserved_usd: float
    day: str | None = None   # the UTC day (daily cap)

    @property
    def spent_usd(self) -> float:
        return self.billed_usd + self.reserved_usd

    @property
    def left_usd(self) -> float:
        return self.cap_usd - self.spent_usd

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(spent_usd=round(self.spent_usd, 9), left_usd=round(self.left_usd, 9))
        return d

    def describe(self) -> str:
        which = (f"the daily budget of {usd(self.cap_usd)} for {self.day} (UTC)"
                 if self.cap == "daily" else f"the job's budget_usd of {usd(self.cap_usd)}")
        return (f"{which} has {usd(max(self.left_usd, 0.0))} left ({usd(self.billed_usd)} "
                f"billed + {usd(self.reserved_usd)} reserved)")


def cap_states(con: duckdb.DuckDBPyConnection, job: str, caps: Caps,
               leave_out: list[str] | None = None) -> list[CapState]:
    """Each cap that applies, as it stands (batches in `leave_out` not counted)."""
    out = []
    if caps.job_usd is not None:
        out.append(CapState("job", caps.job_usd, *spend(con, job=job, leave_out=leave_out)))
    if caps.daily_usd is not None:
        out.append(CapState("daily", caps.daily_usd,
                            *spend(con, day=caps.day, leave_out=leave_out),
                            day=caps.day.isoformat()))
    return out


def admit(states: list[CapState], costs: list[float]) -> tuple[int, CapState | None]:
    """How many of the batches costing `costs` (in order) fit under every cap, and the cap
    the first one left out would cross (None when all fit). Batches go in order: once one
    does not fit, the ones after it wait too (a later, smaller batch does not jump ahead)."""
    used = 0.0
    for n, cost in enumerate(costs):
        for s in states:
            if s.spent_usd + used + cost > s.cap_usd + 1e-12:
                return n, s
        used += cost
    return len(costs), None


# -- reserve, hold, settle -------------------------------------------------------------------------

@dataclass
class Hold:
    """Batches a submit did not record because one would have crossed a cap."""

    cap: str
    cap_usd: float
    spent_usd: float
    left_usd: float
    needed_usd: float
    batches_held: int
    requests_held: int
    message: str
    day: str | None = None
    held_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def reserve(con: duckdb.DuckDBPyConnection, spec: "JobSpec", provider: str,
            batch_ids: list[str], caps: Caps, stored_from: int,
            cache_tokens: int = 0) -> Hold | None:
    """Inside the transaction recording the intents `batch_ids` (in order): reserve each
    one's worst case (`cache_tokens`: what each request writes to the prompt cache), check
    the caps, and drop the batches that do not fit (with the requests stored for them alone,
    numbered from `stored_from`). Returns what was held back, also kept in `budget_holds`
    (or None, and the job's hold is cleared)."""
    try:   # every reserving transaction writes this row: two at once conflict
        con.execute(f"""UPDATE {SCHEMA}.meta SET value = CAST(CAST(value AS BIGINT) + 1
                        AS VARCHAR) WHERE key = 'budget_serial'""")
    except duckdb.TransactionException as e:
        raise BudgetConflictError(str(e)) from None
    _remember(con, spec, caps)
    p = price(con, provider, spec.model)
    if batch_ids:
        # a batch sent through the synchronous API (realtime.py) is paid at the real-time price
        realtime = float(p.get("realtime") or 1.0) if p else 1.0
        cost = "NULL"
        if p:
            worst = worst_case_sql(p, max_output_tokens(spec), "est_tokens", "request_count",
                                   cache_tokens)
            cost = f"{worst} * CASE WHEN mode = 'realtime' THEN {realtime!r} ELSE 1 END"
        con.execute(f"""UPDATE {SCHEMA}.batches SET reserved_usd = {cost}, budget_day = ?
            WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))""", [caps.day, batch_ids])
    hold = None
    if batch_ids and caps.any and p is not None:
        rows = con.execute(f"""SELECT batch_id, reserved_usd, request_count
            FROM {SCHEMA}.batches WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))
            ORDER BY chunk""", [batch_ids]).fetchall()
        states = cap_states(con, spec.name, caps, leave_out=batch_ids)
        n, crossed = admit(states, [r[1] for r in rows])
        if crossed is not None:
            held = rows[n:]
            _drop(con, [r[0] for r in held], stored_from)
            crossed.reserved_usd += sum(r[1] for r in rows[:n])   # admitted just now
            hold = _hold(spec.name, crossed, held)
    if hold is None:
        con.execute(f"DELETE FROM {SCHEMA}.budget_holds WHERE job_name = ?", [spec.name])
    else:
        con.execute(f"""INSERT OR REPLACE INTO {SCHEMA}.budget_holds (job_name, cap, cap_usd,
                spent_usd, left_usd, needed_usd, day, batches_held, requests_held, message,
                held_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [spec.name, hold.cap, hold.cap_usd, hold.spent_usd, hold.left_usd,
                     hold.needed_usd, hold.day, hold.batches_held, hold.requests_held,
                     hold.message, now_utc()])
    return hold


def _hold(job: str, crossed: CapState, held: list[tuple]) -> Hold:
    """What was held back (`held`: batch_id, reserved_usd, request_count), under the cap
    `crossed` (counting the batches admitted before it)."""
    requests = sum(r[2] for r in held)
    needed = float(held[0][1])
    message = (f"{len(held)} batch(es) of job {job} ({requests:,} requests) held back: "
               f"{crossed.describe()} and the next batch needs up to {usd(needed)} "
               "(worst case at batch prices); their rows stay pending and go "
               + ("once the UTC day changes or the daily cap is raised"
                  if crossed.cap == "daily" else
                  "once budget_usd is raised or billed usage settles below it"))
    return Hold(crossed.cap, crossed.cap_usd, round(crossed.spent_usd, 9),
                round(crossed.left_usd, 9), round(needed, 9), len(held), requests, message,
                day=crossed.day, held_at=now_utc().isoformat())


def _drop(con: duckdb.DuckDBPyConnection, batch_ids: list[str], stored_from: int) -> None:
    """Forget intents recorded in this transaction (and the requests stored for them alone):
    they were never created, and their rows are sent by a later submit."""
    con.execute(f"""DELETE FROM {SCHEMA}.request_rows WHERE seq >= ? AND request_hash IN (
            SELECT request_hash FROM {SCHEMA}.batch_requests
            WHERE batch_id IN (SELECT unnest(?::VARCHAR[])))""", [stored_from, batch_ids])
    # a request set whose every request was forgotten is forgotten with them
    con.execute(f"""DELETE FROM {SCHEMA}.request_sets s WHERE NOT EXISTS (
            SELECT 1 FROM {SCHEMA}.request_rows r WHERE r.set_id = s.set_id)""")
    con.execute(f"""DELETE FROM {SCHEMA}.batch_requests
        WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))""", [batch_ids])
    con.execute(f"DELETE FROM {SCHEMA}.batches WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))",
                [batch_ids])


def _remember(con: duckdb.DuckDBPyConnection, spec: "JobSpec", caps: Caps) -> None:
    """Record the job's budget and deadline, and the daily cap in use, for `check` (which
    reads the state only); written only when they changed."""
    budget, deadline = getattr(spec, "budget_usd", None), getattr(spec, "deadline", None)
    row = con.execute(f"SELECT budget_usd, deadline FROM {SCHEMA}.job_budgets "
                      "WHERE job_name = ?", [spec.name]).fetchone()
    if row != (budget, deadline) and not (row is None and budget is None and deadline is None):
        con.execute(f"""INSERT OR REPLACE INTO {SCHEMA}.job_budgets
            (job_name, budget_usd, deadline, updated_at) VALUES (?, ?, ?, ?)""",
                    [spec.name, budget, deadline, now_utc()])
    if caps.daily_usd is not None and recorded_daily(con) != caps.daily_usd:
        con.execute(f"INSERT OR REPLACE INTO {SCHEMA}.meta VALUES ('daily_budget_usd', ?)",
                    [repr(caps.daily_usd)])


def recorded_daily(con: duckdb.DuckDBPyConnection) -> float | None:
    """The daily cap the latest submit that had one used (for `check`)."""
    row = con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE key = 'daily_budget_usd'"
                      ).fetchone()
    return float(row[0]) if row else None


def settle(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> None:
    """Replace collected batches' reservations by what their attempts were billed (called
    in the transaction that records them; one pass over the attempts for all of them)."""
    con.execute(load_sql("budget_settle.sql"), {"now": now_utc(), "batch_ids": batch_ids})


def held(con: duckdb.DuckDBPyConnection, job: str) -> dict | None:
    """The job's rows held back by the latest submit (a `Hold` as a dict), if any."""
    rows = fetch_dicts(con, f"SELECT * FROM {SCHEMA}.budget_holds WHERE job_name = ?", [job])
    if not rows:
        return None
    row = rows[0]
    row.pop("job_name")
    for k in ("day", "held_at"):
        row[k] = row[k].isoformat() if row[k] is not None else None
    return row


# -- plan --------------------------------------------------------------------------------------

@dataclass
class BudgetPlan:
    """What `plan` shows: the reservation the next submit would make, what is left of each
    cap, and how many of its batches would be held back."""

    reservation_usd: float | None          # None: the model has no price
    batches: int
    caps: list[dict] = field(default_factory=list)
    batches_held: int = 0
    held_by: str | None = None             # the cap the first held batch would cross
    held: dict | None = None               # rows the latest submit held back
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def plan_view(con: duckdb.DuckDBPyConnection, spec: "JobSpec", provider: str, caps: Caps,
              chunked: str = "wb_chunked", cache_tokens: int = 0) -> BudgetPlan:
    """The budget side of `plan`, from the batches it cut (temp table `chunked`: chunk,
    ntok per request), reserved as `reserve` would (`cache_tokens` likewise). Writes
    nothing."""
    p = price(con, provider, spec.model)
    chunks = con.execute(f"SELECT sum(ntok), count(*) FROM {chunked} GROUP BY chunk "
                         "ORDER BY chunk").fetchall()
    hold = held(con, spec.name)
    if p is None:
        return BudgetPlan(None, len(chunks), held=hold, note=(
            f"{provider} model {spec.model} has no price: nothing is reserved"
            + (" and the daily cap does not count it" if caps.daily_usd is not None else "")))
    max_out = max_output_tokens(spec)
    extra = cache_write_extra(p) * cache_tokens
    costs = [(float(t or 0) * p["input"] + n * max_out * p["output"] + n * extra) / 1e6
             for t, n in chunks]
    states = cap_states(con, spec.name, caps)
    n, crossed = admit(states, costs)
    return BudgetPlan(round(sum(costs), 9), len(chunks), [s.to_dict() for s in states],
                      len(costs) - n, crossed.cap if crossed else None, hold)


# -- check --------------------------------------------------------------------------------------

def job_budgets(con: duckdb.DuckDBPyConnection) -> list[tuple[str, float | None, str | None]]:
    """(job, budget_usd, deadline) as each job's latest submit recorded them."""
    return con.execute(f"SELECT job_name, budget_usd, deadline FROM {SCHEMA}.job_budgets "
                       "ORDER BY job_name").fetchall()
