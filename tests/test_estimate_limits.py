"""Over-long inputs (issue 11, item 9): a row whose request would pass the model's context
window is refused at plan with its key; `truncate_tokens(N)` cuts text to a token budget,
counted with the same (documented) estimate, in the SQL and the Jinja paths alike."""
from __future__ import annotations

import duckdb
import pytest

from warehouse_batch import api
from warehouse_batch.errors import DataError, JobFileError
from warehouse_batch.estimate import documented, truncate_chars
from warehouse_batch.render import compile_template, render_rows, to_sql
from warehouse_batch.spec import Template

from helpers import Job, provider_calls

LONG = 40_000   # characters: ~10,000 tokens, more than gpt-4's 8,192-token window


def _long_job(tmp_path, emu, prompt: str = "Summarise: {{ text }}", max_tokens: int = 5,
              model: str = "gpt-4") -> Job:
    job = Job(tmp_path, emu, rows=4, prompt=prompt, model=model, max_tokens=max_tokens)
    job.sql(f"UPDATE reviews SET text = repeat('word ', {LONG // 5}) WHERE id = 3")
    return job


def test_a_row_past_the_context_window_is_refused_at_plan_with_its_key(tmp_path, emulator):
    job = _long_job(tmp_path, emulator)
    with pytest.raises(DataError) as e:
        api.plan(job.path, job.options())
    assert "context window of gpt-4 (8,192 tokens" in str(e.value)
    assert e.value.rows[0]["id"] == 3 and len(e.value.rows) == 1
    assert e.value.rows[0]["est_input_tokens"] > 8192
    assert e.value.location.file == job.path
    with pytest.raises(DataError):
        job.run()
    assert provider_calls(emulator) == []
    assert job.sql("SELECT count(*) FROM warehouse_batch.runs") == [(0,)]
    assert job.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'enriched'") \
        == [(0,)]


def test_max_tokens_counts_against_the_window(tmp_path, emulator):
    """~5,000 input tokens fit 8,192 alone, not with max_tokens=4,000 on top."""
    job = Job(tmp_path, emulator, rows=2, model="gpt-4", max_tokens=100)
    job.sql("UPDATE reviews SET text = repeat('x', 20000) WHERE id = 2")
    assert api.plan(job.path, job.options()).requests_to_send == 2
    job.write(model="gpt-4", max_tokens=4000)
    with pytest.raises(DataError, match=r"max_tokens=4,000"):
        api.plan(job.path, job.options())


def test_unlisted_models_are_not_judged(tmp_path, emulator):
    """No documented window (an Azure deployment, an OpenAI-compatible server, a model the
    table does not list): nothing to refuse with."""
    job = _long_job(tmp_path, emulator, model="my-finetune")
    assert api.plan(job.path, job.options()).requests_to_send == 4


def test_truncate_tokens_makes_the_row_fit_and_sends_the_cut_text(tmp_path, emulator):
    job = _long_job(tmp_path, emulator, prompt="Summarise: {{ text | truncate_tokens(2000) }}")
    plan = api.plan(job.path, job.options())
    assert plan.render_mode == "sql"          # compiled to SQL, not rendered by Jinja
    assert job.run().rows.succeeded == 4
    (prompt,), = job.sql("SELECT r.prompt FROM warehouse_batch.requests r JOIN enriched e "
                         "ON e._request_hash = r.request_hash WHERE e.id = 3")
    keep = truncate_chars(documented("openai", "gpt-4").chars_per_token, 2000)
    assert prompt == "Summarise: " + ("word " * (LONG // 5))[:keep]
    (billed,), = job.sql("SELECT a.input_tokens FROM warehouse_batch.attempts a JOIN enriched "
                         "e ON e._request_hash = a.request_hash WHERE e.id = 3")
    assert billed <= 2000 + 30


@pytest.mark.parametrize("template", [
    "A {{ text | truncate_tokens(3) }} B {{ n | truncate_tokens(1) }}",
    "{{ row.text | truncate_tokens(2) }}|{{ row['text'] | truncate_tokens(5) }}",
])
def test_truncate_tokens_in_sql_and_in_jinja_give_the_same_prompts(template):
    """The compiled SQL (DuckDB's `left`, characters) and the sandbox's filter (Python
    slices, characters) agree on ASCII, combining marks, emoji, NULL and integers; so does
    a template Jinja must render (an `if` around the same filter)."""
    values = ["short", "exactly-twelve!", "é" * 30, "e\u0301" * 20, "🦆" * 25, "", None,
              "line\nbreak\ttab" * 3]
    rows = [{"id": i, "text": v, "n": 10 ** i} for i, v in enumerate(values)]
    types = {"id": "BIGINT", "text": "VARCHAR", "n": "BIGINT"}
    for ratio in (4.0, 3.5):
        ct = compile_template(Template(template, "p.j2", 1), "prompt", chars_per_token=ratio)
        sql = to_sql(ct, types)
        assert sql is not None and "left(" in sql
        con = duckdb.connect()
        con.execute("CREATE TABLE t (id BIGINT, text VARCHAR, n BIGINT)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                        [[r["id"], r["text"], r["n"]] for r in rows])
        from_sql = [p for (p,) in con.execute(f"SELECT {sql} FROM t ORDER BY id").fetchall()]
        jinja = render_rows(ct, rows, {}, ["id"])
        assert from_sql == jinja
        wrapped = compile_template(Template("{% if true %}" + template + "{% endif %}",
                                            "p.j2", 1), "prompt", chars_per_token=ratio)
        assert to_sql(wrapped, types) is None
        assert render_rows(wrapped, rows, {}, ["id"]) == jinja
    if template.startswith("A "):   # 3.5 characters per token: 3 tokens keep 10 characters
        assert jinja[1] == "A exactly-tw B 10" and jinja[6] == "A  B 100"


def test_truncate_tokens_uses_the_documented_ratio_of_the_jobs_provider(tmp_path, emulator):
    """Anthropic's documented 3.5 characters per token: truncate_tokens(10) keeps 35."""
    job = Job(tmp_path, emulator, rows=1, provider="anthropic", model="claude-haiku-4-5",
              prompt="{{ text | truncate_tokens(10) }}")
    job.sql("UPDATE reviews SET text = repeat('abcdefghij', 10)")
    plan = api.plan(job.path, job.options())
    content = plan.sample_request["params"]["messages"][0]["content"]
    assert content == ("abcdefghij" * 10)[:35]


@pytest.mark.parametrize("arg, shown", [
    ("-1", "-1"), ("0", "0"), ("1000001", "1000001"), ("10**30", "an expression"),
    ("'2000'", "'2000'"), ("2.5", "2.5"), ("true", "True"), ("n", "an expression"),
    ("", "nothing"), ("5, 3", "several arguments"), ("tokens=5", "a keyword argument"),
])
def test_truncate_tokens_refuses_bad_budgets_with_their_location(arg, shown):
    text = "Line one\n{{ text | truncate_tokens(" + arg + ") }}"
    if arg == "":
        text = "Line one\n{{ text | truncate_tokens }}"
    with pytest.raises(JobFileError) as e:
        compile_template(Template(text, "p.j2", 10), "prompt")
    assert e.value.location.file == "p.j2" and e.value.location.line == 11
    assert f"not {shown}" in e.value.message


def test_a_new_documented_ratio_cuts_truncated_prompts_anew(tmp_path, emulator, monkeypatch):
    """The cut is part of each row's input fingerprint: a release with another documented
    ratio renders the truncated rows again (only the long row's request changes)."""
    from warehouse_batch import source
    from warehouse_batch.estimate import Ratio

    job = _long_job(tmp_path, emulator, prompt="Summarise: {{ text | truncate_tokens(2000) }}")
    assert job.run().rows.succeeded == 4
    assert api.plan(job.path, job.options()).rows_changed == 0
    monkeypatch.setattr(source, "documented", lambda *a: Ratio(3.0, 7.0, 200))
    plan = api.plan(job.path, job.options())
    assert plan.rows_changed == 1 and plan.requests_to_send == 1
    assert len(plan.sample_request["body"]["messages"][-1]["content"]) == \
        len("Summarise: ") + 6000
