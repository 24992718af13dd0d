"""The documented output limits: the longest name prefix wins, unknown models get a ceiling."""
from __future__ import annotations

import pytest

from warehouse_batch.errors import JobFileError
from warehouse_batch.models import output_limit
from warehouse_batch.spec import parse_job


def test_longest_prefix_wins_and_providers_are_apart():
    assert output_limit("anthropic", "claude-opus-4-1-20250805").tokens == 32000
    assert output_limit("anthropic", "claude-opus-4-5-20251101").tokens == 64000
    assert output_limit("openai", "gpt-4o-mini-2024-07-18").tokens == 16384
    assert output_limit("openai", "gpt-4.1-nano").tokens == 32768
    unknown = output_limit("azure_openai", "gpt-4o")   # a deployment name, not a model
    assert not unknown.documented and unknown.tokens == 1_000_000


@pytest.mark.parametrize("tokens, ok", [(16384, True), (16385, False)])
def test_max_tokens_is_held_to_the_model(tokens, ok):
    text = ("{{ config(name='t', provider='openai', model='gpt-4o', unique_key='id', "
            f"prompt='{{{{ x }}}}', max_tokens={tokens}) }}}}\nSELECT 1 AS id, 'a' AS x")
    if ok:
        assert parse_job(text).generation["max_tokens"] == tokens
    else:
        with pytest.raises(JobFileError, match="at most 16,384"):
            parse_job(text)
