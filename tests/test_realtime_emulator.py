"""The emulator's synchronous endpoints as the real-time path needs them: the same answer
and usage as a batch line for the same body, and rate-limit and fault knobs (429 with
`retry-after`, 500) on its own clock. Through the official SDKs."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from warehouse_batch.emulator import EmulatorConfig, start


@pytest.fixture
def emu(tmp_path):
    e = start(EmulatorConfig(port=0, clock="manual", validate_seconds=0, process_seconds=0,
                             finalize_seconds=0, state_dir=str(tmp_path / "emu")))
    try:
        yield e
    finally:
        e.stop()


def oai(emu) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.openai_base_url, api_key="sk-test", max_retries=0)


BODY = {"model": "gpt-4.1-mini", "max_tokens": 5, "messages": [
    {"role": "system", "content": "Label the sentiment."},
    {"role": "user", "content": "I love it, great"}]}


def test_sync_chat_answer_and_usage_equal_the_batch_line(emu, tmp_path) -> None:
    client = oai(emu)
    raw = client.chat.completions.with_raw_response.create(**BODY)
    sync, sync_usage = raw.parse(), raw.http_response.json()["usage"]
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": BODY}
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(line) + "\n")
    f = client.files.create(file=path.open("rb"), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    emu.advance(1)
    b = client.batches.retrieve(b.id)
    assert b.status == "completed"
    out = json.loads(client.files.content(b.output_file_id).text)["response"]["body"]
    assert sync.choices[0].message.content == out["choices"][0]["message"]["content"]
    assert sync.choices[0].finish_reason == out["choices"][0]["finish_reason"]
    assert sync_usage == out["usage"]


def test_requests_per_minute_answers_429_with_the_rest_of_the_minute(emu) -> None:
    emu.admin("POST", "/_emulator/config", {"sync_requests_per_minute": 2})
    now = emu.admin("GET", "/_emulator/clock")["now"]
    client = oai(emu)
    client.chat.completions.create(**BODY)
    client.chat.completions.create(**BODY)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(**BODY)
    wait = float(err.value.response.headers["retry-after"])
    assert 0 < wait <= 60 and wait >= (int(now // 60) + 1) * 60 - now - 1
    emu.advance(wait)
    assert client.chat.completions.create(**BODY).choices[0].message.content == "positive"
    ant = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="k", max_retries=0)
    ant.messages.create(model="claude-haiku-4-5", max_tokens=5,
                        messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as aerr:
        ant.messages.create(model="claude-haiku-4-5", max_tokens=5,
                            messages=[{"role": "user", "content": "hi"}])
    assert aerr.value.response.headers["retry-after"]


def test_429_and_500_rates_are_seeded_fractions(emu) -> None:
    emu.admin("POST", "/_emulator/config", {"sync_429_rate": 0.3, "sync_500_rate": 0.3,
                                            "sync_retry_after": 7})
    client = oai(emu)
    seen = {"ok": 0, 429: 0, 500: 0}
    for _ in range(60):
        try:
            client.chat.completions.create(**BODY)
            seen["ok"] += 1
        except openai.RateLimitError as e:
            assert e.response.headers["retry-after"] == "7"
            seen[429] += 1
        except openai.InternalServerError:
            seen[500] += 1
    assert all(n > 5 for n in seen.values()), seen
    emu.admin("POST", "/_emulator/config", {"sync_429_rate": 0.0, "sync_500_rate": 0.0})
    client.chat.completions.create(**BODY)


def test_knobs_are_checked(emu) -> None:
    from warehouse_batch.emulator.running import AdminError

    for bad in ({"sync_429_rate": 2}, {"sync_requests_per_minute": -1},
                {"sync_retry_after": "x"}):
        with pytest.raises(AdminError):
            emu.admin("POST", "/_emulator/config", bad)
