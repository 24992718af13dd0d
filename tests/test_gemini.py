"""provider='gemini' (issue 12): the official google-genai SDK against the emulator over
loopback, through the same lifecycle as the other providers. Time moves by the emulator's
manual clock; nothing sleeps."""
from __future__ import annotations

import builtins
import json
import re
from pathlib import Path

import pytest

from helpers import Job, billed_counts, creates, emulator_env, provider_calls
from warehouse_batch import api
from warehouse_batch.errors import JobFileError

MODEL = "gemini-2.5-flash"
ROOT = Path(__file__).resolve().parents[1]


def gemini_job(tmp_path, emu, **kw) -> Job:
    return Job(tmp_path, emu, provider="gemini", model=MODEL, **kw)


def sdk_client(emu):
    from google import genai
    from google.genai import types

    return genai.Client(api_key="test", http_options=types.HttpOptions(
        base_url=emu.gemini_base_url, api_version="v1beta"))


# -- the emulator, as the SDK sees it -----------------------------------------------------------

def test_sdk_round_trip_upload_create_poll_download(tmp_path, fast_emulator):
    client = sdk_client(fast_emulator)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"key": f"k{i}", "request": {
        "contents": [{"role": "user", "parts": [{"text": f"I love it {i}"}]}],
        "systemInstruction": {"parts": [{"text": "Label the sentiment."}]}}}) + "\n"
        for i in range(3)))
    uploaded = client.files.upload(file=str(path), config={"mime_type": "application/jsonl",
                                                           "display_name": "b.jsonl"})
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == path.stat().st_size
    job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "wb-1"})
    assert job.name.startswith("batches/") and job.display_name == "wb-1"
    done = client.batches.get(name=job.name)
    assert done.state.value == "JOB_STATE_SUCCEEDED"   # the SDK's words ...
    raw = fast_emulator.admin("GET", "/_emulator/requests")["data"]
    assert any(c["path"] == "/upload/v1beta/files" for c in raw)
    wire = json.loads(client._api_client.request("get", job.name, {}, None).body)
    assert wire["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"   # ... and the wire's
    assert wire["metadata"]["batchStats"]["successfulRequestCount"] == "3"
    lines = [json.loads(x) for x in client.files.download(file=done.dest.file_name).splitlines()]
    assert sorted(x["key"] for x in lines) == ["k0", "k1", "k2"]
    assert {x["response"]["candidates"][0]["content"]["parts"][0]["text"] for x in lines} \
        == {"positive"}
    assert [j.display_name for j in client.batches.list()] == ["wb-1"]


def test_sdk_errors_have_google_shape(fast_emulator):
    from google.genai import errors

    client = sdk_client(fast_emulator)
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name="batches/nope")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    from google import genai
    from google.genai import types

    bad = genai.Client(api_key="wrong-key", http_options=types.HttpOptions(
        base_url=fast_emulator.gemini_base_url, api_version="v1beta"))
    with pytest.raises(errors.ClientError) as refused:
        bad.batches.list()
    assert refused.value.code == 400 and "API key not valid" in refused.value.message


def test_both_state_vocabularies_are_read():
    from warehouse_batch.providers.gemini import job_state

    assert job_state("BATCH_STATE_RUNNING") == job_state("JOB_STATE_RUNNING") \
        == "BATCH_STATE_RUNNING"
    from google.genai import types

    assert job_state(types.JobState.JOB_STATE_EXPIRED) == "BATCH_STATE_EXPIRED"


# -- the lifecycle -----------------------------------------------------------------------------

def test_end_to_end_every_row_answered_and_files_cleaned(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator)
    report = job.run()
    assert report.exit_code == 0 and report.rows.succeeded == 12
    by_id = dict(job.sql("SELECT id, response FROM enriched"))
    assert (by_id[1], by_id[2], by_id[3]) == ("positive", "negative", "neutral")
    ((status, display),) = job.sql("SELECT provider_status, batch_id FROM warehouse_batch.batches")
    assert status == "BATCH_STATE_SUCCEEDED"
    sent = job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0]
    body = json.loads(sent)
    assert body["systemInstruction"] == {"parts": [{"text": "Answer with one word."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 5}
    assert body["contents"][0]["role"] == "user"
    client = sdk_client(emulator)
    assert [j.display_name for j in client.batches.list()] == [display]   # our batch id
    assert list(client.files.list()) == []                               # cleaned up
    (tokens_in, tokens_out), = job.sql("SELECT sum(input_tokens), sum(output_tokens) "
                                       "FROM warehouse_batch.results")
    assert job.sql("SELECT answers_billed, cost_usd FROM warehouse_batch.costs") == \
        [(12, round((tokens_in * 0.15 + tokens_out * 1.25) / 1e6, 6))]


def test_incremental_only_new_and_edited_rows_are_sent(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator)
    job.run()
    assert job.run(wait=False).submitted.requests_submitted == 0
    job.sql("INSERT INTO reviews VALUES (100, 'new and great')")
    job.sql("UPDATE reviews SET text = 'edited: worst ever' WHERE id = 5")
    report = job.run()
    assert report.submitted.requests_submitted == 2 and report.rows.succeeded == 13
    assert job.sql("SELECT response FROM enriched WHERE id = 5") == [("negative",)]
    assert len(creates(emulator)) == 2 and max(billed_counts(emulator).values()) == 1


def test_failures_and_expiry_end_with_every_row_succeeded(tmp_path, emulator):
    """The fault matrix: 10% request errors and expiry mid-way; the expired job's
    processed lines are kept, the rest is sent again, nothing is paid twice."""
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 0.1, "expire_fraction": 0.5})
    job = gemini_job(tmp_path, emulator, rows=60)
    report = job.run()
    assert report.rows.succeeded == 60 and report.rows.pending == 0, report.to_dict()
    billed = billed_counts(emulator)
    assert len(billed) == 60 and max(billed.values()) == 1
    outcomes = dict(job.sql("SELECT outcome, count(*) FROM warehouse_batch.attempts GROUP BY 1"))
    assert outcomes["errored"] > 0 and outcomes["succeeded"] == 60
    assert "BATCH_STATE_EXPIRED" in {s for (s,) in job.sql(
        "SELECT provider_status FROM warehouse_batch.batches")}


@pytest.mark.parametrize("fault", ["error_after_create", "drop_after_create"])
def test_lost_create_is_found_by_display_name(tmp_path, emulator, fault):
    emulator.admin("POST", "/_emulator/config", {"create_fault": fault, "create_fault_count": 1})
    job = gemini_job(tmp_path, emulator)
    report = job.run()
    assert report.rows.succeeded == 12
    assert len(list(sdk_client(emulator).batches.list())) == 1
    assert max(billed_counts(emulator).values()) == 1


def test_cancel_keeps_partial_answers(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator, rows=20)
    api.submit(job.path, job.options())
    emulator.advance(5 + 30)
    assert len(api.cancel(job.path, job.options()).cancelled) == 1
    emulator.advance(60)
    report = api.collect(job.path, job.options())
    assert 0 < report.rows.succeeded < 20 and report.collected.not_processed > 0
    assert job.run().rows.succeeded == 20
    assert max(billed_counts(emulator).values()) == 1


def test_per_line_errors_are_classified(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator, extra=", max_attempts=2")
    job.sql("UPDATE reviews SET text = 'too long [[emu:error400]]' WHERE id = 4")
    job.sql("UPDATE reviews SET text = 'flaky [[emu:error500]]' WHERE id = 5")
    report = job.run()
    assert report.exit_code == 4 and report.rows.failed == 2 and report.rows.succeeded == 10
    rows = dict((r[0], r[1:]) for r in job.sql(
        "SELECT e.id, r.error_type, r.retryable, r.failures FROM warehouse_batch.results r "
        "JOIN enriched e ON e._request_hash = r.request_hash WHERE e.id IN (4, 5)"))
    assert rows == {4: ("invalid_argument", False, 0), 5: ("internal", True, 2)}


def test_non_answers_are_classified(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator, extra=", max_attempts=1")
    for i, marker in ((1, "truncate"), (2, "refuse"), (3, "filter"), (4, "noanswer")):
        job.sql(f"UPDATE reviews SET text = 'x [[emu:{marker}]]' WHERE id = {i}")
    report = job.run()
    assert report.rows.failed == 4 and report.rows.succeeded == 8
    errors = dict(job.sql("SELECT id, _error FROM enriched WHERE id <= 4"))
    assert "cut off by max_tokens" in errors[1]
    assert "finishReason SAFETY" in errors[2]
    assert "blockReason PROHIBITED_CONTENT" in errors[3]
    assert errors[4].startswith("no answer")
    assert job.sql("SELECT _finish_reason FROM enriched WHERE id = 1") == [("max_tokens",)]
    assert dict(job.sql("SELECT e.id, r.retryable FROM warehouse_batch.results r JOIN enriched e "
                        "ON e._request_hash = r.request_hash WHERE e.id <= 4")) == \
        {1: False, 2: False, 3: False, 4: True}
    (tmp_path / "kept").mkdir()
    kept = gemini_job(tmp_path / "kept", emulator, extra=", allow_truncated=true")
    kept.sql("UPDATE reviews SET text = 'x [[emu:truncate]]' WHERE id = 1")
    assert kept.run().rows.succeeded == 12
    assert kept.sql("SELECT _status, _finish_reason FROM enriched WHERE id = 1") == \
        [("succeeded", "max_tokens")]


def test_typed_answers_use_response_schema(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator, max_tokens=200, extra=(
        ", columns={'sentiment': \"enum('positive','negative','neutral')\", "
        "'confidence': 'double', 'topics': 'varchar[]'}"))
    report = job.run()
    assert report.exit_code == 0 and report.rows.succeeded == 12
    assert dict((c, t) for c, t, *_ in job.sql("DESCRIBE enriched"))["topics"] == "VARCHAR[]"
    assert {s for (s,) in job.sql("SELECT sentiment FROM enriched")} <= {
        "positive", "negative", "neutral"}
    config = json.loads(job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0])[
        "generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseSchema"]
    assert schema["type"] == "OBJECT" and schema["propertyOrdering"] == [
        "sentiment", "confidence", "topics"]
    assert "additionalProperties" not in json.dumps(schema)
    assert schema["properties"]["topics"] == {"type": "ARRAY", "items": {"type": "STRING"}}


def test_embeddings_give_float_arrays(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="gemini", model="gemini-embedding-001")
    job.path = str(Path(job.path))
    Path(job.path).write_text(
        "{{ config(name='enriched', provider='gemini', model='gemini-embedding-001', "
        "unique_key='id', prompt='{{ text }}', endpoint='embeddings', dimensions=8) }}\n"
        "SELECT id, text FROM reviews\n")
    report = job.run()
    assert report.exit_code == 0 and report.rows.succeeded == 12
    assert dict((c, t) for c, t, *_ in job.sql("DESCRIBE enriched"))["embedding"] == "FLOAT[8]"
    assert any(c["path"].endswith(":asyncBatchEmbedContent") for c in creates(emulator))


# -- refusals before anything is sent ---------------------------------------------------------

def test_missing_sdk_is_a_job_file_error(tmp_path, emulator, monkeypatch):
    job = gemini_job(tmp_path, emulator)
    real_import = builtins.__import__

    def no_genai(name, globals=None, locals=None, fromlist=(), level=0):
        if name.startswith("google.genai") or (name == "google" and fromlist
                                               and "genai" in fromlist):
            raise ModuleNotFoundError("No module named 'google.genai'", name="google.genai")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_genai)
    from warehouse_batch.providers.base import provider_names

    assert "gemini" in provider_names()   # the registry still loads
    with pytest.raises(JobFileError) as refused:
        api.plan(job.path, job.options())
    assert "pip install 'warehouse-batch[gemini]'" in (refused.value.hint or "")
    assert provider_calls(emulator) == []


def test_unknown_parameter_is_refused_at_plan(tmp_path, emulator):
    job = gemini_job(tmp_path, emulator, extra=", logit_bias={'1': 2}")
    with pytest.raises(JobFileError, match="not a parameter of gemini"):
        api.plan(job.path, job.options())


def test_nothing_outside_providers_and_emulator_names_gemini():
    """Adding Gemini needed no provider-specific branch in the shared code: the provider's
    name (and its modules' names) appear only under providers/ and emulator/. (keys.py has
    long listed GEMINI_API_KEY among the variables that hold secrets: a name, not a branch.)"""
    package = ROOT / "warehouse_batch"
    named = [str(p.relative_to(package)) for p in package.rglob("*")
             if p.suffix in (".py", ".sql") and p.parent.name not in ("providers", "emulator")
             and p.name != "gemini_results.sql"
             and re.search(r"\bgemini", p.read_text(encoding="utf-8"))]
    assert named == []


# -- crash safety ------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["after_intent", "after_upload_unrecorded", "after_upload",
                                   "after_create", "during_collect", "after_collect_commit"])
def test_sigkill_anywhere_then_run_finishes_without_paying_twice(tmp_path, fast_emulator, point):
    """`after_upload_unrecorded` finds the upload by its display name; `after_create` is the
    lost create, found by the job's display_name (the ledger's batch id)."""
    import signal
    import subprocess
    import sys

    job = gemini_job(tmp_path, fast_emulator, rows=8)
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
    uploads = provider_calls(fast_emulator, "POST", "/upload/v1beta/files")
    assert len([c for c in uploads if not c["query"].get("upload_id")]) == 1


def test_project_file_provider_table_sets_the_gemini_variables(tmp_path):
    from warehouse_batch import project

    file = tmp_path / "warehouse-batch.toml"
    file.write_text('[providers.gemini]\nbase_url = "http://127.0.0.1:9"\n'
                    'api_key_env = "MY_GOOGLE_KEY"\n')
    env = {"MY_GOOGLE_KEY": "k" * 20}
    project.apply(project.load(file), env)
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9"
    assert env["GEMINI_API_KEY"] == "k" * 20


def test_gemini_form_of_a_schema():
    from warehouse_batch.providers.gemini import gemini_form

    form = gemini_form({"type": "object", "additionalProperties": False,
                        "required": ["label", "score"],
                        "properties": {"label": {"type": "string", "enum": ["a", "b"]},
                                       "score": {"type": ["number", "null"],
                                                 "exclusiveMinimum": 0, "maximum": 1},
                                       "when": {"type": "string", "format": "email"}}})
    assert form == {"type": "OBJECT", "required": ["label", "score"],
                    "properties": {"label": {"type": "STRING", "enum": ["a", "b"],
                                             "format": "enum"},
                                   "score": {"type": "NUMBER", "nullable": True, "maximum": 1,
                                             "description": '{"exclusiveMinimum": 0}'},
                                   "when": {"type": "STRING",
                                            "description": '{"format": "email"}'}},
                    "propertyOrdering": ["label", "score", "when"]}


def test_resumable_upload_in_several_chunks(tmp_path, fast_emulator):
    """The SDK sends 8 MB chunks: a 9 MB file is two `upload` commands, the last one with
    `finalize`, each at its offset."""
    client = sdk_client(fast_emulator)
    path = tmp_path / "big.jsonl"
    line = json.dumps({"key": "k", "request": {"contents": [{"parts": [{"text": "x" * 1000}]}]}})
    with open(path, "w") as fh:
        for i in range(9 * 1024):
            fh.write(line.replace('"k"', f'"k{i}"') + "\n")
    uploaded = client.files.upload(file=str(path), config={"mime_type": "application/jsonl"})
    assert int(uploaded.size_bytes) == path.stat().st_size
    chunks = [c for c in provider_calls(fast_emulator, "POST", "/upload/v1beta/files")
              if c["query"].get("upload_id")]
    assert len(chunks) == 2 and {c["status"] for c in chunks} == {200}
    job = client.batches.create(model=MODEL, src=uploaded.name)
    wire = json.loads(client._api_client.request("get", job.name, {}, None).body)
    assert wire["metadata"]["batchStats"]["requestCount"] == str(9 * 1024)


def test_a_running_job_is_polled_without_the_sdk(tmp_path, emulator):
    from warehouse_batch.lightpoll import light_retrieve
    from warehouse_batch.providers.base import LedgerBatch

    job = gemini_job(tmp_path, emulator)
    api.submit(job.path, job.options())
    row = job.sql("SELECT batch_id, run_id, job_name, endpoint, model, chunk, state, "
                  "request_count, bytes, created_at, provider_batch_id "
                  "FROM warehouse_batch.batches")[0]
    names = ("batch_id", "run_id", "job_name", "endpoint", "model", "chunk", "state",
             "request_count", "bytes", "created_at", "provider_batch_id")
    batch = LedgerBatch.from_row(dict(zip(names, row)))
    provider = job.provider()
    running = light_retrieve(provider, batch)
    assert running is not None and running.status in ("BATCH_STATE_PENDING",
                                                      "BATCH_STATE_RUNNING")
    assert provider._client is None   # no SDK client was built for it
    emulator.advance(3600)
    assert light_retrieve(provider, batch) is None   # ended: the SDK path reads it
    assert provider.retrieve(batch).status == "BATCH_STATE_SUCCEEDED"
