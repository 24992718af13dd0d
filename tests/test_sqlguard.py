"""The job's SQL is proven read-only before it runs, runs with the database attached read-only,
runs once, reads files only under the job's scope, and takes `--var` values as literals."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import duckdb
import pytest

from warehouse_batch.db import connect, read_only
from warehouse_batch.errors import JobFileError
from warehouse_batch.paths import make_scope
from warehouse_batch.source import materialise, prepare
from warehouse_batch.spec import parse_job
from warehouse_batch.sqlguard import check_read_only
from warehouse_batch.providers.base import get_provider

from helpers import write_job

EXE = [sys.executable, "-m", "warehouse_batch.cli"]

ACCEPTED = [
    "SELECT id, text FROM reviews",
    "FROM reviews SELECT id, text",
    "SELECT id, text FROM reviews QUALIFY row_number() OVER (PARTITION BY id ORDER BY text) = 1",
    "SELECT id, sum(id) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM reviews",
    "SELECT * FROM (PIVOT reviews ON id IN (1, 2) USING count(*))",
    "SELECT * FROM (UNPIVOT (SELECT 1 AS id, 2 AS a, 3 AS b) ON a, b INTO NAME k VALUE v)",
    "SELECT unnest([1, 2, 3]) AS id, 'x' AS text",
    "SELECT list_transform([1, 2], x -> x + 1) AS l, {'a': 1, 'b': [2]} AS s",
    "SELECT * EXCLUDE (text) REPLACE (id + 1 AS id), COLUMNS('t.*') FROM reviews",
    "SELECT * FROM read_csv('data.csv'), read_parquet(['a.parquet', 'sub/b.parquet'])",
    "SELECT * FROM read_json_auto('x.json') JOIN read_json('y.ndjson') USING (id)",
    "SELECT * FROM 'data.csv'",
    "SELECT * FROM read_csv('data/*.csv')",
    "SELECT range AS id FROM range(10) UNION ALL SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) t(id, text)",
    "WITH r AS (SELECT id FROM reviews) SELECT * FROM r WHERE id IN (SELECT id FROM r)",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT * FROM c",
    "SELECT CAST(id AS DECIMAL(10, 2)), TRY_CAST(text AS INT), id::VARCHAR[] FROM reviews",
    "SELECT count(*) FILTER (WHERE id > 1), string_agg(text, ',' ORDER BY text) FROM reviews "
    "GROUP BY ALL HAVING count(*) > 0 ORDER BY 1 LIMIT 3 OFFSET 1",
    "SELECT x FROM shop.main.reviews AS x",
    "SELECT * FROM reviews USING SAMPLE 10%",
    "SELECT content FROM read_text('notes/*.md')",
    "SELECT current_date, now(), md5(text), regexp_replace(text, 'a', 'b') FROM reviews",
]


@pytest.fixture
def scope(tmp_path):
    (tmp_path / ".git").mkdir()   # the project root is the job folder
    return make_scope(tmp_path / "job.sql", env={})


@pytest.mark.parametrize("sql", ACCEPTED)
def test_read_only_selects_are_accepted(sql, scope):
    check_read_only(sql, "job.sql", scope)


REFUSED = [
    # (sql, message regex, line, column)
    ("WITH d AS (DELETE FROM warehouse_batch.results RETURNING 1)\n"
     "SELECT 1 AS id WHERE (SELECT count(*) FROM d) >= 0", r"contains DELETE", 1, 12),
    ("WITH d AS (DELETE FROM reviews RETURNING *) SELECT * FROM d", r"contains DELETE", 1, 12),
    ("WITH u AS (UPDATE reviews SET text = 'x' RETURNING id) SELECT * FROM u",
     r"contains UPDATE", 1, 12),
    ("WITH i AS (INSERT INTO reviews VALUES (9, 'x') RETURNING id) SELECT * FROM i",
     r"contains INSERT", 1, 12),
    ("SELECT * FROM (WITH d AS (DELETE FROM reviews RETURNING id) SELECT id FROM d)",
     r"contains DELETE", 1, 27),
    ("MERGE INTO reviews USING other ON reviews.id = other.x WHEN MATCHED THEN DELETE",
     r"MERGE.*not a SELECT", 1, 1),
    ("DELETE FROM reviews", r"DELETE, not a SELECT", 1, 1),
    ("UPDATE reviews SET text = 'x' RETURNING id", r"UPDATE, not a SELECT", 1, 1),
    ("COPY reviews TO 'out.csv'", r"COPY, not a SELECT", 1, 1),
    ("COPY (SELECT 1) TO 'out.csv'", r"COPY, not a SELECT", 1, 1),
    ("CREATE TABLE t AS SELECT 1", r"CREATE, not a SELECT", 1, 1),
    ("DROP TABLE reviews", r"DROP, not a SELECT", 1, 1),
    ("ALTER TABLE reviews ADD COLUMN x INT", r"ALTER, not a SELECT", 1, 1),
    ("ATTACH 'other.duckdb' AS o", r"ATTACH, not a SELECT", 1, 1),
    ("DETACH shop", r"DETACH, not a SELECT", 1, 1),
    ("INSTALL httpfs", r"not a SELECT", 1, 1),
    ("LOAD httpfs", r"LOAD, not a SELECT", 1, 1),
    ("SET threads = 1", r"SET, not a SELECT", 1, 1),
    ("PRAGMA enable_profiling", r"PRAGMA, not a SELECT", 1, 1),
    ("CALL checkpoint()", r"CALL, not a SELECT", 1, 1),
    ("EXPORT DATABASE 'x'", r"EXPORT, not a SELECT", 1, 1),
    ("  -- a comment\n  SELECT 1;\n  DROP TABLE reviews", r"2 SQL statements", 3, 3),
    ("SELECT *\nFROM query('DELETE FROM reviews')", r"table function query\(\)", 2, 6),
    ("SELECT * FROM query_table('reviews')", r"table function query_table\(\)", 1, 15),
    ("SELECT getenv('OPENAI_API_KEY') AS k", r"calls getenv\(\)", 1, 8),
    ("SELECT current_setting('s3_secret_access_key')", r"calls current_setting\(\)", 1, 8),
    ("SELECT * FROM duckdb_secrets()", r"duckdb_secrets\(\)", 1, 15),
    ("SELECT * FROM which_secret('s3://b/x', 's3')", r"which_secret\(\)", 1, 15),
    ("SELECT nextval('seq')", r"calls nextval\(\)", 1, 8),
    ("SELECT json_execute_serialized_sql('{}')", r"json_execute_serialized_sql", 1, 8),
    ("SELECT * FROM json_execute_serialized_sql('{}')", r"json_execute_serialized_sql", 1, 15),
    ("SELECT * FROM sqlite_scan('x.db', 't')", r"table function sqlite_scan\(\)", 1, 15),
    ("SELECT * FROM (PIVOT reviews ON id USING count(*))", r"PIVOT without an IN list", 1, 1),
    ("SELECT * FROM read_csv(getenv('F'))", r"computed at run time", 1, 24),
    ("SELECT * FROM read_csv('x' || '.csv')", r"computed at run time", 1, 24),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", r"not a local file", 1, 28),
    ("SELECT * FROM 'https://example.com/x.csv'", r"not a local file", 1, 15),
    ("SELECT 1 +", r"does not parse", None, None),
]


@pytest.mark.parametrize("sql,message,line,column", REFUSED, ids=[r[0][:50] for r in REFUSED])
def test_what_cannot_be_proven_read_only_is_refused_with_its_location(sql, message, line,
                                                                      column, scope):
    with pytest.raises(JobFileError) as e:
        check_read_only(sql, "job.sql", scope)
    assert e.value.location.file == "job.sql"
    assert re.search(message, str(e.value)), str(e.value)
    if line is not None:
        assert (e.value.location.line, e.value.location.column) == (line, column), str(e.value)


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "../../../etc/passwd",
                                  "../outside.csv", "/etc/*", "~/.ssh/id_rsa"])
def test_files_outside_the_scope_are_refused(path, tmp_path, scope):
    sql = f"SELECT content FROM read_text('{path}')"
    with pytest.raises(JobFileError) as e:
        check_read_only(sql, "job.sql", scope)
    assert "outside the folders this job may read" in str(e.value)
    assert "--allow-path" in str(e.value)
    assert (e.value.location.line, e.value.location.column) == (1, 31)


def test_locations_count_characters_not_bytes(scope):
    with pytest.raises(JobFileError) as e:
        check_read_only("SELECT 'é' AS a,\n  'ü' AS b, * FROM read_text('/etc/passwd')", "job.sql",
                        scope)
    assert (e.value.location.line, e.value.location.column) == (2, 30)


def test_paths_in_subqueries_and_summaries_are_checked(scope):
    for sql in ("SELECT (SELECT content FROM read_text('/etc/passwd')) AS t",
                "SELECT * FROM reviews r, LATERAL (SELECT * FROM read_blob('/etc/shadow'))",
                "SELECT * FROM (SUMMARIZE '/etc/hosts.csv')",
                "DESCRIBE SELECT * FROM read_csv('/etc/hosts.csv')"):
        with pytest.raises(JobFileError, match="outside the folders"):
            check_read_only(sql, "job.sql", scope)


def test_a_replacement_scan_outside_the_scope_is_refused(scope):
    with pytest.raises(JobFileError, match="outside the folders"):
        check_read_only("SELECT * FROM '/etc/hosts.csv'", "job.sql", scope)
    with pytest.raises(JobFileError, match="outside the folders"):
        check_read_only('SELECT * FROM "/etc/hosts".csv', "job.sql", scope)


def test_a_symlink_in_the_job_folder_pointing_outside_is_refused(tmp_path, scope):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("id,text\n1,secret\n")
    (tmp_path / "data.csv").symlink_to(outside / "secret.csv")
    with pytest.raises(JobFileError, match=r"'data.csv' \(.*secret.csv\), outside"):
        check_read_only("SELECT * FROM read_csv('data.csv')", "job.sql", scope)
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(JobFileError, match="outside"):
        check_read_only("SELECT * FROM read_csv('linked/*.csv')", "job.sql", scope)


def test_a_glob_matching_a_symlink_that_leads_outside_is_refused(tmp_path, scope, monkeypatch):
    # the glob's folder (the job folder) is in scope, but what `*` matches is not
    monkeypatch.chdir(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-globbed"
    outside.mkdir()
    (outside / "secret.csv").write_text("id,text\n1,secret\n")
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(JobFileError, match=r"'lin\*/secret.csv' \(.*secret.csv\), outside"):
        check_read_only("SELECT * FROM read_csv('lin*/secret.csv')", "job.sql", scope)


def test_a_glob_climbing_out_with_dotdot_is_refused(tmp_path, scope, monkeypatch):
    # run from the job folder (the usual case): the folder of `*/..` is the job folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(JobFileError, match=r"\(/etc/passwd\), outside"):
        check_read_only("SELECT * FROM read_text('*/" + "../" * 40 + "etc/passwd')",
                        "job.sql", scope)


def test_allow_path_widens_the_scope(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / ".git").mkdir()
    job = tmp_path / "jobs" / "job.sql"
    sql = f"SELECT * FROM read_csv('{outside}/x.csv')"
    with pytest.raises(JobFileError, match="outside"):
        check_read_only(sql, str(job), make_scope(job, env={}))
    check_read_only(sql, str(job), make_scope(job, env={}, allowed_paths=[str(outside)]))


def test_a_relative_path_that_exists_in_the_current_directory_outside_the_scope_is_refused(
        tmp_path, scope, monkeypatch):
    cwd = tmp_path.parent / f"{tmp_path.name}-cwd"
    cwd.mkdir()
    (cwd / "data.csv").write_text("id\n1\n")
    monkeypatch.chdir(cwd)
    with pytest.raises(JobFileError, match="outside"):
        check_read_only("SELECT * FROM read_csv('data.csv')", "job.sql", scope)


def test_a_relative_glob_run_from_elsewhere_is_judged_by_what_it_matches(tmp_path, scope,
                                                                       monkeypatch):
    # cron runs from `/` or $HOME: '*.csv' is the job folder's unless it matches files there
    (tmp_path / "a.csv").write_text("id\n1\n")
    cwd = tmp_path.parent / f"{tmp_path.name}-cron"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    check_read_only("SELECT * FROM read_csv('*.csv')", "job.sql", scope)
    (cwd / "other.csv").write_text("id\n2\n")   # DuckDB would now read this one
    with pytest.raises(JobFileError, match=r"other\.csv\), outside"):
        check_read_only("SELECT * FROM read_csv('*.csv')", "job.sql", scope)
    with pytest.raises(JobFileError, match="outside"):   # a whole tree: judged by its folder
        check_read_only("SELECT * FROM read_csv('**/*.csv')", "job.sql", scope)


def test_the_read_only_attachment_holds_when_the_parse_check_is_bypassed(tmp_path):
    db = str(tmp_path / "w.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'r' || range AS text "
                "FROM range(5)")
    spec = parse_job("{{ config(name='o', provider='openai', model='m', unique_key='id', "
                     "prompt='{{ text }}') }}\nSELECT id, text FROM reviews", str(tmp_path / "j.sql"))
    for hostile in ("WITH d AS (DELETE FROM reviews RETURNING *) SELECT * FROM d",
                    "WITH d AS (UPDATE reviews SET text = 'x' RETURNING *) SELECT * FROM d",
                    "WITH d AS (DELETE FROM warehouse_batch.results RETURNING 1) "
                    "SELECT 1 AS id WHERE (SELECT count(*) FROM d) >= 0"):
        spec.sql = hostile   # as if sqlguard had missed it
        with pytest.raises(JobFileError, match="read-only"):
            with read_only(con):
                materialise(con, spec)
    # the connection is read-write again afterwards, and nothing changed
    assert con.execute("SELECT count(*), min(text) FROM reviews").fetchone() == (5, "r0")
    con.execute("CREATE TABLE written_after AS SELECT 1")
    con.close()


def test_the_select_runs_once_per_prepare(tmp_path):
    """Binding (DESCRIBE) plans without running; materialising runs the SELECT once. A temp
    sequence counts the evaluations (nextval is refused in job files, so the check is
    bypassed here, as a side effect the parse check missed would be)."""
    db = str(tmp_path / "w.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'r' || range AS text FROM range(4)")
    con.execute("CREATE TEMP SEQUENCE evaluations")
    spec = parse_job("{{ config(name='o', provider='openai', model='m', unique_key='id', "
                     "prompt='{{ text }}') }}\nSELECT id, text FROM reviews", str(tmp_path / "j.sql"))
    spec.sql = "SELECT id, text, nextval('temp.main.evaluations') AS n FROM reviews"
    prepare(con, spec, get_provider(spec, {"OPENAI_API_KEY": "x"}))
    assert con.execute("SELECT currval('temp.main.evaluations')").fetchone() == (4,)
    con.close()


def test_connect_keeps_the_files_catalog_name(tmp_path):
    db = str(tmp_path / "shop.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT 1 AS id")
    assert con.execute("SELECT count(*) FROM shop.main.reviews").fetchone() == (1,)
    con.close()
    assert duckdb.connect(db, read_only=True).execute(
        "SELECT count(*) FROM reviews").fetchone() == (1,)


# --- --var ------------------------------------------------------------------------------------

BASE = ("{{ config(name='o', provider='openai', model='m', unique_key='id', "
        "prompt='{{ text }}') }}\n")


@pytest.mark.parametrize("value,literal", [
    ("x' OR '1'='1", "'x'' OR ''1''=''1'"), (3, "3"), (2.5, "2.5"), (True, "TRUE"),
    (None, "NULL"), ("", "''"),
])
def test_vars_become_literals(value, literal):
    spec = parse_job(BASE + "SELECT 1 AS id, {{ var('s') }} AS text", vars={"s": value})
    assert f"SELECT 1 AS id, {literal} AS text" in spec.sql


def test_list_and_dict_vars_are_refused_in_the_sql():
    for value in ([1, 2], {"a": 1}):
        with pytest.raises(JobFileError, match="one string, number"):
            parse_job(BASE + "SELECT 1 AS id, {{ var('s') }} AS text", vars={"s": value})


def test_only_var_calls_are_allowed_in_the_sql():
    for body in ("{% for i in range(3) %}SELECT 1{% endfor %}",
                 "SELECT {{ 'x' * 100000000 }}", "SELECT {{ var(name) }}",
                 "SELECT {{ var('a') ~ var('b') }}"):
        with pytest.raises(JobFileError, match="only \\{\\{ var"):
            parse_job(BASE + body, vars={"a": 1, "b": 2})


def test_an_unknown_var_is_refused_with_a_suggestion():
    with pytest.raises(JobFileError) as e:
        parse_job(BASE + "SELECT 1 AS id, {{ var('since', '2020') }} AS text",
                  vars={"sinse": "2021"})
    assert "--var sinse is not used" in str(e.value) and "did you mean 'since'" in str(e.value)


def test_vars_used_by_templates_count():
    job = BASE.replace("prompt='{{ text }}'", "prompt='{{ vars.tone }} {{ text }}'")
    parse_job(job + "SELECT 1 AS id, 'a' AS text", vars={"tone": "dry"})
    whole = BASE.replace("prompt='{{ text }}'", "prompt='{{ vars }} {{ text }}'")
    parse_job(whole + "SELECT 1 AS id, 'a' AS text", vars={"anything": 1})


def test_var_injection_does_not_change_the_rows(tmp_path):
    """`--var "s=x' OR '1'='1"` compares against that text: no row matches."""
    db = str(tmp_path / "w.duckdb")
    con = connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'r' || range AS text FROM range(6)")
    con.close()
    job = write_job(tmp_path, "name='o', provider='openai', model='m', unique_key='id', "
                    "prompt='{{ text }}'",
                    "SELECT id, text FROM reviews WHERE text = {{ var('s') }}")
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    for value, rows in (("x' OR '1'='1", 0), ("r3", 1)):
        p = subprocess.run(EXE + ["plan", str(job), "--db", db, "--json", "--var", f"s={value}"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["rows_selected"] == rows


def test_a_file_locked_by_another_process_gives_the_lock_message(tmp_path):
    from warehouse_batch.db import Target
    from warehouse_batch.errors import BusyError

    db = str(tmp_path / "w.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.read()", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(BusyError, match=r"is busy: it is held by python\S* \(PID \d+\)"):
            connect(Target(db=db, lock_timeout=0))
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_symlink_out_of_the_job_folder_is_refused_through_the_cli(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-secret"
    outside.mkdir()
    (outside / "keys.csv").write_text("id,text\n1,sk-secret\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / "reviews.csv").symlink_to(outside / "keys.csv")
    db = str(tmp_path / "w.duckdb")
    job = write_job(tmp_path, "name='o', provider='openai', model='m', unique_key='id', "
                    "prompt='{{ text }}'", "SELECT id, text FROM read_csv('reviews.csv')")
    env = {**os.environ, "OPENAI_API_KEY": "x"}
    for command in ("plan", "run"):
        p = subprocess.run(EXE + [command, str(job), "--db", db], env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert re.search(r"job\.sql:\d+:\d+: the SELECT reads 'reviews.csv' \(.*keys.csv\), "
                         r"outside", p.stderr), p.stderr
        assert "--allow-path" in p.stderr and "sk-secret" not in p.stderr
    assert not os.path.exists(db)   # refused before the database was even opened
    p = subprocess.run(EXE + ["plan", str(job), "--db", db, "--allow-path", str(outside)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
