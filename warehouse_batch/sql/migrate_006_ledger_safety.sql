-- warehouse-batch state, version 6: a ledger that cannot strand a job.
-- batches.state gains `lost`: the provider answered 404 for the batch (twice); its requests
-- are sendable again and nothing was recorded from it.
-- batches.proven: false while the batch is an adopted candidate we could not prove ours
-- (an Anthropic batch matched by shape while still running); NULL or true otherwise.
-- An unproven batch is never cancelled by us; when it ends its custom_ids decide.
ALTER TABLE warehouse_batch.batches ADD COLUMN proven BOOLEAN;

-- Provider batches a lookup adopted and then proved not ours (their custom_ids differ):
-- never adopted again, and nothing is ever recorded from them.
CREATE TABLE IF NOT EXISTS warehouse_batch.foreign_batches (
    provider          VARCHAR NOT NULL,
    provider_batch_id VARCHAR NOT NULL,
    batch_id          VARCHAR NOT NULL,     -- our batch that had adopted it
    reason            VARCHAR NOT NULL,
    released_at       TIMESTAMP NOT NULL
);
