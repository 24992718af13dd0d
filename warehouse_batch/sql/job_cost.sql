-- What job $job has cost so far, from its ledger rows alone (reports.job_cost): a collected
-- batch is settled, in the transaction recording its answers, to what its attempts were
-- billed (`billed_usd`, budget_settle.sql), so the job's cost is the sum over its batches
-- and a poll does not read every attempt the job ever had (the costs view does: 0.08 CPU s
-- at a million answers, growing with the history).
-- `unpriced`: settled batches of a model without a price; `unsettled`: collected batches not
-- settled. Either sends the caller to the costs view, which judges them exactly.
SELECT sum(billed_usd) FILTER (WHERE settled_at IS NOT NULL) AS billed,
       count(*) FILTER (WHERE settled_at IS NOT NULL AND billed_usd IS NULL) AS unpriced,
       count(*) FILTER (WHERE settled_at IS NULL AND state = 'collected') AS unsettled
FROM warehouse_batch.batches
WHERE job_name = $job
