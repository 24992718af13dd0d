-- warehouse-batch state, version 10: each run costs what changed.
-- job_rows.input_fp: a 64-bit fingerprint of the row's selected values and of everything
-- else the request is made from (template, system text, model, parameters, column types:
-- source.shape_salt). A row whose fingerprint is unchanged is not rendered or hashed again:
-- its request_hash is the one recorded here. NULL (rows recorded before this version) means
-- "render again" (which costs time once, never a send: the request_hash comes out the same).
-- outputs.shape: the output table's column shape when it was last built in full; the table is
-- then maintained row by row (changed rows replaced, answers updated) until the shape changes.
ALTER TABLE warehouse_batch.job_rows ADD COLUMN IF NOT EXISTS input_fp UBIGINT;
ALTER TABLE warehouse_batch.outputs ADD COLUMN IF NOT EXISTS shape VARCHAR;
-- outputs.job_hash: what the job file said (SQL, templates, model, parameters, vars) at the
-- last pass that read the source. A poll (`collect`, or `run` while batches are in flight
-- and none has ended) skips reading the source only while the job file is unchanged.
ALTER TABLE warehouse_batch.outputs ADD COLUMN IF NOT EXISTS job_hash VARCHAR;
-- Small facts about the state itself (e.g. the digest of the price list last loaded, so the
-- prices are rewritten only when a release changes them, not on every open).
CREATE TABLE IF NOT EXISTS warehouse_batch.meta (key VARCHAR PRIMARY KEY, value VARCHAR);
-- job_rows.answered: the row's recorded request has a successful answer (set as answers are
-- recorded; a success is never overwritten). An unchanged, answered row needs nothing: the
-- scan skips it without looking up the answer cache.
ALTER TABLE warehouse_batch.job_rows ADD COLUMN IF NOT EXISTS answered BOOLEAN DEFAULT false;
