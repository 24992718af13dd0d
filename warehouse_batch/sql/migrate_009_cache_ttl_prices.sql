-- warehouse-batch state, version 9: Anthropic cache writes priced by TTL.
-- Anthropic bills a cache write at 1.25x the input price with the 5-minute TTL and 2x with
-- the 1-hour TTL; usage.cache_creation splits the written tokens by TTL
-- (ephemeral_5m_input_tokens, ephemeral_1h_input_tokens). `prices.cache_write` is now the
-- 5-minute multiplier and `cache_write_1h` the 1-hour one (refreshed from prices.json on
-- every connect). The split is read from the kept response body; a body without it
-- (an older usage shape, or no body) counts every write at the 1-hour rate, the TTL
-- warehouse-batch itself sends.
ALTER TABLE warehouse_batch.prices ADD COLUMN IF NOT EXISTS cache_write_1h DOUBLE;

CREATE OR REPLACE VIEW warehouse_batch.costs AS
WITH models AS (
    SELECT DISTINCT provider, model FROM warehouse_batch.requests
), matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM models m JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
), billed AS (
    SELECT r.*, rq.job_name, rq.provider, rq.model,
           CASE WHEN coalesce(r.cache_creation_tokens, 0) = 0 THEN 0
                ELSE least(r.cache_creation_tokens, coalesce(TRY_CAST(json_extract_string(
                         r.response_body, '$.usage.cache_creation.ephemeral_1h_input_tokens')
                     AS BIGINT), r.cache_creation_tokens))
           END AS cache_write_1h_tokens
    FROM warehouse_batch.results r
    JOIN warehouse_batch.requests rq USING (request_hash)
)
SELECT b.job_name, b.provider, b.model,
       count(*) FILTER (WHERE b.input_tokens IS NOT NULL) AS answers_billed,
       sum(b.input_tokens)  AS input_tokens,
       sum(b.output_tokens) AS output_tokens,
       sum(b.cached_tokens) AS cached_tokens,
       sum(b.cache_creation_tokens) AS cache_creation_tokens,
       round(sum(
           (coalesce(b.input_tokens, 0) - coalesce(b.cached_tokens, 0)
              - coalesce(b.cache_creation_tokens, 0)) * m.price.input
           + coalesce(b.cached_tokens, 0) * m.price.input * coalesce(m.price.cache_read, 1)
           + (coalesce(b.cache_creation_tokens, 0) - b.cache_write_1h_tokens) * m.price.input
               * coalesce(m.price.cache_write, 1)
           + b.cache_write_1h_tokens * m.price.input
               * coalesce(m.price.cache_write_1h, m.price.cache_write, 1)
           + coalesce(b.output_tokens, 0) * m.price.output) / 1e6, 6) AS cost_usd,
       sum(b.cache_write_1h_tokens) FILTER (WHERE b.cache_creation_tokens IS NOT NULL)
           AS cache_write_1h_tokens
FROM billed b
LEFT JOIN matched m ON m.provider = b.provider AND m.model = b.model
GROUP BY ALL;
