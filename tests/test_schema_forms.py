"""Output schemas: the provider gets the form it accepts (OpenAI strict mode, Anthropic's
structured outputs), collect still enforces the user's full schema, and what cannot be
enforced is refused at plan time naming the property."""
from __future__ import annotations

import json

import duckdb
import pytest

from warehouse_batch import api, schema
from warehouse_batch.emulator import request_rules
from warehouse_batch.errors import JobFileError, Location

from helpers import Job, provider_calls

# No additionalProperties, no required, ranges: what a user writes.
LOOSE = {"type": "object", "properties": {
    "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "how sure"},
    "stars": {"type": "integer", "minimum": 0, "maximum": 10},
    "note": {"type": "string", "maxLength": 5000},
    "who": {"type": "object", "properties": {"name": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 3}}}

PROVIDERS = pytest.mark.parametrize("provider, model", [
    ("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5")])


@PROVIDERS
def test_loose_schema_succeeds_and_ranges_are_still_enforced(tmp_path, emulator, provider,
                                                             model):
    job = Job(tmp_path, emulator, provider=provider, model=model)
    job.sql("UPDATE reviews SET text = text || ' [[emu:badrange]]' WHERE id = 1")
    job.write(extra=f", max_attempts=1, output_schema={json.dumps(LOOSE)}", max_tokens=300)
    report = job.run()
    assert report.rows.succeeded == 11 and report.rows.failed == 1, report.to_dict()
    (error,) = job.sql("SELECT _error FROM enriched WHERE id = 1")[0]
    assert "breaks the schema" in error and "above the maximum" in error
    assert job.sql("SELECT count(*) FROM enriched WHERE confidence BETWEEN 0 AND 1 "
                   "AND stars BETWEEN 0 AND 10") == [(11,)]
    # what was sent is the provider's form, not the user's
    body = json.loads(job.sql("SELECT body FROM warehouse_batch.requests LIMIT 1")[0][0])
    if provider == "openai":
        sent = body["response_format"]["json_schema"]["schema"]
        assert request_rules.strict_schema_problem(sent) is None
        assert sent["required"] == list(LOOSE["properties"])
        assert sent["properties"]["stars"]["type"] == ["integer", "null"]   # optional: nullable
        assert sent["properties"]["stars"]["maximum"] == 10
    else:
        sent = body["output_config"]["format"]["schema"]
        assert request_rules.anthropic_schema_problem(sent) is None
        assert "maximum" not in sent["properties"]["stars"]
        assert sent["properties"]["confidence"]["description"] == \
            "how sure\n\n{minimum: 0, maximum: 1}"


@pytest.mark.parametrize("user", [
    LOOSE,
    schema.from_columns({"sentiment": "enum('a','b')", "score": "double", "t": "varchar[]"},
                        Location()),
    {"type": "object", "required": ["a"], "additionalProperties": True, "properties": {
        "a": {"type": ["string", "null"], "pattern": "^x", "format": "date"},
        "b": {"type": "array", "items": {"type": "object", "properties": {
            "c": {"type": "number", "exclusiveMinimum": 0}}}, "minItems": 2}}},
])
def test_sent_forms_pass_the_services_rules_and_the_raw_form_does_not(user):
    assert request_rules.strict_schema_problem(schema.openai_strict(user)) is None
    assert request_rules.anthropic_schema_problem(schema.anthropic_form(user)) is None
    if user is LOOSE:
        assert request_rules.strict_schema_problem(user) is not None
        assert request_rules.anthropic_schema_problem(user) is not None


def test_optional_enum_becomes_a_nullable_union():
    sent = schema.openai_strict({"type": "object", "properties": {
        "s": {"type": "string", "enum": ["a", "b"]}}})
    assert sent["properties"]["s"] == {"anyOf": [{"type": "string", "enum": ["a", "b"]},
                                                 {"type": "null"}]}


@pytest.mark.parametrize("prop, words", [
    ({"type": "string", "uniqueItems": True}, "output property 'x' uses 'uniqueItems'"),
    ({"type": "object", "properties": {"y": {"type": "number", "multipleOf": 2}}},
     "output property 'x.y' uses 'multipleOf'"),
    ({"type": "string", "pattern": "(?=a)b"}, "not a regular expression"),
    ({"type": "string", "maxLength": -1}, "maxLength must be a whole number"),
])
def test_keywords_the_check_cannot_enforce_are_refused(prop, words):
    with pytest.raises(JobFileError) as e:
        schema.check_schema({"type": "object", "properties": {"x": prop}}, Location("j.sql", 3, 5))
    assert words in str(e.value) and e.value.location == Location("j.sql", 3, 5)


def test_refused_keyword_at_plan_sends_nothing(tmp_path, emulator):
    bad = {"type": "object", "properties": {"x": {"type": "string", "not": {"const": "a"}}}}
    job = Job(tmp_path, emulator, extra=f",\noutput_schema={json.dumps(bad)}")
    with pytest.raises(JobFileError) as e:
        api.plan(job.path, job.options())
    assert "output property 'x' uses 'not'" in str(e.value)
    line = open(job.path).read().splitlines()[e.value.location.line - 1]
    assert "output_schema=" in line and provider_calls(emulator) == []


@pytest.mark.parametrize("doc, reason", [
    ({"sentiment": "positive"}, None),
    ({"sentiment": "positive", "stars": None, "who": None}, None),    # optional: null is fine
    ({"confidence": 1.5}, "confidence = 1.5 is above the maximum 1"),
    ({"stars": -1}, "stars = -1 is below the minimum 0"),
    ({"note": "x" * 5001}, "note is longer than maxLength 5000"),
    ({"tags": ["a", "b", "c", "d"]}, "tags has more items than maxItems 3"),
    ({"tags": ["a", ""]}, "tags[] is shorter than minLength 1"),
    ({"who": {"name": 3}}, "who.name should be string"),
    ({"sentiment": "meh"}, "sentiment = meh is not one of"),
])
def test_collect_check_enforces_the_user_schema(doc, reason):
    sql = schema.violation_sql(LOOSE, "t")
    (got,) = duckdb.execute(f"SELECT {sql} FROM (SELECT ?::VARCHAR AS t)",
                            [json.dumps(doc)]).fetchone()
    assert (got is None) if reason is None else (reason in got), got
