"""Bounded templates: budgets per prompt and per job, checked before strings are built; NULL
prints as an empty string in both render paths; BLOB columns never reach a prompt."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from warehouse_batch import api
from warehouse_batch.errors import ConfigurationError, DataError, JobFileError
from warehouse_batch.render import (MAX_JOB_CHARS_ENV, MAX_PROMPT_CHARS, check_variables,
                                    compile_template, job_char_budget, render_rows, to_sql)
from warehouse_batch.spec import Template

from helpers import emulator_env, write_job

CONFIG = """name='out', provider='openai', model='m', unique_key='id', prompt={prompt!r}"""


def _plan(tmp_path, sql: str, prompt: str):
    job = write_job(tmp_path, CONFIG.format(prompt=prompt), sql)
    return api.plan(str(job), api.Options(db=str(tmp_path / "w.duckdb"),
                                          env={"OPENAI_API_KEY": "x"}))


def _prompts(tmp_path, sql: str, prompt: str) -> tuple[str, dict[int, str]]:
    """Prepare a job and return (render mode, {id: prompt})."""
    from warehouse_batch.providers.base import get_provider
    from warehouse_batch.source import prepare
    from warehouse_batch.spec import load_job
    from warehouse_batch.state import ensure_schema

    job = write_job(tmp_path, CONFIG.format(prompt=prompt), sql)
    spec = load_job(job)
    con = duckdb.connect()
    ensure_schema(con)
    prepared = prepare(con, spec, get_provider(spec, env={"OPENAI_API_KEY": "x"}))
    rows = con.execute("SELECT s.id, p.prompt FROM wb_prompt p JOIN wb_src s "
                       "ON s.rowid = p._rid ORDER BY s.id").fetchall()
    return prepared.render_mode, dict(rows)


def _render(text: str, rows: list[dict], vars: dict | None = None) -> list[str]:
    return render_rows(compile_template(Template(text, "p.j2", 1), "prompt"), rows,
                       vars or {}, ["id"])


ROWS = "SELECT * FROM (VALUES (1, 'a', NULL), (2, NULL, 'x'), (3, NULL, NULL)) t(id, a, b)"


# -- NULL

@pytest.mark.parametrize("prompt, mode", [
    ("[{{ a }}|{{ b }}]", "sql"),
    ("[{{ row.a }}|{{ row['b'] }}]", "sql"),
    ("[{{ a|trim }}|{{ b }}]", "python"),
    ("[{{ a ~ '' }}|{{ b }}]", "python"),
])
def test_null_prints_as_empty_in_both_paths(tmp_path, prompt, mode):
    got_mode, prompts = _prompts(tmp_path, ROWS, prompt)
    assert got_mode == mode
    if "trim" in prompt:     # a filter sees the value itself: trim(None) is the text 'None'
        return
    assert prompts == {1: "[a|]", 2: "[|x]", 3: "[|]"}


def test_null_is_still_none_for_tests_and_conditions():
    out = _render("{{ a is none }}/{% if a %}set{% else %}unset{% endif %}/"
                  "{{ a if a is not none else 'dflt' }}/{{ 'x' ~ a ~ 'y' }}/{{ a }}",
                  [{"id": 1, "a": None}, {"id": 2, "a": "v"}])
    assert out == ["True/unset/dflt/xy/", "False/set/v/xvy/v"]


def test_sql_and_python_paths_agree_with_nulls():
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {ROWS}")
    types = {r[0]: r[1] for r in con.execute("DESCRIBE t").fetchall()}
    rows = con.sql("SELECT * FROM t ORDER BY id").to_arrow_table().to_pylist()
    for text in ["{{ a }}{{ b }}", "x{{ a }}\n{{ row.b }}y", "{{ id }}:{{ a }}", "plain"]:
        ct = compile_template(Template(text, "p.j2", 1), "prompt")
        sql = to_sql(ct, types)
        assert sql is not None, text
        via_sql = [r[0] for r in con.execute(f"SELECT {sql} FROM t ORDER BY id").fetchall()]
        assert via_sql == render_rows(ct, rows, {}, ["id"]), text
        assert not any("None" in p for p in via_sql)


# -- budgets do not change what legitimate templates print

LEGIT = [
    "{{ text|center(40) }}|{{ text|indent(2, true) }}|{{ text|wordwrap(5) }}",
    "{{ '%-8s|%5.2f|%03d' % (text, 3.14159, 7) }}|{{ '%s=%s'|format(text, 1) }}",
    "{{ text.ljust(20, '.') }}{{ text.rjust(20) }}{{ text.zfill(30) }}{{ text.center(21) }}",
    "{{ '{:>12}|{:.3}'.format(text, text) }}{{ '{a}'.format_map({'a': text}) }}",
    "{{ text.replace('e', 'EE') }}{{ text|replace('e', '3', 1) }}{{ '\t'.expandtabs(4) }}",
    "{{ ', '.join([text, text]) }}{{ [text, 'b']|join('-') }}{{ (text * 3)|truncate(20) }}",
    "{{ [text, 1, none] }}{{ {'k': text}|tojson }}{{ text|tojson(indent=2) }}",
    "{% set s %}{% for c in text %}{{ loop.index }}{{ c }}{% endfor %}{% endset %}{{ s }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(text) }}{% filter upper %}{{ text }}"
    "{% endfilter %}",
    "{{ text ~ 1 ~ [2] }}{{ text + '!' }}{{ [1] + [2] }}{{ text * 2 }}{{ text|string }}",
    "{{ text|urlize }}{{ text|pprint }}{{ (text|list)|batch(3, '_')|list }}"
    "{{ [[1], [2]]|sum(start=[]) }}",
]


@pytest.mark.parametrize("text", LEGIT)
def test_bounded_sandbox_prints_what_jinja_prints(text):
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    row = {"id": 1, "text": "the quick brown fox-jumps over http://example.com"}
    expected = plain.from_string(text).render(row, row=row, vars={})
    assert _render(text, [row]) == [expected]


def test_a_large_but_fine_prompt_renders_in_both_paths(tmp_path):
    big = MAX_PROMPT_CHARS - 1000
    sql = f"SELECT 1 AS id, repeat('ab', {big // 2}) AS text"
    mode, prompts = _prompts(tmp_path, sql, "{{ text }}")
    assert mode == "sql" and len(prompts[1]) == big
    # Jinja: built from a short string by ~, * and a loop, right up to the limit
    mode, prompts = _prompts(
        tmp_path, "SELECT 1 AS id, 'abcd' AS text",
        "{% set s = text * 1000 %}{% set s = s ~ s ~ s ~ s %}"
        "{% for i in s[:200] %}{{ s }}{% endfor %}{{ text * 100 }}")
    assert mode == "python" and len(prompts[1]) == 200 * 16000 + 400


@pytest.mark.parametrize("prompt", ["{{ text }}{{ text }}", "{{ text|upper }}{{ text }}"])
def test_a_prompt_over_the_limit_names_its_key_in_both_paths(tmp_path, prompt):
    half = MAX_PROMPT_CHARS // 2 + 1
    sql = f"SELECT * FROM (VALUES (1, 'short'), (7, repeat('x', {half}))) t(id, text)"
    with pytest.raises(DataError) as e:
        _plan(tmp_path, sql, prompt)
    assert "{'id': 7}" in str(e.value) and f"{MAX_PROMPT_CHARS:,}" in str(e.value)
    assert e.value.location.file.endswith("job.sql")


@pytest.mark.parametrize("prompt", ["{{ text }}", "{{ text|trim }}"])
def test_the_job_budget_names_the_row_that_passes_it(tmp_path, monkeypatch, prompt):
    monkeypatch.setenv(MAX_JOB_CHARS_ENV, "25")
    sql = "SELECT range AS id, 'ten chars!' AS text FROM range(5)"
    with pytest.raises(DataError) as e:
        _plan(tmp_path, sql, prompt)
    assert "25 characters per job" in str(e.value) and "{'id': 2}" in str(e.value)
    monkeypatch.setenv(MAX_JOB_CHARS_ENV, "50")
    assert _plan(tmp_path, sql, prompt).rows_selected == 5


def test_job_budget_setting_is_checked():
    assert job_char_budget({MAX_JOB_CHARS_ENV: "1_000"}) == 1000
    assert job_char_budget({}) > MAX_PROMPT_CHARS
    with pytest.raises(ConfigurationError):
        job_char_budget({MAX_JOB_CHARS_ENV: "lots"})


def test_refusal_names_the_template_line():
    text = "Line one\nLine two {{ id }}\n{{ text|center(10000000) }}\nend"
    with pytest.raises(DataError) as e:
        render_rows(compile_template(Template(text, "p.j2", 10), "prompt"),
                    [{"id": 4, "text": "t"}], {}, ["id"])
    assert e.value.location.line == 12 and "{'id': 4}" in str(e.value)
    assert "center filter" in str(e.value)


def test_small_steps_in_loops_are_bounded():
    with pytest.raises(DataError, match="iterations"):
        _render("{% for a in text %}{% for b in text %}{% endfor %}{% endfor %}",
                [{"id": 1, "text": "x" * 2000}])
    with pytest.raises(DataError, match="characters of strings"):
        _render("{% for a in text %}{{ (text * 100)|length }}{% endfor %}",
                [{"id": 1, "text": "x" * 20000}])


def test_compiling_never_folds_a_large_constant_into_the_code():
    """Jinja evaluates constant filter calls while compiling; only small results are kept."""
    ct = compile_template(Template("{{ 'x'|center(3000000) }}{{ 'y'|center(5) }}", "p.j2", 1),
                          "prompt")
    consts = ct.jinja.root_render_func.__code__.co_consts
    assert "  y  " in consts and max(len(c) for c in consts if isinstance(c, str)) < 100
    assert len(_render("{{ 'x'|center(3000000) }}", [{"id": 1}])[0]) == 3000000


def test_recursive_loops_are_refused():
    with pytest.raises(JobFileError, match="recursive loops"):
        compile_template(Template("{% for x in text recursive %}{{ loop(x) }}{% endfor %}",
                                  "p.j2", 1), "prompt")


def test_system_prompt_is_bounded_too(tmp_path):
    job = write_job(tmp_path, CONFIG.format(prompt="{{ text }}")
                    + ", system=\"{{ 'x'|center(900000000) }}\"", "SELECT 1 AS id, 'a' AS text")
    with pytest.raises(JobFileError, match="system template was refused.*center"):
        api.plan(str(job), api.Options(db=str(tmp_path / "w.duckdb"),
                                       env={"OPENAI_API_KEY": "x"}))


# -- BLOB

@pytest.mark.parametrize("prompt", ["{{ data }}", "{{ row.data }}", "{{ row['data'] }}",
                                    "{{ row }}", "{% for k in row %}{{ row[k] }}{% endfor %}",
                                    "{% set data = data %}{{ data }}", "{{ row.items() }}"])
def test_blob_columns_in_a_prompt_are_refused(prompt):
    ct = compile_template(Template("Hello\n" + prompt, "p.j2", 5), "prompt")
    with pytest.raises(JobFileError) as e:
        check_variables(ct, ["id", "data", "text"], {"id": "INTEGER", "data": "BLOB",
                                                     "text": "VARCHAR"})
    assert "'data'" in str(e.value) and "BLOB" in str(e.value) and "decode" in e.value.hint
    assert e.value.location.line == 6


def test_blob_columns_the_prompt_does_not_use_are_fine(tmp_path):
    ct = compile_template(Template("{{ text }} {{ row.text }}", "p.j2", 1), "prompt")
    check_variables(ct, ["id", "data", "text"], {"id": "INTEGER", "data": "BLOB[]",
                                                 "text": "VARCHAR"})
    report = _plan(tmp_path, "SELECT 1 AS id, 'a' AS text, '\\xff'::BLOB AS data, "
                   "decode('\\x68\\x69'::BLOB) AS decoded", "{{ text }} {{ decoded }}")
    assert report.rows_selected == 1


def test_nested_blob_types_are_refused():
    ct = compile_template(Template("{{ parts }}", "p.j2", 1), "prompt")
    with pytest.raises(JobFileError, match="BLOB"):
        check_variables(ct, ["id", "parts"], {"id": "INTEGER", "parts": "BLOB[]"})


# -- memory: a refused template never allocates what it asked for

MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys
    p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(json.dumps({"rc": p.returncode, "stderr": p.stderr,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


@pytest.mark.parametrize("template, asked_mb", [
    ("{{ text|center(2000000000) }}", 2000),
    # 60 characters, eight times eight-fold: 1 GB
    ("{% set s = text ~ text ~ text ~ text %}" + "{% set s = s~s~s~s~s~s~s~s %}" * 8
     + "{{ s }}", 1000),
    ("{{ text|wordwrap(1)|indent(100000000) }}", 1000),
])
def test_refused_templates_stay_far_below_the_memory_they_ask_for(tmp_path, fast_emulator,
                                                                  template, asked_mb):
    """Peak RSS of the CLI child (measured by a wrapper process that waits only for it)."""
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'review number ' || range AS text "
                "FROM range(3)")
    con.close()
    (tmp_path / "prompt.j2").write_text(template)
    job = write_job(tmp_path, "name='out', provider='openai', model='gpt-4.1-mini', "
                    "unique_key='id', prompt_file='prompt.j2'", "SELECT id, text FROM reviews")
    p = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m",
                        "warehouse_batch.cli", "plan", str(job), "--db", db],
                       env=emulator_env(fast_emulator), capture_output=True, text=True,
                       timeout=120)
    out = json.loads(p.stdout)
    assert out["rc"] == 2 and "{'id': 0}" in out["stderr"], out
    assert out["maxrss_kb"] < asked_mb * 1024 / 4, out
