"""The Anthropic provider through the real `anthropic` SDK against the emulator over loopback:
the whole loop, incremental re-runs, retries, the API-version pin, prompt caching, and
batches whose create response was lost (Anthropic batches carry no tag to find them by)."""
from __future__ import annotations

import json

import pytest

from warehouse_batch import api
from warehouse_batch.errors import (AmbiguousCreateError, ConfigurationError, JobFileError,
                                    LookupUndecidedError,
                                    ProviderError)
from warehouse_batch.providers.base import LedgerBatch
from warehouse_batch.spec import load_job

import helpers
from helpers import billed_counts, emulator_env, provider_calls, write_job

PROMPT = "Classify the sentiment of this review: {{ text }}"
BATCHES = "/v1/messages/batches"


class Job(helpers.Job):
    """The shared test job (tests/helpers.py), defaulting to this file's provider."""

    def __init__(self, tmp_path, emu, **kw):
        kw.setdefault("provider", "anthropic")
        kw.setdefault("model", "claude-haiku-4-5")
        super().__init__(tmp_path, emu, **kw)


def anthropic_client(emu, **kw):
    import anthropic

    return anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", **kw)


def remote_batches(emu) -> list:
    return list(anthropic_client(emu).messages.batches.list(limit=100))


# -- the whole loop ----------------------------------------------------------------------------

def test_end_to_end_every_row_answered(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    report = job.run()
    assert report.rows.rows == 12 and report.rows.succeeded == 12 and report.exit_code == 0
    rows = job.sql("SELECT id, response, _status, _error, _finish_reason, _input_tokens, "
                   "_output_tokens FROM enriched ORDER BY id")
    assert {r[2] for r in rows} == {"succeeded"} and all(r[3] is None for r in rows)
    by_id = {r[0]: r[1] for r in rows}
    assert by_id[1] == "positive" and by_id[2] == "negative" and by_id[3] == "neutral"
    assert {r[4] for r in rows} == {"end_turn"}
    assert all(r[5] > 0 and r[6] > 0 for r in rows)
    # requests went inline: no file upload, one create
    assert provider_calls(emulator, path_prefix="/v1/files") == []
    assert job.batches_created() == 1
    (body,) = {r[0] for r in job.sql(
        "SELECT body FROM warehouse_batch.requests WHERE request_hash = "
        "(SELECT _request_hash FROM enriched WHERE id = 1)")}
    body = json.loads(body)
    assert body == {"model": "claude-haiku-4-5", "max_tokens": 5,
                    "system": "Answer with one word.",
                    "messages": [{"role": "user", "content":
                                  PROMPT.replace("{{ text }}", "I love it, great 0")}]}
    assert job.sql("SELECT DISTINCT provider, endpoint FROM warehouse_batch.requests") == \
        [("anthropic", "/v1/messages")]
    assert job.sql("SELECT DISTINCT state FROM warehouse_batch.batches") == [("collected",)]
    # the stored response is the Message the emulator sent
    stored = job.sql("SELECT response_body FROM warehouse_batch.results LIMIT 1")[0][0]
    assert json.loads(stored)["type"] == "message"


def test_output_table_has_the_same_columns_as_openai(tmp_path, emulator):
    anthropic_job = Job(tmp_path, emulator, db="a.duckdb")
    anthropic_job.run()
    openai_job = Job(tmp_path, emulator, db="o.duckdb", provider="openai",
                     model="gpt-4.1-mini")
    openai_job.run()
    shape = "SELECT column_name, data_type FROM information_schema.columns " \
            "WHERE table_name = 'enriched' ORDER BY ordinal_position"
    assert anthropic_job.sql(shape) == openai_job.sql(shape)
    results = "SELECT column_name, data_type FROM information_schema.columns " \
              "WHERE table_schema = 'warehouse_batch' AND table_name = 'results' " \
              "ORDER BY ordinal_position"
    assert anthropic_job.sql(results) == openai_job.sql(results)
    assert anthropic_job.sql("SELECT response FROM enriched ORDER BY id") == \
        openai_job.sql("SELECT response FROM enriched ORDER BY id")


def test_second_run_sends_nothing(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    batches, calls = job.batches_created(), len(provider_calls(emulator, "POST"))
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and report.exit_code == 0
    assert job.batches_created() == batches and len(provider_calls(emulator, "POST")) == calls


def test_only_edited_rows_are_sent(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.sql("UPDATE reviews SET text = 'edited: worst ever' WHERE id IN (5, 7)")
    plan = api.plan(job.path, job.options())
    assert (plan.rows_changed, plan.rows_done, plan.requests_to_send) == (2, 10, 1)
    report = job.run()
    assert report.submitted.requests_submitted == 1   # two rows, one identical request
    sent = {r[0] for r in job.sql(
        "SELECT r.body ->> '$.messages[0].content' FROM warehouse_batch.batch_requests br "
        "JOIN warehouse_batch.batches b USING (batch_id) "
        "JOIN warehouse_batch.requests r USING (request_hash) WHERE b.run_id = ?",
        [report.run_id])}
    assert sent == {PROMPT.replace("{{ text }}", "edited: worst ever")}
    assert job.sql("SELECT response FROM enriched WHERE id IN (5, 7)") == \
        [("negative",), ("negative",)]
    assert report.rows.succeeded == 12


@pytest.mark.parametrize("knobs", [{"failure_rate": 0.1, "expire_fraction": 0.5},
                                   {"failure_rate": 0.1, "cancel_fraction": 0.5}],
                         ids=["expire", "cancel"])
def test_failures_expiry_and_cancel_end_with_every_row_succeeded(tmp_path, emulator, knobs):
    emulator.admin("POST", "/_emulator/config", knobs)
    job = Job(tmp_path, emulator, rows=60, extra=", max_attempts=10")
    report = job.run()
    assert report.rows.succeeded == 60 and report.rows.pending == 0, report.to_dict()
    billed = billed_counts(emulator)
    assert len(billed) == 60 and max(billed.values()) == 1  # nothing paid twice
    outcomes = dict(job.sql("SELECT outcome, count(*) FROM warehouse_batch.attempts "
                            "GROUP BY 1"))
    never_ran = "expired" if "expire_fraction" in knobs else "cancelled"
    assert outcomes[never_ran] > 0 and outcomes["errored"] > 0 and outcomes["succeeded"] == 60


def test_truncated_answers_show_max_tokens(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.sql("UPDATE reviews SET text = 'long story [[emu:truncate]]' WHERE id = 2")
    job.run()
    assert job.sql("SELECT _finish_reason FROM enriched WHERE id = 2") == [("max_tokens",)]


# -- settings refused or honoured at plan time --------------------------------------------------

def test_max_tokens_is_required(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    write_job(tmp_path, """
        name='enriched', provider='anthropic', model='claude-haiku-4-5', unique_key='id',
        prompt='{{ text }}'""", "SELECT id, text FROM reviews")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert "max_tokens" in str(e.value) and "max_tokens=" in e.value.hint
    assert e.value.location.line == 2    # the provider= line of the config block
    assert provider_calls(emulator) == []


def test_temperature_needs_the_version_pin(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=",\ntemperature=0")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert "temperature" in str(e.value) and "anthropic_version='2023-06-01'" in e.value.hint
    lines = open(job.path).read().splitlines()
    assert "temperature=" in lines[e.value.location.line - 1]   # points at the key
    assert provider_calls(emulator) == []
    # pinned: the emulator (strict about 2026-10-21) accepts every request
    job.write(extra=",\ntemperature=0, anthropic_version='2023-06-01'")
    report = job.run()
    assert report.rows.succeeded == 12
    assert job.sql("SELECT DISTINCT body ->> '$.temperature' FROM warehouse_batch.requests") \
        == [("0",)]
    # anthropic_version is a client setting, not part of the body
    assert job.sql("SELECT count(*) FROM warehouse_batch.requests "
                   "WHERE body ->> '$.anthropic_version' IS NOT NULL") == [(0,)]


def test_unpinned_sampling_parameters_fail_on_the_api(tmp_path, emulator):
    """Why validate() refuses: the SDK's default API version errors every such request."""
    client = anthropic_client(emulator)
    b = client.messages.batches.create(requests=[{"custom_id": "r1", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 5, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]}}])
    emulator.advance(3600)
    (line,) = list(client.messages.batches.results(b.id))
    assert line.result.type == "errored" and "temperature" in line.result.error.error.message


@pytest.mark.parametrize("extra, key", [
    (", seed=7", "seed"),
    (", response_format={'type': 'json_object'}", "response_format"),
    (", endpoint='embeddings'", "endpoint"),
    (", base_url='http://127.0.0.1:1/v1'", "base_url"),
    (", stop='x', stop_sequences=['y']", "stop_sequences"),
])
def test_settings_anthropic_cannot_take_are_refused(tmp_path, emulator, extra, key):
    # the host is allowed, so a base_url is refused for its /v1, not for its host
    job = Job(tmp_path, emulator, extra=extra, WAREHOUSE_BATCH_ALLOWED_HOSTS="127.0.0.1")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert e.value.location == load_job(job.path).location_of(key)


def test_stop_becomes_stop_sequences(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", stop='\\n'")
    body = job.provider().build_body("sys", "hello")
    assert body["stop_sequences"] == ["\n"] and "stop" not in body
    job.write(extra=", stop=['a', 'b'], params={'top_k': 3}, anthropic_version='2023-06-01'")
    body = job.provider().build_body(None, "hello")
    assert body["stop_sequences"] == ["a", "b"] and body["top_k"] == 3 and "system" not in body


def test_cache_system_prompt_records_cache_reads(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", cache_system_prompt=True")
    report = job.run()
    assert report.rows.succeeded == 12
    systems = {r[0] for r in job.sql("SELECT body -> '$.system' FROM warehouse_batch.requests")}
    assert [json.loads(s) for s in systems] == [[{
        "type": "text", "text": "Answer with one word.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]]
    reads, writes = zip(*job.sql("SELECT cached_tokens, cache_creation_tokens "
                                 "FROM warehouse_batch.results"))
    assert sum(1 for w in writes if w) == 1           # the first use writes the cache
    assert sum(1 for r in reads if r) == 11 and all(r >= 0 for r in reads)
    # input_tokens is the whole prompt: cached parts included, as with OpenAI
    assert job.sql("SELECT count(*) FROM warehouse_batch.results "
                   "WHERE input_tokens < cached_tokens + cache_creation_tokens") == [(0,)]
    (usage,) = job.sql("SELECT cached_tokens, cache_creation_tokens FROM warehouse_batch.usage")
    assert usage[0] == sum(reads) and usage[1] == sum(writes)


def test_caching_is_part_of_the_request(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.run()
    job.write(extra=", cache_system_prompt=True")
    assert api.plan(job.path, job.options()).rows_changed == 12


def test_typed_columns_use_structured_outputs(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", columns={'sentiment': "
              "\"enum('positive','negative','neutral')\", 'confidence': 'double'}")
    job.sql("UPDATE reviews SET text = text || ' [[emu:truncate]]' WHERE id = 3")
    report = job.run()
    assert report.rows.succeeded == 11 and report.rows.failed == 1, report.to_dict()
    assert job.sql("SELECT sentiment FROM enriched WHERE id IN (1, 2) ORDER BY id") == \
        [("positive",), ("negative",)]
    body = json.loads(job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0])
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert set(body["output_config"]["format"]["schema"]["properties"]) == \
        {"sentiment", "confidence"}
    (error,) = job.sql("SELECT _error FROM enriched WHERE id = 3")[0]
    assert "cut off by max_tokens" in error


# -- provider switches ---------------------------------------------------------------------------

def test_switching_provider_resends_and_switching_back_is_free(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="openai", model="gpt-4.1-mini")
    assert job.run().rows.succeeded == 12
    job.write(provider="anthropic", model="claude-haiku-4-5")
    report = job.run()
    assert report.submitted.requests_submitted == 12 and report.rows.succeeded == 12
    job.write(provider="openai", model="gpt-4.1-mini")
    posts = len(provider_calls(emulator, "POST"))
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and report.rows.succeeded == 12
    assert len(provider_calls(emulator, "POST")) == posts


# -- lost create responses --------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["error_after_create", "drop_after_create"])
def test_lost_create_response_does_not_pay_twice(tmp_path, emulator, fault):
    emulator.admin("POST", "/_emulator/config", {"create_fault": fault,
                                                 "create_fault_count": 1})
    job = Job(tmp_path, emulator)
    report = job.run()
    assert report.rows.succeeded == 12
    (create,) = provider_calls(emulator, "POST", BATCHES)   # looked up, never re-sent
    assert create["status"] == (500 if fault == "error_after_create" else None)
    assert len(remote_batches(emulator)) == 1
    assert max(billed_counts(emulator).values()) == 1
    assert len(job.sql("SELECT DISTINCT provider_batch_id FROM warehouse_batch.batches")) == 1


def test_ambiguous_create_that_never_happened_is_created_on_the_next_pass(tmp_path, emulator):
    """A 503 before the batch exists: found nowhere, left in `creating`, created next pass."""
    emulator.admin("POST", "/_emulator/faults", {"method": "POST", "path": BATCHES,
                                                 "status": 503})
    job = Job(tmp_path, emulator)
    first = api.submit(job.path, job.options())
    assert first.submitted.batches_pending_create == 1 and remote_batches(emulator) == []
    assert job.sql("SELECT state FROM warehouse_batch.batches") == [("creating",)]
    report = job.run()
    assert report.rows.succeeded == 12 and len(remote_batches(emulator)) == 1


def _ledger(batch_id: str, count: int, created_at) -> LedgerBatch:
    return LedgerBatch(batch_id=batch_id, run_id="r", job_name="j", endpoint="/v1/messages",
                       model="m", chunk=0, state="creating", request_count=count, bytes=0,
                       created_at=created_at)


def _payload(tmp_path, name: str, ids: list[str]):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": i, "params": {
        "model": "claude-haiku-4-5", "max_tokens": 5,
        "messages": [{"role": "user", "content": f"text {i}"}]}}) + "\n" for i in ids))
    return path


def _emulator_now(emulator):
    import datetime as dt

    now = emulator.admin("GET", "/_emulator/clock")["now"]
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(tzinfo=None)


def test_find_batch_rules(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    provider = job.provider()
    client = anthropic_client(emulator)
    intent = _emulator_now(emulator)
    mine = _payload(tmp_path, "mine", ["wb_a", "wb_b"])
    other = _payload(tmp_path, "other", ["wb_c", "wb_d"])
    ours = _ledger("wbb_1", 2, intent)

    def create(payload):
        return client.messages.batches.create(
            requests=[json.loads(line) for line in payload.read_text().splitlines()])

    # nothing there
    assert provider.find_batch(ours, mine) is None
    # one in-progress candidate of the right size: adopted
    b1 = create(other)
    assert provider.find_batch(ours, mine).provider_batch_id == b1.id
    # ... unless the ledger owns it, or the size differs
    assert provider.find_batch(ours, mine, frozenset({b1.id})) is None
    assert provider.find_batch(_ledger("wbb_1", 3, intent), mine) is None
    # two in-progress candidates: cannot tell, adopt neither and say so (never re-create)
    b2 = create(mine)
    with pytest.raises(LookupUndecidedError):
        provider.find_batch(ours, mine)
    # once ended, the custom_ids decide
    emulator.advance(3600)
    assert provider.find_batch(ours, mine).provider_batch_id == b2.id
    assert provider.find_batch(ours, other).provider_batch_id == b1.id
    assert provider.find_batch(ours, mine, frozenset({b2.id})) is None
    # without a payload nothing can be confirmed: two candidates, none adopted
    with pytest.raises(LookupUndecidedError):
        provider.find_batch(ours, None)
    # batches created well before the intent are not looked at
    later = _ledger("wbb_1", 2, _emulator_now(emulator))
    assert provider.find_batch(later, mine) is None


# -- errors ------------------------------------------------------------------------------------

def _fake_client(status: int, body: dict):
    import anthropic
    import httpx2

    def answer(request):
        return httpx2.Response(status, json=body, headers={"request-id": "req_test"})

    return anthropic.Anthropic(api_key="x", base_url="http://anthropic.test", max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))


def test_refused_key_and_unreachable_host_are_clear(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    provider = job.provider()
    provider._client = _fake_client(401, {"type": "error", "error": {
        "type": "authentication_error", "message": "invalid x-api-key"}})
    with pytest.raises(ProviderError) as e:
        provider.preflight()
    assert "refused the API key" in str(e.value) and not e.value.retryable
    job.write(extra=", base_url='http://127.0.0.1:9'")
    job.env["WAREHOUSE_BATCH_ALLOWED_HOSTS"] = "127.0.0.1:9"
    with pytest.raises(ProviderError) as e:
        job.provider().preflight()
    assert "cannot reach" in str(e.value) and "127.0.0.1:9" in str(e.value)
    with pytest.raises(ProviderError) as e:
        api.run(job.path, job.options())
    assert "cannot reach" in str(e.value)


def test_missing_key_is_a_configuration_error(tmp_path, emulator):
    job = Job(tmp_path, emulator, ANTHROPIC_API_KEY="")
    with pytest.raises(ConfigurationError) as e:
        job.provider().preflight()
    assert "ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN" in str(e.value)
    job = Job(tmp_path, emulator, db="t.duckdb", ANTHROPIC_API_KEY="",
              ANTHROPIC_AUTH_TOKEN="token")
    assert job.run().rows.succeeded == 12


def test_base_url_with_v1_is_refused(tmp_path, emulator):
    job = Job(tmp_path, emulator, ANTHROPIC_BASE_URL=emulator.anthropic_base_url + "/v1")
    with pytest.raises(ConfigurationError) as e:
        job.provider().preflight()
    assert "/v1" in str(e.value)


@pytest.mark.parametrize("status, ambiguous", [(500, True), (503, True), (529, True),
                                               (408, True), (400, False), (413, False)])
def test_create_errors_are_ambiguous_only_when_they_may_have_happened(tmp_path, emulator,
                                                                      status, ambiguous):
    job = Job(tmp_path, emulator)
    provider = job.provider()
    provider._client = _fake_client(status, {"type": "error", "error": {
        "type": "whatever_error", "message": "nope"}})
    payload = _payload(tmp_path, "p", ["wb_a"])
    with pytest.raises(ProviderError) as e:
        provider.create(_ledger("wbb_1", 1, _emulator_now(emulator)), payload)
    assert isinstance(e.value, AmbiguousCreateError) is ambiguous
    if not ambiguous:
        assert "nope" in str(e.value) and not e.value.retryable


def test_create_sends_each_request_once_without_sdk_retries(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/faults", {"method": "POST", "path": BATCHES,
                                                 "status": 529})
    job = Job(tmp_path, emulator)
    provider = job.provider()
    with pytest.raises(AmbiguousCreateError):
        provider.create(_ledger("wbb_1", 1, _emulator_now(emulator)),
                        _payload(tmp_path, "p", ["wb_a"]))
    assert len(provider_calls(emulator, "POST", BATCHES)) == 1


def test_results_are_downloaded_as_the_raw_lines(tmp_path, emulator):
    import urllib.request

    job = Job(tmp_path, emulator)
    provider = job.provider()
    client = anthropic_client(emulator)
    b = client.messages.batches.create(requests=[
        json.loads(line) for line in _payload(tmp_path, "p", ["wb_a", "wb_b", "wb_c"])
        .read_text().splitlines()])
    emulator.advance(3600)
    batch = _ledger("wbb_1", 3, None)
    batch.provider_batch_id = b.id
    remote = provider.retrieve(batch)
    assert remote.ended and remote.status == "ended" and sum(remote.counts.values()) == 3
    out = tmp_path / "out"
    out.mkdir()
    (path,) = provider.download_results(batch, remote, out)
    request = urllib.request.Request(f"{emulator.url}/v1/messages/batches/{b.id}/results",
                                     headers={"x-api-key": "x",
                                              "anthropic-version": "2023-06-01"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request) as response:
        served = response.read()
    assert path.read_bytes() == served and b"\n\n" not in served
    assert sorted(json.loads(line)["custom_id"] for line in served.splitlines()) == \
        ["wb_a", "wb_b", "wb_c"]


# -- cancel, and crashes anywhere ----------------------------------------------------------------

def test_cancel_keeps_partial_answers(tmp_path, emulator):
    job = Job(tmp_path, emulator, rows=20)
    api.submit(job.path, job.options())
    emulator.advance(5 + 30)    # validating, then half the processing time
    cancelled = api.cancel(job.path, job.options())
    assert len(cancelled.cancelled) == 1
    assert job.sql("SELECT provider_status FROM warehouse_batch.batches") == [("canceling",)]
    emulator.advance(60)
    report = api.collect(job.path, job.options())
    assert 0 < report.rows.succeeded < 20 and report.collected.not_processed > 0
    assert job.sql("SELECT count(*) FROM warehouse_batch.attempts WHERE outcome = 'cancelled'") \
        == [(20 - report.rows.succeeded,)]
    final = job.run()
    assert final.rows.succeeded == 20
    assert max(billed_counts(emulator).values()) == 1


def test_cancelling_a_batch_that_already_ended_is_harmless(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    api.submit(job.path, job.options())
    emulator.advance(3600)
    assert len(api.cancel(job.path, job.options()).cancelled) == 1
    assert job.sql("SELECT provider_status FROM warehouse_batch.batches") == [("ended",)]
    assert api.collect(job.path, job.options()).rows.succeeded == 12


@pytest.mark.parametrize("point", ["after_intent", "after_upload", "after_create",
                                   "during_collect", "after_collect_commit"])
def test_sigkill_anywhere_then_run_finishes_without_paying_twice(tmp_path, fast_emulator,
                                                                 point):
    """`after_create` is the lost create: the batch exists (and has ended) but the ledger
    never heard of it; the next run finds it by size and custom_ids."""
    import signal
    import subprocess
    import sys

    job = Job(tmp_path, fast_emulator, rows=8)
    env = emulator_env(fast_emulator)
    cmd = [sys.executable, "-m", "warehouse_batch.cli", "run", job.path, "--db", job.db]
    crashed = subprocess.run(cmd, env={**env, "WAREHOUSE_BATCH_CRASH_AT": point},
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    done = subprocess.run(cmd + ["--wait", "--poll-interval", "0.01"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert job.sql("SELECT DISTINCT _status FROM enriched") == [("succeeded",)]
    billed = billed_counts(fast_emulator)
    assert len(billed) == 8 and max(billed.values()) == 1
    assert job.batches_created() == 1


def test_results_archived_before_collection_are_sent_again(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    api.submit(job.path, job.options())
    emulator.advance(30 * 86400)     # results are archived 29 days after creation
    report = api.collect(job.path, job.options())
    assert report.rows.pending == 12 and report.exit_code == 75
    assert "archived" in job.sql("SELECT DISTINCT _error FROM enriched")[0][0]
    assert job.run().rows.succeeded == 12 and job.batches_created() == 2
