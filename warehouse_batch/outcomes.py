"""Recording outcomes: one batch's per-request results (`wb_outcomes`) folded into `attempts`
(history) and `results` (the answer cache), with unusable answers (cut off, invalid, wrong
shape) turned into failures that say why. Collect and submit (a batch refused for good)
both record through here."""
from __future__ import annotations

import duckdb

from .identity import canonical_json, sql_literal
from .providers.base import LedgerBatch, Provider
from .schema import violation_sql
from .sqlutil import load_sql
from .state import SCHEMA, now_utc


MISSING_MESSAGE = "not processed: the custom_id was in neither the output nor the error file"


TRUNCATED_REASONS = ("length", "max_tokens", "max_output_tokens")   # OpenAI, Anthropic, Responses


def check_answers(con: duckdb.DuckDBPyConnection, provider: Provider) -> None:
    """Turn paid-for answers that are unusable into failures that say why (in wb_outcomes).

    A chat answer cut off by max_tokens (finish_reason `length` / stop_reason `max_tokens`)
    fails permanently, typed or not: the same request would be cut off again, so the error
    says to raise max_tokens. A plain-text job may keep such answers with
    `allow_truncated=true` (they succeed, `_finish_reason` shows the cut); a typed answer cut
    off is never valid JSON for its schema. Invalid JSON or a schema violation may come out
    right on a retry (retryable).

    Typed checks apply to requests that carry this job's output schema (the schema's
    canonical JSON is a substring of their canonical body); embeddings are checked for a
    vector of the right size.
    """
    spec = provider.spec
    truncated = f"o.finish_reason IN ({', '.join(sql_literal(r) for r in TRUNCATED_REASONS)})"
    cut = sql_literal(f"the answer was cut off by max_tokens "
                      f"({spec.generation.get('max_tokens', 'the default')}); a retry "
                      "cannot help: raise max_tokens"
                      + ("" if spec.output_schema is not None else
                         " (or set allow_truncated=true to keep cut-off answers)"))
    if spec.output_schema is not None:
        marker = canonical_json(provider.sent_schema())   # the form the bodies carry
        problem = (f"CASE WHEN {truncated} THEN {cut} "
                   f"ELSE {violation_sql(spec.output_schema, 'o.response_text')} END")
        applies = f"contains(r.body, {sql_literal(marker)})"
    elif spec.endpoint == "embeddings":
        n = provider.embedding_dimensions()
        truncated = "false"
        problem = (f"CASE WHEN o.embedding IS NULL THEN 'the answer has no embedding' "
                   f"WHEN len(o.embedding) <> {n} THEN 'the embedding has ' || "
                   f"len(o.embedding) || ' dimensions, expected {n}' END")
        applies = "true"
    elif not spec.allow_truncated:
        problem = f"CASE WHEN {truncated} THEN {cut} END"
        applies = "true"
    else:
        return
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_outcomes AS
        SELECT * EXCLUDE (problem, is_truncated) REPLACE (
            CASE WHEN problem IS NULL THEN outcome ELSE 'errored' END AS outcome,
            CASE WHEN problem IS NULL THEN retryable ELSE NOT is_truncated END AS retryable,
            CASE WHEN problem IS NULL THEN error_type
                 WHEN is_truncated THEN 'truncated' ELSE 'invalid_answer' END AS error_type,
            coalesce(problem, error_message) AS error_message)
        FROM (SELECT o.*, coalesce({truncated}, false) AS is_truncated,
                     CASE WHEN o.outcome = 'succeeded' AND {applies} THEN {problem} END
                         AS problem
              FROM wb_outcomes o LEFT JOIN {SCHEMA}.requests r USING (request_hash))""")


def fail_all(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, message: str,
              outcome: str = "errored") -> None:
    """A batch that failed as a whole: every request gets the batch's reason, as a retryable
    error (counted against max_attempts) or, for capacity failures, as not processed."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE wb_norm AS
        SELECT custom_id, '{outcome}' AS outcome, true AS retryable,
               CAST(NULL AS INTEGER) AS status_code, 'batch_failed' AS error_type,
               CAST(NULL AS VARCHAR) AS error_code, ? AS error_message,
               CAST(NULL AS VARCHAR) AS response_text, CAST(NULL AS VARCHAR) AS response_body,
               CAST(NULL AS VARCHAR) AS finish_reason, CAST(NULL AS BIGINT) AS input_tokens,
               CAST(NULL AS BIGINT) AS output_tokens, CAST(NULL AS BIGINT) AS cached_tokens,
               CAST(NULL AS BIGINT) AS cache_creation_tokens,
               CAST(NULL AS FLOAT[]) AS embedding
        FROM {SCHEMA}.batch_requests WHERE batch_id = ?""", [message, batch.batch_id])


def record_batch_failure(con: duckdb.DuckDBPyConnection, batch: LedgerBatch,
                         message: str) -> None:
    """Record a batch-level failure for every request in it (no provider batch exists)."""
    fail_all(con, batch, message)
    con.execute(load_sql("batch_outcomes.sql"),
                {"batch_id": batch.batch_id, "missing_message": MISSING_MESSAGE})
    merge_outcomes(con, batch.batch_id, None)


def merge_outcomes(con: duckdb.DuckDBPyConnection, batch_id: str,
                   provider_batch_id: str | None) -> None:
    """wb_outcomes -> attempts (history) and results (the cache)."""
    now = now_utc()
    con.execute(load_sql("record_attempts.sql"), {"batch_id": batch_id, "now": now})
    con.execute(load_sql("merge_results.sql"),
                {"batch_id": batch_id, "provider_batch_id": provider_batch_id, "now": now})
