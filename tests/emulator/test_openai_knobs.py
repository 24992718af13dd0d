"""Failure, expiry and cancel knobs, markers and admin 'force', for OpenAI batches."""
from __future__ import annotations

import openai
import pytest

from emu_helpers import chat_line, read_lines, submit


def client_for(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test", max_retries=0)


def test_failure_rate_is_seeded_and_roughly_right(make_emulator) -> None:
    emu = make_emulator(seed=42, failure_rate=0.3)
    oai = client_for(emu)
    lines = [chat_line(f"r{i:04d}", f"q{i}") for i in range(400)]
    first = submit(oai, lines)
    second = submit(oai, lines)
    emu.advance(100)
    b1, b2 = oai.batches.retrieve(first.id), oai.batches.retrieve(second.id)
    assert b1.request_counts.total == 400
    assert 80 <= b1.request_counts.failed <= 160
    assert b1.request_counts.failed + b1.request_counts.completed == 400
    failed1 = {l["custom_id"] for l in read_lines(oai, b1.error_file_id)}
    failed2 = {l["custom_id"] for l in read_lines(oai, b2.error_file_id)}
    assert failed1 != failed2  # a new batch is a fresh draw per custom_id
    for line in read_lines(oai, b1.error_file_id):
        assert line["response"]["status_code"] == 500 and line["error"] is None
        assert line["response"]["body"]["error"]["type"] == "server_error"

    replay = make_emulator(seed=42, failure_rate=0.3)
    again = client_for(replay)
    r1 = submit(again, lines)
    replay.advance(100)
    assert r1.id == first.id  # same seed, same calls: same ids
    assert {l["custom_id"] for l in read_lines(again, again.batches.retrieve(r1.id).error_file_id)} == failed1


def test_expiry_at_24h_keeps_finished_results(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line("done-1", "x"), chat_line("done-2", "y"), chat_line("stuck", "z [[emu:never]]")])
    emu.advance(50)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "in_progress" and b.request_counts.completed == 2
    emu.advance(86400)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "expired" and b.expired_at == b.expires_at
    assert {l["custom_id"] for l in read_lines(oai, b.output_file_id)} == {"done-1", "done-2"}
    errors = read_lines(oai, b.error_file_id)
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [("stuck", None, "batch_expired")]
    processed = emu.admin("GET", "/_emulator/processed")["data"]
    assert sorted((p["custom_id"], p["outcome"], p["billed"]) for p in processed) == [
        ("done-1", "succeeded", True), ("done-2", "succeeded", True), ("stuck", "expired", False)]


def test_expire_fraction(make_emulator) -> None:
    emu = make_emulator(expire_fraction=0.25)
    oai = client_for(emu)
    batch = submit(oai, [chat_line(f"r{i}", "x") for i in range(8)])
    emu.advance(100)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "expired"
    assert len(read_lines(oai, b.output_file_id)) == 2
    assert {e["error"]["code"] for e in read_lines(oai, b.error_file_id)} == {"batch_expired"}
    assert len(read_lines(oai, b.error_file_id)) == 6


@pytest.mark.parametrize("write_lines", [True, False])
def test_cancel_fraction_and_error_line_knob(make_emulator, write_lines: bool) -> None:
    emu = make_emulator(cancel_fraction=0.5, cancel_writes_error_lines=write_lines)
    oai = client_for(emu)
    batch = submit(oai, [chat_line(f"r{i}", "x") for i in range(6)])
    emu.advance(1 + 2.5)  # the 3rd request finishes at 1 + 5*3/6 = 3.5
    assert oai.batches.retrieve(batch.id).status == "cancelling"
    emu.advance(10)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "cancelled"
    assert len(read_lines(oai, b.output_file_id)) == 3
    assert len(read_lines(oai, b.error_file_id)) == (3 if write_lines else 0)
    outcomes = sorted(p["outcome"] for p in emu.admin("GET", "processed")["data"])
    assert outcomes == ["cancelled"] * 3 + ["succeeded"] * 3


def test_never_marker_blocks_completion_until_expiry(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line("a", "x"), chat_line("b", "[[emu:never]] y")])
    emu.advance(3600)
    assert oai.batches.retrieve(batch.id).status == "in_progress"
    emu.advance(86400)
    assert oai.batches.retrieve(batch.id).status == "expired"


@pytest.mark.parametrize("status", ["expired", "failed", "cancelled", "completed"])
def test_admin_force(emu, oai: openai.OpenAI, status: str) -> None:
    batch = submit(oai, [chat_line("a", "x"), chat_line("b", "y [[emu:never]]")])
    emu.advance(6)  # the one runnable request is done; the 'never' one is not
    forced = emu.admin("POST", f"/_emulator/batches/{batch.id}/force", {"status": status})
    assert forced["status"] == status
    b = oai.batches.retrieve(batch.id)
    assert b.status == status
    if status == "completed":
        assert len(read_lines(oai, b.output_file_id)) == 2
    elif status == "failed":
        assert b.errors is not None and b.output_file_id is None and b.failed_at is not None
    else:
        assert len(read_lines(oai, b.output_file_id)) == 1
    with pytest.raises(Exception):
        emu.admin("POST", f"/_emulator/batches/{batch.id}/force", {"status": "expired"})


def test_cancel_during_validating(emu, oai: openai.OpenAI) -> None:
    batch = submit(oai, [chat_line("a", "x")])
    assert oai.batches.cancel(batch.id).status == "cancelling"
    emu.advance(5)
    b = oai.batches.retrieve(batch.id)
    assert b.status == "cancelled" and b.in_progress_at is None and b.output_file_id is None
    assert [l["error"]["code"] for l in read_lines(oai, b.error_file_id)] == ["batch_cancelled"]
