"""Budgets (issue 11, item 1): a job's `budget_usd` and a daily cap per state database,
reserved at batch prices before a batch is created, settled to the billed usage when it is
collected, and never crossed, also by two `submit` processes started together."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from helpers import Job, creates, emulator_env, write_job
from warehouse_batch import api

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
PRICE_IN, PRICE_OUT = 0.20, 0.80          # gpt-4.1-mini, data/prices.json (batch prices)


def cli(emu, *args: str, env: dict | None = None) -> tuple[int, dict, str]:
    out = subprocess.run(EXE + [*args, "--json", "-q"], capture_output=True, text=True,
                         timeout=300, env=env or emulator_env(emu))
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def worst_case(tokens: int, requests: int, max_tokens: int) -> float:
    return (tokens * PRICE_IN + requests * max_tokens * PRICE_OUT) / 1e6


class Shifted:
    """The wall clock moved `days` days on: the UTC day a budget counts."""

    def __init__(self, days: int) -> None:
        self.offset = days * 86400

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_plan_shows_the_reservation_and_what_is_left_of_each_cap(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", budget_usd=0.01, batch_max_requests=5",
              max_tokens=50)
    code, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db,
                        "--daily-budget-usd", "0.5")
    assert code == 0
    b = plan["budget"]
    assert b["batches"] == plan["batches"] == 3
    # the worst case: every estimated input token, every answer using all of max_tokens
    assert b["reservation_usd"] == pytest.approx(
        worst_case(plan["est_input_tokens"], 12, 50), rel=1e-6)
    caps = {c["cap"]: c for c in b["caps"]}
    assert caps["job"]["cap_usd"] == 0.01 and caps["job"]["left_usd"] == 0.01
    assert caps["daily"]["cap_usd"] == 0.5 and caps["daily"]["spent_usd"] == 0
    assert caps["daily"]["day"] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert b["batches_held"] == 0 and b["held"] is None
    # what submit reserves is what plan announced, and plan then shows it as spent
    code, report, _ = cli(fast_emulator, "submit", job.path, "--db", job.db)
    assert code == 0 and report["submitted"]["held"] is None
    (reserved, n), = job.sql("SELECT sum(reserved_usd), count(*) FROM warehouse_batch.batches")
    assert n == 3 and reserved == pytest.approx(b["reservation_usd"], rel=1e-6)
    _, again, _ = cli(fast_emulator, "plan", job.path, "--db", job.db)
    (job_cap,) = again["budget"]["caps"]
    assert job_cap["reserved_usd"] == pytest.approx(reserved, rel=1e-6)
    assert job_cap["left_usd"] == pytest.approx(0.01 - reserved, rel=1e-6)
    # the human form names both
    text = subprocess.run(EXE + ["plan", job.path, "--db", job.db, "--daily-budget-usd", "0.5"],
                          capture_output=True, text=True, env=emulator_env(fast_emulator))
    assert "reservation" in text.stdout and "job budget" in text.stdout
    assert "daily cap" in text.stdout


def test_a_cached_system_prompt_is_reserved_as_a_cache_write_by_every_request(
        tmp_path, fast_emulator):
    """Anthropic bills a 1-hour cache write at 2x the input price (claude-haiku-4-5: 0.50
    per million, data/prices.json). A batch's requests run in parallel, so none can count on
    another having written the cache: the worst case has every request write the system
    prompt, on top of the input price already counted."""
    jobs = {}
    for name, extra in (("plain", ""), ("cached", ", cache_system_prompt=True")):
        (tmp_path / name).mkdir()
        jobs[name] = Job(tmp_path / name, fast_emulator, provider="anthropic",
                         model="claude-haiku-4-5", max_tokens=50,
                         extra=f", budget_usd=1{extra}")
    plans = {n: cli(fast_emulator, "plan", j.path, "--db", j.db)[1] for n, j in jobs.items()}
    plain, cached = plans["plain"], plans["cached"]
    assert plain["cache_write_tokens"] == 0 and cached["cache_write_tokens"] > 0
    assert cached["est_input_tokens"] == plain["est_input_tokens"]
    extra = 12 * cached["cache_write_tokens"] * 0.50 * (2.0 - 1.0) / 1e6
    assert cached["budget"]["reservation_usd"] == pytest.approx(
        plain["budget"]["reservation_usd"] + extra, rel=1e-6)
    assert cached["worst_case_cost_usd"] == pytest.approx(
        plain["worst_case_cost_usd"] + extra, abs=2e-6)
    # what submit reserves is what plan announced
    code, _, err = cli(fast_emulator, "submit", jobs["cached"].path, "--db", jobs["cached"].db)
    assert code == 0, err
    (reserved,), = jobs["cached"].sql("SELECT sum(reserved_usd) FROM warehouse_batch.batches")
    assert reserved == pytest.approx(cached["budget"]["reservation_usd"], rel=1e-6)


def test_a_budget_on_a_model_with_no_price_is_refused_at_plan(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, model="gpt-unpriced-9", extra=",\nbudget_usd=5")
    for command in ("plan", "submit"):
        code, report, _ = cli(fast_emulator, command, job.path, "--db", job.db)
        assert code == 2 and report["error"] == "JobFileError"
        assert "budget_usd" in report["message"] and "no price" in report["message"]
        line = next(n for n, text in enumerate(Path(job.path).read_text().splitlines(), 1)
                    if "budget_usd" in text)
        assert report["location"]["line"] == line   # the budget_usd key of the config
    assert creates(fast_emulator) == []
    # without a budget the same model is planned (and reserves nothing)
    job.write(model="gpt-unpriced-9")
    code, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db,
                        "--daily-budget-usd", "1")
    assert code == 0 and plan["budget"]["reservation_usd"] is None
    assert "no price" in plan["budget"]["note"]


@pytest.mark.parametrize("value", ["0", "-1", "'5'", "true"])
def test_a_budget_must_be_a_positive_amount(tmp_path, value):
    path = write_job(tmp_path, f"""name='t', provider='openai', model='gpt-4.1-mini',
        unique_key='id', prompt='{{{{ x }}}}', budget_usd={value}""", "SELECT 1 AS id, 'a' AS x")
    out = subprocess.run(EXE + ["plan", str(path), "--db", str(tmp_path / "w.duckdb")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "budget_usd must be an amount" in out.stderr
    assert f"{path}:3:" in out.stderr


def test_the_job_budget_holds_back_batches_exits_75_and_status_says_why(tmp_path,
                                                                        fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", batch_max_requests=4", max_tokens=50)
    _, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db)
    per_batch = plan["budget"]["reservation_usd"] / 3
    job.write(extra=f", batch_max_requests=4, budget_usd={per_batch * 1.05!r}", max_tokens=50)
    code, report, err = cli(fast_emulator, "submit", job.path, "--db", job.db)
    assert code == 75
    held = report["submitted"]["held"]
    assert held["cap"] == "job" and held["batches_held"] == 2 and held["requests_held"] == 8
    assert report["submitted"]["batches_created"] == 1 and len(creates(fast_emulator)) == 1
    (first,), = job.sql("SELECT reserved_usd FROM warehouse_batch.batches")
    assert held["left_usd"] == pytest.approx(per_batch * 1.05 - first, rel=1e-6)
    assert held["needed_usd"] == pytest.approx(per_batch, rel=0.05)
    assert held["needed_usd"] > held["left_usd"]
    assert "budget_usd" in held["message"] and "left" in held["message"]
    # the held rows are pending in the output table, and status says why
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(12,)]
    code, status, _ = cli(fast_emulator, "status", job.path, "--db", job.db)
    assert status["held"]["message"] == held["message"] and code == 75
    code, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db)
    assert plan["budget"]["held"]["message"] == held["message"]
    assert plan["budget"]["batches"] == 2 and plan["budget"]["batches_held"] == 2
    assert plan["budget"]["held_by"] == "job"
    text = subprocess.run(EXE + ["submit", job.path, "--db", job.db], capture_output=True,
                          text=True, env=emulator_env(fast_emulator))
    assert text.returncode == 75 and "held back" in text.stderr and "left" in text.stderr
    assert len(creates(fast_emulator)) == 1            # still held: nothing more was created
    # the requests of held batches are forgotten, and no request set is left empty
    assert job.sql("SELECT count(*) FROM warehouse_batch.request_sets WHERE set_id NOT IN "
                   "(SELECT set_id FROM warehouse_batch.request_rows)") == [(0,)]
    # run collects, settling the first batch to what it was billed (far below its worst
    # case), but what is left is still less than a batch's worst case: --wait stops rather
    # than waiting out a cap once nothing is running
    code, report, _ = cli(fast_emulator, "run", job.path, "--db", job.db, "--wait",
                          "--poll-interval", "0.01")
    assert code == 75 and report["submitted"]["held"] is not None
    assert len(creates(fast_emulator)) == 1
    (billed, reserved, settled), = job.sql(
        "SELECT billed_usd, reserved_usd, settled_at FROM warehouse_batch.batches")
    assert settled is not None and 0 < billed < reserved
    # raising the budget lets the rest go
    job.write(extra=", batch_max_requests=4, budget_usd=1", max_tokens=50)
    code, report, _ = cli(fast_emulator, "run", job.path, "--db", job.db, "--wait",
                          "--poll-interval", "0.01")
    assert code == 0 and report["submitted"]["held"] is None
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(12,)]
    assert job.sql("SELECT count(*) FROM warehouse_batch.budget_holds") == [(0,)]
    assert cli(fast_emulator, "status", job.path, "--db", job.db)[1]["held"] is None


def test_collect_settles_each_reservation_to_the_billed_usage(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", batch_max_requests=5", max_tokens=50)
    job.sql("UPDATE reviews SET text = text || ' [[emu:error500]]' WHERE id = 3")
    report = job.run(wait=False, max_attempts=1)
    assert report.collected.batches_collected == 3
    rows = job.sql("""SELECT b.reserved_usd, b.billed_usd, b.settled_at IS NOT NULL,
            (SELECT sum(a.input_tokens) * 0.20 / 1e6 + sum(a.output_tokens) * 0.80 / 1e6
             FROM warehouse_batch.attempts a WHERE a.batch_id = b.batch_id)
        FROM warehouse_batch.batches b ORDER BY b.batch_id""")
    for reserved, billed, settled, expected in rows:
        assert settled and billed == pytest.approx(expected, rel=1e-6)
        assert 0 < billed < reserved    # the reservation was a worst case
    # the job's spend is now what the costs view prices, nothing reserved
    (cost,), = job.sql("SELECT sum(cost_usd) FROM warehouse_batch.costs")
    con = duckdb.connect(job.db)
    try:
        from warehouse_batch import budget
        billed, reserved = budget.spend(con, job="enriched")
    finally:
        con.close()
    assert reserved == 0 and billed == pytest.approx(cost, abs=1e-6)   # costs: 6 places


def _two_jobs(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """Two jobs of one warehouse with different prompts (so no request is shared), 12 and
    24 rows in batches of 4, and a state database of their own."""
    db, state = str(tmp_path / "w.duckdb"), str(tmp_path / "state.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range + 1 AS id, 'review number ' || range "
                "AS text FROM range(24)")
    con.close()
    paths = []
    for name, rows in (("small", 12), ("large", 24)):
        paths.append(write_job(tmp_path, f"""name='{name}', provider='openai',
            model='gpt-4.1-mini', unique_key='id', max_tokens=40, batch_max_requests=4,
            prompt='{name}: classify {{{{ text }}}}'""",
                               f"SELECT id, text FROM reviews WHERE id <= {rows}",
                               name=f"{name}.sql"))
    return paths[0], paths[1], db, state


def _day_totals(state: str) -> dict:
    con = duckdb.connect(state, read_only=True)
    try:
        return {day: (reserved, billed, n) for day, reserved, billed, n in con.execute(
            """SELECT budget_day, sum(reserved_usd), sum(billed_usd), count(*)
               FROM batches GROUP BY 1""").fetchall()}
    finally:
        con.close()


def test_two_submits_started_together_never_cross_the_daily_cap(tmp_path, fast_emulator):
    small, large, db, state = _two_jobs(tmp_path)
    env = emulator_env(fast_emulator)
    common = ["--db", db, "--state-db", state, "--lock-timeout", "600"]
    worst = sum(cli(fast_emulator, "plan", str(p), *common)[1]["budget"]["reservation_usd"]
                for p in (small, large))
    cap = worst / 2                          # the two jobs' worst case is twice the cap
    procs = [subprocess.Popen(EXE + ["submit", str(p), *common, "--daily-budget-usd", repr(cap),
                                     "--json", "-q"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for p in (small, large)]
    results = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    reports = [json.loads(out) for out, _ in results]
    assert sorted(codes) in ([0, 75], [75, 75]), results
    held = [r["submitted"]["held"] for r in reports if r["submitted"]["held"]]
    assert held and all(h["cap"] == "daily" for h in held)
    today = dt.datetime.now(dt.timezone.utc).date()
    (day, (reserved, _, n)), = _day_totals(state).items()
    assert day == today and n == len(creates(fast_emulator))
    assert cap / 2 < reserved <= cap + 1e-12     # the cap is used, never crossed

    # the same day, the same cap: nothing more goes, whichever job asks
    for p in (small, large):
        code, report, _ = cli(fast_emulator, "submit", str(p), *common,
                              "--daily-budget-usd", repr(cap))
        assert code in (0, 75)
    assert len(creates(fast_emulator)) == n

    # the next day (the command's clock moved on) the held rows go, again within the cap
    for days in (1, 2):
        for p in (small, large):
            options = api.Options(db=db, state_db=state, env=env, clock=Shifted(days),
                                  daily_budget_usd=cap)
            api.submit(str(p), options)
    totals = _day_totals(state)
    assert len(totals) >= 2 and all(r <= cap + 1e-12 for r, _, _ in totals.values())
    con = duckdb.connect(state, read_only=True)
    assert con.execute("SELECT count(*) FROM budget_holds").fetchone()[0] == 0
    con.close()

    # collected: every batch settles to what it was billed, and no day's bill passes the cap
    for p in (small, large):
        code, report, _ = cli(fast_emulator, "collect", str(p), *common)
        assert code == 0, report
    for reserved, billed, _ in _day_totals(state).values():
        assert billed is not None and 0 < billed <= reserved <= cap + 1e-12


def test_raising_the_daily_cap_releases_held_rows(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", batch_max_requests=4", max_tokens=50)
    _, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db)
    cap = plan["budget"]["reservation_usd"] / 2
    _, plan, _ = cli(fast_emulator, "plan", job.path, "--db", job.db,
                     "--daily-budget-usd", repr(cap))
    assert plan["budget"]["batches_held"] == 2 and plan["budget"]["held_by"] == "daily"
    code, report, _ = cli(fast_emulator, "submit", job.path, "--db", job.db,
                          "--daily-budget-usd", repr(cap))
    assert code == 75 and report["submitted"]["held"]["cap"] == "daily"
    assert report["submitted"]["held"]["day"] == dt.datetime.now(dt.timezone.utc).date() \
        .isoformat()
    created = len(creates(fast_emulator))
    assert created == 1
    # the environment (as a project file sets it) raises it
    code, report, _ = cli(fast_emulator, "submit", job.path, "--db", job.db,
                          env=emulator_env(fast_emulator,
                                           WAREHOUSE_BATCH_DAILY_BUDGET_USD=repr(cap * 2.2)))
    assert code == 0 and report["submitted"]["held"] is None
    assert len(creates(fast_emulator)) == 3
    assert job.sql("SELECT count(*) FROM warehouse_batch.budget_holds") == [(0,)]


def test_the_daily_cap_comes_from_the_project_file(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", batch_max_requests=4", max_tokens=50)
    (tmp_path / "warehouse-batch.toml").write_text("daily_budget_usd = 0.000001\n")
    out = subprocess.run(EXE + ["submit", job.path, "--db", job.db, "--json"],
                         capture_output=True, text=True, env=emulator_env(fast_emulator),
                         cwd=tmp_path)
    assert out.returncode == 75
    assert json.loads(out.stdout)["submitted"]["held"]["cap_usd"] == 0.000001
    assert creates(fast_emulator) == []
    (tmp_path / "warehouse-batch.toml").write_text("daily_budget_usd = -3\n")
    out = subprocess.run(EXE + ["plan", job.path, "--db", job.db], capture_output=True,
                         text=True, env=emulator_env(fast_emulator), cwd=tmp_path)
    assert out.returncode == 2 and "daily_budget_usd" in out.stderr
    assert "warehouse-batch.toml:1" in out.stderr


def test_two_reservations_on_one_snapshot_conflict(tmp_path):
    """Within one process (a caller's connection shared by threads), two transactions that
    read the same spend cannot both reserve: the second is refused, nothing recorded."""
    from warehouse_batch import budget
    from warehouse_batch.db import connect
    from warehouse_batch.errors import BudgetConflictError
    from warehouse_batch.spec import parse_job

    db = str(tmp_path / "w.duckdb")
    connect(db).close()
    spec = parse_job("{{ config(name='t', provider='openai', model='gpt-4.1-mini', "
                     "unique_key='id', prompt='x', max_tokens=10, budget_usd=1) }}\n"
                     "SELECT 1 AS id", str(tmp_path / "t.sql"))
    con = duckdb.connect(db)
    first, second = con.cursor(), con.cursor()
    caps = budget.Caps(1.0, None, dt.date(2026, 1, 1))
    first.execute("BEGIN TRANSACTION")
    second.execute("BEGIN TRANSACTION")
    assert budget.reserve(first, spec, "openai", [], caps, 0) is None
    with pytest.raises(BudgetConflictError):
        budget.reserve(second, spec, "openai", [], caps, 0)
    second.execute("ROLLBACK")
    first.execute("COMMIT")
    assert con.execute("SELECT value FROM warehouse_batch.meta WHERE key = 'budget_serial'"
                       ).fetchone() == ("1",)
    con.close()


def test_held_rows_go_with_a_later_run_while_batches_are_in_flight(tmp_path, emulator):
    """`run` only polls while batches run and nothing changed (the cheap poll); rows held
    back by a cap are something to do, so a run with room sends them; `status` shows the
    hold from the cheap path too, and `collect` stays a poll."""
    job = Job(tmp_path, emulator, extra=", batch_max_requests=4", max_tokens=50)
    _, plan, _ = cli(emulator, "plan", job.path, "--db", job.db)
    cap = plan["budget"]["reservation_usd"] / 2
    code, report, _ = cli(emulator, "run", job.path, "--db", job.db, "--daily-budget-usd",
                          repr(cap))
    assert code == 75 and report["submitted"]["held"]["batches_held"] == 2
    assert len(creates(emulator)) == 1                       # in flight: validating
    code, status, _ = cli(emulator, "status", job.path, "--db", job.db)
    assert code == 75 and status["held"]["batches_held"] == 2
    code, report, _ = cli(emulator, "collect", job.path, "--db", job.db)
    assert code == 75 and report["rows"]["pending"] == 12
    code, report, _ = cli(emulator, "run", job.path, "--db", job.db, "--daily-budget-usd",
                          repr(cap * 3))
    assert code == 75 and report["submitted"]["held"] is None
    assert report["submitted"]["batches_created"] == 2 and len(creates(emulator)) == 3
    assert cli(emulator, "status", job.path, "--db", job.db)[1]["held"] is None


def test_batches_collected_before_budgets_are_settled_by_the_upgrade(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, extra=", batch_max_requests=5")
    job.run(wait=False)
    before = job.sql("SELECT batch_id, billed_usd FROM warehouse_batch.batches ORDER BY 1")
    assert len(before) == 3 and all(b > 0 for _, b in before)
    # the state as version 18 left it: no reservation, nothing settled, no budget tables
    # (and requests one table again, as before version 24)
    job.sql("""UPDATE warehouse_batch.batches SET reserved_usd = NULL, billed_usd = NULL,
                   settled_at = NULL, budget_day = NULL;
               DROP TABLE warehouse_batch.job_budgets; DROP TABLE warehouse_batch.budget_holds;
               DELETE FROM warehouse_batch.meta WHERE key = 'budget_serial';
               CREATE TABLE warehouse_batch.requests_v23 AS
                   SELECT * FROM warehouse_batch.requests;
               DROP VIEW warehouse_batch.requests;
               DROP TABLE warehouse_batch.request_rows; DROP TABLE warehouse_batch.request_sets;
               ALTER TABLE warehouse_batch.requests_v23 RENAME TO requests;
               DELETE FROM warehouse_batch.schema_migrations WHERE version >= 19""")
    code, status, _ = cli(fast_emulator, "status", job.path, "--db", job.db, "--no-refresh")
    assert code == 0 and status["held"] is None
    after = job.sql("SELECT batch_id, billed_usd FROM warehouse_batch.batches ORDER BY 1")
    assert after == before
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches WHERE settled_at IS NULL "
                   "OR budget_day IS NULL") == [(0,)]
