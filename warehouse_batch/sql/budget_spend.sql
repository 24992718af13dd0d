-- What is spent under a cap (budget.py): per batch, its billed cost once settled, its
-- reservation while it may still run (intent … submitted, or collected and not yet settled),
-- nothing once abandoned or lost. Of one job over its life ($job), of one UTC day over every
-- job ($day), or both; $leave_out: batch ids not to count (the intents being checked).
SELECT coalesce(sum(billed_usd) FILTER (WHERE settled_at IS NOT NULL), 0) AS billed,
       coalesce(sum(reserved_usd) FILTER (WHERE settled_at IS NULL AND state IN
           ('intent', 'uploaded', 'creating', 'submitted', 'collected')), 0) AS reserved
FROM warehouse_batch.batches
WHERE ($job IS NULL OR job_name = $job)
  AND ($day IS NULL OR budget_day = $day)
  AND batch_id NOT IN (SELECT unnest($leave_out::VARCHAR[]))
