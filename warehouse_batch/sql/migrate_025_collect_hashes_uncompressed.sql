-- warehouse-batch state, version 25: the request hashes a collect writes are stored
-- uncompressed.
-- Every answer a collect records appends its 64-character request hash twice: to `results`
-- (the cache) and to `attempts` (the history). DuckDB's default string compression
-- (dictionary + FSST) analyses and compresses every one of them, and random hex barely
-- shrinks: measured at a million answers, inserting the hashes cost 0.41 CPU s compressed
-- (34 MB) against 0.07 s uncompressed (68 MB); the whole `results` INSERT 2.21 -> 1.86 s and
-- the `attempts` INSERT 0.82 -> 0.50 s; a whole `collect` ~0.8 s less (of ~13). For that the
-- state grows by ~34 bytes per answer and per attempt (~68 MB per million answers, ~15% of the
-- benchmark's state and output). The tables a submit writes keep their compressed hashes.
-- Same names, types, order, defaults and virtual columns; constraints as before (none). The
-- tables are rebuilt because a column's compression cannot be altered in place; views bind
-- to the new tables by name. Existing rows are moved without sorting them.
CREATE TABLE warehouse_batch.results_v25 (
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
INSERT INTO warehouse_batch.results_v25 BY NAME
    SELECT * EXCLUDE (custom_id) FROM warehouse_batch.results;
DROP TABLE warehouse_batch.results;
ALTER TABLE warehouse_batch.results_v25 RENAME TO results;

CREATE TABLE warehouse_batch.attempts_v25 (
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
INSERT INTO warehouse_batch.attempts_v25 BY NAME
    SELECT * EXCLUDE (custom_id) FROM warehouse_batch.attempts;
DROP TABLE warehouse_batch.attempts;
ALTER TABLE warehouse_batch.attempts_v25 RENAME TO attempts;
