"""The project file (issue 10, item 5): `warehouse-batch.toml` or `[tool.warehouse-batch]` in
`pyproject.toml`, found from the current folder up to the repository root; its defaults sit
below flags and environment variables; unknown keys are errors with file and line. Real CLI
subprocesses against the emulator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from helpers import emulator_env, write_job
from warehouse_batch import project

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def make_db(path: Path, rows: int) -> str:
    con = duckdb.connect(str(path))
    con.execute("CREATE OR REPLACE TABLE reviews AS SELECT range AS id, "
                f"'review number ' || range AS text FROM range({rows})")
    con.close()
    return str(path)


def a_project(tmp_path: Path, toml: str, file: str = "warehouse-batch.toml") -> Path:
    root = tmp_path / "proj"
    (root / "enrich").mkdir(parents=True)
    (root / "pipelines" / "nightly").mkdir(parents=True)
    write_job(root / "enrich", "name='enriched', provider='openai', model='gpt-4.1-mini', "
                               "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20",
              "SELECT id, text FROM reviews", name="enriched.sql")
    (root / file).write_text(toml)
    return root


def selected(r: subprocess.CompletedProcess) -> int:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["jobs"][0]["report"]["rows_selected"]


def test_defaults_from_a_parent_folder_and_their_precedence(tmp_path, fast_emulator):
    root = a_project(tmp_path, 'db = "shop.duckdb"\njobs = "enrich/"\n')
    make_db(root / "shop.duckdb", 3)
    make_db(tmp_path / "env.duckdb", 4)
    make_db(tmp_path / "flag.duckdb", 5)
    env = emulator_env(fast_emulator)
    here = root / "pipelines" / "nightly"
    assert selected(cli(["plan", "--json"], env, here)) == 3          # project file
    env_db = dict(env, WAREHOUSE_BATCH_DB=str(tmp_path / "env.duckdb"))
    assert selected(cli(["plan", "--json"], env_db, here)) == 4       # env beats the file
    assert selected(cli(["plan", "--json", "--db", str(tmp_path / "flag.duckdb")],
                        env_db, here)) == 5                           # the flag beats both
    # a path on the command line replaces the job folder
    one = cli(["plan", str(root / "enrich" / "enriched.sql"), "--json"], env, here)
    assert one.returncode == 0 and json.loads(one.stdout)["rows_selected"] == 3


def test_pyproject_table_and_the_search_stops_at_the_repository_root(tmp_path, fast_emulator):
    root = a_project(tmp_path, '[project]\nname = "x"\n\n[tool.warehouse-batch]\n'
                               'db = "shop.duckdb"\njobs = ["enrich"]\n', "pyproject.toml")
    make_db(root / "shop.duckdb", 3)
    env = emulator_env(fast_emulator)
    assert selected(cli(["plan", "--json"], env, root / "pipelines")) == 3
    # a repository inside the project: its root ends the search, so no defaults apply
    repo = root / "pipelines" / "nightly"
    (repo / ".git").mkdir()
    assert project.find(repo) is None
    r = cli(["plan"], env, repo)
    assert r.returncode == 2 and "no job file given" in r.stderr
    # a pyproject.toml without the table is passed over
    (root / "pipelines" / "pyproject.toml").write_text('[project]\nname = "y"\n')
    assert project.find(root / "pipelines") == root / "pyproject.toml"


def test_unknown_keys_are_errors_with_file_and_line(tmp_path, fast_emulator):
    env = emulator_env(fast_emulator)
    root = a_project(tmp_path, 'db = "shop.duckdb"\n\n# comment\nmemory_limt = "1GB"\n')
    r = cli(["plan", "enrich/enriched.sql"], env, root)
    assert r.returncode == 2
    assert f"{root / 'warehouse-batch.toml'}:4:1: unknown key 'memory_limt'" in r.stderr
    assert "did you mean 'memory_limit'?" in r.stderr

    (root / "warehouse-batch.toml").write_text(
        'db = "shop.duckdb"\n[providers.openai]\nbase_url = "http://x"\n  base_ulr = "y"\n')
    r = cli(["plan", "enrich/enriched.sql"], env, root)
    assert r.returncode == 2 and "warehouse-batch.toml:4:3: unknown setting" in r.stderr

    (root / "warehouse-batch.toml").write_text('[tool]\nx = 1\n')   # not pyproject: a key
    assert "warehouse-batch.toml:1:1: unknown key 'tool'" in cli(["plan"], env, root).stderr

    (root / "warehouse-batch.toml").write_text('[providers.openai]\napi_key = "sk-live-1"\n')
    r = cli(["plan", "enrich/enriched.sql"], env, root)
    assert r.returncode == 2 and ":2:1: API keys never go in the project file" in r.stderr
    assert "sk-live-1" not in r.stderr

    (root / "warehouse-batch.toml").write_text('memory_limit = "lots"\n')
    r = cli(["plan", "enrich/enriched.sql"], env, root)
    assert r.returncode == 2 and ":1:1: memory_limit: 'lots' is not a memory size" in r.stderr

    (root / "warehouse-batch.toml").write_text('db = "x\n')
    r = cli(["plan", "enrich/enriched.sql"], env, root)
    assert r.returncode == 2 and "not valid TOML" in r.stderr and ":1:" in r.stderr


def test_provider_settings_name_the_key_variable_never_the_key(tmp_path, fast_emulator):
    url = fast_emulator.openai_base_url
    root = a_project(tmp_path, f'db = "shop.duckdb"\njobs = "enrich"\n'
                               f'[providers.openai]\nbase_url = "{url}"\n'
                               'api_key_env = "SHOP_OPENAI_KEY"\n')
    make_db(root / "shop.duckdb", 3)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "WAREHOUSE_BATCH_"))}
    r = cli(["run", "--wait", "--poll-interval", "0.1", "--json", "-q"],
            dict(env, SHOP_OPENAI_KEY="sk-emulator"), root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["jobs"][0]["report"]["rows"]["succeeded"] == 3
    # without the variable it names there is no key: the provider's own refusal, nothing sent
    fresh = make_db(tmp_path / "fresh.duckdb", 3)
    r = cli(["run", "--json", "-q", "--db", fresh], env, root)
    assert r.returncode == 3 and "OPENAI_API_KEY" in r.stdout + r.stderr


def test_allow_paths_from_the_project_file(tmp_path, fast_emulator):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "extra.csv").write_text("id,text\n1,a\n2,b\n")
    root = a_project(tmp_path, 'db = "shop.duckdb"\n')
    make_db(root / "shop.duckdb", 3)
    write_job(root / "enrich", "name='from_csv', provider='openai', model='gpt-4.1-mini', "
                               "unique_key='id', prompt='Summarise: {{ text }}', max_tokens=20",
              f"SELECT id, text FROM read_csv('{shared / 'extra.csv'}')", name="from_csv.sql")
    env = emulator_env(fast_emulator)
    refused = cli(["plan", "enrich/from_csv.sql"], env, root)
    assert refused.returncode == 2 and "outside the folders this job may read" in refused.stderr
    (root / "warehouse-batch.toml").write_text('db = "shop.duckdb"\nallow_paths = ["../shared"]\n')
    ok = cli(["plan", "enrich/from_csv.sql", "--json"], env, root)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows_selected"] == 2


def test_apply_fills_only_what_the_environment_does_not_set(tmp_path):
    f = tmp_path / "warehouse-batch.toml"
    f.write_text('db = "a.duckdb"\nmemory_limit = "1GB"\nstate_db = "s.duckdb"\n'
                 'allow_paths = ["data"]\nallow_hosts = ["llm.internal"]\n'
                 '[providers.anthropic]\nbase_url = "http://llm.internal"\n')
    env = {"WAREHOUSE_BATCH_MEMORY_LIMIT": "2GB", "WAREHOUSE_BATCH_ALLOWED_HOSTS": "x.y"}
    project.apply(project.load(f), env)
    assert env["WAREHOUSE_BATCH_DB"] == str(tmp_path / "a.duckdb")
    assert env["WAREHOUSE_BATCH_MEMORY_LIMIT"] == "2GB"
    assert env["WAREHOUSE_BATCH_STATE_DB"] == str(tmp_path / "s.duckdb")
    assert env["WAREHOUSE_BATCH_ALLOWED_PATHS"] == str(tmp_path / "data")
    assert env["WAREHOUSE_BATCH_ALLOWED_HOSTS"] == "x.y,llm.internal"
    assert env["ANTHROPIC_BASE_URL"] == "http://llm.internal"


def test_library_callers_get_the_project_defaults_of_each_jobs_folder(tmp_path, fast_emulator,
                                                                      monkeypatch):
    """`api.options_for` (what the Dagster resource and the Airflow operator use): the job's
    project file fills in what the caller leaves unset, the environment wins over it, given
    values win over both, and the process environment is not changed (a long-lived
    orchestrator process runs jobs of several projects). The options then run the job."""
    from warehouse_batch import api
    root = a_project(tmp_path, 'db = "shop.duckdb"\nstate_db = "state.duckdb"\n'
                               'memory_limit = "300MB"\n')
    make_db(root / "shop.duckdb", 5)
    for var in ("WAREHOUSE_BATCH_DB", "WAREHOUSE_BATCH_STATE_DB",
                "WAREHOUSE_BATCH_MEMORY_LIMIT"):
        monkeypatch.delenv(var, raising=False)
    before = dict(os.environ)
    job = str(root / "enrich" / "enriched.sql")
    options = api.options_for(job, env={**os.environ, **emulator_env(fast_emulator)})
    assert (options.db, options.state_db, options.memory_limit) == \
        (str(root / "shop.duckdb"), str(root / "state.duckdb"), "300MB")
    assert dict(os.environ) == before
    given = api.options_for(job, env={"WAREHOUSE_BATCH_MEMORY_LIMIT": "400MB"},
                            db=str(tmp_path / "other.duckdb"), state_db=None)
    assert (given.db, given.state_db, given.memory_limit) == \
        (str(tmp_path / "other.duckdb"), str(root / "state.duckdb"), "400MB")
    report = api.run(job, options)
    assert report.rows.rows == 5 and (root / "state.duckdb").exists()
