-- The requests of a collect pass that may already have a row in the results cache when their
-- batch is recorded: those cached before the pass, and those in more than one of the pass's
-- batches (an earlier batch of the same pass may record them first). Parameter: $job_name.
-- One read of the cache's request_hash column per pass, instead of one per batch (which grew
-- with the cache: at 10M answers, 200 batches each read up to 10M hashes). A superset is
-- safe: a batch holding any of these is merged, never appended twice (outcomes.merge_outcomes).
CREATE OR REPLACE TEMP TABLE wb_maybe_cached AS
WITH pass AS (
    SELECT br.request_hash
    FROM warehouse_batch.batch_requests br
    JOIN warehouse_batch.batches b USING (batch_id)
    WHERE b.job_name = $job_name AND b.state = 'submitted'
)
SELECT request_hash FROM warehouse_batch.results
WHERE request_hash IN (SELECT request_hash FROM pass)
UNION
SELECT request_hash FROM pass GROUP BY request_hash HAVING count(*) > 1
