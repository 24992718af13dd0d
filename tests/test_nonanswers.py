"""Answers that are not answers (issue 8, items 7 and 8): refusals, content-filter stops and
plain-text answers cut off by max_tokens end `failed`, permanently, with the reason in
`_error`; `allow_truncated=true` keeps cut-off answers. Anthropic per-request error types are
permanent or retryable as the provider documents them (field-facts.md). Prices: older and
dated models priced by their own rows, Anthropic cache writes by TTL. Against the emulator's
markers, through the real SDKs."""
from __future__ import annotations

import duckdb
import openai
import pytest

from warehouse_batch import api
from warehouse_batch.emulator.answers import REFUSAL_TEXT
from warehouse_batch.errors import ProviderError
from warehouse_batch.state import ensure_schema

from helpers import Job, provider_calls

MARKED = {2: "[[emu:refuse]]", 3: "[[emu:filter]]", 4: "[[emu:truncate]]"}


def mark(job: Job, marks: dict[int, str]) -> None:
    for row, marker in marks.items():
        job.sql(f"UPDATE reviews SET text = text || ' {marker}' WHERE id = {row}")


def outcome(job: Job) -> dict[int, tuple]:
    return {r[0]: r[1:] for r in job.sql(
        "SELECT id, _status, _error, _finish_reason FROM enriched ORDER BY id")}


def retryable(job: Job) -> dict[str, bool]:
    return dict(job.sql("SELECT error_type, retryable FROM warehouse_batch.results "
                        "WHERE status = 'failed'"))


# -- refusals, content filter, truncation ------------------------------------------------------

@pytest.mark.parametrize("provider,model,extra", [
    ("openai", "gpt-4.1-mini", ""),
    ("azure_openai", "gpt-4o-mini-batch", ""),
    ("anthropic", "claude-haiku-4-5", ""),
])
def test_non_answers_fail_permanently_with_the_reason(tmp_path, emulator, provider, model,
                                                      extra):
    env = ({"AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_ENDPOINT": emulator.azure_endpoint}
           if provider == "azure_openai" else {})
    job = Job(tmp_path, emulator, provider=provider, model=model, max_tokens=50, **env)
    mark(job, MARKED)
    report = job.run()
    assert report.rows.succeeded == 9 and report.rows.failed == 3, report.to_dict()
    rows = outcome(job)
    assert all(rows[i][0] == "succeeded" and rows[i][1] is None for i in rows if i not in MARKED)
    assert rows[2][0] == "failed" and "refused" in rows[2][1] and REFUSAL_TEXT in rows[2][1]
    if provider == "anthropic":   # no content filter at Anthropic: the emulator refuses
        assert rows[3][0] == "failed" and "stop_reason refusal" in rows[3][1]
        assert rows[4][2] == "max_tokens"
    else:
        assert rows[3][0] == "failed" and "content filter" in rows[3][1]
        assert rows[3][2] == "content_filter" and rows[4][2] == "length"
    assert rows[4][0] == "failed" and "raise max_tokens" in rows[4][1]
    assert not any(retryable(job).values())   # refusal, content_filter, truncated
    # permanent: the next run sends nothing again
    sent = len(provider_calls(emulator, "POST"))
    again = job.run()
    assert again.rows.failed == 3 and len(provider_calls(emulator, "POST")) == sent
    assert job.sql("SELECT max(attempts) FROM warehouse_batch.results") == [(1,)]


def test_allow_truncated_keeps_cut_off_plain_text(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=",\nallow_truncated=true")
    mark(job, MARKED)
    job.run()
    rows = outcome(job)
    assert rows[4][:2] == ("succeeded", None) and rows[4][2] == "length"
    assert job.sql("SELECT response FROM enriched WHERE id = 4")[0][0]
    assert rows[2][0] == "failed" and rows[3][0] == "failed"   # still not answers


def test_allow_truncated_is_not_part_of_the_request(tmp_path, emulator):
    """It judges answers and sends nothing: switching it changes no request hash."""
    job = Job(tmp_path, emulator, extra=",\nallow_truncated=true")
    assert job.run().rows.succeeded == 12
    job.write()
    assert job.run().rows.succeeded == 12
    assert len([c for c in provider_calls(emulator, "POST")
                if c["path"] == "/v1/batches"]) == 1


def test_refused_typed_answer_fails_on_openai(tmp_path, emulator):
    job = Job(tmp_path, emulator, max_tokens=50,
              extra=",\ncolumns={'label': 'VARCHAR'}")
    mark(job, {5: "[[emu:refuse]]"})
    job.run()
    status, error = job.sql("SELECT _status, _error FROM enriched WHERE id = 5")[0]
    assert status == "failed" and error.startswith("refused: ") and REFUSAL_TEXT in error
    assert job.sql("SELECT count(*) FROM enriched WHERE _status = 'succeeded'") == [(11,)]


# -- Anthropic per-request error types ---------------------------------------------------------

PERMANENT = ("invalid_request_error", "not_found_error", "permission_error",
             "authentication_error", "billing_error", "request_too_large")
RETRYABLE = ("api_error", "overloaded_error", "rate_limit_error", "timeout_error")


def test_anthropic_error_types_are_classified(tmp_path, emulator):
    kinds = PERMANENT + RETRYABLE
    job = Job(tmp_path, emulator, provider="anthropic", model="claude-haiku-4-5",
              rows=len(kinds) + 1, extra=", max_attempts=2")
    mark(job, {i + 1: f"[[emu:err_{k}]]" for i, k in enumerate(kinds)})
    job.run()
    got = dict(job.sql("SELECT error_type, retryable FROM warehouse_batch.results "
                       "WHERE status = 'failed'"))
    assert got == {**{k: False for k in PERMANENT}, **{k: True for k in RETRYABLE}}
    sends = dict(job.sql("""SELECT r.error_type, count(*) FROM warehouse_batch.attempts a
        JOIN warehouse_batch.results r USING (request_hash) GROUP BY 1"""))
    assert all(sends[k] == 1 for k in PERMANENT)      # never sent again
    assert all(sends[k] == 2 for k in RETRYABLE)      # sent again, up to max_attempts
    assert job.sql("SELECT _status FROM enriched WHERE id = 11") == [("succeeded",)]


# -- prices ------------------------------------------------------------------------------------

def price_of(con, provider: str, model: str) -> tuple:
    return con.execute("""SELECT p.model, p.input, p.output FROM warehouse_batch.prices p
        WHERE p.provider = ? AND starts_with(?, p.model)
        ORDER BY length(p.model) DESC LIMIT 1""", [provider, model]).fetchone()


def test_older_and_dated_models_have_their_own_prices(tmp_path):
    con = duckdb.connect(str(tmp_path / "p.duckdb"))
    ensure_schema(con)
    assert price_of(con, "anthropic", "claude-opus-4-1-20250805") == \
        ("claude-opus-4-1", 7.50, 37.50)
    assert price_of(con, "anthropic", "claude-opus-4-20250514") == ("claude-opus-4", 7.50, 37.50)
    assert price_of(con, "anthropic", "claude-opus-4-5-20251101")[1:] == (2.50, 12.50)
    assert price_of(con, "openai", "gpt-4o-2024-05-13") == ("gpt-4o-2024-05-13", 2.50, 7.50)
    assert price_of(con, "openai", "gpt-4o-2024-08-06") == ("gpt-4o", 1.25, 5.00)
    assert price_of(con, "openai", "gpt-4o-mini-2024-07-18")[0] == "gpt-4o-mini"


def test_opus_4_1_job_is_priced_at_its_own_rate(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="anthropic", model="claude-opus-4-1")
    plan = api.plan(job.path, job.options())
    assert plan.est_input_cost_usd == pytest.approx(plan.est_input_tokens * 7.50 / 1e6,
                                                    abs=1e-6)
    job.run()
    (tin, tout), = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                           "FROM warehouse_batch.results")
    assert job.sql("SELECT cost_usd FROM warehouse_batch.costs") == \
        [(round((tin * 7.50 + tout * 37.50) / 1e6, 6),)]


def test_cache_writes_are_priced_by_ttl(tmp_path, emulator):
    """warehouse-batch writes 1-hour caches (2x input); a 5-minute write is 1.25x."""
    job = Job(tmp_path, emulator, provider="anthropic", model="claude-haiku-4-5", rows=3,
              extra=",\ncache_system_prompt=True")
    job.run()
    (tin, tout, written, one_hour), = job.sql(
        "SELECT input_tokens, output_tokens, cache_creation_tokens, cache_write_1h_tokens "
        "FROM warehouse_batch.costs")
    assert written > 0 and one_hour == written
    (read,), = job.sql("SELECT sum(cached_tokens) FROM warehouse_batch.results")
    plain = tin - written - read
    expect = (plain * 0.50 + read * 0.50 * 0.1 + written * 0.50 * 2.0 + tout * 2.50) / 1e6
    assert job.sql("SELECT cost_usd FROM warehouse_batch.costs") == [(round(expect, 6),)]
    # the same writes recorded with the 5-minute TTL (test_spend: how collect splits them)
    # cost 1.25x
    job.sql("UPDATE warehouse_batch.attempts SET cache_write_1h_tokens = 0 "
            "WHERE cache_creation_tokens > 0")
    expect5 = (plain * 0.50 + read * 0.50 * 0.1 + written * 0.50 * 1.25 + tout * 2.50) / 1e6
    assert job.sql("SELECT cost_usd, cache_write_1h_tokens FROM warehouse_batch.costs") == \
        [(round(expect5, 6), 0)]


# -- abandoned batches ----------------------------------------------------------------------------

def test_abandoned_batch_input_file_is_deleted(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/faults", {"method": "POST", "path": "/v1/batches",
                                                  "status": 400})
    job = Job(tmp_path, emulator)
    with pytest.raises(ProviderError):
        job.run()
    (state, fid), = job.sql("SELECT state, input_file_id FROM warehouse_batch.batches")
    assert state == "abandoned" and fid
    assert [c["path"] for c in provider_calls(emulator, "DELETE")] == [f"/v1/files/{fid}"]
    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="x")
    assert list(client.files.list()) == []


def test_cancel_deletes_the_input_file_of_a_batch_never_created(tmp_path, emulator):
    """A batch uploaded but not created (the process died in between) is abandoned by
    `cancel`; its input file goes too."""
    import subprocess
    import sys

    from helpers import emulator_env

    job = Job(tmp_path, emulator)
    env = {**emulator_env(emulator), "WAREHOUSE_BATCH_CRASH_AT": "after_upload"}
    crashed = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "run", job.path,
                              "--db", job.db], env=env, capture_output=True, text=True)
    assert crashed.returncode < 0, crashed.stderr      # killed at the crash point
    (fid,), = job.sql("SELECT input_file_id FROM warehouse_batch.batches")
    report = api.cancel(job.path, job.options())
    assert report.abandoned and not report.warnings
    assert [c["path"] for c in provider_calls(emulator, "DELETE")] == [f"/v1/files/{fid}"]


def test_openai_and_azure_files_are_200_decimal_megabytes():
    from warehouse_batch.providers.azure import AzureOpenAIProvider
    from warehouse_batch.providers.openai import OpenAIProvider

    assert OpenAIProvider.limits.max_bytes == AzureOpenAIProvider.limits.max_bytes == 200_000_000
