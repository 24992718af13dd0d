"""The job file: config block, SQL shape, and located errors for every malformed input."""
from __future__ import annotations

import pytest

from warehouse_batch.errors import JobFileError
from warehouse_batch.spec import parse_job

def job(config: str, sql: str = "SELECT 1 AS id, 'x' AS text") -> str:
    return "{{ config(" + config + ") }}\n" + sql + "\n"


BASE = "name='out', provider='openai', model='m', unique_key='id', prompt='{{ text }}'"


def test_parses_every_key_kind():
    spec = parse_job(job(BASE + ", system='s', max_tokens=20, temperature=0.5, "
                                "params={'seed': 1}, max_attempts=4, tags=['a'], stop=none"))
    assert spec.name == "out" and spec.unique_key == ["id"]
    assert spec.generation == {"max_tokens": 20, "temperature": 0.5, "stop": None}
    assert spec.params == {"seed": 1} and spec.max_attempts == 4
    assert spec.system.text == "s" and spec.prompt.text == "{{ text }}"
    assert spec.sql.strip() == "SELECT 1 AS id, 'x' AS text"


def test_sql_keeps_file_line_numbers():
    spec = parse_job(job(BASE.replace(", ", ",\n"), "\nSELECT 1 AS id"))
    lines = spec.sql.split("\n")
    assert lines[spec.sql_line - 1].startswith("SELECT")
    assert spec.sql_line == 7


@pytest.mark.parametrize("text, message, line, column", [
    (job(BASE + ", colour='red'"), "unknown config key 'colour'", 1, None),
    (job(BASE + ", temprature=0"), "did you mean 'temperature'", 1, None),
    ("SELECT 1", "no {{ config(...) }} block", 1, 1),
    ("{{ config(name='x', provider='openai'\nSELECT 1", "never closed", 1, 4),
    ("{{ config(name='x' provider='openai') }}\nSELECT 1", "not valid", 1, None),
    ("{{ config(name=foo()) }}\nSELECT 1", "must be literals", 1, 16),
    (job(BASE, "DELETE FROM t"), "is DELETE, not a SELECT", 2, 1),
    (job(BASE, "SELECT 1 AS id;\nSELECT 2 AS id"), "2 SQL statements", 3, 1),
    (job(BASE, ""), "no SELECT", None, None),
    (job(BASE, "SELECT FROM WHERE ("), "does not parse", 2, None),
    (job("name='x', provider='openai', model='m', prompt='p'"), "unique_key", None, None),
    (job(BASE.replace("prompt=", "x=")), "unknown config key 'x'", None, None),
    (job(BASE + ", max_tokens='ten'"), "max_tokens' must be", None, None),
    (job(BASE + ", params=[1]"), "params must be a dict", None, None),
    (job(BASE.replace("'out'", "'warehouse_batch.x'")), "reserved", None, None),
])
def test_errors_are_located(text, message, line, column):
    with pytest.raises(JobFileError) as e:
        parse_job(text, "jobs/x.sql")
    assert message in str(e.value)
    assert e.value.location.file == "jobs/x.sql"
    if line is not None:
        assert e.value.location.line == line
    if column is not None:
        assert e.value.location.column == column


def test_unknown_key_points_at_its_line():
    text = "{{ config(\n  name='out',\n  provider='openai',\n  colour='red',\n) }}\nSELECT 1"
    with pytest.raises(JobFileError) as e:
        parse_job(text, "x.sql")
    assert (e.value.location.line, e.value.location.column) == (4, 10)


def test_prompt_file_is_read_relative_to_the_job(tmp_path):
    (tmp_path / "p.j2").write_text("Hi {{ text }}")
    path = tmp_path / "job.sql"
    path.write_text(job(BASE.replace("prompt='{{ text }}'", "prompt_file='p.j2'")))
    from warehouse_batch.spec import load_job
    spec = load_job(path)
    assert spec.prompt.text == "Hi {{ text }}" and spec.prompt.file.endswith("p.j2")


def test_sql_vars_are_rendered():
    spec = parse_job(job(BASE, "SELECT {{ var('n', 3) }} AS id, {{ var('t') }} AS text"),
                     vars={"t": "hello"})
    assert "SELECT 3 AS id, 'hello' AS text" in spec.sql
    with pytest.raises(JobFileError, match="var\\('t'\\)"):
        parse_job(job(BASE, "SELECT 1 AS id, {{ var('t') }} AS text"))


def test_duckdb_only_syntax_is_accepted():
    spec = parse_job(job(BASE, "FROM range(3) SELECT range AS id, 'x' AS text"))
    assert "range(3)" in spec.sql
