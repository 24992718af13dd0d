"""dbt's words in job files (`ref`, `source`, `env_var`), resolved from a dbt project's
`target/manifest.json`, through the CLI as a user runs it. The manifest here is written by
hand in dbt's format (real dbt writes it in `tests/integrations/dbt/`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helpers import emulator_env, provider_calls, write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]
CONFIG = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
          "prompt='Summarise: {{ text }}', max_tokens=20")


def node(kind: str, package: str, name: str, **extra) -> dict:
    return {"unique_id": f"{kind}.{package}.{name}", "resource_type": kind, "name": name,
            "package_name": package, "database": "shop", "schema": "main", "alias": name,
            **extra}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dbt project `shop` (warehouse shop.duckdb) with model stg_reviews, seed raw_reviews
    and source shop.orders; its manifest as dbt writes it."""
    root = tmp_path / "proj"
    (root / "target").mkdir(parents=True)
    (root / "enrich").mkdir()
    (root / "dbt_project.yml").write_text("name: shop\nprofile: shop\n")
    manifest = {
        "metadata": {"project_name": "shop", "dbt_version": "1.11.0"},
        "nodes": {n["unique_id"]: n for n in [
            node("model", "shop", "stg_reviews"), node("seed", "shop", "raw_reviews"),
            node("model", "other_pkg", "stg_reviews", schema="other")]},
        "sources": {"source.shop.shop.orders": {
            "unique_id": "source.shop.shop.orders", "resource_type": "source",
            "source_name": "shop", "name": "orders", "package_name": "shop",
            "database": "shop", "schema": "raw", "identifier": "orders_v2"}},
    }
    (root / "target" / "manifest.json").write_text(json.dumps(manifest))
    con = duckdb.connect(str(root / "shop.duckdb"))
    con.execute("CREATE TABLE stg_reviews AS SELECT range AS id, 'review ' || range AS text "
                "FROM range(4)")
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.orders_v2 AS SELECT range AS id, 'order ' || range AS text "
                "FROM range(3)")
    con.execute("CREATE SCHEMA other")
    con.execute("CREATE TABLE other.stg_reviews AS SELECT 99 AS id, 'x' AS text")
    con.close()
    return root


def cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(EXE + args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def plan(project: Path, sql: str, emulator, cwd: Path | None = None, extra=(),
         **env: str) -> subprocess.CompletedProcess:
    job = write_job(project / "enrich", CONFIG, sql, name="reviews.sql")
    return cli(["plan", str(job), "--db", str(project / "shop.duckdb"), "--json", *extra],
               emulator_env(emulator, **env), cwd or project)


def test_ref_reads_the_model_and_plan_records_the_lineage(project, emulator):
    r = plan(project, "SELECT id, text FROM {{ ref('stg_reviews') }} "
                      "UNION ALL SELECT id + 10, text FROM {{ source('shop', 'orders') }}",
             emulator)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["rows_selected"] == 4 + 3    # the root project's model, not other_pkg's
    assert report["depends_on"] == ["model.shop.stg_reviews", "source.shop.shop.orders"]
    assert provider_calls(emulator, "POST") == []


def test_ref_to_a_package_model_and_a_seed(project, emulator):
    r = plan(project, "SELECT id, text FROM {{ ref('other_pkg', 'stg_reviews') }} UNION ALL "
                      "SELECT 50 AS id, 'seed' AS text FROM {{ ref('raw_reviews') }}",
             emulator)
    # raw_reviews was never built: the relation is dbt's, DuckDB says it is missing
    assert r.returncode == 2 and "raw_reviews" in r.stderr, r.stderr
    r = plan(project, "SELECT id, text FROM {{ ref('other_pkg', 'stg_reviews') }}", emulator)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["depends_on"] == ["model.other_pkg.stg_reviews"]


def test_unknown_model_names_file_line_column_and_a_close_name(project, emulator):
    r = plan(project, "SELECT id, text\nFROM   {{ ref('stg_review') }}", emulator)
    assert r.returncode == 2
    job = project / "enrich" / "reviews.sql"
    # the config block takes 3 lines, so the SELECT's second line is the file's 5th
    assert f"{job}:5:11: ref('stg_review'): the dbt project 'shop' has no model " \
           "stg_review" in r.stderr, r.stderr
    assert "did you mean 'stg_reviews'?" in r.stderr
    assert json.loads(r.stdout)["location"] == {"file": str(job), "line": 5, "column": 11}
    r = plan(project, "SELECT id, text FROM {{ source('shop', 'order') }}", emulator)
    assert r.returncode == 2 and "did you mean 'shop.orders'?" in r.stderr, r.stderr


def test_without_a_dbt_project_the_error_says_where_it_looked(tmp_path, emulator):
    lone = tmp_path / "lone"
    lone.mkdir()
    job = write_job(lone, CONFIG, "SELECT 1 AS id, 'x' AS text FROM {{ ref('stg_reviews') }}")
    r = cli(["plan", str(job), "--db", str(lone / "w.duckdb")], emulator_env(emulator), lone)
    assert r.returncode == 2
    assert "ref() needs a dbt project, and none was found (looked in" in r.stderr, r.stderr
    assert str(lone) in r.stderr and "undefined" not in r.stderr
    r = cli(["plan", str(job), "--db", str(lone / "w.duckdb"), "--project-dir",
             str(tmp_path / "nowhere")], emulator_env(emulator), lone)
    assert r.returncode == 2 and f"(looked in {tmp_path / 'nowhere'})" in r.stderr, r.stderr


def test_project_dir_flag_and_env(project, tmp_path, emulator):
    elsewhere = tmp_path / "jobs"
    elsewhere.mkdir()
    job = write_job(elsewhere, CONFIG, "SELECT id, text FROM {{ ref('stg_reviews') }}")
    args = ["plan", str(job), "--db", str(project / "shop.duckdb"), "--json"]
    r = cli(args + ["--project-dir", str(project)], emulator_env(emulator), elsewhere)
    assert r.returncode == 0, r.stderr
    r = cli(args, emulator_env(emulator, DBT_PROJECT_DIR=str(project)), elsewhere)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows_selected"] == 4


def test_missing_manifest_says_to_parse(project, emulator):
    (project / "target" / "manifest.json").unlink()
    r = plan(project, "SELECT id, text FROM {{ ref('stg_reviews') }}", emulator)
    assert r.returncode != 0 and "run `dbt parse`" in r.stderr, r.stderr
    assert r.returncode != 1, r.stderr


def test_env_var_as_dbt_has_it(project, emulator):
    sql = "SELECT id, text FROM {{ ref('stg_reviews') }} WHERE id < {{ env_var('WB_MAX', 2) }}"
    r = plan(project, sql, emulator)
    assert r.returncode == 0 and json.loads(r.stdout)["rows_selected"] == 2, r.stderr
    # set: a string literal (compared as DuckDB compares a string with a number)
    sql = "SELECT id, text FROM {{ ref('stg_reviews') }} WHERE text = {{ env_var('WB_T') }}"
    r = plan(project, sql, emulator, WB_T="review 3")
    assert r.returncode == 0 and json.loads(r.stdout)["rows_selected"] == 1, r.stderr
    r = plan(project, sql, emulator, WB_T="x' OR '1'='1")
    assert r.returncode == 0 and json.loads(r.stdout)["rows_selected"] == 0, r.stderr
    r = plan(project, sql, emulator)
    assert r.returncode == 2 and "env_var('WB_T'): the variable is not set and no default" \
        in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_API_KEY",
                                  "DBT_ENV_SECRET_PASSWORD", "GITHUB_TOKEN"])
def test_env_var_never_reads_a_secret(project, emulator, name):
    sql = f"SELECT id, {{{{ env_var('{name}', 'x') }}}} AS text FROM {{{{ ref('stg_reviews') }}}}"
    r = plan(project, sql, emulator, **{name: "sk-" + "z" * 40})
    assert r.returncode == 2, r.stderr
    assert f"env_var({name!r}): a job file may not read a variable that holds a secret" \
        in r.stderr
    assert "z" * 40 not in r.stdout + r.stderr
    assert provider_calls(emulator, "POST") == []


def test_env_var_holding_a_key_value_is_refused(project, emulator):
    key = "sk-" + "k" * 40
    sql = "SELECT id, {{ env_var('INNOCENT') }} AS text FROM {{ ref('stg_reviews') }}"
    r = plan(project, sql, emulator, OPENAI_API_KEY=key, INNOCENT=key)
    assert r.returncode == 2 and "holds the value of an API key variable" in r.stderr, r.stderr
    assert key not in r.stdout + r.stderr


def test_quotes_around_a_word_are_refused(project, emulator):
    sql = "SELECT id, text FROM {{ ref('stg_reviews') }} WHERE text = '{{ env_var('WB_T') }}'"
    r = plan(project, sql, emulator, WB_T="review 1")
    assert r.returncode == 2 and "already gives SQL (a quoted literal); remove the quotes" \
        in r.stderr, r.stderr


def test_a_ref_into_another_warehouse_file_is_named(project, emulator, tmp_path):
    job = write_job(project / "enrich", CONFIG, "SELECT id, text FROM {{ ref('stg_reviews') }}")
    r = cli(["plan", str(job), "--db", str(tmp_path / "other.duckdb")], emulator_env(emulator),
            project)
    assert r.returncode == 2
    assert "is in the database 'shop' (as dbt built it), but the warehouse file here is " \
           "attached as 'other'" in r.stderr, r.stderr


def test_other_jinja_is_still_refused(project, emulator):
    r = plan(project, "SELECT id, text FROM {{ ref('stg_reviews') | upper }}", emulator)
    assert r.returncode == 2 and "with literal arguments" in r.stderr, r.stderr
    r = plan(project, "SELECT id, text FROM {{ ref(env_var('X')) }}", emulator)
    assert r.returncode == 2 and "with literal arguments" in r.stderr, r.stderr


def test_var_inside_a_dbt_project_without_dbt_installed_keeps_its_default(project, emulator):
    """Project vars need PyYAML (it comes with dbt); without it var() works as before."""
    try:
        import yaml  # noqa: F401
        pytest.skip("PyYAML is installed here: project vars are read")
    except ImportError:
        pass
    r = plan(project, "SELECT id, text FROM {{ ref('stg_reviews') }} "
                      "WHERE id < {{ var('n', 3) }}", emulator)
    assert r.returncode == 0 and json.loads(r.stdout)["rows_selected"] == 3, r.stderr
