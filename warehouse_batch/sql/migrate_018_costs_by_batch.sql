-- warehouse-batch state, version 18: the costs view reads the batches, not the requests.
-- An attempt's job, provider and model are its batch's (a handful of ledger rows), not its
-- request's: the view no longer joins every stored request (a million at a million rows,
-- ~0.5 CPU s, paid by every command since each report carries the job's cost so far), and a
-- request two jobs share is charged to the job whose batch sent it. Same columns otherwise.
CREATE OR REPLACE VIEW warehouse_batch.costs AS
WITH models AS (
    SELECT DISTINCT provider, model FROM warehouse_batch.batches
), matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM models m JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
), billed AS (
    SELECT a.*, b.job_name, b.provider, b.model, CAST(a.collected_at AS DATE) AS day
    FROM warehouse_batch.attempts a
    JOIN warehouse_batch.batches b USING (batch_id)
    WHERE a.input_tokens IS NOT NULL OR a.output_tokens IS NOT NULL
), priced AS (
    SELECT b.*, m.price.realtime AS realtime,
           ((coalesce(b.input_tokens, 0) - coalesce(b.cached_tokens, 0)
               - coalesce(b.cache_creation_tokens, 0)) * m.price.input
            + coalesce(b.cached_tokens, 0) * m.price.input * coalesce(m.price.cache_read, 1)
            + (coalesce(b.cache_creation_tokens, 0) - coalesce(b.cache_write_1h_tokens, 0))
                * m.price.input * coalesce(m.price.cache_write, 1)
            + coalesce(b.cache_write_1h_tokens, 0) * m.price.input
                * coalesce(m.price.cache_write_1h, m.price.cache_write, 1)
            + coalesce(b.output_tokens, 0) * m.price.output) / 1e6 AS cost
    FROM billed b
    LEFT JOIN matched m ON m.provider = b.provider AND m.model = b.model
)
SELECT job_name, provider, model, day,
       count(*) AS answers_billed,
       count(*) FILTER (WHERE outcome <> 'succeeded') AS rejected_billed,
       sum(input_tokens)  AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens,
       sum(cache_creation_tokens) AS cache_creation_tokens,
       round(sum(cost), 6) AS cost_usd,
       round(sum(cost * realtime), 6) AS realtime_cost_usd,
       round(sum(cost * realtime) - sum(cost), 6) AS savings_usd,
       round(coalesce(sum(cost) FILTER (WHERE outcome <> 'succeeded'), 0), 6)
           AS rejected_cost_usd,
       sum(cache_write_1h_tokens) FILTER (WHERE cache_creation_tokens IS NOT NULL)
           AS cache_write_1h_tokens
FROM priced
GROUP BY ALL;
