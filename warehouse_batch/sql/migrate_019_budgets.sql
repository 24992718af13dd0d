-- warehouse-batch state, version 19: budgets (budget.py).
-- Before a batch is created its worst-case cost at batch prices (estimated input tokens +
-- max_tokens x requests) is reserved on its ledger row, in the transaction that records the
-- intent: `reserved_usd`, counted against the UTC day of the reservation (`budget_day`).
-- Collecting the batch settles it: `billed_usd` is what its attempts were billed (priced as
-- the costs view prices them), `settled_at` when. What a batch spends against a cap is its
-- billed cost once settled, its reservation while it may still run (intent, uploaded,
-- creating, submitted, or collected and not settled), nothing once abandoned or lost.
-- A batch counts against the day it was reserved on, also when it is collected later, so a
-- day's total never passes the cap it was checked against.
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS reserved_usd DOUBLE;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS budget_day DATE;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS billed_usd DOUBLE;
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS settled_at TIMESTAMP;

-- Per batch, what its attempts were billed at batch prices: the costs view's pricing
-- (migration 018), by batch. NULL for an unpriced model.
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
            + coalesce(a.output_tokens, 0) * m.price.output) / 1e6), 0), 9) END AS cost_usd
FROM warehouse_batch.batches b
LEFT JOIN warehouse_batch.attempts a ON a.batch_id = b.batch_id
LEFT JOIN matched m ON m.provider = b.provider AND m.model = b.model
GROUP BY b.batch_id, b.job_name, b.provider, b.model;

-- Batches collected before this version are settled to what they were billed, on the day
-- they were collected; batches still running were reserved nothing (they count once billed).
UPDATE warehouse_batch.batches AS b
SET billed_usd = c.cost_usd, settled_at = coalesce(b.collected_at, b.created_at),
    budget_day = CAST(coalesce(b.collected_at, b.created_at) AS DATE)
FROM warehouse_batch.batch_costs c
WHERE c.batch_id = b.batch_id AND b.state = 'collected';
UPDATE warehouse_batch.batches SET budget_day = CAST(created_at AS DATE)
WHERE budget_day IS NULL;

-- What each job's file said last about its budget and deadline (recorded by every submit),
-- for `check`, which reads the state only.
CREATE TABLE IF NOT EXISTS warehouse_batch.job_budgets (
    job_name   VARCHAR PRIMARY KEY,
    budget_usd DOUBLE,
    deadline   VARCHAR,
    updated_at TIMESTAMP NOT NULL
);

-- Rows a submit held back because a batch would have crossed a cap (one row per job, the
-- latest submit's; removed by a submit that holds nothing back): status and plan show it.
CREATE TABLE IF NOT EXISTS warehouse_batch.budget_holds (
    job_name       VARCHAR PRIMARY KEY,
    cap            VARCHAR NOT NULL,      -- 'job' (budget_usd) or 'daily'
    cap_usd        DOUBLE NOT NULL,
    spent_usd      DOUBLE NOT NULL,       -- billed + reserved under that cap when checked
    left_usd       DOUBLE NOT NULL,
    needed_usd     DOUBLE NOT NULL,       -- the worst case of the first batch held back
    day            DATE,                  -- the UTC day, for the daily cap
    batches_held   INTEGER NOT NULL,
    requests_held  BIGINT NOT NULL,
    message        VARCHAR NOT NULL,
    held_at        TIMESTAMP NOT NULL
);

-- Every transaction that reserves updates this one row, so two reserving at once conflict
-- (DuckDB: "Conflict on update") instead of both passing a cap on the same snapshot.
INSERT OR IGNORE INTO warehouse_batch.meta VALUES ('budget_serial', '0');
