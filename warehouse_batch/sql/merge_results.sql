-- Fold one batch's outcomes (temp table wb_outcomes) into the results cache.
-- Parameters: $batch_id, $provider_batch_id, $now.
-- A cached success is never overwritten; failures count attempts so retries stay bounded.
INSERT INTO warehouse_batch.results AS r
SELECT request_hash, custom_id,
       CASE WHEN outcome = 'succeeded' THEN 'succeeded' ELSE 'failed' END,
       CASE WHEN outcome = 'succeeded' THEN false ELSE retryable END,
       response_text, response_body, finish_reason, status_code, error_type, error_code,
       error_message, input_tokens, output_tokens, cached_tokens, cache_creation_tokens,
       1,
       CASE WHEN outcome = 'errored' AND retryable THEN 1 ELSE 0 END,
       $batch_id, $provider_batch_id, $now, embedding
FROM wb_outcomes
ON CONFLICT (request_hash) DO UPDATE SET
    custom_id = excluded.custom_id,
    status = excluded.status,
    retryable = excluded.retryable,
    response_text = excluded.response_text,
    response_body = excluded.response_body,
    finish_reason = excluded.finish_reason,
    status_code = excluded.status_code,
    error_type = excluded.error_type,
    error_code = excluded.error_code,
    error_message = excluded.error_message,
    input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    cached_tokens = excluded.cached_tokens,
    cache_creation_tokens = excluded.cache_creation_tokens,
    attempts = r.attempts + 1,
    failures = r.failures + excluded.failures,
    batch_id = excluded.batch_id,
    provider_batch_id = excluded.provider_batch_id,
    updated_at = excluded.updated_at,
    embedding = excluded.embedding
WHERE r.status <> 'succeeded';
