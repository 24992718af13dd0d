"""API keys go only where the operator says, and never into a table, a log or a request.

* a job file's `base_url` is honoured only for a host the operator allowed (and then the key
  really goes there: the refusal is the allowance, nothing else);
* files a job's config reads are confined to its folder, its project and allowed folders;
* a rendered request holding a key's value is refused before anything is stored or sent;
* a provider's masked key fragment (OpenAI quotes one in its 401) is redacted everywhere.
"""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import openai
import pytest

from helpers import Job, checksum, emulator_env, provider_calls, write_job
from warehouse_batch import api
from warehouse_batch.db import connect
from warehouse_batch.emulator.openai_api import incorrect_key
from warehouse_batch.errors import ConfigurationError, DataError, JobFileError
from warehouse_batch.keys import (MIN_KEY_LENGTH, key_env_names, key_values, redact,
                                  remember_key)
from warehouse_batch.paths import make_scope
from warehouse_batch.providers.base import get_provider
from warehouse_batch.spec import load_job
from warehouse_batch.ledger import update_batch

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
GOOD_KEY = "sk-proj-GoodKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
WRONG_KEY = "sk-wrong-WrongKey9876543210zyxwvutsrqponmlkjihgfedcbaQRST"
OPENAI = ("name='{name}', provider='openai', model='gpt-4.1-mini', unique_key='id', "
          "system='Answer with one word.', prompt='Sentiment of: {{{{ text }}}}', max_tokens=5")


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)


def make_db(tmp_path, rows: int = 4) -> str:
    db = str(tmp_path / "w.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range + 1 AS id, 'I love it ' || range AS text "
                f"FROM range({rows})")
    con.close()
    return db


# -- base_url ------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider, suffix, key_var", [
    ("openai", "/v1", "OPENAI_API_KEY"), ("anthropic", "", "ANTHROPIC_API_KEY")])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_allowed_host_gets_the_job_and_its_key(tmp_path, fast_emulator, trap, provider,
                                                  suffix, key_var, how):
    """The same job the hostile corpus refuses is sent to the trap once its host is allowed:
    what refuses it is the missing allowance, nothing else."""
    model = "gpt-4.1-mini" if provider == "openai" else "claude-haiku-4-5"
    job = write_job(tmp_path, f"name='enriched', provider='{provider}', model='{model}', "
                              f"unique_key='id', prompt='{{{{ text }}}}', max_tokens=5, "
                              f"base_url='{trap.url}{suffix}'", "SELECT id, text FROM reviews")
    db = make_db(tmp_path)
    env = emulator_env(fast_emulator)
    refused = cli(["run", str(job), "--db", db], env)
    assert refused.returncode == 2 and "--allow-host 127.0.0.2" in refused.stderr
    assert trap.received == []
    args = ["run", str(job), "--db", db]
    if how == "flag":
        args += ["--allow-host", "127.0.0.2"]
    else:
        env = {**env, "WAREHOUSE_BATCH_ALLOWED_HOSTS": "example.org, 127.0.0.2"}
    sent = cli(args, env)
    assert sent.returncode == 75, sent.stderr    # the trap answers 500: transient trouble
    key = env[key_var]
    assert trap.received and all(f"{key}'" in r for r in trap.received), trap.received
    assert provider_calls(fast_emulator) == []   # and not the operator's base URL


def test_an_allowed_host_with_port_allows_that_port_only(tmp_path, emulator):
    job = Job(tmp_path, emulator, extra=f", base_url={emulator.openai_base_url!r}")
    port = emulator.openai_base_url.split(":")[2].split("/")[0]
    for allowed, ok in ((f"127.0.0.1:{port}", True), ("127.0.0.1:1", False),
                        ("127.0.0.1", True), ("localhost", False)):
        opts = job.options(allowed_hosts=(allowed,))
        if ok:
            assert api.plan(job.path, opts).rows_new == 12
        else:
            with pytest.raises(JobFileError) as e:
                api.plan(job.path, opts)
            assert e.value.location == load_job(job.path).location_of("base_url")
            assert "--allow-host 127.0.0.1" in e.value.hint
    assert provider_calls(emulator) == []


def test_status_and_cancel_do_not_build_a_client_for_an_unallowed_host(tmp_path, emulator):
    """Commands that skip `plan`'s checks still never send the key to an unallowed host."""
    job = Job(tmp_path, emulator)
    assert job.run(wait=False).rows.pending == 12      # a batch in flight: status polls it
    job.write(extra=", base_url='http://127.0.0.2:1/v1'")
    for fn in (api.status, api.cancel):
        with pytest.raises(JobFileError, match="not allowed"):
            fn(job.path, job.options())
    job.write()
    assert api.cancel(job.path, job.options()).cancelled   # the operator's URL still works


def test_openai_compatible_takes_its_base_url_from_the_operator(tmp_path, emulator):
    job = Job(tmp_path, emulator, provider="openai_compatible", model="llama-3.1-8b",
              OPENAI_COMPATIBLE_BASE_URL=emulator.openai_base_url,
              OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert job.run().rows.succeeded == 12
    assert provider_calls(emulator, "POST", "/v1/batches")
    job.write(extra=", base_url='http://127.0.0.1:9/v1'")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert "--allow-host 127.0.0.1" in e.value.hint


def test_an_operator_base_url_needs_no_allowance(tmp_path, emulator):
    """OPENAI_BASE_URL / ANTHROPIC_BASE_URL (the emulator's address) are the operator's."""
    for provider, model in (("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5")):
        (tmp_path / provider).mkdir()
        job = Job(tmp_path / provider, emulator, provider=provider, model=model)
        assert job.run().rows.succeeded == 12


# -- files a job's config reads ----------------------------------------------------------------

def test_config_files_are_confined_to_the_scope_with_symlinks_resolved(tmp_path, emulator):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "p.j2").write_text("Sentiment of: {{ text }}")
    project = tmp_path / "project"
    (project / "jobs").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "shared.j2").write_text("Sentiment of: {{ text }}")
    (project / "jobs" / "escape.j2").symlink_to(outside / "p.j2")
    (project / "jobs" / "inside.j2").symlink_to(project / "shared.j2")
    job = Job(project / "jobs", emulator)

    def plan_with(prompt_file: str, **kw):
        write_job(project / "jobs", f"name='enriched', provider='openai', model='gpt-4.1-mini', "
                                    f"unique_key='id', prompt_file={prompt_file!r}",
                  "SELECT id, text FROM reviews")
        return api.plan(job.path, job.options(**kw))

    assert plan_with("../shared.j2").rows_new == 12          # the project root
    assert plan_with("inside.j2").rows_new == 12             # a link that stays inside
    for name in ("escape.j2", str(outside / "p.j2"), "../../outside/p.j2"):
        with pytest.raises(JobFileError) as e:
            plan_with(name)
        assert "is outside the folders" in str(e.value) and "--allow-path" in e.value.hint
        loc = e.value.location   # the prompt_file value in the config block
        assert (loc.file, loc.line) == (job.path, 2) and loc.column > 50, loc
    assert plan_with("escape.j2", allowed_paths=(str(outside),)).rows_new == 12
    assert provider_calls(emulator) == []


def test_output_schema_file_inside_the_job_folder_still_works(tmp_path, emulator):
    (tmp_path / "schema.json").write_text(json.dumps({
        "type": "object", "properties": {"mood": {"type": "string"}}, "required": ["mood"],
        "additionalProperties": False}))
    job = Job(tmp_path, emulator, extra=", output_schema='schema.json'", max_tokens=50)
    assert job.run().rows.succeeded == 12


# -- the key in a request ----------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["Sentiment of: {{ text }}",                     # SQL render
                                    "{% if true %}Sentiment of: {{ text }}{% endif %}"])  # Jinja
def test_a_row_holding_a_key_is_refused_before_anything_is_written(tmp_path, emulator, prompt):
    job = Job(tmp_path, emulator, prompt=prompt, OPENAI_API_KEY=GOOD_KEY)
    job.sql(f"UPDATE reviews SET text = 'leaked {GOOD_KEY} here' WHERE id = 5")
    connect(job.db).close()   # the state schema exists, as after any earlier run
    before = checksum(job.db)
    for fn in (api.plan, api.run):
        with pytest.raises(DataError) as e:
            fn(job.path, job.options())
        assert e.value.rows == [{"key": '{"id":5}', "variable": "$OPENAI_API_KEY"}]
        assert GOOD_KEY not in str(e.value)
    assert checksum(job.db) == before
    assert provider_calls(emulator) == []


def test_the_environment_read_by_the_select_is_never_sent(tmp_path, fast_emulator):
    """Whatever else refuses `read_text('/proc/self/environ')`, the key check would."""
    db = make_db(tmp_path)
    job = write_job(tmp_path, "name='enriched', provider='openai', model='gpt-4.1-mini', "
                              "unique_key='id', prompt='{{ content }}'",
                    "SELECT 1 AS id, content FROM read_text('/proc/self/environ')")
    before = checksum(db)
    for command in ("plan", "run"):
        p = cli([command, str(job), "--db", db],
                emulator_env(fast_emulator, OPENAI_API_KEY=GOOD_KEY))
        assert p.returncode == 2, p.stderr
        assert GOOD_KEY not in p.stderr + p.stdout
    assert checksum(db) == before
    assert provider_calls(fast_emulator) == []


def test_short_key_values_are_not_looked_for(tmp_path, emulator):
    short = "k" * (MIN_KEY_LENGTH - 1)
    job = Job(tmp_path, emulator, OPENAI_API_KEY=short)
    job.sql(f"UPDATE reviews SET text = '{short}' WHERE id = 1")
    assert api.plan(job.path, job.options()).rows_new == 12
    assert key_values({"OPENAI_API_KEY": short}) == {}


def test_every_provider_key_variable_is_known():
    from warehouse_batch.providers.base import provider_names

    provider_names()   # loads the built-in providers, which register their variables
    assert {"OPENAI_API_KEY", "OPENAI_COMPATIBLE_API_KEY", "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY",
            "GOOGLE_API_KEY"} <= set(key_env_names())


# -- no key fragment anywhere ------------------------------------------------------------------

def test_redact_removes_keys_and_their_masked_fragments():
    remember_key(GOOD_KEY)
    assert redact(f"bad key {GOOD_KEY}!") == "bad key [redacted]!"
    assert "abcd" not in redact("Incorrect API key provided: sk-proj-****...abcd.")
    assert "wxyz" not in redact("key abcd************wxyz refused")
    assert "wxyz" not in redact("key abcd…wxyz refused")
    assert "ant" not in redact("sk-ant-api03-AbCdEfGh")
    assert "tok" not in redact("Authorization: Bearer tok-1234567890")
    assert redact("… and 3 more; task-12 risk-free") == "… and 3 more; task-12 risk-free"
    assert redact(None) is None
    assert redact("x", {"MY_SERVICE_API_KEY": "x" * 20}) == "x"
    assert redact("y" * 20, {"MY_SERVICE_API_KEY": "y" * 20}) == "[redacted]"


def test_batch_errors_are_redacted_when_written(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    con.execute("""INSERT INTO warehouse_batch.batches (batch_id, run_id, job_name, provider,
        endpoint, model, chunk, state, request_count, bytes, created_at)
        VALUES ('b1', 'r1', 'j', 'openai', '/v1/chat/completions', 'm', 0, 'intent', 1, 1,
                now())""")
    update_batch(con, "b1", error="refused: sk-proj-****************abcd")
    assert con.execute("SELECT error FROM warehouse_batch.batches").fetchone() == \
        ("refused: [redacted]",)


def _every_text(db: str) -> str:
    """Every row of every table and view in the file, as text."""
    con = duckdb.connect(db, read_only=True)
    try:
        parts = []
        for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
                "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall():
            parts += [r[0] for r in con.execute(f'SELECT t::VARCHAR FROM "{schema}"."{name}" t')
                      .fetchall()]
        return "\n".join(parts)
    finally:
        con.close()


def test_no_key_or_fragment_in_any_table_or_output(tmp_path, fast_emulator):
    wrong_fragment = incorrect_key(WRONG_KEY).split("provided: ")[1].split(". You")[0]
    # the emulator's 401 quotes the fragment, as OpenAI's does: there is something to redact
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=fast_emulator.openai_base_url, api_key=WRONG_KEY,
                      max_retries=0).batches.list()
    assert wrong_fragment in str(e.value) and "*" * 8 in wrong_fragment
    db = make_db(tmp_path, rows=6)
    job = write_job(tmp_path, OPENAI.format(name="enriched"), "SELECT id, text FROM reviews")
    env = emulator_env(fast_emulator, OPENAI_API_KEY=GOOD_KEY)
    outputs = []
    for args in (["plan", str(job)], ["plan", str(job), "--json"],
                 ["run", str(job), "--wait", "--poll-interval", "1"],
                 ["status", str(job), "--json"], ["run", str(job), "--json"]):
        p = cli([*args, "--db", db], env)
        assert p.returncode == 0, p.stderr
        outputs += [p.stdout, p.stderr]
    # the same project with a key the provider does not know: a 401 quoting its fragment
    job2 = write_job(tmp_path, OPENAI.format(name="enriched_more"),
                     "SELECT id + 100 AS id, text || ' again' AS text FROM reviews",
                     name="job2.sql")
    env_wrong = emulator_env(fast_emulator, OPENAI_API_KEY=WRONG_KEY)
    for extra in ([], ["--json"]):
        p = cli(["run", str(job2), "--db", db, *extra], env_wrong)
        assert p.returncode == 3, p.stderr
        assert "refused the API key" in p.stderr and "[redacted]" in p.stderr
        outputs += [p.stdout, p.stderr]
    con = duckdb.connect(db, read_only=True)
    errors = [r[0] for r in con.execute("SELECT error FROM warehouse_batch.runs "
                                        "WHERE error IS NOT NULL").fetchall()]
    con.close()
    assert len(errors) == 2 and all("refused the API key" in e for e in errors), errors
    text = _every_text(db) + "\n".join(outputs)
    for secret in (GOOD_KEY, WRONG_KEY, wrong_fragment, GOOD_KEY[-12:], WRONG_KEY[-12:],
                   WRONG_KEY[-4:] + ".", "********"):
        assert secret not in text, secret


def test_missing_key_message_names_variables_not_values(tmp_path, emulator):
    job = Job(tmp_path, emulator, OPENAI_API_KEY="")
    with pytest.raises(ConfigurationError) as e:
        job.run()
    assert "OPENAI_API_KEY" in str(e.value)


def test_scope_from_options_env_is_used_for_hosts(tmp_path):
    job = write_job(tmp_path, OPENAI.format(name="x") + ", base_url='http://h.example/v1'",
                    "SELECT 1 AS id, 'a' AS text")
    spec = load_job(job, scope=make_scope(job, {"WAREHOUSE_BATCH_ALLOWED_HOSTS": "h.example"}))
    assert get_provider(spec, {}).base_url() == "http://h.example/v1"
    spec = load_job(job, scope=make_scope(job, {}))
    with pytest.raises(JobFileError):
        get_provider(spec, {}).base_url()
