"""OpenAI Files + Batches protocol, driven through the real ``openai`` SDK."""
from __future__ import annotations

import json

import openai
import pytest

from emu_helpers import chat_line, jsonl, read_lines, submit, upload


def test_file_upload_retrieve_list_content_delete(oai: openai.OpenAI) -> None:
    data = jsonl([chat_line("a", "hello")])
    created = oai.files.create(file=("in.jsonl", data), purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert created.id.startswith("file-")
    assert (created.bytes, created.filename, created.purpose, created.status) == (len(data), "in.jsonl", "batch",
                                                                                    "processed")
    assert created.expires_at == created.created_at + 3600
    assert oai.files.retrieve(created.id).id == created.id
    assert oai.files.content(created.id).content == data
    assert [f.id for f in oai.files.list()] == [created.id]
    deleted = oai.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(created.id)


def test_batch_lifecycle_with_manual_clock(emu, oai: openai.OpenAI) -> None:
    lines = [chat_line(f"row-{i}", f"question {i}") for i in range(4)]
    batch = submit(oai, lines, metadata={"run": "r1"})
    assert batch.id.startswith("batch_")
    assert batch.status == "validating"
    assert batch.expires_at == batch.created_at + 86400
    assert batch.request_counts.total == 0 and batch.metadata == {"run": "r1"}
    assert batch.output_file_id is None and batch.error_file_id is None

    emu.advance(1.0)  # validate_seconds
    b = oai.batches.retrieve(batch.id)
    assert b.status == "in_progress" and b.in_progress_at == batch.created_at + 1
    assert (b.request_counts.total, b.request_counts.completed) == (4, 0)

    emu.advance(2.5)  # half of process_seconds: 2 of 4 done
    b = oai.batches.retrieve(batch.id)
    assert b.status == "in_progress" and b.request_counts.completed == 2

    emu.advance(2.5)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "finalizing" and b.finalizing_at is not None and b.output_file_id is None

    emu.advance(1.0)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "completed" and b.completed_at == batch.created_at + 7
    assert b.request_counts.completed == 4 and b.request_counts.failed == 0
    assert b.error_file_id is None
    out = read_lines(oai, b.output_file_id)
    assert sorted(l["custom_id"] for l in out) == [f"row-{i}" for i in range(4)]
    first = out[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"].startswith("emulated answer to: question ")
    assert oai.files.retrieve(b.output_file_id).purpose == "batch_output"
    assert b.usage is not None and b.usage.input_tokens > 0


def test_output_order_is_shuffled_but_deterministic(make_emulator) -> None:
    def run() -> list[str]:
        emu = make_emulator(seed=7)
        client = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk", max_retries=0)
        batch = submit(client, [chat_line(f"r{i:02d}", "x") for i in range(20)])
        emu.advance(100)
        ids = [l["custom_id"] for l in read_lines(client, client.batches.retrieve(batch.id).output_file_id)]
        emu.stop()
        return ids

    first, second = run(), run()
    assert first == second
    assert first != sorted(first)


def test_list_batches_auto_paginates_newest_first(emu, oai: openai.OpenAI) -> None:
    file_id = upload(oai, [chat_line("a", "x")])
    made = [oai.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id
            for _ in range(5)]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more is True
    assert [b.id for b in oai.batches.list(limit=2)] == made[::-1]
    paths = [r for r in emu.admin("GET", "requests")["data"] if r["path"] == "/v1/batches" and r["method"] == "GET"]
    assert len(paths) == 1 + 3  # one explicit page + three auto-paginated pages
    assert paths[-1]["query"]["after"] == made[0 + 1]
    last = oai.batches.list(limit=2, after=made[1])
    assert [b.id for b in last.data] == [made[0]] and last.has_more is False


def test_cancel_keeps_partial_results_and_writes_cancel_lines(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line(f"r{i}", "x") for i in range(4)])
    emu.advance(1 + 2.5)
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    emu.advance(1)
    assert oai.batches.retrieve(batch.id).status == "cancelling"
    emu.advance(1)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "cancelled" and b.cancelled_at == b.cancelling_at + 2
    assert len(read_lines(oai, b.output_file_id)) == 2
    errors = read_lines(oai, b.error_file_id)
    assert len(errors) == 2
    assert all(e["response"] is None and e["error"]["code"] == "batch_cancelled" for e in errors)
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(batch.id)


def test_error_shapes(emu, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oai.batches.retrieve("batch_missing")
    assert nf.value.type == "invalid_request_error" and nf.value.request_id.startswith("req_")
    assert "No batch found" in str(nf.value)
    with pytest.raises(openai.BadRequestError) as bad:
        oai.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert bad.value.param == "input_file_id" and bad.value.type == "invalid_request_error"
    assert set(bad.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as window:
        oai.batches.create(input_file_id="file-x", endpoint="/v1/chat/completions",
                           completion_window="48h")  # type: ignore[arg-type]
    assert window.value.param == "completion_window"
    anonymous = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk", max_retries=0,
                              default_headers={"Authorization": ""})
    with pytest.raises(openai.AuthenticationError) as auth:
        anonymous.batches.list()
    assert auth.value.status_code == 401 and auth.value.request_id


def test_raw_http_headers_and_unknown_route(emu) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(emu.url + "/v1/nothing", headers={"Authorization": "Bearer x"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 404
    assert err.value.headers["content-type"] == "application/json"
    assert err.value.headers["x-request-id"].startswith("req_")
    payload = json.loads(err.value.read())
    assert set(payload["error"]) == {"message", "type", "param", "code"}


def test_purpose_must_be_batch(oai: openai.OpenAI) -> None:
    file_id = oai.files.create(file=("x.jsonl", jsonl([chat_line("a", "x")])), purpose="user_data").id
    with pytest.raises(openai.BadRequestError) as bad:
        oai.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert bad.value.param == "input_file_id"


def test_completed_with_every_request_failed_has_no_output_file(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line("a", "x [[emu:error400]]"), chat_line("b", "y [[emu:error500]]")])
    emu.advance(100)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "completed" and b.output_file_id is None
    assert (b.request_counts.completed, b.request_counts.failed, b.request_counts.total) == (0, 2, 2)
    lines = {l["custom_id"]: l for l in read_lines(oai, b.error_file_id)}
    assert lines["a"]["error"] is None and lines["a"]["response"]["status_code"] == 400
    assert lines["a"]["response"]["body"]["error"]["code"] == "context_length_exceeded"
    assert lines["b"]["response"]["status_code"] == 500
    assert lines["b"]["response"]["body"]["error"]["type"] == "server_error"


def test_truncate_marker(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line("a", "please answer at length [[emu:truncate]]")])
    emu.advance(100)
    line = read_lines(oai, oai.batches.retrieve(batch.id).output_file_id)[0]
    choice = line["response"]["body"]["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"]) < len("emulated answer to: please answer at length [[emu:truncate]]")
