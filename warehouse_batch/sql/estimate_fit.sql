-- The sums a token estimate is learned from (estimate.py): per billed request of the job's
-- newest collected batches for this provider and model (up to $sample requests), the
-- characters of its message text (batch_requests.text_chars, migration 020) and the input
-- and output tokens the provider billed for it (attempts, migration 016).
-- Parameters: $job, $provider, $model, $sample.
WITH recent AS (
    SELECT batch_id FROM warehouse_batch.batches
    WHERE job_name = $job AND provider = $provider AND model = $model AND state = 'collected'
    QUALIFY coalesce(sum(request_count) OVER (ORDER BY collected_at DESC, batch_id DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < $sample
), sent AS (
    SELECT batch_id, request_hash, text_chars FROM warehouse_batch.batch_requests
    WHERE batch_id IN (SELECT batch_id FROM recent) AND text_chars IS NOT NULL
), pairs AS (
    SELECT CAST(s.text_chars AS DOUBLE) AS x, CAST(a.input_tokens AS DOUBLE) AS y,
           a.output_tokens AS o
    FROM warehouse_batch.attempts a JOIN sent s USING (batch_id, request_hash)
    WHERE a.batch_id IN (SELECT batch_id FROM recent) AND a.input_tokens IS NOT NULL
)
SELECT count(*), sum(x), sum(y), regr_slope(y, x), regr_intercept(y, x), var_pop(x),
       avg(o), count(o)
FROM pairs;
