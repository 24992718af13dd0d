"""Parameters are checked at plan time from a table (data/params.json): keys a provider does
not have are refused with a hint, reasoning models get max_completion_tokens, sampling
parameters are refused with the reason for models that refuse them; nothing is sent."""
from __future__ import annotations

import json

import pytest

from warehouse_batch import api, params
from warehouse_batch.errors import JobFileError
from warehouse_batch.spec import load_job

from helpers import Job, provider_calls


def refused(job: Job, key: str) -> JobFileError:
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert e.value.location == load_job(job.path).location_of(key)   # file:line:col of the key
    assert e.value.location.file == job.path and e.value.location.column
    assert provider_calls(job.emu) == []
    return e.value


@pytest.mark.parametrize("extra, key, words", [
    (",\ntop_k=5", "top_k", "use top_p"),
    (",\nstop_sequences=['x']", "stop_sequences", "did you mean 'stop'?"),
    (",\nthinking={'type': 'enabled'}", "thinking", "reasoning_effort"),
])
def test_openai_refuses_keys_it_does_not_have(tmp_path, emulator, extra, key, words):
    job = Job(tmp_path, emulator, extra=extra)
    e = refused(job, key)
    assert f"{key!r} is not a parameter of openai's chat requests" in str(e)
    assert words in e.hint


def test_unknown_keys_in_params_get_a_did_you_mean(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=",\nparams={'presense_penalty': 0.5}")
    e = refused(job, "params")
    assert "'presense_penalty' (in params)" in str(e)
    assert "did you mean 'presence_penalty'?" in e.hint


def test_azure_takes_openai_rules_and_compatible_servers_take_any_key(tmp_path, emulator):
    assert params.accepted("azure_openai", "chat") == params.accepted("openai", "chat")
    assert "top_k" not in params.accepted("azure_openai", "chat")
    assert params.accepted("openai_compatible", "chat") is None


def test_reasoning_models_get_max_completion_tokens(tmp_path, emulator):
    job = Job(tmp_path, emulator, model="o3-mini", max_tokens=50)
    report = api.plan(job.path, job.options())
    body = report.sample_request["body"]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert provider_calls(emulator) == []
    # the emulator refuses max_tokens on reasoning models: every row succeeding proves the map
    assert job.run().rows.succeeded == 12
    assert job.sql("SELECT count(*) FROM warehouse_batch.requests "
                   "WHERE body ->> '$.max_completion_tokens' = '50'") == [(12,)]
    # a non-reasoning gpt-5 model keeps max_tokens: the family table's longest prefix wins
    assert params.family("openai", "gpt-5-chat-latest").rename == {}
    assert params.family("openai", "gpt-5-mini").rename == {"max_tokens": "max_completion_tokens"}
    assert params.family("openai", "gpt-4.1-mini").rename == {}


def test_max_tokens_and_max_completion_tokens_together_are_refused(tmp_path, emulator):
    job = Job(tmp_path, emulator, model="o4-mini", extra=", max_completion_tokens=10")
    e = refused(job, "max_tokens")
    assert "give only one" in str(e)


@pytest.mark.parametrize("provider, model, extra, key, reason", [
    ("openai", "o3", ",\ntemperature=0.2", "temperature", "reasoning models"),
    ("openai", "gpt-5-mini", ",\ntop_p=0.9", "top_p", "reasoning models"),
    ("anthropic", "claude-opus-4-7", ",\ntemperature=0.2, anthropic_version='2023-06-01'",
     "temperature", "on every API version"),
])
def test_sampling_parameters_refused_with_the_reason(tmp_path, emulator, provider, model,
                                                     extra, key, reason):
    job = Job(tmp_path, emulator, provider=provider, model=model, extra=extra)
    e = refused(job, key)
    assert f"{key!r} is refused by {model!r}" in str(e) and reason in str(e)


def test_sampling_parameters_in_params_are_refused_too(tmp_path, emulator):
    job = Job(tmp_path, emulator, model="o1", extra=",\nparams={'temperature': 0}")
    e = refused(job, "params")
    assert "'temperature' is refused by 'o1'" in str(e)


def test_anthropic_keys_come_from_the_table(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="anthropic", model="claude-haiku-4-5",
              extra=",\nmax_completion_tokens=20")
    e = refused(job, "max_completion_tokens")
    assert "did you mean 'max_tokens'?" in e.hint
    # older models keep sampling parameters under the pinned version
    job.write(extra=",\ntemperature=0.2, anthropic_version='2023-06-01'")
    assert api.plan(job.path, job.options()).sample_request["params"]["temperature"] == 0.2


def test_every_family_row_names_a_known_provider_and_resolves():
    table = json.loads(open(params.__file__.replace("params.py", "data/params.json")).read())
    for row in table["families"]:
        assert row["provider"] in table["providers"]
        fam = params.family(row["provider"], row["model"] + "-x")
        assert fam.model == row["model"]


def test_cli_plan_shows_the_mapped_key_and_sends_nothing(tmp_path, fast_emulator):
    import subprocess
    import sys

    from helpers import emulator_env

    job = Job(tmp_path, fast_emulator, model="o4-mini", max_tokens=40)
    env = emulator_env(fast_emulator)
    out = subprocess.run([sys.executable, "-m", "warehouse_batch.cli", "plan", job.path,
                          "--db", job.db], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"max_completion_tokens": 40' in out.stdout and '"max_tokens"' not in out.stdout
    assert provider_calls(fast_emulator) == []
