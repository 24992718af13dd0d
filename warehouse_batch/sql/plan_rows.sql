-- Classify every selected row by what its current request needs.
-- Parameters: $max_attempts. Input: temp table wb_current. Session variables
-- (attempts.set_command): wb_run_id (this command's run; NULL: a new command) and
-- wb_retry_failed. Attempts are a per-command budget: see warehouse_batch/attempts.py.
--   done       a successful answer for this exact request is cached
--   in_flight  the request is in a batch not yet collected, or recorded in batch_requests
--              under a batch whose ledger row is missing (held until submit looks it up:
--              a damaged ledger must not cause a second paid batch)
--   failed     a permanent failure (unless retry_failed, for one recorded by an earlier
--              command), or retryable failures have used this command's max_attempts
--   retry      failed before, and may be sent again by this command
--   new        the row's key is not in job_rows (never prepared by a submitting command)
--   changed    job_rows recorded another request for the row's key (input/prompt/model/params)
--   unsent     job_rows recorded this request for the key, but it was never answered
CREATE OR REPLACE TEMP TABLE wb_plan AS
WITH open_batches AS (
    -- batches not yet collected, and ids recorded in batch_requests with no ledger row
    SELECT batch_id FROM warehouse_batch.batches
    WHERE state NOT IN ('collected', 'abandoned', 'lost')
    UNION ALL
    SELECT batch_id FROM (SELECT DISTINCT batch_id FROM warehouse_batch.batch_requests)
    WHERE batch_id NOT IN (SELECT batch_id FROM warehouse_batch.batches)
), in_flight AS (
    SELECT DISTINCT request_hash FROM warehouse_batch.batch_requests
    WHERE batch_id IN (SELECT batch_id FROM open_batches)
)
SELECT _rid, request_hash, body_bytes, prompt_chars, 'done' AS category
FROM wb_current WHERE answered      -- unchanged since their answer came: no lookup needed
UNION ALL
SELECT
    c._rid, c.request_hash, c.body_bytes, c.prompt_chars,
    CASE
        WHEN r.status = 'succeeded' THEN 'done'
        WHEN f.request_hash IS NOT NULL THEN 'in_flight'
        WHEN r.status = 'failed' AND NOT r.retryable
             AND NOT (coalesce(getvariable('wb_retry_failed'), false)
                      AND r.run_id IS DISTINCT FROM getvariable('wb_run_id')) THEN 'failed'
        WHEN r.status = 'failed' AND r.retryable AND r.run_id = getvariable('wb_run_id')
             AND r.run_failures >= $max_attempts THEN 'failed'
        WHEN r.status = 'failed' THEN 'retry'
        WHEN c.prev_request_hash IS NULL THEN 'new'
        WHEN c.prev_request_hash <> c.request_hash THEN 'changed'
        ELSE 'unsent'
    END AS category
FROM (SELECT * FROM wb_current WHERE NOT answered) c
LEFT JOIN warehouse_batch.results r USING (request_hash)
LEFT JOIN in_flight f USING (request_hash);
