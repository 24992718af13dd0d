-- warehouse-batch state, version 12: the answer cache stored compactly.
-- results.response_body (the provider's whole response body, ~700 bytes of JSON per chat
-- answer, most of it the same from answer to answer) is compressed with ZSTD instead of
-- DuckDB's default dictionary/FSST: about 5x smaller at a million answers, and cheaper to
-- write. Same columns, names, types and meaning; the table is rebuilt because a column's
-- compression cannot be altered in place (constraints as before: none, since version 3);
-- the usage and costs views bind to the new table by name.
CREATE TABLE warehouse_batch.results_v12 (
    request_hash          VARCHAR,
    custom_id             VARCHAR,
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
INSERT INTO warehouse_batch.results_v12 BY NAME SELECT * FROM warehouse_batch.results;
DROP TABLE warehouse_batch.results;
ALTER TABLE warehouse_batch.results_v12 RENAME TO results;
