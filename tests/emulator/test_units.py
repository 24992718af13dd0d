"""Unit tests of the emulator's pure parts: answers, schemas, lifecycle, multipart, config, clock, storage."""
from __future__ import annotations

import pytest

from warehouse_batch.emulator import answers, lifecycle, multipart, schemas
from warehouse_batch.emulator.clock import MANUAL_EPOCH, Clock
from warehouse_batch.emulator.config import EmulatorConfig
from warehouse_batch.emulator.persist import DiskBackend, MemoryBackend
from warehouse_batch.emulator.store import CursorError, Store, paginate


def chat(system: str | None, user: str) -> answers.Prompt:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return answers.openai_chat_prompt({"messages": messages})


@pytest.mark.parametrize("text,label", [
    ("I love it, perfect", "positive"), ("terrible, I want a refund", "negative"),
    ("great but broken", "neutral"), ("the parcel arrived", "neutral"), ("HAPPY!", "positive"),
])
def test_sentiment_lexicon(text: str, label: str) -> None:
    assert answers.text_answer(chat("Classify sentiment", text)) == label


def test_sentiment_trigger_and_plain_answer() -> None:
    assert answers.text_answer(chat(None, "What is the sentiment here? I love it")) == "positive"
    long = "x" * 100
    assert answers.text_answer(chat("Summarise", long)) == "emulated answer to: " + "x" * 60


def test_token_rules() -> None:
    prompt = chat("abcd", "efghi")  # 9 characters
    assert prompt.input_tokens() == 3
    assert answers.output_tokens("") == 1 and answers.output_tokens("positive") == 2
    anth = answers.anthropic_prompt({"system": [{"type": "text", "text": "ab"}, {"type": "text", "text": "cd"}],
                                     "messages": [{"role": "user", "content": [{"type": "text", "text": "e"}]}]})
    assert anth.chars == 5 and anth.input_tokens() == 2


def test_markers_only_in_last_user_message() -> None:
    body = {"messages": [{"role": "user", "content": "[[emu:error400]]"}, {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": "fine [[emu:truncate]]"}]}
    assert answers.openai_chat_prompt(body).markers() == {"truncate"}


def test_embeddings_are_unit_and_deterministic() -> None:
    a, b = answers.embed("hello", 16), answers.embed("hello", 16)
    assert a == b and abs(sum(x * x for x in a) - 1) < 1e-6
    assert answers.embed("hello!", 16) != a
    assert answers.embedding_dims("text-embedding-3-large") == 3072
    assert answers.embedding_dims("whatever") == 1536 and answers.embedding_dims("x", 10) == 10


def test_schema_instance_respects_bounds() -> None:
    schema = {"type": "object", "properties": {
        "n": {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 3},
        "i": {"type": "integer", "minimum": 7, "maximum": 7},
        "s": {"type": "string", "minLength": 80},
        "a": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "e": {"enum": ["POSITIVE", "NEGATIVE", "NEUTRAL"]},
        "d": {"type": "string", "format": "date"},
        "all": {"allOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]}]},
    }}
    doc = schemas.instance(schema, chat("sentiment", "I love it"), "salt")
    assert 2 < doc["n"] < 3 and doc["i"] == 7 and len(doc["s"]) >= 80 and len(doc["a"]) == 2
    assert doc["e"] == "POSITIVE" and doc["d"] == "2026-01-01" and isinstance(doc["all"]["x"], bool)
    broken = schemas.drop_required({"type": "object", "properties": {"a": {}, "b": {}}, "required": ["b"]},
                                   {"a": 1, "b": 2})
    assert broken == {"a": 1}


def test_schema_handles_recursion() -> None:
    schema = {"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["children"]}},
        "$ref": "#/$defs/node"}
    doc = schemas.instance(schema, answers.Prompt(), "s")
    assert "children" in doc


def _record(n: int = 4, runnable: int | None = None, **timing_overrides) -> dict:
    timing = {"validate": 1.0, "process": 4.0, "finalize": 1.0, "cancel": 2.0, "expire_fraction": None,
              "cancel_fraction": None}
    timing.update(timing_overrides)
    return {"created_at": 0.0, "expires_at": 100.0, "timing": timing, "total": n,
            "runnable": n if runnable is None else runnable, "errors": None, "cancel_at": None, "final": None}


def test_lifecycle_normal_path() -> None:
    rec = _record()
    assert lifecycle.derive(rec, 0.5).status == "validating"
    view = lifecycle.derive(rec, 3.0)  # 2 of 4 done at t=1+4*2/4
    assert (view.status, view.processed) == ("in_progress", 2)
    assert lifecycle.derive(rec, 5.5).status == "finalizing"
    done = lifecycle.derive(rec, 6.0)
    assert done.terminal and done.status == "completed" and done.times["completed_at"] == 6.0


def test_lifecycle_expiry_cancel_and_failure() -> None:
    stuck = _record(n=3, runnable=2)
    assert lifecycle.derive(stuck, 99).status == "in_progress"
    expired = lifecycle.derive(stuck, 100)
    assert expired.status == "expired" and expired.processed == 2
    rec = _record()
    rec["cancel_at"] = 2.5
    assert lifecycle.derive(rec, 3.0).status == "cancelling"
    cancelled = lifecycle.derive(rec, 4.5)
    assert cancelled.status == "cancelled" and cancelled.processed == 1
    bad = _record()
    bad["errors"] = [{"code": "empty_file"}]
    assert lifecycle.derive(bad, 1.0).status == "failed"
    assert lifecycle.derive(_record(expire_fraction=0.0), 1.0).processed == 0
    assert lifecycle.threshold(0.01, 10) == 1 and lifecycle.threshold(None, 5) is None


def test_multipart_parser() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n{\"a\":1}\r\n\r\n--XyZ--\r\n")
    parts = {p.name: p for p in multipart.parse(body, "multipart/form-data; boundary=XyZ")}
    assert parts["purpose"].text() == "batch"
    assert parts["file"].filename == "in.jsonl" and parts["file"].data == b"{\"a\":1}\r\n"
    with pytest.raises(multipart.MultipartError):
        multipart.parse(b"garbage", "multipart/form-data; boundary=XyZ")


def test_config_update_is_all_or_nothing() -> None:
    cfg = EmulatorConfig()
    with pytest.raises(ValueError):
        cfg.update({"seed": 3, "bogus": 1})
    assert cfg.seed == 0
    cfg.update({"expire_fraction": 1, "enqueued_token_limit": None})
    assert cfg.expire_fraction == 1.0


def test_clock_modes() -> None:
    clock = Clock("manual")
    assert clock.now() == MANUAL_EPOCH
    clock.advance(5)
    clock.set_mode("real")
    assert abs(clock.now() - (MANUAL_EPOCH + 5)) < 1


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_store_and_pagination(tmp_path, kind: str) -> None:
    backend = MemoryBackend() if kind == "memory" else DiskBackend(str(tmp_path))
    store = Store(backend)
    recs = []
    for _ in range(5):
        file_id, seq = store.new_id("file")
        recs.append({"id": file_id, "seq": seq})
        store.put_file(recs[-1], b"data")
    store.remove_file(recs[2]["id"])
    live = list(store.files.values())
    page, more = paginate(live, order_key=store.order_key, limit=2, after=recs[3]["id"])
    assert [r["id"] for r in page] == [recs[1]["id"], recs[0]["id"]] and not more
    page, more = paginate(live, order_key=store.order_key, limit=1, after=recs[2]["id"])  # tombstone cursor
    assert [r["id"] for r in page] == [recs[1]["id"]] and more
    with pytest.raises(CursorError):
        paginate(live, order_key=store.order_key, limit=1, after="file-unknown")
    if kind == "disk":
        again = Store(DiskBackend(str(tmp_path)))
        assert set(again.files) == set(store.files) and again.file_data(recs[0]["id"]) == b"data"
