-- Per job, the share of sends that came back as errors (outcome `errored`: a provider error,
-- a refusal, an answer the job's checks rejected) over its most recently collected batches.
-- Parameters: $recent_batches.
WITH recent AS (
    SELECT job_name, batch_id,
           row_number() OVER (PARTITION BY job_name ORDER BY collected_at DESC, batch_id)
               AS n
    FROM warehouse_batch.batches
    WHERE state = 'collected' AND collected_at IS NOT NULL
)
SELECT r.job_name AS job, count(DISTINCT r.batch_id) AS batches, count(*) AS sends,
       count(*) FILTER (WHERE a.outcome = 'errored') AS errored
FROM recent r
JOIN warehouse_batch.attempts a USING (batch_id)
WHERE r.n <= $recent_batches
GROUP BY ALL
ORDER BY job
