"""Asynchronous (and optionally synchronous) validation of OpenAI batch input files."""
from __future__ import annotations

import openai
import pytest

from emu_helpers import chat_line, submit


def client_for(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test", max_retries=0)


def failed_errors(emu, oai: openai.OpenAI, lines: list, **kw) -> list:
    batch = submit(oai, lines, **kw)
    assert batch.status == "validating"
    emu.advance(1)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "failed" and b.failed_at is not None
    assert b.output_file_id is None and b.error_file_id is None
    assert b.request_counts.total == 0
    assert b.errors is not None and b.errors.object == "list"
    return b.errors.data or []


def test_duplicate_custom_id(emu, oai) -> None:
    errors = failed_errors(emu, oai, [chat_line("a", "x"), chat_line("a", "y")])
    assert [(e.code, e.line) for e in errors] == [("duplicate_custom_id", 2)]


def test_invalid_json_line(emu, oai) -> None:
    errors = failed_errors(emu, oai, [chat_line("a", "x"), "{not json", chat_line("c", "z")])
    assert [(e.code, e.line) for e in errors] == [("invalid_json_line", 2)]
    assert errors[0].message == "This line is not parseable as valid JSON."


def test_url_mismatch_accepts_both_prefixes(emu, oai) -> None:
    errors = failed_errors(emu, oai, [chat_line("a", "x", url="/chat/completions"),
                                      chat_line("b", "y", url="/v1/embeddings")])
    assert [(e.code, e.line) for e in errors] == [("url_mismatch", 2)]


def test_model_mismatch(emu, oai) -> None:
    errors = failed_errors(emu, oai, [chat_line("a", "x"), chat_line("b", "y", model="gpt-4o")])
    assert [(e.code, e.line) for e in errors] == [("model_mismatch", 2)]


def test_empty_file(emu, oai) -> None:
    errors = failed_errors(emu, oai, ["", "  "])
    assert [e.code for e in errors] == ["empty_file"]


def test_missing_field(emu, oai) -> None:
    line = chat_line("a", "x")
    del line["method"]
    errors = failed_errors(emu, oai, [line])
    assert [(e.code, e.param, e.line) for e in errors] == [("invalid_request", "method", 1)]


def test_too_many_requests(make_emulator) -> None:
    emu = make_emulator(openai_max_requests=3)
    oai = client_for(emu)
    errors = failed_errors(emu, oai, [chat_line(f"r{i}", "x") for i in range(4)])
    assert [e.code for e in errors] == ["too_many_tasks"]


def test_file_too_large(make_emulator) -> None:
    emu = make_emulator(openai_max_file_bytes=100)
    oai = client_for(emu)
    errors = failed_errors(emu, oai, [chat_line(f"r{i}", "x") for i in range(4)])
    assert [e.code for e in errors] == ["file_too_large"]


def test_sync_validation_answers_400(make_emulator) -> None:
    emu = make_emulator(sync_validation=True)
    oai = client_for(emu)
    with pytest.raises(openai.BadRequestError) as bad:
        submit(oai, [chat_line("a", "x"), chat_line("a", "y")])
    assert bad.value.code == "duplicate_custom_id"
    assert list(oai.batches.list()) == []


def test_enqueued_token_limit_counts_only_running_batches(make_emulator) -> None:
    emu = make_emulator(enqueued_token_limit=30)
    oai = client_for(emu)
    line = chat_line("a", "x" * 80)  # 20 tokens
    first = submit(oai, [line])
    emu.advance(1)
    assert oai.batches.retrieve(first.id).status == "in_progress"
    second = submit(oai, [line])
    emu.advance(1)
    b = oai.batches.retrieve(second.id)
    assert b.status == "failed" and b.errors.data[0].code == "token_limit_exceeded"
    assert b.errors.data[0].line is None
    emu.advance(100)  # the first batch completes and frees its budget
    third = submit(oai, [line])
    emu.advance(1)
    assert oai.batches.retrieve(third.id).status == "in_progress"
