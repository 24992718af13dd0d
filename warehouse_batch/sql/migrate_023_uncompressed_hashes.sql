-- warehouse-batch state, version 23: request hashes stored uncompressed; results.custom_id
-- derived from request_hash.
-- A request_hash is 64 hex characters of a SHA-256: random text that DuckDB's default string
-- compression (dictionary, FSST) analyses at every write and can barely shrink. Measured on
-- the benchmark (200,000 rows into a v1.4-format file): writing the hash column took 0.10
-- CPU s compressed and 0.04 s uncompressed, and each of requests, batch_requests, job_rows,
-- results and attempts holds one hash per request (a million per million rows). So those
-- columns are `USING COMPRESSION uncompressed`: about 32 more bytes per row on disk, ~2.5x
-- cheaper to write, and read without decompressing (joins on the hash).
-- `results.custom_id` was still stored (51 more random characters a row, written at every
-- collect); it is 'wb_' || request_hash[:48] by the identity rule (README), so it is a virtual
-- column now, as in requests, batch_requests and attempts. Same names, types, order and
-- defaults; constraints as before. The tables are rebuilt because a column's compression
-- cannot be altered in place; views bind to the new tables by name.
CREATE TABLE warehouse_batch.requests_v23 (
    request_hash VARCHAR NOT NULL USING COMPRESSION uncompressed,
    custom_id    VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48)) VIRTUAL,
    provider     VARCHAR NOT NULL,
    endpoint     VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    body         VARCHAR GENERATED ALWAYS AS (coalesce(body_text, CASE WHEN prompt IS NOT NULL
                     THEN concat(body_prefix, CAST(to_json(prompt) AS VARCHAR), body_suffix)
                     END)) VIRTUAL,
    job_name     VARCHAR NOT NULL,
    first_run_id VARCHAR,
    created_at   TIMESTAMP NOT NULL,
    seq          BIGINT NOT NULL,
    prompt       VARCHAR USING COMPRESSION zstd,
    body_prefix  VARCHAR,
    body_suffix  VARCHAR,
    body_text    VARCHAR USING COMPRESSION zstd
);
INSERT INTO warehouse_batch.requests_v23 (request_hash, provider, endpoint, model, job_name,
        first_run_id, created_at, seq, prompt, body_prefix, body_suffix, body_text)
    SELECT request_hash, provider, endpoint, model, job_name, first_run_id, created_at, seq,
           prompt, body_prefix, body_suffix, body_text
    FROM warehouse_batch.requests ORDER BY seq;
DROP TABLE warehouse_batch.requests;
ALTER TABLE warehouse_batch.requests_v23 RENAME TO requests;

CREATE TABLE warehouse_batch.batch_requests_v23 (
    batch_id     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL USING COMPRESSION uncompressed,
    custom_id    VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48)) VIRTUAL,
    text_chars   INTEGER
);
INSERT INTO warehouse_batch.batch_requests_v23 (batch_id, request_hash, text_chars)
    SELECT batch_id, request_hash, text_chars FROM warehouse_batch.batch_requests;
DROP TABLE warehouse_batch.batch_requests;
ALTER TABLE warehouse_batch.batch_requests_v23 RENAME TO batch_requests;

CREATE TABLE warehouse_batch.job_rows_v23 (
    job_name     VARCHAR NOT NULL,
    row_key_hash VARCHAR GENERATED ALWAYS AS (sha256(key_json)) VIRTUAL,
    key_json     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL USING COMPRESSION uncompressed,
    run_id       VARCHAR,
    input_fp     UBIGINT,
    answered     BOOLEAN DEFAULT false
);
INSERT INTO warehouse_batch.job_rows_v23 (job_name, key_json, request_hash, run_id, input_fp,
        answered)
    SELECT job_name, key_json, request_hash, run_id, input_fp, answered
    FROM warehouse_batch.job_rows;
DROP TABLE warehouse_batch.job_rows;
ALTER TABLE warehouse_batch.job_rows_v23 RENAME TO job_rows;

CREATE TABLE warehouse_batch.results_v23 (
    request_hash          VARCHAR USING COMPRESSION uncompressed,
    custom_id             VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48))
                              VIRTUAL,
    status                VARCHAR,
    retryable             BOOLEAN,
    response_text         VARCHAR,
    response_body         VARCHAR USING COMPRESSION zstd,
    finish_reason         VARCHAR,
    status_code           INTEGER,
    error_type            VARCHAR,
    error_code            VARCHAR,
    error_message         VARCHAR,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    cached_tokens         BIGINT,
    cache_creation_tokens BIGINT,
    attempts              INTEGER,
    failures              INTEGER,
    batch_id              VARCHAR,
    provider_batch_id     VARCHAR,
    updated_at            TIMESTAMP,
    embedding             FLOAT[],
    run_id                VARCHAR,
    run_failures          INTEGER DEFAULT 0
);
INSERT INTO warehouse_batch.results_v23 BY NAME
    SELECT * EXCLUDE (custom_id) FROM warehouse_batch.results;
DROP TABLE warehouse_batch.results;
ALTER TABLE warehouse_batch.results_v23 RENAME TO results;

CREATE TABLE warehouse_batch.attempts_v23 (
    batch_id              VARCHAR,
    request_hash          VARCHAR USING COMPRESSION uncompressed,
    custom_id             VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48))
                              VIRTUAL,
    outcome               VARCHAR,
    retryable             BOOLEAN,
    status_code           INTEGER,
    error_type            VARCHAR,
    error_code            VARCHAR,
    error_message         VARCHAR,
    collected_at          TIMESTAMP,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    cached_tokens         BIGINT,
    cache_creation_tokens BIGINT,
    cache_write_1h_tokens BIGINT
);
INSERT INTO warehouse_batch.attempts_v23 BY NAME
    SELECT * EXCLUDE (custom_id) FROM warehouse_batch.attempts;
DROP TABLE warehouse_batch.attempts;
ALTER TABLE warehouse_batch.attempts_v23 RENAME TO attempts;
