-- warehouse-batch state, version 4: prices (refreshed from the package on every connect)
-- and a costs view. A price applies to every model name it is a prefix of (the longest wins),
-- so dated snapshots like gpt-4.1-mini-2025-04-14 are priced too.
CREATE TABLE IF NOT EXISTS warehouse_batch.prices (
    provider    VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,   -- a model name or prefix
    input       DOUBLE NOT NULL,    -- USD per million input tokens, batch rate
    output      DOUBLE NOT NULL,    -- USD per million output tokens, batch rate
    cache_read  DOUBLE,             -- multiplier on `input` for cache reads (Anthropic)
    cache_write DOUBLE              -- multiplier on `input` for cache writes (1-hour TTL)
);

CREATE OR REPLACE VIEW warehouse_batch.costs AS
WITH models AS (
    SELECT DISTINCT provider, model FROM warehouse_batch.requests
), matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM models m JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
)
SELECT rq.job_name, rq.provider, rq.model,
       count(*) FILTER (WHERE r.input_tokens IS NOT NULL) AS answers_billed,
       sum(r.input_tokens)  AS input_tokens,
       sum(r.output_tokens) AS output_tokens,
       sum(r.cached_tokens) AS cached_tokens,
       sum(r.cache_creation_tokens) AS cache_creation_tokens,
       round(sum(
           (coalesce(r.input_tokens, 0) - coalesce(r.cached_tokens, 0)
              - coalesce(r.cache_creation_tokens, 0)) * m.price.input
           + coalesce(r.cached_tokens, 0) * m.price.input * coalesce(m.price.cache_read, 1)
           + coalesce(r.cache_creation_tokens, 0) * m.price.input
               * coalesce(m.price.cache_write, 1)
           + coalesce(r.output_tokens, 0) * m.price.output) / 1e6, 6) AS cost_usd
FROM warehouse_batch.results r
JOIN warehouse_batch.requests rq USING (request_hash)
LEFT JOIN matched m ON m.provider = rq.provider AND m.model = rq.model
GROUP BY ALL;
