"""What was spent (issue 11, costs and savings): every billed attempt counts, by day, against
the real-time price of the same tokens; an answer rejected and sent again is not lost."""
from __future__ import annotations

import datetime as dt
import json

import duckdb

from warehouse_batch import reports
from warehouse_batch.sqlutil import load_sql
from warehouse_batch.state import ensure_schema

from helpers import Job


def test_collect_records_each_attempts_usage_and_splits_cache_writes_by_ttl(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)

    def body(five: int, hour: int) -> str:
        return json.dumps({"usage": {"cache_creation": {"ephemeral_5m_input_tokens": five,
                                                        "ephemeral_1h_input_tokens": hour}}})
    con.execute("""CREATE TEMP TABLE wb_outcomes AS SELECT * FROM (VALUES
        ('h1', 'succeeded', false, 200, NULL, NULL, NULL, 100, 7, 10, 40, ?),
        ('h2', 'succeeded', false, 200, NULL, NULL, NULL, 100, 7, 10, 40, ?),
        ('h3', 'errored', false, 200, 'schema', NULL, 'bad', 90, 5, 0, 0, NULL),
        ('h4', 'errored', true, 500, 'server_error', NULL, 'down', NULL, NULL, NULL, NULL, NULL))
        t(request_hash, outcome, retryable, status_code, error_type, error_code, error_message,
          input_tokens, output_tokens, cached_tokens, cache_creation_tokens, response_body)""",
                [body(40, 0), body(0, 40)])
    con.execute(load_sql("record_attempts.sql"), {"batch_id": "b1", "now": dt.datetime(2026, 11, 30)})
    got = con.execute("SELECT request_hash, input_tokens, output_tokens, cached_tokens, "
                      "cache_creation_tokens, cache_write_1h_tokens FROM warehouse_batch.attempts "
                      "ORDER BY 1").fetchall()
    assert got == [("h1", 100, 7, 10, 40, 0), ("h2", 100, 7, 10, 40, 40),
                   ("h3", 90, 5, 0, 0, 0), ("h4", None, None, None, None, 0)]


def test_costs_by_day_with_real_time_price_and_savings(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    (tin, tout), = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                           "FROM warehouse_batch.attempts")
    cost = round((tin * 0.20 + tout * 0.80) / 1e6, 6)
    (day,), = job.sql("SELECT DISTINCT CAST(collected_at AS DATE) FROM warehouse_batch.attempts")
    assert job.sql("SELECT job_name, day, answers_billed, rejected_billed, cost_usd, "
                   "realtime_cost_usd, savings_usd, rejected_cost_usd "
                   "FROM warehouse_batch.costs") == \
        [("enriched", day, 12, 0, cost, round(2 * cost, 6), cost, 0.0)]


def test_tokens_of_answers_rejected_and_sent_again_are_counted(tmp_path, emulator):
    """Row 2's answer breaks the job's schema every time: two attempts billed and rejected.
    The results cache keeps only the last outcome; the costs count both attempts."""
    job = Job(tmp_path, emulator)
    job.sql("UPDATE reviews SET text = text || ' [[emu:badschema]]' WHERE id = 2")
    job.write(extra=(", columns={'sentiment': \"enum('positive','negative','neutral')\"}"
                     ", max_attempts=2"), max_tokens=200)
    report = job.run()
    assert (report.rows.succeeded, report.rows.failed) == (11, 1)
    (h,), = job.sql("SELECT _request_hash FROM enriched WHERE id = 2")
    rejected = job.sql("SELECT input_tokens, output_tokens FROM warehouse_batch.attempts "
                       f"WHERE request_hash = '{h}' AND outcome = 'errored'")
    assert len(rejected) == 2 and all(i > 0 and o > 0 for i, o in rejected)
    assert job.sql(f"SELECT count(*) FROM warehouse_batch.results WHERE request_hash = '{h}'") \
        == [(1,)]
    (billed, n_rejected, rejected_cost, cost), = job.sql(
        "SELECT answers_billed, rejected_billed, rejected_cost_usd, cost_usd "
        "FROM warehouse_batch.costs")
    assert (billed, n_rejected) == (13, 2)
    assert rejected_cost == round(sum(i * 0.20 + o * 0.80 for i, o in rejected) / 1e6, 6)
    (tin, tout), = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                           "FROM warehouse_batch.attempts")
    assert cost == round((tin * 0.20 + tout * 0.80) / 1e6, 6)


def _job_cost(job: Job) -> float | None:
    con = duckdb.connect(job.db)
    try:
        return reports.job_cost(con, "enriched")
    finally:
        con.close()


def test_a_jobs_cost_so_far_is_its_settled_billing_and_agrees_with_the_costs_view(
        tmp_path, emulator):
    """Reports carry the job's cost from the ledger's settled batches (what budgets count),
    not from a pass over every attempt; a collected batch left unsettled, or settled
    without a price, is judged by the costs view, and the answers are the same."""
    job = Job(tmp_path, emulator, rows=12, extra=", max_attempts=1")
    job.run(batch_max_requests=5)
    (view,), = job.sql("SELECT round(sum(cost_usd), 6) FROM warehouse_batch.costs")
    assert view > 0 and _job_cost(job) == view
    # the ledger's figure is the one reported: change one batch's settled amount
    (first,), = job.sql("SELECT min(batch_id) FROM warehouse_batch.batches")
    job.sql(f"UPDATE warehouse_batch.batches SET billed_usd = billed_usd + 1 "
            f"WHERE batch_id = '{first}'")
    assert _job_cost(job) == round(view + 1, 6)
    # a collected batch not settled: the costs view decides, and says the same
    job.sql(f"UPDATE warehouse_batch.batches SET settled_at = NULL, billed_usd = NULL "
            f"WHERE batch_id = '{first}'")
    assert _job_cost(job) == view


def test_an_unpriced_jobs_cost_so_far_is_unknown(tmp_path, emulator):
    job = Job(tmp_path, emulator, model="my-fine-tune")
    job.run()
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                   "WHERE settled_at IS NOT NULL AND billed_usd IS NULL") == [(1,)]
    assert _job_cost(job) is None
