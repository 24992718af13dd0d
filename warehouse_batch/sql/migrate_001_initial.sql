-- warehouse-batch state, version 1. Plain tables, meant to be queried by people.
CREATE TABLE IF NOT EXISTS warehouse_batch.runs (
    run_id               VARCHAR PRIMARY KEY,
    job_name             VARCHAR NOT NULL,
    job_file             VARCHAR,
    command              VARCHAR NOT NULL,   -- plan | submit | collect | run | cancel | reconcile
    provider             VARCHAR,
    model                VARCHAR,
    started_at           TIMESTAMP NOT NULL,
    finished_at          TIMESTAMP,
    status               VARCHAR NOT NULL,   -- running | succeeded | pending | failed | error
    rows_selected        BIGINT,
    rows_done            BIGINT,
    rows_new             BIGINT,
    rows_changed         BIGINT,
    rows_retry           BIGINT,
    duplicates_collapsed BIGINT,
    requests_submitted   BIGINT,
    batches_submitted    INTEGER,
    results_collected    BIGINT,
    error                VARCHAR
);

-- One row per distinct request ever submitted; identity is the request_hash (see README).
CREATE TABLE IF NOT EXISTS warehouse_batch.requests (
    request_hash VARCHAR PRIMARY KEY,
    custom_id    VARCHAR NOT NULL,
    provider     VARCHAR NOT NULL,
    endpoint     VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    body         VARCHAR NOT NULL,   -- the exact JSON body sent to the provider
    job_name     VARCHAR NOT NULL,   -- the job that first needed it
    first_run_id VARCHAR,
    created_at   TIMESTAMP NOT NULL
);

-- The ledger: a row is written BEFORE each provider side effect, then updated after it.
CREATE TABLE IF NOT EXISTS warehouse_batch.batches (
    batch_id          VARCHAR PRIMARY KEY,  -- ours; also sent to the provider as a tag
    run_id            VARCHAR NOT NULL,
    job_name          VARCHAR NOT NULL,
    provider          VARCHAR NOT NULL,
    endpoint          VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    chunk             INTEGER NOT NULL,
    state             VARCHAR NOT NULL,     -- intent | uploaded | creating | submitted | collected | abandoned | lost (v6)
    request_count     BIGINT NOT NULL,
    bytes             BIGINT NOT NULL,
    est_tokens        BIGINT,
    input_file_id     VARCHAR,
    provider_batch_id VARCHAR,
    provider_status   VARCHAR,
    output_file_id    VARCHAR,
    error_file_id     VARCHAR,
    counts            VARCHAR,              -- the provider's request counts, as JSON
    create_attempts   INTEGER NOT NULL DEFAULT 0,
    created_at        TIMESTAMP NOT NULL,   -- when the intent was written
    submitted_at      TIMESTAMP,
    ended_at          TIMESTAMP,
    collected_at      TIMESTAMP,
    last_polled_at    TIMESTAMP,
    error             VARCHAR
);

CREATE TABLE IF NOT EXISTS warehouse_batch.batch_requests (
    batch_id     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,
    custom_id    VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, request_hash)
);

-- Every outcome of every send, including not-processed ones (expired, cancelled, missing).
CREATE TABLE IF NOT EXISTS warehouse_batch.attempts (
    batch_id      VARCHAR NOT NULL,
    request_hash  VARCHAR NOT NULL,
    custom_id     VARCHAR NOT NULL,
    outcome       VARCHAR NOT NULL,         -- succeeded | errored | expired | cancelled | missing
    retryable     BOOLEAN,
    status_code   INTEGER,
    error_type    VARCHAR,
    error_code    VARCHAR,
    error_message VARCHAR,
    collected_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (batch_id, request_hash)
);

-- The answer cache, keyed by request_hash. It outlives every output table.
CREATE TABLE IF NOT EXISTS warehouse_batch.results (
    request_hash          VARCHAR PRIMARY KEY,
    custom_id             VARCHAR NOT NULL,
    status                VARCHAR NOT NULL,  -- succeeded | failed
    retryable             BOOLEAN NOT NULL,  -- for failed: may sending it again help?
    response_text         VARCHAR,
    response_body         VARCHAR,           -- the provider's response body, as JSON
    finish_reason         VARCHAR,
    status_code           INTEGER,
    error_type            VARCHAR,
    error_code            VARCHAR,
    error_message         VARCHAR,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    cached_tokens         BIGINT,
    cache_creation_tokens BIGINT,
    attempts              INTEGER NOT NULL,  -- sends that came back with any outcome
    failures              INTEGER NOT NULL,  -- processed, retryable errors (bounded by max_attempts)
    batch_id              VARCHAR,
    provider_batch_id     VARCHAR,
    updated_at            TIMESTAMP NOT NULL
);

-- Which request each source row needed when it was last submitted: tells "changed" from "new".
CREATE TABLE IF NOT EXISTS warehouse_batch.job_rows (
    job_name     VARCHAR NOT NULL,
    row_key_hash VARCHAR NOT NULL,
    key_json     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,
    run_id       VARCHAR
);

CREATE OR REPLACE VIEW warehouse_batch.usage AS
SELECT rq.job_name, rq.provider, rq.model,
       count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE r.status = 'failed')    AS failed,
       sum(r.input_tokens)          AS input_tokens,
       sum(r.output_tokens)         AS output_tokens,
       sum(r.cached_tokens)         AS cached_tokens,
       sum(r.cache_creation_tokens) AS cache_creation_tokens
FROM warehouse_batch.results r
JOIN warehouse_batch.requests rq USING (request_hash)
GROUP BY ALL;
