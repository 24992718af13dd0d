-- warehouse-batch state, version 7: enqueued-token budgets.
-- The enqueued-token limit of a provider and model (OpenAI, Azure, OpenAI-compatible): the
-- input tokens all unfinished batches of the organisation may hold. Learned from the
-- provider's `token_limit_exceeded` message ("Limit: 2,000,000 enqueued tokens"), shared by
-- every job in this file: chunks are cut under it and a batch is created only while the
-- estimated tokens of the batches in flight plus its own fit.
CREATE TABLE IF NOT EXISTS warehouse_batch.capacity (
    provider             VARCHAR NOT NULL,
    model                VARCHAR NOT NULL,
    enqueued_token_limit BIGINT NOT NULL,
    message              VARCHAR,            -- the provider's words it was learned from
    learned_at           TIMESTAMP NOT NULL,
    PRIMARY KEY (provider, model)
);
