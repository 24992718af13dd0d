-- Classify every selected row by what its current request needs.
-- Parameters: $job_name, $max_attempts. Input: temp table wb_current. Session variables
-- (attempts.set_command): wb_run_id (this command's run; NULL: a new command) and
-- wb_retry_failed. Attempts are a per-command budget: see warehouse_batch/attempts.py.
--   done       a successful answer for this exact request is cached
--   in_flight  the request is in a batch not yet collected, or recorded in batch_requests
--              under a batch whose ledger row is missing (held until submit looks it up:
--              a damaged ledger must not cause a second paid batch)
--   failed     a permanent failure (unless retry_failed, for one recorded by an earlier
--              command), or retryable failures have used this command's max_attempts
--   retry      failed before, and may be sent again by this command
--   new        the row's key was never submitted by this job
--   changed    the row's key was submitted with a different request (input/prompt/model/params)
--   unsent     the row was seen with this request before, but it was never answered
CREATE OR REPLACE TEMP TABLE wb_plan AS
WITH in_flight AS (
    SELECT DISTINCT br.request_hash
    FROM warehouse_batch.batch_requests br
    LEFT JOIN warehouse_batch.batches b USING (batch_id)
    WHERE b.batch_id IS NULL OR b.state NOT IN ('collected', 'abandoned', 'lost')
), previous AS (
    SELECT row_key_hash, any_value(request_hash) AS request_hash
    FROM warehouse_batch.job_rows WHERE job_name = $job_name GROUP BY row_key_hash
)
SELECT
    c._rid, c.row_key_hash, c.request_hash, c.custom_id,
    CASE
        WHEN r.status = 'succeeded' THEN 'done'
        WHEN f.request_hash IS NOT NULL THEN 'in_flight'
        WHEN r.status = 'failed' AND NOT r.retryable
             AND NOT (coalesce(getvariable('wb_retry_failed'), false)
                      AND r.run_id IS DISTINCT FROM getvariable('wb_run_id')) THEN 'failed'
        WHEN r.status = 'failed' AND r.retryable AND r.run_id = getvariable('wb_run_id')
             AND r.run_failures >= $max_attempts THEN 'failed'
        WHEN r.status = 'failed' THEN 'retry'
        WHEN p.row_key_hash IS NULL THEN 'new'
        WHEN p.request_hash <> c.request_hash THEN 'changed'
        ELSE 'unsent'
    END AS category
FROM wb_current c
LEFT JOIN warehouse_batch.results r USING (request_hash)
LEFT JOIN in_flight f USING (request_hash)
LEFT JOIN previous p USING (row_key_hash);
