-- warehouse-batch state, version 24: what the requests of one submit share is stored once.
-- Every request stored by a submit has the same provider, endpoint, model, job, run, time
-- and body template (the halves around the prompt); `requests` repeated them on every row.
-- Writing those repeated strings was most of what storing requests cost: at a million
-- requests the INSERT took ~6 CPU s with them and ~1.8 s without (measured on the
-- benchmark's reviews). Now:
--   request_sets  one row per submit that stored requests (`set_id`), with what they share;
--   request_rows  one row per request: its hash, `seq`, `set_id`, prompt (or verbatim body);
--   requests      a view joining the two, with the same columns, names and meaning as the
--                 table it replaces (`body` and `custom_id` still rebuilt, byte for byte).
-- Existing requests are moved: one set per distinct combination of the shared values.
CREATE TABLE warehouse_batch.request_sets (
    set_id       INTEGER NOT NULL,
    provider     VARCHAR NOT NULL,
    endpoint     VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    job_name     VARCHAR NOT NULL,   -- the job that first needed them
    first_run_id VARCHAR,
    created_at   TIMESTAMP NOT NULL,
    body_prefix  VARCHAR,            -- the body template before the prompt's JSON string
    body_suffix  VARCHAR             -- and after it
);
CREATE TABLE warehouse_batch.request_rows (
    request_hash VARCHAR NOT NULL,
    seq          BIGINT NOT NULL,    -- storage order (request_store.py)
    set_id       INTEGER NOT NULL,
    prompt       VARCHAR USING COMPRESSION zstd,   -- spliced into its set's template
    body_text    VARCHAR USING COMPRESSION zstd    -- the verbatim body, rows before version 11
);
INSERT INTO warehouse_batch.request_sets
    SELECT row_number() OVER (ORDER BY min(seq)), provider, endpoint, model, job_name,
           first_run_id, created_at, body_prefix, body_suffix
    FROM warehouse_batch.requests
    GROUP BY provider, endpoint, model, job_name, first_run_id, created_at, body_prefix,
             body_suffix;
INSERT INTO warehouse_batch.request_rows
    SELECT r.request_hash, r.seq, s.set_id, r.prompt, r.body_text
    FROM warehouse_batch.requests r
    JOIN warehouse_batch.request_sets s
      ON  s.provider = r.provider AND s.endpoint = r.endpoint AND s.model = r.model
      AND s.job_name = r.job_name AND s.created_at = r.created_at
      AND s.first_run_id IS NOT DISTINCT FROM r.first_run_id
      AND s.body_prefix IS NOT DISTINCT FROM r.body_prefix
      AND s.body_suffix IS NOT DISTINCT FROM r.body_suffix;
-- (no ORDER BY: the scan keeps each block of rows together, so seq ranges still map to few
-- row groups; sorting every stored prompt cost 600 MB and 40% more CPU at a million)
DROP TABLE warehouse_batch.requests;
CREATE VIEW warehouse_batch.requests AS
SELECT r.request_hash,
       'wb_' || substr(r.request_hash, 1, 48) AS custom_id,
       s.provider, s.endpoint, s.model,
       coalesce(r.body_text, CASE WHEN r.prompt IS NOT NULL
                THEN concat(s.body_prefix, CAST(to_json(r.prompt) AS VARCHAR), s.body_suffix)
                END) AS body,
       s.job_name, s.first_run_id, s.created_at, r.seq, r.prompt, s.body_prefix,
       s.body_suffix, r.body_text
FROM warehouse_batch.request_rows r
JOIN warehouse_batch.request_sets s USING (set_id);
