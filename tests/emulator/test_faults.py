"""Create faults (ambiguous creates) and scripted HTTP faults, seen through the real SDKs."""
from __future__ import annotations

import anthropic
import openai
import pytest

from emu_helpers import anthropic_request, chat_line, upload


def client_for(emu, retries: int = 0, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test", max_retries=retries, **kw)


def create(client: openai.OpenAI, file_id: str):
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")


def test_error_after_create(make_emulator) -> None:
    emu = make_emulator(create_fault="error_after_create")
    oai = client_for(emu)
    file_id = upload(oai, [chat_line("a", "x")])
    with pytest.raises(openai.InternalServerError):
        create(oai, file_id)
    assert len(list(oai.batches.list())) == 1
    assert emu.admin("GET", "config")["create_fault"] is None  # used up
    create(oai, file_id)
    assert len(list(oai.batches.list())) == 2


def test_drop_after_create(make_emulator) -> None:
    emu = make_emulator(create_fault="drop_after_create")
    oai = client_for(emu)
    file_id = upload(oai, [chat_line("a", "x")])
    with pytest.raises(openai.APIConnectionError):
        create(oai, file_id)
    assert len(list(oai.batches.list())) == 1
    statuses = [r["status"] for r in emu.admin("GET", "requests")["data"] if r["path"] == "/v1/batches"]
    assert statuses[0] is None


def test_sdk_retry_after_ambiguous_create_duplicates_the_batch(make_emulator) -> None:
    emu = make_emulator(create_fault="error_after_create", create_fault_count=1)
    oai = client_for(emu, retries=2)
    emu.admin("POST", "faults", {"method": "GET", "path": "/never", "status": 500})  # unrelated, stays pending
    file_id = upload(oai, [chat_line("a", "x")])
    create(oai, file_id)  # the SDK retries the 500 and succeeds
    assert len(list(oai.batches.list())) == 2  # ... and there are now two batches: clients must dedupe
    assert len(emu.admin("GET", "faults")["data"]) == 1


def test_anthropic_create_faults(make_emulator) -> None:
    emu = make_emulator(create_fault="drop_after_create", create_fault_count=2)
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=0)
    for _ in range(2):
        with pytest.raises(anthropic.APIConnectionError):
            client.messages.batches.create(requests=[anthropic_request("a", "x")])
    client.messages.batches.create(requests=[anthropic_request("a", "x")])
    assert len(list(client.messages.batches.list())) == 3
    emu.admin("POST", "config", {"create_fault": "error_after_create"})
    with pytest.raises(anthropic.InternalServerError):
        client.messages.batches.create(requests=[anthropic_request("a", "x")])
    assert len(list(client.messages.batches.list())) == 4


def test_429_then_success_is_retried(emu) -> None:
    oai = client_for(emu, retries=2)
    file_id = upload(oai, [chat_line("a", "x")])
    pending = emu.admin("POST", "/_emulator/faults",
                        {"method": "POST", "path": "/v1/batches", "status": 429, "count": 1, "retry_after": 0.01})
    assert len(pending["data"]) == 1
    batch = create(oai, file_id)
    assert batch.status == "validating"
    calls = [r for r in emu.admin("GET", "requests")["data"] if r["path"] == "/v1/batches"]
    assert [(c["status"], c["retry_count"]) for c in calls] == [(429, 0), (200, 1)]
    assert emu.admin("GET", "faults")["data"] == []
    assert len(list(oai.batches.list())) == 1


def test_x_should_retry_false_stops_retries(emu) -> None:
    oai = client_for(emu, retries=2)
    emu.admin("POST", "faults", {"path": "/v1/batches", "status": 503, "x_should_retry": False})
    with pytest.raises(openai.InternalServerError):
        oai.batches.list()
    assert len(emu.admin("GET", "requests")["data"]) == 1


def test_rate_limit_error_shape(emu) -> None:
    oai = client_for(emu)
    emu.admin("POST", "faults", {"path": "/v1/batches/*", "status": 429, "retry_after": 0.01})
    with pytest.raises(openai.RateLimitError) as err:
        oai.batches.retrieve("batch_x")
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.response.headers["retry-after-ms"] == "10"


def test_slow_response_triggers_client_timeout(emu) -> None:
    oai = client_for(emu, timeout=0.2)
    emu.admin("POST", "faults", {"method": "GET", "path": "/v1/batches", "delay": 1.0})
    with pytest.raises(openai.APITimeoutError):
        oai.batches.list()
    assert list(oai.batches.list()) == []


def test_anthropic_529_is_retried_and_413_can_be_non_json(emu) -> None:
    client = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="x", max_retries=1)
    emu.admin("POST", "faults", {"path": "/v1/messages/batches", "method": "POST", "status": 529,
                                 "retry_after": 0.01})
    client.messages.batches.create(requests=[anthropic_request("a", "x")])
    emu.admin("POST", "faults", {"path": "/v1/messages/batches", "method": "POST", "status": 413,
                                 "body": "<html><body>413 Request Entity Too Large</body></html>"})
    with pytest.raises(anthropic.APIStatusError) as err:
        client.messages.batches.create(requests=[anthropic_request("b", "x")])
    assert err.value.status_code == 413
    assert "Request Entity Too Large" in str(err.value)
    emu.admin("POST", "faults", {"path": "/v1/messages/batches/*", "status": 529, "retry_after": 0.01, "count": 2})
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.batches.retrieve("msgbatch_x")
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_bad_fault_spec_is_rejected(emu) -> None:
    from warehouse_batch.emulator import AdminError

    with pytest.raises(AdminError) as err:
        emu.admin("POST", "faults", {"path": "/v1/batches", "status": 429, "colour": "red"})
    assert err.value.status == 400


def test_skip_lets_calls_through_first(emu) -> None:
    oai = client_for(emu)
    emu.admin("POST", "faults", {"method": "GET", "path": "/v1/batches", "status": 500, "skip": 2})
    oai.batches.list()
    oai.batches.list()
    with pytest.raises(openai.InternalServerError):
        oai.batches.list()
    oai.batches.list()
    assert [r["status"] for r in emu.admin("GET", "requests")["data"]] == [200, 200, 500, 200]
