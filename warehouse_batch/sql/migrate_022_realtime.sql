-- warehouse-batch state, version 22: the real-time path (`realtime_below`, `try`).
-- A send through a provider's synchronous API is recorded as a ledger batch of mode
-- 'realtime' (intent before any send, like every batch), and each answer is kept, as it
-- arrives, as the line a batch result file would hold (`realtime_lines`), so a crash mid-way
-- never pays twice for what was answered; once every request has its line, the lines are
-- ingested like a downloaded result file (collect's set-based path) and deleted.
-- The costs view (version 18's, redefined here with the same columns, plus
-- `realtime_billed`) prices a real-time send at the real-time price: its `cost_usd` is the
-- batch cost of its tokens times `prices.realtime`, and it saves nothing.
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS mode VARCHAR DEFAULT 'batch';

CREATE TABLE IF NOT EXISTS warehouse_batch.realtime_lines (
    batch_id    VARCHAR NOT NULL,
    custom_id   VARCHAR NOT NULL,
    line        VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL
);

CREATE OR REPLACE VIEW warehouse_batch.costs AS
WITH models AS (
    SELECT DISTINCT provider, model FROM warehouse_batch.batches
), matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM models m JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
), billed AS (
    SELECT a.*, b.job_name, b.provider, b.model, CAST(a.collected_at AS DATE) AS day,
           coalesce(b.mode, 'batch') = 'realtime' AS is_realtime
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
            + coalesce(b.output_tokens, 0) * m.price.output) / 1e6 AS batch_cost
    FROM billed b
    LEFT JOIN matched m ON m.provider = b.provider AND m.model = b.model
), paid AS (
    SELECT *, CASE WHEN is_realtime THEN batch_cost * realtime ELSE batch_cost END AS cost
    FROM priced
)
SELECT job_name, provider, model, day,
       count(*) AS answers_billed,
       count(*) FILTER (WHERE outcome <> 'succeeded') AS rejected_billed,
       sum(input_tokens)  AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens,
       sum(cache_creation_tokens) AS cache_creation_tokens,
       round(sum(cost), 6) AS cost_usd,
       round(sum(batch_cost * realtime), 6) AS realtime_cost_usd,
       round(sum(batch_cost * realtime) - sum(cost), 6) AS savings_usd,
       round(coalesce(sum(cost) FILTER (WHERE outcome <> 'succeeded'), 0), 6)
           AS rejected_cost_usd,
       sum(cache_write_1h_tokens) FILTER (WHERE cache_creation_tokens IS NOT NULL)
           AS cache_write_1h_tokens,
       count(*) FILTER (WHERE is_realtime) AS realtime_billed
FROM paid
GROUP BY ALL;

-- Budgets (migration 019) settle a batch to `batch_costs`: a real-time send is billed at the
-- real-time price, as in the costs view above.
CREATE OR REPLACE VIEW warehouse_batch.batch_costs AS
WITH matched AS (
    SELECT m.provider, m.model, arg_max(p, length(p.model)) AS price
    FROM (SELECT DISTINCT provider, model FROM warehouse_batch.batches) m
    JOIN warehouse_batch.prices p
      ON p.provider = m.provider AND starts_with(m.model, p.model)
    GROUP BY ALL
)
SELECT b.batch_id, b.job_name, b.provider, b.model,
       CASE WHEN any_value(m.price) IS NULL THEN NULL ELSE round(coalesce(sum(
           ((coalesce(a.input_tokens, 0) - coalesce(a.cached_tokens, 0)
               - coalesce(a.cache_creation_tokens, 0)) * m.price.input
            + coalesce(a.cached_tokens, 0) * m.price.input * coalesce(m.price.cache_read, 1)
            + (coalesce(a.cache_creation_tokens, 0) - coalesce(a.cache_write_1h_tokens, 0))
                * m.price.input * coalesce(m.price.cache_write, 1)
            + coalesce(a.cache_write_1h_tokens, 0) * m.price.input
                * coalesce(m.price.cache_write_1h, m.price.cache_write, 1)
            + coalesce(a.output_tokens, 0) * m.price.output) / 1e6), 0)
           * CASE WHEN coalesce(any_value(b.mode), 'batch') = 'realtime'
                  THEN coalesce(any_value(m.price.realtime), 1) ELSE 1 END, 9) END AS cost_usd
FROM warehouse_batch.batches b
LEFT JOIN warehouse_batch.attempts a ON a.batch_id = b.batch_id
LEFT JOIN matched m ON m.provider = b.provider AND m.model = b.model
GROUP BY b.batch_id, b.job_name, b.provider, b.model;
