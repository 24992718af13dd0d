-- Batches that have not moved for longer than the threshold: a provider status in which a
-- batch should not stay long (`validating`, `finalizing`; `cancelling`), or a submit that a
-- crash left half done (intent, uploaded, creating: `run` or `submit` resumes it).
-- Parameters: $now, $stuck_minutes.
SELECT job_name AS job, batch_id, provider_batch_id,
       CASE WHEN state IN ('intent', 'uploaded', 'creating') THEN state ELSE provider_status END
           AS status,
       CASE WHEN state IN ('intent', 'uploaded', 'creating') THEN created_at
            ELSE coalesce(status_since, submitted_at, created_at) END AS since
FROM warehouse_batch.batches
WHERE (state = 'submitted' AND provider_status IN ('validating', 'finalizing', 'cancelling')
       AND coalesce(status_since, submitted_at, created_at)
           < $now - to_minutes(CAST($stuck_minutes AS BIGINT)))
   OR (state IN ('intent', 'uploaded', 'creating')
       AND created_at < $now - to_minutes(CAST($stuck_minutes AS BIGINT)))
ORDER BY since, batch_id
