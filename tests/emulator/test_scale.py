"""What keeps the emulator fast and bounded on large batches: the plain-chat template, state
kept on disk rather than in memory, and results streamed from disk."""
from __future__ import annotations

import json
import os

import openai
import pytest

from emu_helpers import chat_line, read_lines, submit, upload
from warehouse_batch.emulator import EmulatorConfig, answers, openai_batches, openai_bodies, start
from warehouse_batch.emulator.persist import DiskBackend, MemoryBackend
from warehouse_batch.emulator.store import Store

BODIES = [
    {"model": "gpt-4.1-mini", "max_tokens": 5, "messages": [
        {"role": "system", "content": "Classify the sentiment: positive, negative or neutral."},
        {"role": "user", "content": "I love it, great value, but the box was broken"}]},
    {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": 'quotes " \\ and \u00e9\u00e8 \U0001f600'}]},
    {"model": "gpt-4o", "messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                                     {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                  {"type": "text", "text": "b"}]}],
     "response_format": {"type": "text"}},
    {"model": "m", "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": None}]},
]


@pytest.mark.parametrize("body", BODIES)
def test_plain_chat_template_is_byte_for_byte_the_generic_line(body) -> None:
    prompt = answers.openai_chat_prompt(body)
    salt = "S" * 16
    fast = openai_batches._plain_chat_line("batch_req_x", "c\t1\"", "req_y", salt, 1234, body, prompt)
    assert fast is not None
    answer = openai_bodies.chat_body(body, salt, 1234, False)
    generic = json.dumps({"id": "batch_req_x", "custom_id": "c\t1\"", "response": {
        "status_code": 200, "request_id": "req_y", "body": answer}, "error": None})
    assert fast[0] == generic
    assert fast[1:] == openai_bodies.body_usage("/chat/completions", answer)


@pytest.mark.parametrize("extra", [
    {"response_format": {"type": "json_object"}},
    {"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]},
])
def test_plain_chat_template_leaves_other_requests_to_the_generic_path(extra) -> None:
    body = {**BODIES[0], **extra}
    assert openai_batches._plain_chat_line("l", "c", "r", "s" * 16, 1, body,
                                           answers.openai_chat_prompt(body)) is None
    marked = {"model": "m", "messages": [{"role": "user", "content": "x [[emu:truncate]]"}]}
    assert openai_batches._plain_chat_line("l", "c", "r", "s" * 16, 1, marked,
                                           answers.openai_chat_prompt(marked)) is None


def test_memory_state_lives_in_a_temporary_directory_removed_on_stop(tmp_path) -> None:
    emu = start(EmulatorConfig(port=0, clock="manual", process_seconds=0, validate_seconds=0,
                               finalize_seconds=0))
    root = emu._app.store.backend.root
    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk", max_retries=0)
    batch = submit(client, [chat_line(f"r{i}", f"text {i}") for i in range(50)])
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert len(read_lines(client, done.output_file_id)) == 50
    blobs = os.listdir(os.path.join(root, "blobs"))
    assert {"files", "requests", "plans", "processed"} <= set(blobs)
    assert not os.listdir(os.path.join(root, "spool"))  # every upload's spool file is gone
    emu.stop()
    assert not os.path.exists(root)


def test_batch_records_hold_no_per_request_lists(tmp_path) -> None:
    state = str(tmp_path / "state")
    emu = start(EmulatorConfig(port=0, clock="manual", state_dir=state))
    client = openai.OpenAI(base_url=emu.openai_base_url, api_key="sk", max_retries=0)
    batch = submit(client, [chat_line(f"r{i}", f"text {i}") for i in range(300)])
    emu.advance(100)
    assert client.batches.retrieve(batch.id).status == "completed"
    emu.stop()
    with open(os.path.join(state, "docs", "batches", f"{batch.id}.json")) as handle:
        rec = json.load(handle)
    assert "order" not in rec and len(rec["kinds"]) == 300
    assert os.path.getsize(os.path.join(state, "blobs", "plans", batch.id)) == 300 * 4


def test_a_download_survives_the_file_being_deleted_meanwhile(tmp_path) -> None:
    """A download streams from an open handle, so a delete racing it cannot tear it."""
    backend = DiskBackend(str(tmp_path))
    store = Store(backend)
    store.put_file({"id": "file-a", "seq": 1}, b"x" * 100_000)
    handle = store.open_file("file-a")
    store.remove_file("file-a")
    with handle:
        assert handle.read() == b"x" * 100_000
    assert store.open_file("file-a") is None


def test_processed_log_reads_entries_written_before_it_became_per_batch() -> None:
    backend = MemoryBackend()
    old = {"protocol": "openai", "batch_id": "b0", "custom_id": "a", "outcome": "succeeded", "billed": True}
    backend.append_log("processed", [old])
    store = Store(backend)
    store.log_processed("azure", "b1", [("x\ty", "errored"), ("z", "succeeded")])
    assert store.processed_log() == [old, {
        "protocol": "azure", "batch_id": "b1", "custom_id": "x\ty", "outcome": "errored", "billed": False}, {
        "protocol": "azure", "batch_id": "b1", "custom_id": "z", "outcome": "succeeded", "billed": True}]
    backend.close()


def test_upload_bytes_are_stored_exactly(emulator) -> None:
    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="sk", max_retries=0)
    data = bytes(range(256)) * 5000 + b"\r\n--tail"
    file_id = client.files.create(file=("blob.bin", data), purpose="user_data").id
    assert client.files.retrieve(file_id).bytes == len(data)
    assert client.files.content(file_id).content == data
    assert upload(client, [chat_line("a", "x")])


def test_ended_openai_batches_get_their_results_without_being_asked(emulator) -> None:
    """The finisher writes results once a batch ends by the clock (Anthropic batches wait to
    be read: their prompt-cache accounting follows the order they are read in)."""
    import anthropic

    from emu_helpers import anthropic_request

    client = openai.OpenAI(base_url=emulator.openai_base_url, api_key="sk", max_retries=0)
    claude = anthropic.Anthropic(base_url=emulator.anthropic_base_url, api_key="x", max_retries=0)
    batch = submit(client, [chat_line(f"r{i}", f"text {i}") for i in range(20)])
    msg = claude.messages.batches.create(requests=[anthropic_request("m1", "hello")])
    app = emulator._app
    while emulator._finisher.step():  # the thread may have done it already: then nothing is left
        pass
    assert app.store.batches[batch.id]["final"] is None
    emulator.advance(1000)
    while emulator._finisher.step():
        pass
    final = app.store.batches[batch.id]["final"]
    assert final["status"] == "completed" and final["output_file_id"]
    assert app.store.batches[msg.id]["final"] is None
    output = final["output_file_id"]
    assert output in {f.id for f in client.files.list()}
    assert client.batches.retrieve(batch.id).output_file_id == output
    assert len(read_lines(client, output)) == 20


def test_an_empty_multipart_body_is_a_400(emulator) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(emulator.openai_base_url + "/files", data=b"", method="POST", headers={
        "authorization": "Bearer sk", "content-type": "multipart/form-data; boundary=XyZ"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30)
    assert err.value.code == 400


@pytest.mark.parametrize("cid", ["a", "b\u00e9\t", "x" * 100])
def test_result_ids_are_the_documented_hashes(cid: str) -> None:
    from warehouse_batch.emulator.ids import b62_token, hex_token

    ids = openai_batches._Ids("batch_x")
    assert ids.salt(cid) == b62_token(16, "batch_x", cid)
    assert ids.line_id(cid) == "batch_req_" + hex_token(32, "batch_x", cid)
    assert ids.request_id(cid) == "req_" + hex_token(32, "batch_x", cid, "request")
    assert openai_batches._b62(ids.salt(cid), "chatcmpl", 29) == b62_token(29, ids.salt(cid), "chatcmpl")
