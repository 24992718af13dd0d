-- Per job, day and kind: the sends that did not give an answer (attempts history).
-- The kind is the error type a provider or the answer check gave (schema, refusal,
-- content_filter, server_error, …), else the outcome (expired, cancelled, missing).
-- Parameters: $since, $until (DATE, inclusive).
SELECT b.job_name AS job, CAST(a.collected_at AS DATE) AS day,
       coalesce(a.error_type, a.outcome) AS kind, count(*) AS count
FROM warehouse_batch.attempts a
JOIN warehouse_batch.batches b USING (batch_id)
WHERE a.outcome <> 'succeeded' AND CAST(a.collected_at AS DATE) BETWEEN $since AND $until
GROUP BY ALL
ORDER BY day, job, count DESC, kind
