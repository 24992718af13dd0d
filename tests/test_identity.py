"""Hash rules: the SQL that computes them at scale agrees with the documented reference."""
from __future__ import annotations

import json

import duckdb
import pytest

from warehouse_batch import identity
from warehouse_batch.providers.base import get_provider
from warehouse_batch.source import prepare
from warehouse_batch.spec import load_job

from helpers import write_job

TRICKY = ['a"b\\c\nd\te\r\x01\x1f/é\u2028\x7f\x00x\x0b', "plain", "emoji 😀", "\b\f",
          "\\u000b literally", ""]


@pytest.mark.parametrize("text", TRICKY)
def test_canonical_json_matches_duckdb(text):
    con = duckdb.connect()
    got = con.execute(f"SELECT {identity.json_string_sql('$1')}", [text]).fetchone()[0]
    assert got == identity.canonical_json(text)
    assert json.loads(got) == text


def test_canonical_json_sorts_and_compacts():
    assert identity.canonical_json({"b": 1, "a": [True, None, 1.5]}) == \
        '{"a":[true,null,1.5],"b":1}'


def test_custom_id_fits_every_provider():
    cid = identity.custom_id_for("f" * 64)
    assert identity.CUSTOM_ID_RE.match(cid) and len(cid) <= 64 and cid.startswith("wb_")


def _prepared(tmp_path, prompt: str, rows_sql: str, key: str = "id"):
    job = write_job(tmp_path, f"""
        name='out', provider='openai', model='gpt-4.1-mini', unique_key={key!r},
        system='sys', max_tokens=10, temperature=0.2, prompt={prompt!r}""", rows_sql)
    spec = load_job(job)
    con = duckdb.connect()
    from warehouse_batch.state import ensure_schema
    ensure_schema(con)
    provider = get_provider(spec, env={"OPENAI_API_KEY": "x"})
    return con, prepare(con, spec, provider), provider


ROWS = """SELECT * FROM (VALUES (1, 'Kettle', 'I love it "a lot"\n', 4.5, true),
                                  (2, 'Toaster', NULL, -1.0, false),
                                  (3, 'Émoji 😀', 'tab\there\x01', 0.1, NULL)) t(id, product, review, score, ok)"""


@pytest.mark.parametrize("prompt, mode", [
    ("Product: {{ product }}\nReview: {{ review }}", "sql"),
    ("{{ row.product }} / {{ row['review'] }} #{{ id }}", "sql"),
    ("{{ product | upper }}: {{ review }}", "python"),
    ("{% if ok %}OK{% endif %} {{ score }} {{ review }}", "python"),
])
def test_request_hash_sql_equals_reference(tmp_path, prompt, mode):
    con, prepared, provider = _prepared(tmp_path, prompt, ROWS)
    assert prepared.render_mode == mode
    rows = con.execute(f"SELECT p.prompt, c.request_hash, "
                       f"{identity.custom_id_sql('c.request_hash')}, sha256(c.key_json), s.id "
                       "FROM wb_current c JOIN wb_src s ON s.rowid = c._rid "
                       "JOIN wb_prompt p USING (_rid) ORDER BY s.id").fetchall()
    assert len(rows) == 3
    for prompt_text, rhash, cid, khash, key in rows:
        body = provider.build_body("sys", prompt_text)
        assert rhash == identity.request_hash("openai", "/v1/chat/completions", body)
        assert cid == identity.custom_id_for(rhash)
        assert khash == identity.row_key_hash({"id": key})
        # the stored body is exactly what is hashed
        stored = con.execute(f"SELECT {prepared.body_sql('$1')}", [prompt_text]).fetchone()[0]
        assert json.loads(stored) == body and stored == identity.canonical_json(body)


def test_sql_and_python_rendering_agree(tmp_path):
    """The compiled-to-SQL path and Jinja print the same text for the same template."""
    from warehouse_batch.render import compile_template, render_rows, to_sql
    from warehouse_batch.spec import Template

    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {ROWS}")
    types = dict(zip(*[[r[0] for r in con.execute('DESCRIBE t').fetchall()],
                       [r[1] for r in con.execute('DESCRIBE t').fetchall()]]))
    for text in ["{{ product }}:{{ review }}\n", "x{{ id }}y", "{{ row.review }}", "plain",
                 "{{ review }}{{ review }}"]:
        ct = compile_template(Template(text, "t", 1), "prompt")
        sql = to_sql(ct, types)
        assert sql is not None, text
        via_sql = [r[0] for r in con.execute(f"SELECT {sql} FROM t ORDER BY id").fetchall()]
        rows = con.sql("SELECT * FROM t ORDER BY id").to_arrow_table().to_pylist()
        assert via_sql == render_rows(ct, rows, {}, ["id"]), text


def test_composite_keys_hash_sorted_by_column(tmp_path):
    con, prepared, _ = _prepared(
        tmp_path, "{{ product }}", "SELECT 'b' AS z, 2 AS a, 'p' AS product", key=["z", "a"])
    khash, kjson = con.execute("SELECT sha256(key_json), key_json FROM wb_current").fetchone()
    assert kjson == '{"a":2,"z":"b"}'
    assert khash == identity.row_key_hash({"z": "b", "a": 2})
