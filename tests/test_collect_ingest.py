"""Collect's ingest, on a real DuckDB file with result files written by hand: odd lines,
repeated custom_ids, several batches to a transaction, and a failure while recording."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from warehouse_batch.collect import collect_ready
from warehouse_batch.identity import custom_id_for, sha256_hex
from warehouse_batch.providers.anthropic import AnthropicProvider
from warehouse_batch.providers.gemini import GeminiProvider
from warehouse_batch.providers.openai import OpenAIProvider
from warehouse_batch.state import ensure_schema, now_utc

_NAMES: dict[str, str] = {}   # custom_id -> the short name a test uses for it


def cid(name: str) -> str:
    """The custom_id of request `name` (custom_ids derive from request hashes)."""
    c = custom_id_for(sha256_hex(name))
    _NAMES[c] = name
    return c

collect_module = sys.modules["warehouse_batch.collect"]   # the package exports a `collect`


def answer(cid: str, text: str, status: int = 200) -> str:
    body = ({"object": "chat.completion", "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 1}} if status == 200 else
            {"error": {"message": "server error", "type": "server_error"}})
    return json.dumps({"id": "x", "custom_id": globals()["cid"](cid),
                       "response": {"status_code": status, "body": body}, "error": None})


class FakeProvider:
    """An OpenAI-shaped provider whose batches have ended with the given result files."""

    name = "openai"
    results_sql = "openai_results.sql"
    result_records = OpenAIProvider.result_records

    def __init__(self, files: dict[str, str]):
        self.files = files        # provider_batch_id -> result file text
        self.spec = SimpleNamespace(output_schema=None, endpoint="chat", generation={},
                                    allow_truncated=False)
        self.cleaned: list[str] = []

    def retrieve(self, batch):
        from warehouse_batch.providers.base import RemoteBatch
        return RemoteBatch(batch.provider_batch_id, "completed", True, output_file_id="f")

    def download_results(self, batch, remote, dest: Path) -> list[Path]:
        path = dest / f"{batch.batch_id}.output.jsonl"
        path.write_bytes(self.files[remote.provider_batch_id].encode())
        return [path]

    def cleanup(self, batch, remote) -> None:
        self.cleaned.append(batch.batch_id)


def ledger(path: Path, batches: dict[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB file whose ledger holds submitted batches `bN` (provider id `pN`) with the
    given requests (named; request_hash = sha256 of the name, custom_id derived from it)."""
    con = duckdb.connect(str(path))
    ensure_schema(con)
    for batch_id, cids in batches.items():
        con.execute("""INSERT INTO warehouse_batch.batches (batch_id, run_id, job_name,
            provider, endpoint, model, chunk, state, request_count, bytes, created_at,
            provider_batch_id) VALUES (?, 'r1', 'job', 'openai', '/v1/chat/completions', 'm',
            0, 'submitted', ?, 0, ?, ?)""",
                    [batch_id, len(cids), now_utc(), "p" + batch_id[1:]])
        for cid in cids:
            con.execute("INSERT INTO warehouse_batch.batch_requests (batch_id, request_hash) "
                        "VALUES (?, ?)", [batch_id, sha256_hex(cid)])
            globals()["cid"](cid)   # remember its name
    return con


def results(con) -> dict[str, tuple]:
    return {_NAMES.get(r[0], r[0]): r[1:] for r in con.execute(
        "SELECT custom_id, status, response_text, attempts FROM warehouse_batch.results")
        .fetchall()}


def test_odd_lines_and_a_repeated_custom_id(tmp_path):
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2", "c3", "c4"]})
    text = "\n".join([
        answer("c1", "one", status=500),        # c1 twice: the success wins, whatever order
        "",                                     # blank lines are not lines
        "   ",
        answer("c1", "one again"),
        answer("c2", "two") + "\r",             # CRLF line ends
        '{"custom_id": "c3", "response": ',     # not JSON: c3 is not processed
        answer("c4", "four"),
    ]) + "\n"
    provider = FakeProvider({"p1": text})
    report = collect_ready(con, provider, "job")
    assert results(con) == {"c1": ("succeeded", "one again", 1),
                            "c2": ("succeeded", "two", 1),
                            "c3": ("failed", None, 1),
                            "c4": ("succeeded", "four", 1)}
    assert (report.succeeded, report.not_processed) == (3, 1)
    assert any("1 result line(s) were not valid JSON" in w for w in report.warnings)
    assert con.execute("SELECT outcome FROM warehouse_batch.attempts WHERE custom_id = ?",
                       [cid("c3")]).fetchall() == [("missing",)]


def test_a_cached_failure_is_merged_not_duplicated(tmp_path):
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2"], "b2": ["c1"]})
    provider = FakeProvider({"p1": answer("c1", "x", status=500) + "\n" + answer("c2", "two"),
                             "p2": answer("c1", "one")})
    collect_ready(con, provider, "job")
    # b1 failed c1, b2 answered it: one results row, two attempts
    assert results(con) == {"c1": ("succeeded", "one", 2), "c2": ("succeeded", "two", 1)}
    assert con.execute("SELECT count(*) FROM warehouse_batch.attempts").fetchone()[0] == 3


def test_a_request_cached_before_the_pass_is_merged_not_duplicated(tmp_path):
    """The pass looks up the cache once for all its batches (maybe_cached.sql): a retry whose
    failure was recorded by an earlier collect must still be merged into that row."""
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2"]})
    collect_ready(con, FakeProvider({"p1": answer("c1", "x", status=500) + "\n" +
                                     answer("c2", "two")}), "job")
    con.close()
    con = ledger(tmp_path / "w.duckdb", {"b2": ["c1", "c3"], "b3": ["c4"]})
    collect_ready(con, FakeProvider({"p2": answer("c1", "one") + "\n" + answer("c3", "three"),
                                     "p3": answer("c4", "four")}), "job")
    assert results(con) == {"c1": ("succeeded", "one", 2), "c2": ("succeeded", "two", 1),
                            "c3": ("succeeded", "three", 1), "c4": ("succeeded", "four", 1)}
    assert con.execute("SELECT count(*), count(DISTINCT request_hash) "
                       "FROM warehouse_batch.results").fetchone() == (4, 4)


def test_batches_share_a_transaction_and_a_failure_records_none_of_them(tmp_path,
                                                                        monkeypatch):
    batches = {f"b{i}": [f"c{i}_{j}" for j in range(3)] for i in range(1, 4)}
    con = ledger(tmp_path / "w.duckdb", batches)
    provider = FakeProvider({"p" + b[1:]: "\n".join(answer(c, "ok") for c in cids)
                             for b, cids in batches.items()})
    real = collect_module.build_outcomes
    calls = []

    def failing_on_the_third(con, batch_id, provider=None):
        calls.append(batch_id)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(con, batch_id, provider)

    monkeypatch.setattr(collect_module, "build_outcomes", failing_on_the_third)
    with pytest.raises(RuntimeError):
        collect_ready(con, provider, "job")
    # the two batches recorded before the failure were in its transaction: rolled back,
    # still submitted, their provider files kept
    assert con.execute("SELECT count(*) FROM warehouse_batch.results").fetchone()[0] == 0
    assert {s for (s,) in con.execute("SELECT state FROM warehouse_batch.batches")
            .fetchall()} == {"submitted"}
    assert provider.cleaned == []

    monkeypatch.setattr(collect_module, "build_outcomes", real)
    report = collect_ready(con, provider, "job")
    assert report.batches_collected == 3 and report.succeeded == 9
    assert len(results(con)) == 9
    assert sorted(provider.cleaned) == ["b1", "b2", "b3"]


def test_a_commit_every_commit_rows_requests(tmp_path, monkeypatch):
    batches = {f"b{i}": [f"c{i}_{j}" for j in range(2)] for i in range(1, 4)}
    con = ledger(tmp_path / "w.duckdb", batches)
    provider = FakeProvider({"p" + b[1:]: "\n".join(answer(c, "ok") for c in cids)
                             for b, cids in batches.items()})
    monkeypatch.setattr(collect_module, "COMMIT_ROWS", 4)   # two batches per transaction
    cleaned_at_commit = []
    real_commit = collect_module.CommitGroup.commit

    def commit(self):
        real_commit(self)
        cleaned_at_commit.append(list(provider.cleaned))

    monkeypatch.setattr(collect_module.CommitGroup, "commit", commit)
    collect_ready(con, provider, "job")
    assert cleaned_at_commit[0] == ["b1", "b2"]     # committed (and cleaned) after two
    assert provider.cleaned == ["b1", "b2", "b3"]
    assert len(results(con)) == 6


def test_a_line_that_is_not_json_beside_a_complete_batch_changes_nothing(tmp_path):
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2"]})
    text = "\n".join([answer("c1", "one"), "{not json", answer("c2", "two")]) + "\n"
    report = collect_ready(con, FakeProvider({"p1": text}), "job")
    assert results(con) == {"c1": ("succeeded", "one", 1), "c2": ("succeeded", "two", 1)}
    assert (report.succeeded, report.not_processed) == (2, 0)


def test_collect_leaves_duckdb_threads_as_it_found_them(tmp_path, monkeypatch):
    # collect runs on one DuckDB thread (tuning.py) and gives the setting back, also on a
    # failure
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1"]})
    con.execute("SET threads = 3")
    seen = []
    real = collect_module.build_outcomes

    def spy(con, batch_id, provider=None):
        seen.append(con.execute("SELECT current_setting('threads')").fetchone()[0])
        raise RuntimeError("disk full")

    monkeypatch.setattr(collect_module, "build_outcomes", spy)
    with pytest.raises(RuntimeError):
        collect_ready(con, FakeProvider({"p1": answer("c1", "one")}), "job")
    assert seen == [1]
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    monkeypatch.setattr(collect_module, "build_outcomes", real)
    collect_ready(con, FakeProvider({"p1": answer("c1", "one")}), "job")
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3


@pytest.mark.parametrize("line, outcome, error_type, message", [
    ({"response": {"body": {}}, "error": None}, "errored", None,
     "the result line has a response without a status_code"),
    # a response that is not an object reads as one without a status_code
    ({"response": "not an object", "error": None}, "errored", None,
     "the result line has a response without a status_code"),
    ({"response": None, "error": None}, "errored", "no_answer",
     "the result line has neither a response nor an error (response: null)"),
    ({"error": {}}, "errored", None, "the result line has an error without a message"),
    ({"response": None, "error": {"code": "batch_expired", "message": "too late"}},
     "expired", "batch_error", "too late"),
    # a field of another JSON type is cast where it can be (as json_transform did)
    ({"response": {"status_code": "200", "body": {}}, "error": None}, "errored", "no_answer",
     "no answer: HTTP 200 but the body has no choices"),
    ({"response": {"status_code": 200, "body": "text"}, "error": None}, "errored",
     "no_answer", "no answer: HTTP 200 with no response body"),
    ({"response": {"status_code": 200, "body": {"choices": {"0": 1}}}, "error": None},
     "errored", "no_answer", "no answer: HTTP 200 but the body has no choices"),
])
def test_result_lines_of_odd_shapes_are_failures_that_say_why(tmp_path, line, outcome,
                                                              error_type, message):
    """Each line is read as a typed record (jsonl.read_records): a part of the wrong shape is
    NULL, never a failed batch, and the failure names what the line lacked."""
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2"]})
    text = json.dumps({"custom_id": cid("c1"), **line}) + "\n" + answer("c2", "two") + "\n"
    report = collect_ready(con, FakeProvider({"p1": text}), "job")
    assert report.succeeded == 1
    assert con.execute("SELECT outcome, error_type, error_message FROM warehouse_batch.attempts "
                       "WHERE custom_id = ?", [cid("c1")]).fetchall() == [
        (outcome, error_type, message)]


class FakeAnthropic(FakeProvider):
    """The same, for Anthropic's results stream."""

    name = "anthropic"
    results_sql = AnthropicProvider.results_sql
    result_records = AnthropicProvider.result_records


def _message(content, stop: str = "end_turn") -> dict:
    return {"type": "message", "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3}}


@pytest.mark.parametrize("result, outcome, error_type, message", [
    ({"type": "succeeded", "message": _message([{"type": "text", "text": "hi"}])},
     "succeeded", None, None),
    ({"type": "succeeded", "message": _message([{"type": "tool_use", "name": "f"}])},
     "succeeded", None, None),
    ({"type": "succeeded", "message": _message([{"type": "text", "text": ""}])}, "errored",
     "no_answer", "no answer: the message text is empty (stop_reason end_turn)"),
    ({"type": "succeeded", "message": "not an object"}, "errored", "no_answer",
     "no answer: the succeeded result has no message"),
    ({"type": "succeeded", "message": _message([{"type": "text", "text": "no"}], "refusal")},
     "errored", "refusal", "refused: the model declined to answer (stop_reason refusal): no"),
    ({"type": "errored", "error": {"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long"}}},
     "errored", "invalid_request_error", "prompt is too long"),
    ({"type": "canceled"}, "cancelled", "batch_error",
     "cancelled: the batch was cancelled before this request was processed"),
    ("not an object", "errored", "no_answer", "no answer: the result line has no result"),
    (None, "errored", "no_answer", "no answer: the result line has no result"),
])
def test_anthropic_result_lines_are_read_as_typed_records(tmp_path, result, outcome,
                                                          error_type, message):
    """Anthropic's lines are read as typed records too (jsonl.read_records): every shape a
    line may take is an outcome that says why, and an answer keeps its text and usage."""
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1"]})
    con.execute("UPDATE warehouse_batch.batches SET provider = 'anthropic', "
                "endpoint = '/v1/messages'")
    text = json.dumps({"custom_id": cid("c1"), "result": result}) + "\n"
    collect_ready(con, FakeAnthropic({"p1": text}), "job")
    assert con.execute("SELECT outcome, error_type, error_message FROM warehouse_batch.attempts "
                       ).fetchall() == [(outcome, error_type, message)]
    if outcome == "succeeded" and result["message"]["content"][0]["type"] == "text":
        assert con.execute("SELECT response_text, input_tokens, cached_tokens "
                           "FROM warehouse_batch.results").fetchall() == [("hi", 10, 3)]


class FakeGemini(FakeProvider):
    """The same, for Gemini's responses file."""

    name = "gemini"
    results_sql = GeminiProvider.results_sql
    result_records = GeminiProvider.result_records


def _gemini(parts, finish: str = "STOP") -> dict:
    return {"candidates": [{"content": {"parts": parts, "role": "model"},
                            "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1,
                              "thoughtsTokenCount": 2, "cachedContentTokenCount": 3},
            "modelVersion": "gemini-2.5-flash"}


@pytest.mark.parametrize("line, outcome, error_type, message", [
    ({"response": _gemini([{"text": "thinking", "thought": True}, {"text": "hi"}])},
     "succeeded", None, None),
    ({"response": _gemini([{"text": ""}])}, "errored", "no_answer",
     "no answer: the candidate has no text (finishReason STOP)"),
    ({"response": {"candidates": []}}, "errored", "no_answer",
     "no answer: the response has no candidates"),
    ({"response": {"promptFeedback": {"blockReason": "SAFETY"}}}, "errored",
     "content_filter", "content filter: Gemini blocked the prompt (blockReason SAFETY); a "
     "retry cannot help: change the prompt"),
    ({"response": _gemini([{"text": "no"}], "RECITATION")}, "errored", "refusal",
     "refused: Gemini stopped the answer (finishReason RECITATION)"),
    ({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
     "errored", "resource_exhausted", "slow down"),
    ({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, "errored", "invalid_argument",
     "errored (INVALID_ARGUMENT)"),
    # a field of another JSON type is cast where it can be
    ({"error": {"code": "503", "message": "later", "status": "UNAVAILABLE"}}, "errored",
     "unavailable", "later"),
    ({"response": "not an object"}, "errored", "no_answer",
     "no answer: the result line has neither a response nor an error"),
    ({"error": "not an object"}, "errored", "no_answer",
     "no answer: the result line has neither a response nor an error"),
    ({"response": None}, "errored", "no_answer",
     "no answer: the result line has neither a response nor an error"),
    ({}, "errored", "no_answer",
     "no answer: the result line has neither a response nor an error"),
])
def test_gemini_result_lines_of_every_shape_say_why(tmp_path, line, outcome, error_type,
                                                    message):
    """Gemini's lines ({"key", "response" | "error"}): every shape a line may take is an
    outcome that says why; an answer keeps its text (thoughts left out) and usage."""
    con = ledger(tmp_path / "w.duckdb", {"b1": ["c1", "c2"]})
    con.execute("UPDATE warehouse_batch.batches SET provider = 'gemini', "
                "endpoint = 'generateContent'")
    text = (json.dumps({"key": cid("c1"), **line}) + "\n" + "not json\n"
            + json.dumps({"key": cid("c2"), "response": _gemini([{"text": "two"}])}) + "\n")
    report = collect_ready(con, FakeGemini({"p1": text}), "job")
    assert report.succeeded == 1 + (outcome == "succeeded")
    assert con.execute("SELECT outcome, error_type, error_message FROM warehouse_batch.attempts "
                       "WHERE custom_id = ?", [cid("c1")]).fetchall() == [
        (outcome, error_type, message)]
    if outcome == "succeeded":
        assert con.execute("SELECT response_text, input_tokens, output_tokens, cached_tokens, "
                           "finish_reason FROM warehouse_batch.results WHERE custom_id = ?",
                           [cid("c1")]).fetchall() == [("hi", 7, 3, 3, "stop")]
