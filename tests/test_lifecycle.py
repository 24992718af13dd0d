"""The whole loop through the real `openai` SDK against the emulator over loopback:
submit, poll, collect, incremental re-runs, retries, the answer cache."""
from __future__ import annotations

import math

import pytest

from warehouse_batch import api

from helpers import PROMPT, Job, billed_counts, provider_calls


def test_end_to_end_every_row_answered(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    report = job.run()
    assert report.rows.rows == 12 and report.rows.succeeded == 12 and report.exit_code == 0
    rows = job.sql("SELECT id, text, response, _status, _error, _request_hash, _input_tokens "
                   "FROM enriched ORDER BY id")
    assert len(rows) == 12
    assert {r[3] for r in rows} == {"succeeded"} and all(r[4] is None for r in rows)
    by_id = {r[0]: r[2] for r in rows}
    assert by_id[1] == "positive" and by_id[2] == "negative" and by_id[3] == "neutral"
    assert all(r[6] and r[6] > 0 for r in rows)
    # state tables tell the same story
    assert job.sql("SELECT count(*) FROM warehouse_batch.results WHERE status='succeeded'") \
        == [(12,)]
    assert job.sql("SELECT DISTINCT state FROM warehouse_batch.batches") == [("collected",)]
    # provider files were cleaned up after the results were stored
    assert emulator.admin("GET", "/_emulator/health")["ok"]
    import openai
    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="x")
    assert list(client.files.list()) == []


def test_second_run_sends_nothing(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    batches, requests = job.batches_created(), job.sql(
        "SELECT count(*) FROM warehouse_batch.requests")
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and report.exit_code == 0
    assert job.batches_created() == batches
    assert job.sql("SELECT count(*) FROM warehouse_batch.requests") == requests
    assert len(provider_calls(emulator, "POST", "/v1/files")) == 1


def test_only_new_and_edited_rows_are_sent(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.sql("INSERT INTO reviews VALUES (100, 'new and great'), (101, 'new and broken')")
    job.sql("UPDATE reviews SET text = 'edited: worst ever' WHERE id = 5")
    plan = api.plan(job.path, job.options())
    assert (plan.rows_new, plan.rows_changed, plan.rows_done, plan.requests_to_send) == \
        (2, 1, 11, 3)
    report = job.run()
    assert report.submitted.requests_submitted == 3
    sent = {r[0] for r in job.sql(
        "SELECT c.prompt FROM warehouse_batch.batch_requests br "
        "JOIN warehouse_batch.batches b USING (batch_id) "
        "JOIN (SELECT request_hash, body ->> '$.messages[1].content' AS prompt "
        "      FROM warehouse_batch.requests) c USING (request_hash) "
        "WHERE b.run_id = ?", [report.run_id])}
    assert sent == {PROMPT.replace("{{ text }}", t) for t in
                    ("new and great", "new and broken", "edited: worst ever")}
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(14,)]
    assert job.sql("SELECT response FROM enriched WHERE id = 5") == [("negative",)]


def test_prompt_change_resends_and_changing_back_is_free(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.write(prompt="Sentiment? {{ text }}")
    assert job.run().submitted.requests_submitted == 12
    job.write()
    before = job.batches_created()
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and report.rows.succeeded == 12
    assert job.batches_created() == before


def test_model_and_parameters_are_part_of_the_request(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.write(extra=", temperature=0.5")
    assert api.plan(job.path, job.options()).rows_changed == 12


def test_failures_and_expiry_end_with_every_row_succeeded(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 0.1, "expire_fraction": 0.5})
    job = Job(tmp_path, emulator, rows=60)   # default max_attempts (3)
    report = job.run()
    assert report.rows.succeeded == 60 and report.rows.pending == 0, report.to_dict()
    billed = billed_counts(emulator)
    assert len(billed) == 60 and max(billed.values()) == 1  # nothing paid twice
    outcomes = dict(job.sql("SELECT outcome, count(*) FROM warehouse_batch.attempts "
                            "GROUP BY 1"))
    assert outcomes["expired"] > 0 and outcomes["errored"] > 0 and outcomes["succeeded"] == 60


PROVIDERS = pytest.mark.parametrize("provider, model, message, permanent, transient", [
    ("openai", "gpt-4.1-mini", "context length", "invalid_request_error", "server_error"),
    ("anthropic", "claude-haiku-4-5", "prompt is too long", "invalid_request_error",
     "api_error"),
    ("gemini", "gemini-2.5-flash", "input token count exceeds", "invalid_argument", "internal"),
])


@PROVIDERS
def test_permanent_failures_are_recorded_and_not_retried(tmp_path, emulator, provider, model,
                                                         message, permanent, transient):
    job = Job(tmp_path, emulator, provider=provider, model=model)
    job.sql("UPDATE reviews SET text = 'too long [[emu:error400]]' WHERE id = 4")
    report = job.run()
    assert report.exit_code == 4 and report.rows.failed == 1 and report.rows.succeeded == 11
    status, error, attempts = job.sql(
        "SELECT _status, _error, _attempts FROM enriched WHERE id = 4")[0]
    assert status == "failed" and message in error.lower() and attempts == 1
    assert job.sql("SELECT error_type, retryable FROM warehouse_batch.results r JOIN enriched e "
                   "ON e._request_hash = r.request_hash WHERE e.id = 4") == [(permanent, False)]
    assert job.run(wait=False).submitted.requests_submitted == 0


@PROVIDERS
def test_retryable_failures_stop_at_max_attempts(tmp_path, emulator, provider, model, message,
                                                 permanent, transient):
    job = Job(tmp_path, emulator, provider=provider, model=model, extra=", max_attempts=2")
    job.sql("UPDATE reviews SET text = 'flaky [[emu:error500]]' WHERE id = 4")
    report = job.run()
    assert report.rows.failed == 1 and report.exit_code == 4
    assert job.sql("SELECT failures, retryable, error_type FROM warehouse_batch.results r "
                   "JOIN enriched e ON e._request_hash = r.request_hash WHERE e.id = 4") \
        == [(2, True, transient)]


def test_identical_requests_are_sent_once(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.sql("UPDATE reviews SET text = 'same words'")
    report = job.run()
    assert report.submitted.requests_submitted == 1 and report.rows.succeeded == 12
    assert len({r[0] for r in job.sql("SELECT _request_hash FROM enriched")}) == 1


def test_chunking_by_request_count_and_bytes(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=10)
    report = job.run(batch_max_requests=3)
    assert report.submitted.batches_created == 4
    assert sorted(r[0] for r in job.sql("SELECT request_count FROM warehouse_batch.batches")) \
        == [1, 3, 3, 3]
    job.write(prompt="again: {{ text }}")
    report = job.run(batch_max_bytes=700)
    sizes = job.sql("SELECT bytes FROM warehouse_batch.batches WHERE run_id = ?",
                    [report.run_id])
    assert len(sizes) > 1 and all(s[0] <= 700 for s in sizes)


def test_submit_returns_at_once_and_collect_finishes(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    sub = api.submit(job.path, job.options())
    assert sub.submitted.requests_submitted == 12 and sub.exit_code == 0
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'pending'") == [(12,)]
    early = api.collect(job.path, job.options())
    assert early.exit_code == 75 and early.collected.batches_in_progress == 1
    emulator.advance(3600)
    done = api.collect(job.path, job.options())
    assert done.exit_code == 0 and done.rows.succeeded == 12


def test_cancel_keeps_partial_answers(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=20)
    api.submit(job.path, job.options())
    emulator.advance(5 + 30)    # validating, then half the processing time
    cancelled = api.cancel(job.path, job.options())
    assert len(cancelled.cancelled) == 1
    emulator.advance(60)
    report = api.collect(job.path, job.options())
    assert 0 < report.rows.succeeded < 20 and report.collected.not_processed > 0
    assert report.rows.pending == 20 - report.rows.succeeded
    final = job.run()
    assert final.rows.succeeded == 20
    assert max(billed_counts(emulator).values()) == 1


def test_full_refresh_rebuilds_from_cache(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.sql("DROP TABLE enriched")
    before = job.batches_created()
    report = job.run(wait=False, full_refresh=True)
    assert report.rows.succeeded == 12 and job.batches_created() == before
    assert job.sql("SELECT count(*) FROM enriched WHERE response IS NOT NULL") == [(12,)]


def test_every_expired_batch_with_null_output_file(tmp_path, emulator):
    """A batch where everything failed has no output file; nothing breaks, all is retried."""
    job = Job(tmp_path, emulator, rows=4, extra=", max_attempts=5")
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 1.0})
    api.submit(job.path, job.options())
    emulator.advance(3600)
    report = api.collect(job.path, job.options())
    assert report.collected.failed == 4 and report.rows.pending == 4
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 0.0})
    assert job.run().rows.succeeded == 4


@pytest.mark.parametrize("fault", ["error_after_create", "drop_after_create"])
def test_lost_create_response_does_not_pay_twice(tmp_path, emulator, fault):
    emulator.admin("POST", "/_emulator/config", {"create_fault": fault,
                                                 "create_fault_count": 1})
    job = Job(tmp_path, emulator)
    report = job.run()
    assert report.rows.succeeded == 12
    import openai
    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="x")
    assert len(list(client.batches.list())) == 1
    assert max(billed_counts(emulator).values()) == 1


def test_costs_view_prices_the_answers_kept(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    plan = api.plan(job.path, job.options())
    assert plan.est_input_cost_usd == pytest.approx(plan.est_input_tokens * 0.20 / 1e6, abs=1e-6)
    assert plan.max_output_cost_usd == pytest.approx(12 * 5 * 0.80 / 1e6, abs=1e-6)
    job.run()
    (tokens_in, tokens_out), = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                                       "FROM warehouse_batch.results")
    assert tokens_in > 0 and tokens_out > 0
    assert job.sql("SELECT job_name, model, answers_billed, cost_usd FROM warehouse_batch.costs") \
        == [("enriched", "gpt-4.1-mini", 12,
             round((tokens_in * 0.20 + tokens_out * 0.80) / 1e6, 6))]


def test_unpriced_models_cost_nothing_known(tmp_path, emulator):
    job = Job(tmp_path, emulator, model="my-fine-tune")
    plan = api.plan(job.path, job.options())
    assert plan.est_input_cost_usd is None and plan.max_output_cost_usd is None
    job.run()
    assert job.sql("SELECT cost_usd FROM warehouse_batch.costs") == [(None,)]


def test_enqueued_token_limit_requeues_without_spending_attempts(tmp_path, emulator):
    """A batch failed for token_limit_exceeded ran nothing: its rows wait and go again."""
    job = Job(tmp_path, emulator, rows=12, extra=", max_attempts=1")
    first = api.plan(job.path, job.options(batch_max_requests=6))
    assert first.batches == 2
    # room for any one 6-request batch in flight, never two (the emulator counts a request
    # as ceil(characters of its messages / 4) tokens)
    sizes = sorted(math.ceil((len("Answer with one word.") + len(PROMPT.replace("{{ text }}", t)))
                             / 4) for (t,) in job.sql("SELECT text FROM reviews"))
    emulator.admin("POST", "/_emulator/config", {"enqueued_token_limit": sum(sizes[-6:])})
    report = job.run(batch_max_requests=6)
    assert report.rows.succeeded == 12 and report.rows.failed == 0, report.to_dict()
    failed = job.sql("SELECT count(*) FROM warehouse_batch.batches "
                     "WHERE provider_status = 'failed'")[0][0]
    assert failed >= 1     # the limit really was hit...
    assert job.sql("SELECT max(failures) FROM warehouse_batch.results") == [(0,)]  # ...for free
    assert max(billed_counts(emulator).values()) == 1
