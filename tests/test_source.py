"""Checks against the database: every bad input is refused with a located message, before
anything is written to the ledger or sent."""
from __future__ import annotations

import duckdb
import pytest

from warehouse_batch import api
from warehouse_batch.errors import DataError, JobFileError, MissingDatabaseError

from helpers import write_job

CONFIG = """name='out', provider='openai', model='m', unique_key={key!r},
prompt={prompt!r}"""


def plan(tmp_path, sql, prompt="{{ text }}", key="id", db=None, extra=""):
    job = write_job(tmp_path, CONFIG.format(key=key, prompt=prompt) + extra, sql)
    db = db or str(tmp_path / "w.duckdb")
    return api.plan(str(job), api.Options(db=db, env={"OPENAI_API_KEY": "x"}))


def test_unknown_template_variable_is_located(tmp_path):
    job = write_job(tmp_path, """name='out', provider='openai', model='m', unique_key='id',
        prompt='Line one\\nSay {{ txt }}'""", "SELECT 1 AS id, 'a' AS text")
    with pytest.raises(JobFileError) as e:
        api.plan(str(job), api.Options(db=str(tmp_path / "w.duckdb"), env={}))
    assert "{{ txt }}" in str(e.value) and "did you mean 'text'" in str(e.value)
    assert e.value.location.file == str(job) and e.value.location.line == 4


def test_unknown_row_attribute_is_refused(tmp_path):
    with pytest.raises(JobFileError, match="row.nope"):
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text", prompt="{{ row.nope }}")


def test_template_syntax_error_is_located(tmp_path):
    with pytest.raises(JobFileError) as e:
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text", prompt="{% if %}")
    assert "prompt template" in str(e.value) and e.value.location.line is not None


def test_missing_unique_key_column(tmp_path):
    with pytest.raises(JobFileError, match="unique_key column 'nope' is not a column"):
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text", key="nope")


def test_null_keys_name_the_rows(tmp_path):
    with pytest.raises(DataError) as e:
        plan(tmp_path, "SELECT * FROM (VALUES (1, 'a'), (NULL, 'b'), (3, 'c')) t(id, text)")
    assert "NULL in 1 selected row" in str(e.value) and "'row': 2" in str(e.value)


def test_duplicate_keys_name_the_values(tmp_path):
    with pytest.raises(DataError) as e:
        plan(tmp_path, "SELECT * FROM (VALUES (7, 'a'), (7, 'b'), (3, 'c')) t(id, text)")
    assert "not unique" in str(e.value) and "'id': 7" in str(e.value) \
        and "'count': 2" in str(e.value)


def test_missing_table_is_a_located_sql_error(tmp_path):
    duckdb.connect(str(tmp_path / "w.duckdb")).close()   # the database exists, the table not
    with pytest.raises(JobFileError) as e:
        plan(tmp_path, "SELECT id, text\nFROM no_such_table")
    assert "no_such_table" in str(e.value) and e.value.location.file.endswith("job.sql")


def test_a_missing_database_is_refused_with_its_path_when_the_job_reads_tables(tmp_path):
    """A mistyped --db is not planned against an empty stand-in (blaming a missing table):
    it is refused with its path, and no file is created."""
    db = tmp_path / "typo.duckdb"
    with pytest.raises(MissingDatabaseError) as e:
        plan(tmp_path, "SELECT id, text\nFROM reviews", db=str(db))
    assert str(db) in str(e.value) and "reviews" in str(e.value)
    assert not db.exists()


def test_output_column_collision(tmp_path):
    with pytest.raises(JobFileError, match="column named 'response'"):
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text, 'x' AS response")


def test_remote_files_are_refused_before_any_extension_is_needed(tmp_path):
    with pytest.raises(JobFileError) as e:
        plan(tmp_path, "SELECT * FROM read_parquet('https://example.invalid/x.parquet')")
    assert "not a local file" in str(e.value) and e.value.location.line == 5


def test_system_prompt_cannot_use_columns(tmp_path):
    with pytest.raises(JobFileError, match="system prompt uses"):
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text", extra=", system='About {{ text }}'")


def test_sandbox_stops_attribute_tricks(tmp_path):
    with pytest.raises(JobFileError, match="sandbox"):
        plan(tmp_path, "SELECT 1 AS id, 'a' AS text",
             prompt="{{ text.__class__.__mro__ }}")


def test_reads_tables_parquet_and_csv(tmp_path):
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE docs AS SELECT range AS id, 'doc ' || range AS text FROM range(5)")
    con.execute(f"COPY docs TO '{tmp_path}/docs.parquet' (FORMAT parquet)")
    con.execute(f"COPY docs TO '{tmp_path}/docs.csv' (FORMAT csv, HEADER)")
    con.close()
    for sql in ["SELECT * FROM docs", f"SELECT * FROM read_parquet('{tmp_path}/docs.parquet')",
                f"SELECT * FROM read_csv('{tmp_path}/docs.csv')"]:
        report = plan(tmp_path, sql, db=db)
        assert report.rows_selected == 5 and report.requests_to_send == 5


def test_plan_counts_duplicates_and_sample(tmp_path):
    report = plan(tmp_path, "SELECT * FROM (VALUES (1, 'same'), (2, 'same'), (3, 'other')) "
                            "t(id, text)")
    assert (report.rows_new, report.requests_to_send, report.duplicates_collapsed) == (3, 2, 1)
    assert report.sample_request["body"]["messages"][-1]["content"] in ("same", "other")
