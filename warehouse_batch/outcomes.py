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


def answer_check_sql(provider: Provider, outcomes: str) -> str:
    """SQL over `outcomes` (rows shaped like wb_outcomes) turning paid-for answers that are
    unusable into failures that say why; `outcomes` itself when nothing is checked.

    A chat answer cut off by max_tokens (finish_reason `length` / stop_reason `max_tokens`)
    fails permanently, typed or not: the same request would be cut off again, so the error
    says to raise max_tokens. A plain-text job may keep such answers with
    `allow_truncated=true` (they succeed, `_finish_reason` shows the cut); a typed answer cut
    off is never valid JSON for its schema. Invalid JSON or a schema violation may come out
    right on a retry (retryable).

    Typed checks apply to requests that carry this job's output schema (the schema's
    canonical JSON is a substring of their canonical body); embeddings are checked for a
    vector of the right size. Only typed checks read the request bodies.
    """
    spec = provider.spec
    truncated = f"o.finish_reason IN ({', '.join(sql_literal(r) for r in TRUNCATED_REASONS)})"
    cut = sql_literal(f"the answer was cut off by max_tokens "
                      f"({spec.generation.get('max_tokens', 'the default')}); a retry "
                      "cannot help: raise max_tokens"
                      + ("" if spec.output_schema is not None else
                         " (or set allow_truncated=true to keep cut-off answers)"))
    join = ""
    if spec.output_schema is not None:
        marker = canonical_json(provider.sent_schema())   # the form the bodies carry
        problem = (f"CASE WHEN {truncated} THEN {cut} "
                   f"ELSE {violation_sql(spec.output_schema, 'o.response_text')} END")
        applies = f"contains(r.body, {sql_literal(marker)})"
        join = f"LEFT JOIN {SCHEMA}.requests r USING (request_hash)"
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
        return outcomes
    return f"""SELECT * EXCLUDE (problem, is_truncated) REPLACE (
            CASE WHEN problem IS NULL THEN outcome ELSE 'errored' END AS outcome,
            CASE WHEN problem IS NULL THEN retryable ELSE NOT is_truncated END AS retryable,
            CASE WHEN problem IS NULL THEN error_type
                 WHEN is_truncated THEN 'truncated' ELSE 'invalid_answer' END AS error_type,
            coalesce(problem, error_message) AS error_message)
        FROM (SELECT o.*, coalesce({truncated}, false) AS is_truncated,
                     CASE WHEN o.outcome = 'succeeded' AND {applies} THEN {problem} END
                         AS problem
              FROM ({outcomes}) o {join})"""


def fail_all(con: duckdb.DuckDBPyConnection, batch: LedgerBatch, message: str,
              outcome: str = "errored") -> None:
    """A batch that failed as a whole: every request gets the batch's reason, as a retryable
    error (counted against max_attempts) or, for capacity failures, as not processed.
    (Temp view `wb_norm`, the shape of the providers' results SQL.)"""
    con.execute(f"""CREATE OR REPLACE TEMP VIEW wb_norm AS
        SELECT custom_id, {sql_literal(outcome)} AS outcome, true AS retryable,
               CAST(NULL AS INTEGER) AS status_code, 'batch_failed' AS error_type,
               CAST(NULL AS VARCHAR) AS error_code, {sql_literal(message)} AS error_message,
               CAST(NULL AS VARCHAR) AS response_text, CAST(NULL AS VARCHAR) AS response_body,
               CAST(NULL AS VARCHAR) AS finish_reason, CAST(NULL AS BIGINT) AS input_tokens,
               CAST(NULL AS BIGINT) AS output_tokens, CAST(NULL AS BIGINT) AS cached_tokens,
               CAST(NULL AS BIGINT) AS cache_creation_tokens,
               CAST(NULL AS FLOAT[]) AS embedding
        FROM {SCHEMA}.batch_requests WHERE batch_id = {sql_literal(batch.batch_id)}""")


def build_outcomes(con: duckdb.DuckDBPyConnection, batch_id: str,
                   provider: Provider | None = None) -> dict[str, int]:
    """Temp table `wb_outcomes`: every request of the batch with its outcome, from the
    normalised lines in `wb_norm` (answers judged by `answer_check_sql` when a provider is
    given). One pass over the result lines, materialised once. Returns counts by outcome."""
    select = load_sql("batch_outcomes.sql")
    if provider is not None:
        select = answer_check_sql(provider, select)
    # sides as written (see batch_outcomes.sql), unless the answer check joins the stored
    # requests (typed answers): that join must keep DuckDB's choice
    keep_sides = provider is None or provider.spec.output_schema is None
    if keep_sides:
        con.execute("SET disabled_optimizers = 'build_side_probe_side'")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE wb_outcomes AS {select}",
                    {"batch_id": batch_id, "missing_message": MISSING_MESSAGE})
    finally:
        if keep_sides:
            try:
                con.execute("RESET disabled_optimizers")
            except duckdb.Error:   # an aborted transaction: the caller is failing anyway
                pass
    rows, requests = con.execute("SELECT count(*), count(DISTINCT request_hash) "
                                 "FROM wb_outcomes").fetchone()
    if rows > requests:   # a custom_id repeated in the files: keep one line per request
        con.execute("""CREATE OR REPLACE TEMP TABLE wb_outcomes AS
            SELECT DISTINCT ON (request_hash) * FROM wb_outcomes
            ORDER BY request_hash, _line_succeeded DESC""")
    con.execute("ALTER TABLE wb_outcomes DROP COLUMN _line_succeeded")
    return dict(con.execute("SELECT outcome, count(*) FROM wb_outcomes GROUP BY 1").fetchall())


def record_batch_failure(con: duckdb.DuckDBPyConnection, batch: LedgerBatch,
                         message: str) -> None:
    """Record a batch-level failure for every request in it (no provider batch exists)."""
    fail_all(con, batch, message)
    build_outcomes(con, batch.batch_id)
    merge_outcomes(con, batch.batch_id, None)


def merge_outcomes(con: duckdb.DuckDBPyConnection, batch_id: str,
                   provider_batch_id: str | None, maybe_cached: str | None = None) -> None:
    """wb_outcomes -> attempts (history) and results (the cache).

    Most requests of a batch have no cached result yet (only a retry has one): those are
    appended with a plain INSERT, and only a batch that holds a cached request pays for the
    MERGE. Finding them reads just the cache's request_hash column, or, in a collect pass,
    `maybe_cached`: a temp table of the hashes that may be cached (`maybe_cached.sql`)."""
    now = now_utc()
    params = {"batch_id": batch_id, "provider_batch_id": provider_batch_id, "now": now}
    con.execute(load_sql("record_attempts.sql"), {"batch_id": batch_id, "now": now})
    among = maybe_cached or f"{SCHEMA}.results"
    cached = con.execute(f"""SELECT EXISTS (SELECT 1 FROM {among}
        WHERE request_hash IN (SELECT request_hash FROM wb_outcomes))""").fetchone()[0]
    rows = load_sql("result_rows.sql")
    con.execute(load_sql("merge_results.sql").replace("{result_rows}", rows) if cached else
                f"INSERT INTO {SCHEMA}.results BY NAME {rows}", params)
