-- Per request: the answer state shown in the output table.
-- Parameter: $max_attempts. Input: temp table wb_answer_keys(request_hash), distinct. Session
-- variables wb_run_id and wb_retry_failed, as in plan_rows.sql (the per-command attempt
-- budget, attempts.py).
-- failure: 'retryable' (the next command sends it again) or 'permanent' (stays failed until
-- the request changes or --retry-failed), for a request whose last outcome was a failure.
CREATE OR REPLACE TEMP TABLE wb_answers AS
SELECT
    k.request_hash,
    r.response_text,
    r.embedding,
    CASE
        WHEN r.status = 'succeeded' THEN 'succeeded'
        WHEN r.status = 'failed' AND NOT r.retryable
             AND NOT (coalesce(getvariable('wb_retry_failed'), false)
                      AND r.run_id IS DISTINCT FROM getvariable('wb_run_id')) THEN 'failed'
        WHEN r.status = 'failed' AND r.retryable AND r.run_id = getvariable('wb_run_id')
             AND r.run_failures >= $max_attempts THEN 'failed'
        ELSE 'pending'
    END AS status,
    CASE WHEN r.status = 'failed' THEN r.error_message END AS error,
    CASE WHEN r.status = 'failed' THEN
        CASE WHEN r.retryable THEN 'retryable' ELSE 'permanent' END END AS failure,
    r.finish_reason,
    r.input_tokens,
    r.output_tokens,
    r.attempts
FROM wb_answer_keys k
LEFT JOIN warehouse_batch.results r USING (request_hash);
