-- Per selected row: its request and the answer state shown in the output table.
-- Parameter: $max_attempts. Input: temp table wb_current.
CREATE OR REPLACE TEMP TABLE wb_answers AS
SELECT
    c._rid,
    c.request_hash,
    r.response_text,
    r.embedding,
    CASE
        WHEN r.status = 'succeeded' THEN 'succeeded'
        WHEN r.status = 'failed' AND NOT (r.retryable AND r.failures < $max_attempts) THEN 'failed'
        ELSE 'pending'
    END AS status,
    CASE WHEN r.status = 'failed' THEN r.error_message END AS error,
    r.finish_reason,
    r.input_tokens,
    r.output_tokens,
    r.attempts
FROM wb_current c
LEFT JOIN warehouse_batch.results r USING (request_hash);
