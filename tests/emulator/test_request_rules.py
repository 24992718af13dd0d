"""The emulator refuses, per request and as the services do, parameters and schemas the real
APIs refuse (request_rules.py): strict-mode schemas, Anthropic's schema rules, unknown
OpenAI body keys, max_tokens and sampling values on reasoning models; and badrange."""
from __future__ import annotations

import json

import pytest

from emu_helpers import anthropic_request, chat_line, read_lines, submit

LOOSE = {"type": "object", "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                                          "label": {"type": "string"}}}
STRICT = {**LOOSE, "required": ["score", "label"], "additionalProperties": False}


def strict_line(cid: str, schema: dict, text: str = "hello") -> dict:
    return chat_line(cid, text, response_format={"type": "json_schema", "json_schema": {
        "name": "answer", "schema": schema, "strict": True}})


def run(emu, oai, lines: list) -> tuple[dict, dict]:
    batch = submit(oai, lines)
    emu.advance(100)
    b = oai.batches.retrieve(batch.id)
    out = {l["custom_id"]: l["response"]["body"] for l in read_lines(oai, b.output_file_id)}
    err = {l["custom_id"]: l["response"] for l in read_lines(oai, b.error_file_id)}
    return out, err


def test_openai_strict_mode_refuses_loose_schemas(emu, oai) -> None:
    no_additional = {**LOOSE, "required": ["score", "label"]}
    not_required = {**LOOSE, "required": ["score"], "additionalProperties": False}
    nested = {**STRICT, "properties": {**STRICT["properties"],
                                       "inner": {"type": "object", "properties": {"a": {"type": "string"}},
                                                 "required": ["a"]}},
              "required": ["score", "label", "inner"]}
    out, err = run(emu, oai, [strict_line("ok", STRICT), strict_line("noadd", no_additional),
                              strict_line("noreq", not_required), strict_line("nested", nested),
                              strict_line("unique", {**STRICT, "properties": {
                                  **STRICT["properties"], "t": {"type": "array", "uniqueItems": True}},
                                  "required": ["score", "label", "t"]})])
    assert set(out) == {"ok"} and set(err) == {"noadd", "noreq", "nested", "unique"}
    for cid, response in err.items():
        assert response["status_code"] == 400
        assert response["body"]["error"]["code"] == "invalid_json_schema", cid
    assert "additionalProperties" in err["noadd"]["body"]["error"]["message"]
    assert "Missing 'label'" in err["noreq"]["body"]["error"]["message"]
    assert "'properties', 'inner'" in err["nested"]["body"]["error"]["message"]
    assert "uniqueItems" in err["unique"]["body"]["error"]["message"]
    # a schema that is not strict is not checked
    out, err = run(emu, oai, [chat_line("loose", "hi", response_format={
        "type": "json_schema", "json_schema": {"name": "a", "schema": LOOSE}})])
    assert set(out) == {"loose"}


@pytest.mark.parametrize("model, body, code, words", [
    ("gpt-4.1-mini", {"top_k": 3}, None, "Unrecognized request argument supplied: top_k"),
    ("gpt-4.1-mini", {"stop_sequences": ["x"]}, None, "stop_sequences"),
    ("gpt-4.1-mini", {"thinking": {"type": "enabled"}}, None, "thinking"),
    ("o3-mini", {"max_tokens": 10}, "unsupported_parameter", "max_completion_tokens"),
    ("gpt-5-mini", {"temperature": 0.2}, "unsupported_value", "temperature"),
])
def test_openai_refuses_parameters(emu, oai, model, body, code, words) -> None:
    out, err = run(emu, oai, [chat_line("bad", "hi", model=model, **body),
                              chat_line("good", "hi", model=model, max_completion_tokens=10)])
    assert set(out) == {"good"} and err["bad"]["status_code"] == 400
    assert err["bad"]["body"]["error"]["code"] == code and words in err["bad"]["body"]["error"]["message"]


def test_openai_chat_models_keep_sampling_and_max_tokens(emu, oai) -> None:
    for model in ("gpt-5-chat-latest", "gpt-4o"):
        out, err = run(emu, oai, [chat_line("a", "hi", model=model, max_tokens=5, temperature=0.2)])
        assert set(out) == {"a"} and err == {}, model


def test_anthropic_schema_rules(emu, anth) -> None:
    accepted = {"type": "object", "properties": {"score": {"type": "number", "description": "{minimum: 0}"}},
                "required": ["score"], "additionalProperties": False}
    open_object = {k: v for k, v in accepted.items() if k != "additionalProperties"}
    ranged = {**accepted, "properties": {"score": {"type": "number", "minimum": 0}}}
    pattern = {**accepted, "properties": {"score": {"type": "string", "pattern": "^a"}}}
    batch = anth.messages.batches.create(requests=[
        anthropic_request(cid, "hi", output_config={"format": {"type": "json_schema", "schema": s}})
        for cid, s in (("ok", accepted), ("open", open_object), ("ranged", ranged), ("pattern", pattern))])
    emu.advance(10)
    results = {r.custom_id: r.result for r in anth.messages.batches.results(batch.id)}
    assert results["ok"].type == "succeeded"
    for cid, words in (("open", "additionalProperties"), ("ranged", "'minimum'"), ("pattern", "'pattern'")):
        assert results[cid].type == "errored", cid
        assert results[cid].error.error.type == "invalid_request_error"
        assert words in results[cid].error.error.message, cid


def test_anthropic_newer_models_refuse_sampling(emu, anth) -> None:
    emu.admin("POST", "config", {"strict_anthropic_version": False})
    batch = anth.messages.batches.create(requests=[
        anthropic_request("new", "hi", model="claude-opus-4-7", temperature=0.5),
        anthropic_request("old", "hi", model="claude-haiku-4-5", temperature=0.5)])
    emu.advance(10)
    results = {r.custom_id: r.result for r in anth.messages.batches.results(batch.id)}
    assert results["old"].type == "succeeded"
    assert results["new"].type == "errored" and "temperature" in results["new"].error.error.message


def test_badrange_answers_outside_the_range(emu, oai) -> None:
    out, _ = run(emu, oai, [strict_line("r", STRICT, "hi [[emu:badrange]]"), strict_line("n", STRICT)])
    assert json.loads(out["r"]["choices"][0]["message"]["content"])["score"] == 1000000
    assert 0 <= json.loads(out["n"]["choices"][0]["message"]["content"])["score"] <= 1
