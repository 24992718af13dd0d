"""The real-time path (issue 11, item 8): `realtime_below` and `try`, through the official
SDKs against the emulator's synchronous endpoints."""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

import helpers
from helpers import (Job, billed_counts, checksum, creates, emulator_env, provider_calls)
from warehouse_batch import api

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
SYNC_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/messages")


def sync_calls(emu, status: int | None = 200) -> list[dict]:
    """Synchronous model calls the emulator answered (with `status`; None: any)."""
    return [c for c in provider_calls(emu, "POST")
            if (c["path"] in SYNC_PATHS or c["path"].endswith(("/chat/completions",
                                                                 "/embeddings")))
            and "batches" not in c["path"] and (status is None or c["status"] == status)]


def add_rows(job: Job, first: int, n: int) -> None:
    con = duckdb.connect(job.db)
    try:
        con.execute(f"INSERT INTO reviews SELECT range AS id, 'it is a thing ' || range "
                    f"FROM range({first}, {first + n})")
    finally:
        con.close()


# -- realtime_below ---------------------------------------------------------------------------

def test_a_small_change_goes_through_the_synchronous_api_and_no_batch_pays_for_it_again(
        tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=10")
    report = job.run(wait=False)
    assert report.to_dict()["status"] == "succeeded"
    assert report.rows.succeeded == 5 and report.rows.pending == 0
    assert report.submitted.requests_realtime == 5 and report.submitted.batches_created == 0
    assert creates(emulator) == []                         # no batch was created
    assert len(sync_calls(emulator)) == 5                  # one synchronous call per row
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded' "
                   "AND response IN ('positive', 'negative', 'neutral')") == [(5,)]
    assert job.sql("SELECT state, mode FROM warehouse_batch.batches") == [("collected", "realtime")]
    assert job.sql("SELECT count(*) FROM warehouse_batch.realtime_lines") == [(0,)]
    # the same request hashes a batch would use: the results cache answers them from now on
    realtime_ids = {r[0] for r in job.sql("SELECT custom_id FROM warehouse_batch.results")}
    assert len(realtime_ids) == 5

    add_rows(job, 100, 20)           # 20 more rows: above realtime_below, so a batch
    report = job.run(wait=True)
    assert report.rows.succeeded == 25
    assert len(creates(emulator)) == 1
    billed = billed_counts(emulator)
    assert len(billed) == 20 and not realtime_ids & set(billed)   # none of the five again
    assert len(sync_calls(emulator)) == 5
    assert job.sql("SELECT mode, sum(request_count) FROM warehouse_batch.batches "
                   "GROUP BY 1 ORDER BY 1") == [("batch", 20), ("realtime", 5)]


def test_a_small_change_while_a_batch_runs_goes_in_real_time_beside_it(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=12, extra=", realtime_below=5")
    first = job.run(wait=False)                    # 12 requests: a batch, still running
    assert len(creates(emulator)) == 1 and first.collected.batches_in_progress == 1
    con = duckdb.connect(job.db)
    con.execute("UPDATE reviews SET text = text || ' (edited)' WHERE id IN (1, 2)")
    con.close()
    # (`run` would only poll while the batch runs and the job file is unchanged: submit
    # reads the source)
    report = api.submit(job.path, job.options())
    assert report.submitted.requests_realtime == 2 and len(creates(emulator)) == 1
    assert report.rows.pending == 10                   # the batch's rows
    assert job.sql("SELECT id FROM enriched WHERE _status = 'succeeded' ORDER BY id"
                   ) == [(1,), (2,)]
    report = job.run(wait=True)
    assert report.rows.succeeded == 12 and len(sync_calls(emulator)) == 2
    # the batch's answers for rows 1 and 2 (their old text) are cached too, but not used
    assert job.sql("SELECT count(*) FROM enriched WHERE text LIKE '%(edited)'") == [(2,)]


def test_a_change_at_or_above_the_threshold_goes_in_a_batch(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=5")
    job.run(wait=True)
    assert len(creates(emulator)) == 1 and sync_calls(emulator) == []


def test_costs_and_plan_show_real_time_sends_at_full_price(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=4, extra=", realtime_below=10")
    planned = api.plan(job.path, job.options())
    assert planned.send_mode == "realtime" and planned.batches == 0
    job.write(extra="")
    as_batch = api.plan(job.path, job.options())
    assert as_batch.send_mode == "batch" and as_batch.batches == 1
    # OpenAI's real-time price is twice the batch price (prices.json `realtime`)
    assert planned.est_input_cost_usd == pytest.approx(2 * as_batch.est_input_cost_usd)
    assert planned.max_output_cost_usd == pytest.approx(2 * as_batch.max_output_cost_usd)

    job.write(extra=", realtime_below=10")
    job.run(wait=False)
    ((billed, realtime_billed, cost, realtime_cost, savings),) = job.sql(
        "SELECT answers_billed, realtime_billed, cost_usd, realtime_cost_usd, savings_usd "
        "FROM warehouse_batch.costs")
    assert billed == realtime_billed == 4
    assert cost > 0 and cost == realtime_cost and savings == 0
    # the same tokens at batch prices cost half: what a batch would have saved
    ((tin, tout),) = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                             "FROM warehouse_batch.attempts")
    ((pin, pout, mult),) = job.sql("SELECT input, output, realtime FROM warehouse_batch.prices "
                                   "WHERE provider = 'openai' AND model = 'gpt-4.1-mini'")
    assert cost == pytest.approx((tin * pin + tout * pout) / 1e6 * mult, abs=1e-6)


def _results(job: Job) -> list[tuple]:
    # a prompt-cache prefix is written once and read after (the emulator's cache is shared by
    # both paths, as the provider's is): compared as the tokens the cache touched
    return job.sql("""SELECT request_hash, status, response_text, finish_reason, input_tokens,
            output_tokens, coalesce(cached_tokens, 0) + coalesce(cache_creation_tokens, 0),
            embedding, error_type
        FROM warehouse_batch.results ORDER BY request_hash""")


TYPED = "columns={'sentiment': \"enum('positive','negative','neutral')\", 'confidence': 'double'}"
KINDS = {   # provider, model, the rest of the config
    "openai-plain": ("openai", "gpt-4.1-mini", "max_tokens=5"),
    "openai-typed": ("openai", "gpt-4.1-mini", "max_tokens=200, " + TYPED),
    "openai-embeddings": ("openai", "text-embedding-3-small", "endpoint='embeddings', dimensions=8"),
    "anthropic-plain": ("anthropic", "claude-haiku-4-5", "max_tokens=5, cache_system_prompt=true"),
    "anthropic-typed": ("anthropic", "claude-haiku-4-5",
                        "max_tokens=200, columns={'sentiment': 'varchar', 'topics': 'varchar[]'}"),
    "azure-plain": ("azure_openai", "gpt-4o-mini-batch", "max_tokens=5"),
    "azure-typed": ("azure_openai", "gpt-4o-mini-batch", "max_tokens=200, " + TYPED),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_real_time_answers_equal_the_batch_answers_under_the_same_hashes(tmp_path, emulator,
                                                                          kind):
    """The same job sent once through the synchronous API and once as a batch: every
    request has the same hash, answer, finish reason and usage in the results cache."""
    provider, model, config = KINDS[kind]
    env = ({"AZURE_OPENAI_ENDPOINT": emulator.azure_endpoint, "AZURE_OPENAI_API_KEY": "k"}
           if provider == "azure_openai" else {})
    got = {}
    for mode in ("realtime", "batch"):
        (tmp_path / mode).mkdir()
        job = Job(tmp_path / mode, emulator, rows=6, provider=provider, model=model, **env)
        below = ", realtime_below=100" if mode == "realtime" else ""
        job.path = str(helpers.write_job(tmp_path / mode, f"""
            name='enriched', provider={provider!r}, model={model!r}, unique_key='id',
            system='Label the sentiment.', prompt='Review: {{{{ text }}}}', {config}{below}""",
            "SELECT id, text FROM reviews"))
        before = len(creates(emulator))
        report = job.run(wait=mode == "batch")
        assert report.rows.succeeded == 6, (mode, report.to_dict())
        assert len(creates(emulator)) - before == (0 if mode == "realtime" else 1)
        got[mode] = _results(job)
        if mode == "realtime":
            assert job.sql("SELECT DISTINCT mode FROM warehouse_batch.batches") == [("realtime",)]
            assert len(sync_calls(emulator)) == 6
    assert got["realtime"] == got["batch"]
    assert len(got["batch"]) == 6


def test_anthropic_pinned_version_reaches_the_synchronous_api(tmp_path, emulator):
    """anthropic_version='2023-06-01' allows temperature: the real-time send goes with the
    same client (and header) as the batch would; without it the emulator refuses it."""
    job = Job(tmp_path, emulator, rows=3, provider="anthropic", model="claude-haiku-4-5",
              extra=", temperature=0.5, anthropic_version='2023-06-01', realtime_below=10")
    report = job.run(wait=False)
    assert report.rows.succeeded == 3 and creates(emulator) == []
    assert len(sync_calls(emulator)) == 3


def test_failures_through_the_synchronous_api_are_outcomes_like_a_batch_line(tmp_path,
                                                                             emulator):
    """A 400 ends its row failed (permanent, with the provider's message, sent once); a 500
    is tried three times within a send and recorded as a retryable failure, sent again by
    the next pass until the command's max_attempts are spent; the rest succeed."""
    job = Job(tmp_path, emulator, rows=4, extra=", realtime_below=10",
              prompt="{{ text }}{% if id == 2 %} [[emu:error400]]{% endif %}"
                     "{% if id == 3 %} [[emu:error500]]{% endif %}")
    report = job.run(wait=True)
    rows = dict((r[0], r[1:]) for r in job.sql(
        "SELECT id, _status, _failure, _error FROM enriched ORDER BY id"))
    assert rows[1][0] == rows[4][0] == "succeeded"
    assert rows[2][:2] == ("failed", "permanent") and "maximum context length" in rows[2][2]
    assert rows[3][:2] == ("failed", "retryable")
    assert len(sync_calls(emulator, 400)) == 1
    assert len(sync_calls(emulator, 500)) == 3 * 3      # 3 sends (max_attempts) of 3 tries
    assert report.rows.failed == 2 and creates(emulator) == []
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches WHERE mode = 'realtime'"
                   ) == [(3,)]


# -- rate limits, on the injected clock --------------------------------------------------------

def test_429_retry_after_is_honoured_on_the_injected_clock(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/config", {"sync_requests_per_minute": 2})
    start = emulator.admin("GET", "/_emulator/clock")["now"]
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=10")
    report = job.run(wait=False)
    assert report.rows.succeeded == 5
    answered = sync_calls(emulator, 200)
    assert len(answered) == 5                           # each paid once
    assert sync_calls(emulator, 429)                    # refused for the rate, then waited
    per_minute: dict[int, int] = {}
    for call in answered:
        minute = int(call["time"] // 60)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    assert max(per_minute.values()) <= 2 and len(per_minute) >= 3
    # the waits moved the emulator's manual clock (no real sleep): at least two minutes
    assert emulator.admin("GET", "/_emulator/clock")["now"] - start >= 120


def test_a_rate_limit_that_never_clears_stops_the_pass_and_the_next_run_finishes(tmp_path,
                                                                                 emulator):
    emulator.admin("POST", "/_emulator/config", {"sync_429_rate": 1.0})
    job = Job(tmp_path, emulator, rows=3, extra=", realtime_below=10")
    report = job.run(wait=False)
    assert report.stopped is not None and "429" in report.stopped
    assert report.rows.pending == 3 and sync_calls(emulator, 200) == []
    assert job.sql("SELECT state, mode FROM warehouse_batch.batches") == [("intent", "realtime")]
    emulator.admin("POST", "/_emulator/config", {"sync_429_rate": 0.0})
    report = job.run(wait=False)
    assert report.rows.succeeded == 3 and len(sync_calls(emulator, 200)) == 3
    assert creates(emulator) == []
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches") == [(1,)]


# -- crash safety ------------------------------------------------------------------------------

@pytest.mark.parametrize("finisher", ["run", "reconcile"])
def test_a_crash_mid_way_pays_for_no_answer_twice_and_loses_none(tmp_path, emulator,
                                                                 finisher):
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=10")
    env = emulator_env(emulator, WAREHOUSE_BATCH_REALTIME_CONCURRENCY="1")
    cmd = [*EXE, "run", job.path, "--db", job.db]
    crashed = subprocess.run(cmd, env={**env, "WAREHOUSE_BATCH_CRASH_AT": "realtime_after_line"},
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    assert len(sync_calls(emulator)) == 1
    assert job.sql("SELECT count(*) FROM warehouse_batch.realtime_lines") == [(1,)]
    done = subprocess.run([*EXE, finisher, job.path, "--db", job.db], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(sync_calls(emulator)) == 5                # the first answer was not bought again
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(5,)]
    assert job.sql("SELECT count(*) FROM warehouse_batch.attempts") == [(5,)]
    assert creates(emulator) == []


def test_collect_after_a_crash_mid_way_says_which_command_finishes_it(tmp_path, emulator):
    """`collect` sends nothing, so it cannot finish a real-time send a crash cut short: it
    says so, and what will, instead of only asking to come back later; it buys nothing."""
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=10")
    env = emulator_env(emulator, WAREHOUSE_BATCH_REALTIME_CONCURRENCY="1")
    crashed = subprocess.run([*EXE, "run", job.path, "--db", job.db],
                             env={**env, "WAREHOUSE_BATCH_CRASH_AT": "realtime_after_line"},
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    (batch_id,), = job.sql("SELECT batch_id FROM warehouse_batch.batches")
    out = subprocess.run([*EXE, "collect", job.path, "--db", job.db, "--json", "-q"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 75, out.stderr
    (warning,) = json.loads(out.stdout)["collected"]["warnings"]
    assert batch_id in warning and "1 of 5 request(s) answered" in warning
    assert "`run` or `submit` finishes it" in warning
    assert len(sync_calls(emulator)) == 1                # collect bought nothing
    done = subprocess.run([*EXE, "run", job.path, "--db", job.db], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(sync_calls(emulator)) == 5
    out = subprocess.run([*EXE, "collect", job.path, "--db", job.db, "--json", "-q"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["collected"]["warnings"] == []


def test_cancel_keeps_the_answers_a_stopped_real_time_send_got(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=5, extra=", realtime_below=10")
    env = emulator_env(emulator, WAREHOUSE_BATCH_REALTIME_CONCURRENCY="1")
    cmd = [*EXE, "run", job.path, "--db", job.db]
    crashed = subprocess.run(cmd, env={**env, "WAREHOUSE_BATCH_CRASH_AT": "realtime_after_line"},
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    cancelled = api.cancel(job.path, job.options())
    assert len(cancelled.abandoned) == 1
    # as a cancelled batch's: the unanswered are "not processed", sent again (no attempt spent)
    assert job.sql("SELECT status, retryable, count(*) FROM warehouse_batch.results "
                   "GROUP BY ALL ORDER BY 1") == [("failed", True, 4), ("succeeded", False, 1)]
    assert job.sql("SELECT outcome, count(*) FROM warehouse_batch.attempts GROUP BY 1 "
                   "ORDER BY 1") == [("missing", 4), ("succeeded", 1)]
    report = job.run(wait=False)
    assert report.rows.succeeded == 5 and report.submitted.requests_realtime == 4
    assert len(sync_calls(emulator)) == 5 and creates(emulator) == []


# -- try ---------------------------------------------------------------------------------------

def test_try_prints_three_answers_and_leaves_the_output_table_alone(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=12)
    job.run(wait=True)
    before_table = checksum(job.db)["table main.enriched"]
    job.write(prompt="Say the sentiment of: {{ text }}")     # a new prompt to check
    env = emulator_env(emulator)
    out = subprocess.run([*EXE, "try", job.path, "--db", job.db, "--rows", "3"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("    answer  ") == 3
    assert '[1] {"id": 1}' in out.stdout and '[3] {"id": 3}' in out.stdout
    assert len(sync_calls(emulator)) == 3 and len(creates(emulator)) == 1
    assert checksum(job.db)["table main.enriched"] == before_table
    assert job.sql("SELECT count(*) FROM warehouse_batch.job_rows WHERE request_hash IN "
                   "(SELECT request_hash FROM warehouse_batch.results r JOIN "
                   "warehouse_batch.batches b USING (batch_id) WHERE b.mode = 'realtime')"
                   ) == [(0,)]

    # --json, again: the three are cached now, nothing is sent
    again = subprocess.run([*EXE, "try", job.path, "--db", job.db, "--rows", "3", "--json"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["requests_sent"] == 0 and [r["source"] for r in doc["rows"]] == ["cached"] * 3
    assert all(r["answer"] in ("positive", "negative", "neutral") for r in doc["rows"])
    assert [r["prompt"] for r in doc["rows"]] == [
        f"Say the sentiment of: {t}" for (t,) in job.sql("SELECT text FROM reviews ORDER BY id "
                                                         "LIMIT 3")]
    assert len(sync_calls(emulator)) == 3

    # the run that follows sends only the nine rows `try` did not answer
    report = job.run(wait=True)
    assert report.rows.succeeded == 12 and len(creates(emulator)) == 2
    assert report.submitted.requests_submitted == 9


def test_try_sample_picks_distinct_rows(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=30)
    report = api.try_rows(job.path, job.options(), rows=4, sample=True)
    keys = [r["key"]["id"] for r in report.rows]
    assert len(set(keys)) == 4 and report.requests_sent == 4 and report.exit_code == 0
    assert all(r["source"] == "sent" for r in report.rows)
    assert job.sql("SELECT count(*) FROM information_schema.tables "
                   "WHERE table_name = 'enriched'") == [(0,)]


def test_a_bad_concurrency_setting_is_named_before_anything_is_recorded(tmp_path, emulator):
    """$WAREHOUSE_BATCH_REALTIME_CONCURRENCY that is not a number is a user error (exit 2)
    naming the variable, refused before any intent is written; a number out of range is held
    to 1-64 and the send goes on."""
    job = Job(tmp_path, emulator, rows=3, extra=", realtime_below=10")
    bad = subprocess.run([*EXE, "run", job.path, "--db", job.db],
                         env=emulator_env(emulator, WAREHOUSE_BATCH_REALTIME_CONCURRENCY="many"),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stderr
    assert "$WAREHOUSE_BATCH_REALTIME_CONCURRENCY" in bad.stderr and "'many'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches") == [(0,)]
    assert sync_calls(emulator) == []
    good = subprocess.run([*EXE, "run", job.path, "--db", job.db],
                          env=emulator_env(emulator, WAREHOUSE_BATCH_REALTIME_CONCURRENCY="500"),
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert len(sync_calls(emulator)) == 3
