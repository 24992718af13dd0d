-- warehouse-batch state, version 18: the costs view, by day, from every billed attempt.
-- Per job, provider, model and day (UTC, the day the batch was collected): the tokens billed
-- for every send (attempts.*_tokens, version 16), so answers rejected and sent again count,
-- priced at batch rates, with the real-time cost of the same tokens (prices.realtime) and the
-- savings. An attempt's job, provider and model are its batch's (a handful of ledger rows),
-- not its request's: joining every stored request cost every command ~0.5 CPU s at a million
-- rows (each report carries the job's cost so far), and a request two jobs share is charged
-- to the job whose batch sent it.
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
