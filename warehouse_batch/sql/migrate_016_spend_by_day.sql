-- warehouse-batch state, version 16: what was spent, by day, against the real-time price.
-- Every attempt now keeps the usage the provider billed for it (attempts.*_tokens), so the
-- tokens of an answer that was then rejected (a schema violation, a refusal, a cut-off) and
-- sent again are still counted: before, the results cache kept only the latest outcome's
-- usage. `prices.realtime` is the real-time price as a multiple of the batch price (2 at
-- OpenAI and Anthropic, whose batch APIs are 50% off; refreshed from prices.json).
-- The costs view is per job, provider, model and day (UTC, the day the batch was collected),
-- with the real-time cost of the same tokens and the savings. Attempts recorded before this
-- version take the usage of the answer they produced, where the cache still holds it.
ALTER TABLE warehouse_batch.prices ADD COLUMN IF NOT EXISTS realtime DOUBLE;

ALTER TABLE warehouse_batch.attempts ADD COLUMN IF NOT EXISTS input_tokens BIGINT;
ALTER TABLE warehouse_batch.attempts ADD COLUMN IF NOT EXISTS output_tokens BIGINT;
ALTER TABLE warehouse_batch.attempts ADD COLUMN IF NOT EXISTS cached_tokens BIGINT;
ALTER TABLE warehouse_batch.attempts ADD COLUMN IF NOT EXISTS cache_creation_tokens BIGINT;
ALTER TABLE warehouse_batch.attempts ADD COLUMN IF NOT EXISTS cache_write_1h_tokens BIGINT;

UPDATE warehouse_batch.attempts AS a
SET input_tokens = r.input_tokens, output_tokens = r.output_tokens,
    cached_tokens = r.cached_tokens, cache_creation_tokens = r.cache_creation_tokens,
    cache_write_1h_tokens =
        CASE WHEN coalesce(r.cache_creation_tokens, 0) = 0 THEN 0
             ELSE least(r.cache_creation_tokens, coalesce(TRY_CAST(json_extract_string(
                      r.response_body, '$.usage.cache_creation.ephemeral_1h_input_tokens')
                  AS BIGINT), r.cache_creation_tokens)) END
FROM warehouse_batch.results r
WHERE r.request_hash = a.request_hash AND r.batch_id = a.batch_id
  AND (r.input_tokens IS NOT NULL OR r.output_tokens IS NOT NULL);

CREATE OR REPLACE VIEW warehouse_batch.costs AS
WITH models AS (
    SELECT DISTINCT provider, model FROM warehouse_batch.requests
), matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM models m JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
), billed AS (
    SELECT a.*, rq.job_name, rq.provider, rq.model, CAST(a.collected_at AS DATE) AS day
    FROM warehouse_batch.attempts a
    JOIN warehouse_batch.requests rq USING (request_hash)
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
