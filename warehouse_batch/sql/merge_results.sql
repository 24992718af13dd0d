-- Fold one batch's outcomes (temp table wb_outcomes, one row per request) into the results
-- cache. Parameters: $batch_id, $provider_batch_id, $now. The source is result_rows.sql.
-- A cached success is never overwritten; failures count attempts so retries stay bounded.
-- run_id / run_failures: the run that created the batch, and the retryable failures of that
-- run's sends (the per-command attempt budget, attempts.py).
MERGE INTO warehouse_batch.results AS r
USING ({result_rows}) AS o
ON r.request_hash = o.request_hash
WHEN MATCHED AND r.status <> 'succeeded' THEN UPDATE SET
    status = o.status,
    retryable = o.retryable,
    response_text = o.response_text,
    response_body = o.response_body,
    finish_reason = o.finish_reason,
    status_code = o.status_code,
    error_type = o.error_type,
    error_code = o.error_code,
    error_message = o.error_message,
    input_tokens = o.input_tokens,
    output_tokens = o.output_tokens,
    cached_tokens = o.cached_tokens,
    cache_creation_tokens = o.cache_creation_tokens,
    attempts = r.attempts + 1,
    failures = r.failures + o.failures,
    run_failures = CASE WHEN r.run_id IS NOT DISTINCT FROM o.run_id
                        THEN coalesce(r.run_failures, 0) + o.run_failures
                        ELSE o.run_failures END,
    run_id = o.run_id,
    batch_id = o.batch_id,
    provider_batch_id = o.provider_batch_id,
    updated_at = o.updated_at,
    embedding = o.embedding
WHEN NOT MATCHED THEN INSERT BY NAME;
