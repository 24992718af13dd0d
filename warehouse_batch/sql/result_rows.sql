-- One batch's outcomes (temp table wb_outcomes) as rows of the results cache.
-- Parameters: $batch_id, $provider_batch_id, $now. Inserted as is when none of the batch's
-- requests is cached yet (the usual case), else the source of merge_results.sql.
-- results.custom_id is derived from request_hash (virtual), so it is not among them.
SELECT request_hash,
       CASE WHEN outcome = 'succeeded' THEN 'succeeded' ELSE 'failed' END AS status,
       CASE WHEN outcome = 'succeeded' THEN false ELSE retryable END AS retryable,
       response_text, response_body, finish_reason, status_code, error_type, error_code,
       error_message, input_tokens, output_tokens, cached_tokens, cache_creation_tokens,
       1 AS attempts,
       CASE WHEN outcome = 'errored' AND retryable THEN 1 ELSE 0 END AS failures,
       CASE WHEN outcome = 'errored' AND retryable THEN 1 ELSE 0 END AS run_failures,
       (SELECT run_id FROM warehouse_batch.batches WHERE batch_id = $batch_id) AS run_id,
       $batch_id AS batch_id, $provider_batch_id AS provider_batch_id,
       CAST($now AS TIMESTAMP) AS updated_at, embedding
FROM wb_outcomes
