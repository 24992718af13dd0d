-- Per job and day (UTC, the day a batch's results were collected): what was enriched, sent,
-- billed and spent, from the attempts history and the costs view (migration 016).
-- Parameters: $since, $until (DATE, inclusive).
WITH sends AS (
    SELECT b.job_name, CAST(a.collected_at AS DATE) AS day,
           count(*) AS requests,
           count(DISTINCT a.request_hash) FILTER (WHERE a.outcome = 'succeeded') AS rows_enriched,
           count(*) FILTER (WHERE a.outcome <> 'succeeded') AS failed
    FROM warehouse_batch.attempts a
    JOIN warehouse_batch.batches b USING (batch_id)
    WHERE CAST(a.collected_at AS DATE) BETWEEN $since AND $until
    GROUP BY ALL
), spend AS (
    SELECT job_name, day, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,
           sum(realtime_cost_usd) AS realtime_cost_usd, sum(savings_usd) AS savings_usd
    FROM warehouse_batch.costs
    WHERE day BETWEEN $since AND $until
    GROUP BY ALL
), durations AS (
    SELECT job_name, CAST(ended_at AS DATE) AS day, count(*) AS batches,
           quantile_cont(epoch(ended_at - created_at), 0.5) AS p50_batch_seconds,
           quantile_cont(epoch(ended_at - created_at), 0.95) AS p95_batch_seconds
    FROM warehouse_batch.batches
    WHERE ended_at IS NOT NULL AND CAST(ended_at AS DATE) BETWEEN $since AND $until
    GROUP BY ALL
)
SELECT job_name AS job, day,
       coalesce(s.rows_enriched, 0) AS rows_enriched, coalesce(s.requests, 0) AS requests,
       coalesce(s.failed, 0) AS failed,
       coalesce(p.input_tokens, 0) AS input_tokens, coalesce(p.output_tokens, 0) AS output_tokens,
       p.cost_usd, p.realtime_cost_usd, p.savings_usd,
       coalesce(d.batches, 0) AS batches, d.p50_batch_seconds, d.p95_batch_seconds
FROM sends s
FULL JOIN spend p USING (job_name, day)
FULL JOIN durations d USING (job_name, day)
ORDER BY day, job
