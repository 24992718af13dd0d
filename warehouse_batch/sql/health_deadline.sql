-- A job's rows still pending (no successful answer, not failed for good) that were recorded
-- before its deadline fell due: `job_rows.run_id` names the run that last recorded the row,
-- and starts with that run's start time (rYYYYMMDDTHHMMSS, UTC). Rows recorded after the
-- deadline (tonight's new work) wait for the next one.
-- Parameters: $job, $due (naive UTC).
WITH rows AS (
    SELECT coalesce(try_strptime(substr(j.run_id, 2, 15), '%Y%m%dT%H%M%S'),
                    TIMESTAMP '1970-01-01') AS since
    FROM warehouse_batch.job_rows j
    LEFT JOIN warehouse_batch.results r USING (request_hash)
    WHERE j.job_name = $job AND NOT coalesce(j.answered, false)
      AND coalesce(r.status, '') <> 'succeeded'
      AND NOT (coalesce(r.status, '') = 'failed' AND NOT coalesce(r.retryable, true))
)
SELECT count(*), min(since) FROM rows WHERE since < $due
