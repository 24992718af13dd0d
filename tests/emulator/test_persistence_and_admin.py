"""Persistence across restarts (state_dir) and the admin API."""
from __future__ import annotations

import json
import os
import urllib.request

import anthropic
import openai
import pytest

from emu_helpers import anthropic_request, chat_line, submit
from warehouse_batch.emulator import AdminError, EmulatorConfig, start


def test_restart_with_state_dir_sees_everything(tmp_path) -> None:
    state = str(tmp_path / "state")
    first = start(EmulatorConfig(port=0, clock="manual", state_dir=state))
    oai = openai.OpenAI(base_url=first.openai_base_url, api_key="sk", max_retries=0)
    batch = submit(oai, [chat_line(f"r{i}", "x") for i in range(4)] + [chat_line("bad", "[[emu:error400]]")])
    done = submit(oai, [chat_line("a", "x")])
    first.admin("POST", "config", {"failure_rate": 0.5, "process_seconds": 50.0})
    now = first.advance(3.5)
    claude = anthropic.Anthropic(base_url=first.anthropic_base_url, api_key="x", max_retries=0)
    msg_batch = claude.messages.batches.create(requests=[anthropic_request("m1", "hello")])
    first.advance(10)
    finished = oai.batches.retrieve(done.id)
    assert finished.status == "completed"
    output_before = oai.files.content(finished.output_file_id).content
    progress = oai.batches.retrieve(batch.id).request_counts.completed
    files_before = sorted(f.id for f in oai.files.list())
    first.stop()

    second = start(EmulatorConfig(port=0, clock="manual", state_dir=state, failure_rate=0.0))
    oai2 = openai.OpenAI(base_url=second.openai_base_url, api_key="sk", max_retries=0)
    assert second.admin("GET", "clock")["now"] == now + 10
    knobs = second.admin("GET", "config")
    assert knobs["failure_rate"] == 0.5 and knobs["process_seconds"] == 50.0  # persisted knobs win
    assert sorted(f.id for f in oai2.files.list()) == files_before
    assert oai2.files.content(finished.output_file_id).content == output_before
    assert oai2.batches.retrieve(batch.id).request_counts.completed == progress
    second.advance(100)
    b = oai2.batches.retrieve(batch.id)
    assert b.status == "completed" and b.request_counts.completed == 4 and b.request_counts.failed == 1
    claude2 = anthropic.Anthropic(base_url=second.anthropic_base_url, api_key="x", max_retries=0)
    ended = claude2.messages.batches.retrieve(msg_batch.id)
    assert ended.processing_status == "ended"
    assert ended.results_url.startswith(second.url)  # absolute, on the new port
    assert [r.custom_id for r in claude2.messages.batches.results(msg_batch.id)] == ["m1"]
    processed = second.admin("GET", "processed")["data"]
    assert sorted(p["custom_id"] for p in processed) == ["a", "bad", "m1", "r0", "r1", "r2", "r3"]
    second.stop()

    third = start(EmulatorConfig(port=0, clock="manual", state_dir=state))
    assert len(third.admin("GET", "processed")["data"]) == 7
    assert len(third.admin("GET", "requests")["data"]) > 0
    third.stop()
    assert os.path.isdir(os.path.join(state, "docs"))


def test_clock_endpoints(emu) -> None:
    assert emu.admin("GET", "clock")["now"] == 1_800_000_000
    assert emu.advance(10) == 1_800_000_010
    assert emu.admin("POST", "clock", {"set": 1_900_000_000})["now"] == 1_900_000_000
    with pytest.raises(AdminError):
        emu.admin("POST", "clock", {"advance": -1})
    with pytest.raises(AdminError):
        emu.admin("POST", "clock", {"sideways": 1})


def test_real_clock_advances_by_offset(make_emulator) -> None:
    emu = make_emulator(clock="real")
    before = emu.admin("GET", "clock")["now"]
    after = emu.advance(3600)
    assert 3600 <= after - before < 3660


def test_config_endpoints(emu) -> None:
    knobs = emu.admin("GET", "config")
    assert knobs["validate_seconds"] == 1.0 and knobs["port"] == emu.port
    updated = emu.admin("POST", "config", {"validate_seconds": 0, "expire_fraction": 0.5})
    assert updated["validate_seconds"] == 0.0 and updated["expire_fraction"] == 0.5
    for bad in ({"nope": 1}, {"failure_rate": 2}, {"port": 1}, {"clock": "sundial"}):
        with pytest.raises(AdminError) as err:
            emu.admin("POST", "config", bad)
        assert err.value.status == 400
    assert emu.admin("GET", "config")["validate_seconds"] == 0.0


def test_requests_log_excludes_admin_calls(emu, oai) -> None:
    emu.admin("GET", "health")
    oai.batches.list(limit=5)
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_x")
    log = emu.admin("GET", "requests")["data"]
    assert [(r["method"], r["path"], r["query"], r["status"]) for r in log] == [
        ("GET", "/v1/batches", {"limit": "5"}, 200), ("GET", "/v1/batches/batch_x", {}, 404)]
    assert all(isinstance(r["time"], float) for r in log)


def test_reset_forgets_state_but_keeps_config(emu, oai) -> None:
    emu.admin("POST", "config", {"seed": 9})
    submit(oai, [chat_line("a", "x")])
    emu.advance(100)
    assert emu.admin("GET", "processed")["data"]
    assert emu.admin("POST", "reset") == {"ok": True}
    assert emu.admin("GET", "requests")["data"] == []
    assert emu.admin("GET", "processed")["data"] == []
    assert list(oai.batches.list()) == [] and list(oai.files.list()) == []
    assert emu.admin("GET", "clock")["now"] == 1_800_000_000
    assert emu.admin("GET", "config")["seed"] == 9


def test_health_and_unknown_admin_route(emu) -> None:
    assert emu.admin("GET", "/_emulator/health") == {"ok": True}
    with pytest.raises(AdminError) as err:
        emu.admin("GET", "nothing-here")
    assert err.value.status == 404
    with urllib.request.urlopen(emu.url + "/_emulator/health") as resp:
        assert resp.headers["content-type"] == "application/json"
        assert json.loads(resp.read()) == {"ok": True}


def test_serve_prints_listening_line_and_stops_on_sigterm(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c",
         "from warehouse_batch.emulator import EmulatorConfig, serve; serve(EmulatorConfig(port=0))"],
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("warehouse-batch emulator listening on http://127.0.0.1:")
        url = line.strip().rsplit(" ", 1)[-1]
        with urllib.request.urlopen(url + "/_emulator/health") as resp:
            assert json.loads(resp.read()) == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
