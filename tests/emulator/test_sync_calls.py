"""Synchronous model calls (dry runs) through the real SDKs."""
from __future__ import annotations

import anthropic
import openai
import pytest


def test_openai_chat_and_embeddings(emu, oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="gpt-4.1-mini", messages=[
        {"role": "system", "content": "Rate the sentiment."}, {"role": "user", "content": "I love it"}])
    assert reply.choices[0].message.content == "positive" and reply.usage.prompt_tokens == 7
    emb = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=4)
    assert [len(d.embedding) for d in emb.data] == [4, 4]
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[emu:error400]]"}])
    assert err.value.code == "context_length_exceeded"


def test_azure_deployment_chat(emu) -> None:
    client = openai.AzureOpenAI(azure_endpoint=emu.azure_endpoint, api_version="2024-10-21", api_key="x",
                                max_retries=0)
    reply = client.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "emulated answer to: hi"
    assert emu.admin("GET", "requests")["data"][-1]["path"] == "/openai/deployments/my-deployment/chat/completions"


def test_anthropic_messages(emu, anth: anthropic.Anthropic) -> None:
    msg = anth.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "emulated answer to: hi" and msg.stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError) as err:
        anth.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                             extra_body={"temperature": 0.5})
    assert "temperature: Extra inputs are not permitted" in str(err.value)
