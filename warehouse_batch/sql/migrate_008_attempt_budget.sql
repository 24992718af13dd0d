-- warehouse-batch state, version 8: attempts are a per-command budget (attempts.py).
-- results.run_id: the run whose send produced the request's latest outcome (the run that
-- created its batch); results.run_failures: the retryable failures of that run's sends.
-- A retryable failure is final only for the run that spent max_attempts on it; the next
-- command sends it again.
ALTER TABLE warehouse_batch.results ADD COLUMN run_id VARCHAR;
ALTER TABLE warehouse_batch.results ADD COLUMN run_failures INTEGER DEFAULT 0;
UPDATE warehouse_batch.results SET run_id = b.run_id
FROM warehouse_batch.batches b WHERE b.batch_id = results.batch_id;
UPDATE warehouse_batch.results SET run_failures = f.n
FROM (SELECT a.request_hash, b.run_id, count(*) AS n
      FROM warehouse_batch.attempts a JOIN warehouse_batch.batches b USING (batch_id)
      WHERE a.outcome = 'errored' AND a.retryable
      GROUP BY ALL) f
WHERE f.request_hash = results.request_hash AND f.run_id = results.run_id;
