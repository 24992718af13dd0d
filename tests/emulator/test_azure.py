"""The Azure OpenAI flavour, driven through ``openai.AzureOpenAI``."""
from __future__ import annotations

import urllib.error
import urllib.request

import openai
import pytest

from emu_helpers import chat_line, jsonl, read_lines


@pytest.fixture
def azure(emu) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version="2024-10-21", api_key="x",
                              max_retries=0)


def azure_batch(client: openai.AzureOpenAI, lines: list):
    file_id = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/chat/completions",  # type: ignore[arg-type]
                                 completion_window="24h")


def test_azure_batch_round_trip(emu, azure) -> None:
    batch = azure_batch(azure, [chat_line("a", "hello", model="my-deployment", url="/chat/completions"),
                                chat_line("b", "again", model="my-deployment", url="/v1/chat/completions")])
    assert batch.expires_at is None and batch.endpoint == "/chat/completions"
    emu.advance(3600 * 48)  # no 24 h expiry on Azure
    done = azure.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.error_file_id  # Azure: an error file even when nothing failed ...
    assert azure.files.content(done.error_file_id).content == b""  # ... and it is empty
    out = read_lines(azure, done.output_file_id)
    assert len(out) == 2
    body = out[0]["response"]["body"]
    assert body["model"] == "my-deployment"
    assert "prompt_filter_results" in body and "content_filter_results" in body["choices"][0]
    calls = emu.admin("GET", "requests")["data"]
    assert all(c["path"].startswith("/openai/") and c["query"]["api-version"] == "2024-10-21" for c in calls)
    assert [b.id for b in azure.batches.list()] == [batch.id]


def test_azure_namespace_is_separate_from_openai(emu, azure, oai) -> None:
    azure_batch(azure, [chat_line("a", "hello", url="/chat/completions")])
    assert list(oai.batches.list()) == [] and list(oai.files.list()) == []
    assert len(azure.files.list().data) == 1   # one page: the GA listing has no has_more


def test_azure_requires_api_version_and_key(emu) -> None:
    req = urllib.request.Request(emu.url + "/openai/batches", headers={"api-key": "x"})
    with pytest.raises(urllib.error.HTTPError) as missing_version:
        urllib.request.urlopen(req)
    assert missing_version.value.code in (400, 404)
    req = urllib.request.Request(emu.url + "/openai/batches?api-version=2024-10-21")
    with pytest.raises(urllib.error.HTTPError) as missing_key:
        urllib.request.urlopen(req)
    assert missing_key.value.code == 401
    for headers in ({"api-key": "x"}, {"Authorization": "Bearer t"}):
        req = urllib.request.Request(emu.url + "/openai/batches?api-version=2024-10-21", headers=headers)
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200 and resp.headers["x-request-id"].startswith("req_")


def test_azure_expires_only_by_knob_or_force(make_emulator) -> None:
    emu = make_emulator(expire_fraction=0.5)
    client = openai.AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version="2024-10-21", api_key="x",
                                max_retries=0)
    batch = azure_batch(client, [chat_line(f"r{i}", "x", url="/chat/completions") for i in range(4)])
    emu.advance(100)
    b = client.batches.retrieve(batch.id)
    assert b.status == "expired" and len(read_lines(client, b.output_file_id)) == 2
    assert {l["error"]["code"] for l in read_lines(client, b.error_file_id)} == {"batch_expired"}
    assert {p["protocol"] for p in emu.admin("GET", "processed")["data"]} == {"azure"}


def test_azure_validation_failure(emu, azure) -> None:
    batch = azure_batch(azure, [chat_line("a", "x", url="/chat/completions"),
                                chat_line("a", "y", url="/chat/completions")])
    emu.advance(2)
    b = azure.batches.retrieve(batch.id)
    assert b.status == "failed" and b.errors.data[0].code == "duplicate_custom_id"
