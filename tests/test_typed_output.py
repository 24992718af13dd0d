"""Typed answers: schema-validated JSON becomes typed columns; embeddings become FLOAT[n];
re-parsing stored answers sends nothing; unusable answers fail with the reason."""
from __future__ import annotations

import pytest

from warehouse_batch import api
from warehouse_batch.errors import JobFileError

from helpers import Job, provider_calls

COLUMNS = (", columns={'sentiment': \"enum('positive','negative','neutral')\", "
           "'confidence': 'double', 'topics': 'varchar[]'}")


def sends(emu) -> int:
    return len([c for c in provider_calls(emu, "POST", "/v1/batches")
                if not c["path"].endswith("/cancel")])


PROVIDERS = pytest.mark.parametrize("provider, model", [
    ("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash")])


@PROVIDERS
def test_classification_gives_typed_columns(tmp_path, emulator, provider, model):
    job = Job(tmp_path, emulator, provider=provider, model=model)
    job.write(extra=COLUMNS, max_tokens=200)
    report = job.run()
    assert report.rows.succeeded == 12, report.to_dict()
    types = {r[0]: r[1] for r in job.sql("DESCRIBE enriched")}
    assert types["sentiment"] == "VARCHAR" and types["confidence"] == "DOUBLE"
    assert types["topics"] == "VARCHAR[]" and "response" not in types and "_raw" in types
    grouped = job.sql("SELECT sentiment, avg(confidence), count(*) FROM enriched "
                      "GROUP BY 1 ORDER BY 1")
    assert {g[0] for g in grouped} <= {"positive", "negative", "neutral"}
    assert sum(g[2] for g in grouped) == 12 and all(0 <= g[1] <= 1 for g in grouped)
    assert job.sql("SELECT sentiment FROM enriched WHERE id = 1") == [("positive",)]
    # the schema went to the provider as its structured-output feature
    body = job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0]
    if provider == "openai":
        assert '"response_format":{"json_schema":{"name":"answer"' in body
        assert '"strict":true' in body
    elif provider == "anthropic":
        assert '"output_config":{"format":{' in body and '"sentiment"' in body
    else:
        assert '"responseMimeType":"application/json"' in body and '"responseSchema":{' in body


@PROVIDERS
def test_bad_answers_fail_with_the_reason_and_nothing_else_is_lost(tmp_path, emulator,
                                                                   provider, model):
    job = Job(tmp_path, emulator, provider=provider, model=model)
    job.sql("UPDATE reviews SET text = text || ' [[emu:badjson]]' WHERE id = 1")
    job.sql("UPDATE reviews SET text = text || ' [[emu:badschema]]' WHERE id = 2")
    job.sql("UPDATE reviews SET text = text || ' [[emu:truncate]]' WHERE id = 3")
    job.write(extra=COLUMNS + ", max_attempts=2", max_tokens=200)
    report = job.run()
    assert report.rows.succeeded == 9 and report.rows.failed == 3
    errors = dict(job.sql("SELECT id, _error FROM enriched WHERE _status = 'failed'"))
    assert "not valid JSON" in errors[1]
    assert "breaks the schema" in errors[2]
    assert "cut off by max_tokens (200)" in errors[3] and "raise max_tokens" in errors[3]
    attempts = dict(job.sql("SELECT id, _attempts FROM enriched WHERE id <= 3"))
    assert attempts == {1: 2, 2: 2, 3: 1}   # truncation is not retried: it cannot help
    assert job.sql("SELECT _raw IS NOT NULL FROM enriched WHERE id = 1") == [(True,)]


def test_renaming_output_columns_reparses_without_sending(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.write(extra=COLUMNS, max_tokens=200)
    job.run()
    before = sends(emulator)
    job.write(extra=COLUMNS + ", output_columns={'mood': 'sentiment', "
                              "'sure': 'confidence >= 0.5', 'n_topics': 'len(topics)'}",
              max_tokens=200)
    report = job.run(wait=False)
    assert report.submitted.requests_submitted == 0 and sends(emulator) == before
    cols = [r[0] for r in job.sql("DESCRIBE enriched")]
    assert {"mood", "sure", "n_topics"} <= set(cols) and "sentiment" not in cols
    assert job.sql("SELECT count(*) FROM enriched WHERE mood IS NOT NULL") == [(12,)]
    # changing the schema itself re-sends every row
    job.write(extra=COLUMNS.replace("'topics': 'varchar[]'", "'topics': 'varchar[]', "
                                    "'urgent': 'boolean'"), max_tokens=200)
    assert job.run().submitted.requests_submitted == 12


def test_bad_projection_is_refused_before_sending(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.write(extra=COLUMNS + ", output_columns={'x': 'no_such_field + 1'}", max_tokens=200)
    with pytest.raises(JobFileError, match="output_columns"):
        api.plan(job.path, job.options())
    assert provider_calls(emulator) == []


def test_embeddings_become_fixed_size_vectors(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.sql("UPDATE reviews SET text = 'duplicate text' WHERE id IN (7, 8)")
    job.path = str(__import__("helpers").write_job(job.tmp, """
        name='vectors', provider='openai', model='text-embedding-3-small', unique_key='id',
        endpoint='embeddings', dimensions=64, prompt='{{ text }}'""",
        "SELECT id, text FROM reviews"))
    report = job.run()
    assert report.rows.succeeded == 12
    types = {r[0]: r[1] for r in job.sql("DESCRIBE vectors")}
    assert types["embedding"] == "FLOAT[64]"
    ranked = job.sql("""SELECT b.id, array_cosine_similarity(a.embedding, b.embedding) AS sim
                        FROM vectors a, vectors b WHERE a.id = 7 AND b.id <> 7
                        ORDER BY sim DESC""")
    assert len(ranked) == 11 and ranked[0][0] == 8 and ranked[0][1] == pytest.approx(1.0)
    assert [r[1] for r in ranked] == sorted((r[1] for r in ranked), reverse=True)


def test_embedding_model_without_known_size_needs_dimensions(tmp_path, emulator):
    job = Job(tmp_path, emulator)
    job.path = str(__import__("helpers").write_job(job.tmp, """
        name='vectors', provider='openai', model='my-embedder', unique_key='id',
        endpoint='embeddings', prompt='{{ text }}'""", "SELECT id, text FROM reviews"))
    with pytest.raises(JobFileError, match="dimensions"):
        api.plan(job.path, job.options())
