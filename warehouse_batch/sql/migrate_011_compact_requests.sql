-- warehouse-batch state, version 11: requests stored once and compactly (request_store.py).
-- A request body is the job's body template with the row's prompt spliced in. `requests`
-- now stores the prompt and the template's two halves (the same for every request of a job,
-- so DuckDB keeps them once per row group); `body` and `custom_id` are virtual columns that
-- splice them (the exact bytes sent) and derive the id from the hash (`batch_requests`'
-- `custom_id` too). Rows written before this version keep their verbatim body in `body_text`.
-- `seq` numbers requests in the order they were stored, each batch's new requests
-- contiguous, so writing a batch's payload reads only the row groups that hold them.
-- `requests` and `batch_requests` lose their primary-key indexes (as attempts and results did
-- in version 3): both are written only by submit, set-based, from requests made distinct
-- first, and maintaining ART indexes on 64-character hashes cost more than the rest of a
-- large submit.
CREATE TABLE warehouse_batch.requests_v11 (
    request_hash VARCHAR NOT NULL,
    custom_id    VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48)) VIRTUAL,
    provider     VARCHAR NOT NULL,
    endpoint     VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    body         VARCHAR GENERATED ALWAYS AS (coalesce(body_text, CASE WHEN prompt IS NOT NULL
                     THEN concat(body_prefix, CAST(to_json(prompt) AS VARCHAR), body_suffix)
                     END)) VIRTUAL,
    job_name     VARCHAR NOT NULL,   -- the job that first needed it
    first_run_id VARCHAR,
    created_at   TIMESTAMP NOT NULL,
    seq          BIGINT NOT NULL,    -- storage order (see above)
    prompt       VARCHAR,            -- the rendered prompt spliced into the template
    body_prefix  VARCHAR,            -- the body template before the prompt's JSON string
    body_suffix  VARCHAR,            -- and after it
    body_text    VARCHAR             -- the verbatim body, for rows stored before version 11
);
INSERT INTO warehouse_batch.requests_v11 (request_hash, provider, endpoint, model, job_name,
        first_run_id, created_at, seq, body_text)
    SELECT request_hash, provider, endpoint, model, job_name, first_run_id, created_at,
           row_number() OVER (ORDER BY created_at, request_hash), body
    FROM warehouse_batch.requests;
DROP TABLE warehouse_batch.requests;
ALTER TABLE warehouse_batch.requests_v11 RENAME TO requests;

CREATE TABLE warehouse_batch.batch_requests_v11 (
    batch_id     VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,
    custom_id    VARCHAR GENERATED ALWAYS AS ('wb_' || substr(request_hash, 1, 48)) VIRTUAL
);
INSERT INTO warehouse_batch.batch_requests_v11 (batch_id, request_hash)
    SELECT batch_id, request_hash FROM warehouse_batch.batch_requests;
DROP TABLE warehouse_batch.batch_requests;
ALTER TABLE warehouse_batch.batch_requests_v11 RENAME TO batch_requests;
