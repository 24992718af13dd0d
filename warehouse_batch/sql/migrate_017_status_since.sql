-- warehouse-batch state, version 17: when a batch's provider status last changed.
-- `warehouse-batch check` names a batch that has stayed in `validating` or `finalizing` longer
-- than a threshold; the ledger recorded only the latest status, not since when. Set by every
-- recorded poll whose status differs from the one before (ledger.update_batch). Batches
-- recorded before this version count from their submission.
ALTER TABLE warehouse_batch.batches ADD COLUMN IF NOT EXISTS status_since TIMESTAMP;
UPDATE warehouse_batch.batches SET status_since = coalesce(submitted_at, created_at)
WHERE status_since IS NULL;
