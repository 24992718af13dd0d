-- warehouse-batch state, version 23: results.custom_id derived from request_hash.
-- A custom_id is 'wb_' || request_hash[:48] (README, Identity and hash rules); `results` still
-- stored it: 51 random characters per answer, written at every collect and analysed by DuckDB's
-- default string compression (dictionary/FSST), which can barely shrink them. It is a virtual
-- column now, as in requests, batch_requests and attempts (versions 11 and 14). Same names,
-- types, order and defaults; constraints as before (none). The table is rebuilt because a
-- column cannot become generated in place; views bind to the new table by name.
-- (The request hashes themselves stay compressed: stored uncompressed they cost 2.5x less to
-- write but about 30% more disk for the whole state, measured in the README.)
CREATE TABLE warehouse_batch.results_v23 (
    request_hash          VARCHAR,
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
