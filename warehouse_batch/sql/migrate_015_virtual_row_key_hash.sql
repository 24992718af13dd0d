-- warehouse-batch state, version 15: job_rows.row_key_hash derived, not stored.
-- row_key_hash is sha256(key_json) by definition (README, "Identity and hash rules"); storing
-- it cost a sha256 per changed row on every submit and 64 incompressible bytes per row that
-- every run's scan read back. It is now a virtual column: the same value, computed when read.
-- (Version 14 is the answer cache's.) Same columns, names, types and meaning otherwise.
CREATE TABLE warehouse_batch.job_rows_v15 (
    job_name     VARCHAR NOT NULL,
    row_key_hash VARCHAR GENERATED ALWAYS AS (sha256(key_json)) VIRTUAL,
    key_json     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,
    run_id       VARCHAR,
    input_fp     UBIGINT,
    answered     BOOLEAN DEFAULT false
);
INSERT INTO warehouse_batch.job_rows_v15 (job_name, key_json, request_hash, run_id, input_fp,
        answered)
    SELECT job_name, key_json, request_hash, run_id, input_fp, answered
    FROM warehouse_batch.job_rows;
DROP TABLE warehouse_batch.job_rows;
ALTER TABLE warehouse_batch.job_rows_v15 RENAME TO job_rows;
