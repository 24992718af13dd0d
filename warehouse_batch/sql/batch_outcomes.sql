-- Every request of batch $batch_id with its outcome: from the provider's normalised lines
-- (temp table wb_norm) or, when a custom_id is in no file, 'missing' (never processed).
CREATE OR REPLACE TEMP TABLE wb_outcomes AS
WITH norm AS (
    -- a provider may repeat a custom_id; prefer a success, then any line
    SELECT DISTINCT ON (custom_id) *
    FROM wb_norm
    ORDER BY custom_id, (outcome = 'succeeded') DESC
)
SELECT br.request_hash, br.custom_id,
       coalesce(n.outcome, 'missing') AS outcome,
       coalesce(n.retryable, true) AS retryable,
       n.status_code, n.error_type, n.error_code,
       coalesce(n.error_message, CASE WHEN n.outcome IS NULL THEN $missing_message END)
           AS error_message,
       n.response_text, n.response_body, n.finish_reason, n.input_tokens, n.output_tokens,
       n.cached_tokens, n.cache_creation_tokens, n.embedding
FROM warehouse_batch.batch_requests br
LEFT JOIN norm n USING (custom_id)
WHERE br.batch_id = $batch_id;
