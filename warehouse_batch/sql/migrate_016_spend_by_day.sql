-- warehouse-batch state, version 16: what was spent, by day, against the real-time price.
-- Every attempt now keeps the usage the provider billed for it (attempts.*_tokens), so the
-- tokens of an answer that was then rejected (a schema violation, a refusal, a cut-off) and
-- sent again are still counted: before, the results cache kept only the latest outcome's
-- usage. `prices.realtime` is the real-time price as a multiple of the batch price (2 at
-- OpenAI and Anthropic, whose batch APIs are 50% off; refreshed from prices.json).
-- The costs view that prices them per job, provider, model and day (UTC, the day the batch
-- was collected), with the real-time cost of the same tokens and the savings, is version 18's.
-- Attempts recorded before this version take the usage of the answer they produced, where the
-- cache still holds it.
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
