"""Anthropic Message Batches protocol, driven through the real ``anthropic`` SDK."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import anthropic
import pytest

from emu_helpers import anthropic_request

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def raw_get(emu, path: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(emu.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_create_retrieve_results(emu, anth: anthropic.Anthropic) -> None:
    batch = anth.messages.batches.create(requests=[
        anthropic_request("pos", "I love this, it is great", system="Classify the sentiment."),
        anthropic_request("plain", "What is the capital of France?"),
        anthropic_request("bad", "x [[emu:error400]]"),
        anthropic_request("flaky", "x [[emu:error500]]"),
        anthropic_request("cut", "tell me a story [[emu:truncate]]"),
    ])
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress" and batch.results_url is None
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled, counts.expired) == (5, 0, 0, 0, 0)
    assert (batch.expires_at - batch.created_at).total_seconds() == 86400
    emu.advance(4)
    mid = anth.messages.batches.retrieve(batch.id)
    assert mid.processing_status == "in_progress" and mid.request_counts.succeeded == 0  # zero until ended
    with pytest.raises(anthropic.AnthropicError):
        list(anth.messages.batches.results(batch.id))
    emu.advance(1)
    ended = anth.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.results_url == f"{emu.url}/v1/messages/batches/{batch.id}/results"
    c = ended.request_counts
    assert (c.processing, c.succeeded, c.errored, c.canceled, c.expired) == (0, 3, 2, 0, 0)
    results = {r.custom_id: r.result for r in anth.messages.batches.results(batch.id)}
    assert set(results) == {"pos", "plain", "bad", "flaky", "cut"}
    pos = results["pos"]
    assert pos.type == "succeeded"
    assert pos.message.content[0].text == "positive"
    assert pos.message.stop_reason == "end_turn" and pos.message.id.startswith("msg_")
    assert pos.message.usage.service_tier == "batch"
    assert pos.message.usage.input_tokens == -(-len("Classify the sentiment.I love this, it is great") // 4)
    assert results["plain"].message.content[0].text == "emulated answer to: What is the capital of France?"
    assert results["bad"].type == "errored" and results["bad"].error.error.type == "invalid_request_error"
    assert results["flaky"].error.error.type == "api_error"
    assert results["cut"].message.stop_reason == "max_tokens"


def test_raw_batch_shape_and_headers(emu, anth) -> None:
    batch = anth.messages.batches.create(requests=[anthropic_request("a", "x")])
    status, headers, body = raw_get(emu, f"/v1/messages/batches/{batch.id}",
                                    {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert status == 200 and headers["request-id"].startswith("req_")
    assert headers["content-type"] == "application/json"
    assert set(body) == {"id", "type", "processing_status", "request_counts", "ended_at", "created_at",
                         "expires_at", "archived_at", "cancel_initiated_at", "results_url"}
    assert RFC3339.match(body["created_at"]) and RFC3339.match(body["expires_at"])
    status, headers, body = raw_get(emu, "/v1/messages/batches/msgbatch_nope",
                                    {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert status == 404 and body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["request_id"] == headers["request-id"]
    status, _, body = raw_get(emu, "/v1/messages/batches", {"anthropic-version": "2023-06-01"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    emu.advance(10)
    status, _, body = raw_get(emu, f"/v1/messages/batches/{batch.id}", {"x-api-key": "k",
                                                                          "anthropic-version": "2023-06-01"})
    assert RFC3339.match(body["ended_at"])


def test_list_pagination(emu, anth) -> None:
    made = [anth.messages.batches.create(requests=[anthropic_request("a", "x")]).id for _ in range(5)]
    page = anth.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2]
    assert page.has_more and page.first_id == made[-1] and page.last_id == made[-2]
    assert [b.id for b in anth.messages.batches.list(limit=2)] == made[::-1]
    afters = [r["query"].get("after_id") for r in emu.admin("GET", "requests")["data"]
              if r["path"] == "/v1/messages/batches" and r["method"] == "GET"]
    assert afters == [None, None, made[-2], made[-4]]
    before = anth.messages.batches.list(limit=2, before_id=made[0])
    assert [b.id for b in before.data] == [made[2], made[1]] and before.has_more
    empty = anth.messages.batches.list(after_id=made[0])
    assert empty.data == [] and empty.has_more is False and empty.first_id is None


def test_cancel_gives_canceled_results(emu, anth) -> None:
    batch = anth.messages.batches.create(requests=[anthropic_request(f"r{i}", "x") for i in range(4)])
    emu.advance(2.5)
    canceling = anth.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 4 and canceling.request_counts.canceled == 0
    with pytest.raises(anthropic.BadRequestError):
        anth.messages.batches.delete(batch.id)
    emu.advance(2)
    ended = anth.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 2)
    kinds = sorted(r.result.type for r in anth.messages.batches.results(batch.id))
    assert kinds == ["canceled", "canceled", "succeeded", "succeeded"]
    with pytest.raises(anthropic.BadRequestError):
        anth.messages.batches.cancel(batch.id)
    outcomes = sorted(p["outcome"] for p in emu.admin("GET", "processed")["data"])
    assert outcomes == ["cancelled", "cancelled", "succeeded", "succeeded"]


def test_delete_only_after_end(emu, anth) -> None:
    batch = anth.messages.batches.create(requests=[anthropic_request("a", "x")])
    with pytest.raises(anthropic.BadRequestError):
        anth.messages.batches.delete(batch.id)
    emu.advance(10)
    deleted = anth.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        anth.messages.batches.retrieve(batch.id)


def test_expiry_and_expire_fraction(make_emulator) -> None:
    emu = make_emulator()
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0)
    batch = client.messages.batches.create(requests=[anthropic_request("ok", "x"),
                                                     anthropic_request("stuck", "[[emu:never]]")])
    emu.advance(3600)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    emu.advance(86400)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.expired == 1
    assert {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)} == {
        "ok": "succeeded", "stuck": "expired"}

    emu.admin("POST", "config", {"expire_fraction": 0.5})
    second = client.messages.batches.create(requests=[anthropic_request(f"r{i}", "x") for i in range(4)])
    emu.advance(100)
    counts = client.messages.batches.retrieve(second.id).request_counts
    assert (counts.succeeded, counts.expired) == (2, 2)


def test_force_states(emu, anth) -> None:
    ids = [anth.messages.batches.create(requests=[anthropic_request("a", "[[emu:never]]")]).id for _ in range(3)]
    for batch_id, status in zip(ids, ["ended", "expired", "canceled"]):
        forced = emu.admin("POST", f"batches/{batch_id}/force", {"status": status})
        assert forced["processing_status"] == "ended"
    kinds = [next(iter(anth.messages.batches.results(i))).result.type for i in ids]
    assert kinds == ["succeeded", "expired", "canceled"]


def test_archived_after_29_days(emu, anth) -> None:
    batch = anth.messages.batches.create(requests=[anthropic_request("a", "x")])
    emu.advance(29 * 86400 + 1)
    archived = anth.messages.batches.retrieve(batch.id)
    assert archived.archived_at is not None and archived.processing_status == "ended"
    with pytest.raises(anthropic.NotFoundError):
        list(anth.messages.batches.results(batch.id))


def test_temperature_rule_depends_on_api_version(emu) -> None:
    params = {"temperature": 0.2, "top_k": 5}
    default = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0)
    pinned = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0,
                                 default_headers={"anthropic-version": "2023-06-01"})
    new = default.messages.batches.create(requests=[anthropic_request("t", "hi", **params)])
    old = pinned.messages.batches.create(requests=[anthropic_request("t", "hi", **params)])
    emu.advance(10)
    new_result = next(iter(default.messages.batches.results(new.id))).result
    assert new_result.type == "errored"
    assert new_result.error.error.type == "invalid_request_error"
    assert new_result.error.error.message == "temperature: Extra inputs are not permitted"
    assert next(iter(pinned.messages.batches.results(old.id))).result.type == "succeeded"
    emu.admin("POST", "config", {"strict_anthropic_version": False})
    lax = default.messages.batches.create(requests=[anthropic_request("t", "hi", top_p=0.5)])
    emu.advance(10)
    assert next(iter(default.messages.batches.results(lax.id))).result.type == "succeeded"


def test_envelope_validation(make_emulator) -> None:
    emu = make_emulator(anthropic_max_requests=2, anthropic_max_bytes=5000)
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0)
    for requests in ([], [anthropic_request("bad id!", "x")], [anthropic_request("a", "x")] * 2,
                     [anthropic_request(f"r{i}", "x") for i in range(3)]):
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.create(requests=requests)
    with pytest.raises(anthropic.APIStatusError) as big:
        client.messages.batches.create(requests=[anthropic_request("a", "x" * 6000)])
    assert big.value.status_code == 413 and big.value.body["error"]["type"] == "request_too_large"  # type: ignore
    batch = client.messages.batches.create(requests=[{"custom_id": "no-model", "params": {"messages": []}}])
    emu.advance(10)
    result = next(iter(client.messages.batches.results(batch.id))).result
    assert result.type == "errored" and result.error.error.type == "invalid_request_error"


def test_prompt_caching(emu, anth) -> None:
    system = [{"type": "text", "text": "You are a careful classifier. " * 40, "cache_control": {"type": "ephemeral"}}]
    first = anth.messages.batches.create(requests=[anthropic_request("a", "one", system=system)])
    emu.advance(10)
    second = anth.messages.batches.create(requests=[anthropic_request("b", "two", system=system),
                                                    anthropic_request("c", "three")])
    emu.advance(10)
    prefix_tokens = -(-len(system[0]["text"]) // 4)
    u1 = next(iter(anth.messages.batches.results(first.id))).result.message.usage
    assert u1.cache_creation_input_tokens == prefix_tokens and u1.cache_read_input_tokens == 0
    assert u1.input_tokens == -(-(len(system[0]["text"]) + 3) // 4) - prefix_tokens
    later = {r.custom_id: r.result.message.usage for r in anth.messages.batches.results(second.id)}
    assert later["b"].cache_read_input_tokens == prefix_tokens and later["b"].cache_creation_input_tokens == 0
    assert later["c"].cache_read_input_tokens == 0 and later["c"].cache_creation_input_tokens == 0


def test_results_jsonl_is_clean(emu, anth) -> None:
    batch = anth.messages.batches.create(requests=[anthropic_request(f"r{i}", "x") for i in range(6)])
    emu.advance(10)
    req = urllib.request.Request(f"{emu.url}/v1/messages/batches/{batch.id}/results",
                                 headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    text = urllib.request.urlopen(req).read().decode()
    assert text.endswith("\n") and "\n\n" not in text and "\r" not in text
    ids = [json.loads(l)["custom_id"] for l in text.splitlines()]
    assert sorted(ids) == [f"r{i}" for i in range(6)] and ids != sorted(ids)
