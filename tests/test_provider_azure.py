"""Azure OpenAI (through `openai.AzureOpenAI`) and OpenAI-compatible servers: the OpenAI flow
with another client, against the emulator's `/openai/…` and `/v1/…` routes."""
from __future__ import annotations

import json

import openai
import pytest

from warehouse_batch import api
from warehouse_batch.errors import ConfigurationError, JobFileError
from warehouse_batch.spec import load_job

import helpers
from helpers import billed_counts, provider_calls

PROMPT = "Classify the sentiment of this review: {{ text }}"
DEPLOYMENT = "gpt-4o-mini-batch"   # Azure: `model` is the Global-Batch deployment name


class Job(helpers.Job):
    """The shared test job (tests/helpers.py), defaulting to this file's provider."""

    def __init__(self, tmp_path, emu, **kw):
        kw.setdefault("provider", "azure_openai")
        kw.setdefault("model", DEPLOYMENT)
        super().__init__(tmp_path, emu, **kw)


def azure_client(emu, api_version: str = "2024-10-21") -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version=api_version,
                              api_key="k")


def azure_calls(emu) -> list[dict]:
    return provider_calls(emu, path_prefix="/openai/")


# -- Azure OpenAI ----------------------------------------------------------------------------

def test_azure_end_to_end_with_the_base_url_setting(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=f", base_url={emulator.azure_endpoint!r}",
              AZURE_OPENAI_API_KEY="azure-key", WAREHOUSE_BATCH_ALLOWED_HOSTS="127.0.0.1")
    report = job.run()
    assert report.rows.succeeded == 12 and report.exit_code == 0, report.to_dict()
    assert not report.collected.warnings
    by_id = dict(job.sql("SELECT id, response FROM enriched"))
    assert by_id[1] == "positive" and by_id[2] == "negative" and by_id[3] == "neutral"
    # every call went through AzureOpenAI: /openai/... with the default api-version
    calls = azure_calls(emulator)
    assert calls and provider_calls(emulator, path_prefix="/v1/") == []
    assert {c["query"].get("api-version") for c in calls} == {"2024-10-21"}
    # the batch targets /chat/completions and carries our tag (lost creates are findable)
    (batch,) = list(azure_client(emulator).batches.list())
    assert batch.endpoint == "/chat/completions"
    assert batch.metadata["warehouse_batch"] == job.sql(
        "SELECT batch_id FROM warehouse_batch.batches")[0][0]
    # Azure's always-present (empty) error file was fine, and was cleaned up with the rest
    assert job.sql("SELECT error_file_id IS NOT NULL FROM warehouse_batch.batches") == [(True,)]
    assert list(azure_client(emulator).files.list()) == []
    # the line url has no /v1, and model is the deployment on every line
    provider = job.provider()
    assert provider.envelope("c", {})["url"] == "/chat/completions"
    assert job.sql("SELECT DISTINCT body ->> '$.model' FROM warehouse_batch.requests") == \
        [(DEPLOYMENT,)]


def test_azure_from_the_environment_with_an_api_version(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", api_version='2025-04-01-preview'",
              AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="azure-key")
    assert job.run().rows.succeeded == 12
    assert {c["query"].get("api-version") for c in azure_calls(emulator)} == \
        {"2025-04-01-preview"}
    # and OPENAI_API_VERSION is the fallback
    job.env["OPENAI_API_VERSION"] = "2024-07-01-preview"
    job.write()
    job.sql("INSERT INTO reviews VALUES (100, 'new and great')")
    before = len(azure_calls(emulator))
    assert job.run().rows.succeeded == 13
    assert {c["query"].get("api-version") for c in azure_calls(emulator)[before:]} == \
        {"2024-07-01-preview"}


def test_azure_second_run_sends_nothing(tmp_path, emulator):
    job = Job(tmp_path, emulator, AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint,
              AZURE_OPENAI_API_KEY="azure-key")
    job.run()
    posts = len(provider_calls(emulator, "POST"))
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and report.exit_code == 0
    assert len(provider_calls(emulator, "POST")) == posts


def test_azure_failures_are_retried_and_nothing_is_paid_twice(tmp_path, emulator):
    emulator.admin("POST", "/_emulator/config", {"failure_rate": 0.1})
    job = Job(tmp_path, emulator, rows=40, extra=", max_attempts=10",
              AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="k")
    report = job.run()
    assert report.rows.succeeded == 40
    assert max(billed_counts(emulator).values()) == 1


@pytest.mark.parametrize("fault", ["error_after_create", "drop_after_create"])
def test_azure_lost_create_response_does_not_pay_twice(tmp_path, emulator, fault):
    emulator.admin("POST", "/_emulator/config", {"create_fault": fault})
    job = Job(tmp_path, emulator, AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint,
              AZURE_OPENAI_API_KEY="k")
    assert job.run().rows.succeeded == 12
    assert len(list(azure_client(emulator).batches.list())) == 1
    assert max(billed_counts(emulator).values()) == 1


def test_azure_settings_and_refusals(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=", endpoint='embeddings'",
              AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="k")
    with pytest.raises(JobFileError, match="no embeddings batch API"):
        api.plan(job.path, job.options())
    job.write(extra=", cache_system_prompt=True")
    with pytest.raises(JobFileError, match="no setting 'cache_system_prompt'"):
        api.plan(job.path, job.options())
    job.write()
    job.env["AZURE_OPENAI_API_KEY"] = ""
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_KEY"):
        job.provider().preflight()
    job.env.update(AZURE_OPENAI_API_KEY="k", AZURE_OPENAI_ENDPOINT="")
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        job.provider().preflight()
    assert job.provider().effective_limits().max_requests == 100_000


def test_azure_is_its_own_provider_in_the_request_identity(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="openai", model="gpt-4o-mini")
    job.run()
    job.write(provider="azure_openai", model="gpt-4o-mini")
    job.env.update(AZURE_OPENAI_ENDPOINT=emulator.azure_endpoint, AZURE_OPENAI_API_KEY="k")
    assert api.plan(job.path, job.options()).rows_changed == 12


# -- OpenAI-compatible -------------------------------------------------------------------------

def test_openai_compatible_needs_base_url(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="openai_compatible", model="llama-3.1-8b")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert "base_url" in str(e.value) and "base_url=" in e.value.hint
    assert e.value.location == load_job(job.path).location_of("provider")
    assert provider_calls(emulator) == []


def test_openai_compatible_end_to_end(tmp_path, emulator):
    # OPENAI_BASE_URL is OpenAI's: a compatible server is only ever the job's base_url
    job = Job(tmp_path, emulator, provider="openai_compatible", model="llama-3.1-8b",
              extra=f", base_url={emulator.openai_base_url!r}",
              OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="",
              OPENAI_COMPATIBLE_API_KEY="compat-key", WAREHOUSE_BATCH_ALLOWED_HOSTS="127.0.0.1")
    report = job.run()
    assert report.rows.succeeded == 12
    (batch,) = list(openai.OpenAI(base_url=emulator.openai_base_url, api_key="x")
                    .batches.list())
    assert batch.endpoint == "/v1/chat/completions"
    assert job.sql("SELECT DISTINCT provider FROM warehouse_batch.requests") == \
        [("openai_compatible",)]


def test_openai_compatible_key_falls_back_to_openai_api_key(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="openai_compatible", model="llama-3.1-8b",
              extra=f", base_url={emulator.openai_base_url!r}",
              WAREHOUSE_BATCH_ALLOWED_HOSTS="127.0.0.1")
    assert job.run().rows.succeeded == 12        # emulator_env sets OPENAI_API_KEY
    job.env.update(OPENAI_API_KEY="", OPENAI_COMPATIBLE_API_KEY="")
    with pytest.raises(ConfigurationError, match="OPENAI_COMPATIBLE_API_KEY or OPENAI_API_KEY"):
        job.provider().preflight()
    body = json.loads(job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0])
    assert body["model"] == "llama-3.1-8b"
