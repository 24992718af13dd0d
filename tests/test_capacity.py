"""Enqueued-token budgets: a limit smaller than the job is learned, respected and waited for,
never a livelock, never a second bill; Azure's synchronous refusal is capacity too."""
from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from warehouse_batch import api, capacity

from helpers import Job, billed_counts, creates, emulator_env, provider_calls

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
MODEL = "gpt-4.1-mini"
AZURE_DEPLOYMENT = "gpt-4o-mini-batch"


def set_limit(emu, model: str, limit: int, fail_fast: bool = False) -> None:
    emu.admin("POST", "/_emulator/config", {"enqueued_token_limits": {model: limit},
                                            "token_limit_fail_fast": fail_fast})


def limit_fifth(job: Job) -> int:
    """One fifth of the job's estimated tokens (the estimate `plan` reports)."""
    return api.plan(job.path, job.options()).est_input_tokens // 5


def test_parse_limit_reads_thousands_separators():
    msg = ("Enqueued token limit reached for gpt-4o-mini in organization org-abc. Limit: "
           "2,000,000 enqueued tokens. Please try again once some in_progress batches have "
           "been completed.")
    assert capacity.parse_limit(msg) == 2_000_000
    assert capacity.parse_limit("token_limit_exceeded: Limit: 90000 enqueued tokens") == 90_000
    assert capacity.parse_limit("no number here") is None
    assert capacity.waves([5, 5, 5], 10) == 2 and capacity.waves([3, 3, 3], 100) == 1


@pytest.mark.parametrize("provider,model,fail_fast", [
    ("openai", MODEL, False),                      # the batch fails in validation
    ("azure_openai", AZURE_DEPLOYMENT, True),      # the create is refused with HTTP 400
])
def test_a_job_five_times_the_limit_finishes_in_bounded_batches(tmp_path, emulator, provider,
                                                               model, fail_fast):
    job = Job(tmp_path, emulator, rows=400, provider=provider, model=model,
              AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="k")
    limit = limit_fifth(job)
    set_limit(emulator, model, limit, fail_fast)
    report = job.run()
    assert report.rows.succeeded == 400 and report.exit_code == 0, report.to_dict()
    assert max(billed_counts(emulator).values()) == 1 and len(billed_counts(emulator)) == 400
    assert job.sql("SELECT max(failures) FROM warehouse_batch.results") == [(0,)]
    # learned from the message, per provider and model
    assert job.sql("SELECT provider, model, enqueued_token_limit FROM warehouse_batch.capacity") \
        == [(provider, model, limit)]
    # one refused create (the job as one chunk), then chunks under the limit, one at a time
    # (our estimate is above the emulator's count, so ~6 chunks, none refused): no livelock
    refused = job.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state = 'abandoned' "
                      "OR provider_status = 'failed'")[0][0]
    assert refused == 1
    assert len(creates(emulator)) <= 8
    sent = job.sql("SELECT max(est_tokens) FROM warehouse_batch.batches "
                   "WHERE state = 'collected' AND provider_status = 'completed'")[0][0]
    assert sent <= limit
    if fail_fast:   # refused at create: no batch existed, the refusal cost no attempt
        assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                       "WHERE provider_status = 'failed'") == [(0,)]


def test_the_learned_limit_cuts_the_next_run(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=200)
    limit = limit_fifth(job)
    set_limit(emulator, MODEL, limit)
    assert job.run().exit_code == 0
    assert job.sql("SELECT enqueued_token_limit FROM warehouse_batch.capacity") == [(limit,)]
    # a changed prompt re-sends every row: plan and the run cut them under the learned limit
    job.write(prompt="Say the sentiment of: {{ text }}")
    plan = api.plan(job.path, job.options())
    assert plan.enqueued_token_limit == limit
    assert plan.limits["max_tokens"] == capacity.usable(limit)   # estimates are not counts
    assert plan.batches >= 3 and plan.waves == plan.batches   # one chunk fits at a time
    before = len(creates(emulator))
    report = job.run()
    assert report.exit_code == 0 and report.rows.succeeded == 200
    assert len(creates(emulator)) - before == plan.batches          # nothing refused
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                   "WHERE provider_status = 'failed'") == [(1,)]  # only the first run's


def test_a_setting_cuts_chunks_before_anything_is_refused(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=60)
    limit = limit_fifth(job)
    job.write(extra=f", enqueued_token_limit={limit}")
    set_limit(emulator, MODEL, limit)
    plan = api.plan(job.path, job.options())
    assert plan.enqueued_token_limit == limit and plan.waves >= 5
    assert job.run().exit_code == 0
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches "
                   "WHERE provider_status = 'failed'") == [(0,)]
    # the flag overrides down, too: a smaller limit makes more waves
    smaller = api.plan(job.path, job.options(enqueued_token_limit=limit // 2))
    assert smaller.enqueued_token_limit == limit // 2


def test_a_request_larger_than_the_limit_fails_permanently_naming_the_setting(tmp_path,
                                                                           emulator):
    job = Job(tmp_path, emulator, rows=12)
    job.sql("UPDATE reviews SET text = repeat('long review ', 400) WHERE id = 5")
    job.write(extra=", enqueued_token_limit=600")
    plan = api.plan(job.path, job.options())
    assert plan.requests_over_limit == 1
    report = job.run()
    assert report.rows.succeeded == 11 and report.rows.failed == 1
    assert report.exit_code == 4
    (status, error), = job.sql("SELECT _status, _error FROM enriched WHERE id = 5")
    assert status == "failed"
    assert "enqueued-token limit of 600" in error and "enqueued_token_limit" in error
    assert "--enqueued-token-limit" in error
    assert job.sql("SELECT retryable FROM warehouse_batch.results WHERE status = 'failed'") \
        == [(False,)]
    assert all(c["custom_id"] != job.sql(
        "SELECT custom_id FROM warehouse_batch.results WHERE status = 'failed'")[0][0]
        for c in emulator.admin("GET", "/_emulator/processed")["data"])
    # a larger limit sends it: the failure was about the limit, not the row
    job.write(extra=", enqueued_token_limit=100000")
    assert job.run().rows.succeeded == 12


def test_without_wait_a_run_that_must_wait_exits_75_and_says_why(tmp_path, fast_emulator):
    job = Job(tmp_path, fast_emulator, rows=40)
    limit = limit_fifth(job)
    env = emulator_env(fast_emulator)
    args = ["run", job.path, "--db", job.db, "--enqueued-token-limit", str(limit)]
    proc = subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 75, proc.stderr
    assert "waiting" in proc.stderr and f"enqueued-token limit is {limit:,}" in proc.stderr
    assert len(creates(fast_emulator)) == 1   # the first chunk went; the others wait
    assert job.sql("SELECT count(*) FROM warehouse_batch.batches WHERE state = 'intent'")[0][0] \
        >= 4
    proc = subprocess.run(EXE + args + ["--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    report = json.loads(proc.stdout)
    assert proc.returncode == 75 and report["submitted"]["batches_waiting"] >= 3
    assert "enqueued-token limit" in report["submitted"]["waiting"][0]
    for _ in range(10):   # each run collects the ended batch and creates the next one
        proc = subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 75:
            break
    assert proc.returncode == 0, proc.stderr
    assert max(billed_counts(fast_emulator).values()) == 1


def test_emulator_fail_fast_answers_400_and_limits_are_per_model(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/config", {"enqueued_token_limits": {"small": 5},
                                                 "token_limit_fail_fast": True})
    oai = openai.OpenAI(base_url=emulator.openai_base_url, api_key="k", max_retries=0)

    def create(model: str):
        line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": model, "messages": [
                               {"role": "user", "content": "x" * 200}]}})
        f = oai.files.create(file=("in.jsonl", line.encode(), "application/jsonl"),
                             purpose="batch")
        return oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")

    with pytest.raises(openai.BadRequestError) as bad:
        create("small")
    assert bad.value.code == "token_limit_exceeded"
    assert "Enqueued token limit reached for small in organization org-" in str(bad.value)
    assert "Limit: 5 enqueued tokens" in str(bad.value)
    assert create("other").status == "validating"   # no limit for other models


def test_a_pass_with_only_waiting_batches_is_idle(tmp_path, emulator):
    """While every unsent batch waits for room, `run --wait` only polls: it neither re-reads
    the source nor calls the provider for a submit (and its backoff keeps growing)."""
    job = Job(tmp_path, emulator, rows=60)
    limit = limit_fifth(job)
    report = job.run(enqueued_token_limit=limit)
    assert report.exit_code == 0 and len(creates(emulator)) >= 5
    submit_passes = [c for c in provider_calls(emulator, "GET", "/v1/batches")
                     if c["query"].get("limit") in ("1", 1)]   # the preflight of a submit
    assert report.polls > len(creates(emulator)) + 2           # there were idle passes...
    assert len(submit_passes) <= len(creates(emulator)) + 1    # ...that submitted nothing
