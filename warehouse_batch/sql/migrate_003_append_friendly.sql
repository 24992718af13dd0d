-- warehouse-batch state, version 3: attempts and results without primary-key indexes.
-- Both are written only by collect, set-based, inside the transaction that marks a batch
-- collected, from outcomes that are unique per request_hash; results is upserted with MERGE.
-- Maintaining ART indexes on 64-character hashes cost more than everything else in a large
-- collect (measured in bench/bench_collect.py), and joins on request_hash are hash joins.
CREATE TABLE warehouse_batch.attempts_v3 AS SELECT * FROM warehouse_batch.attempts;
DROP TABLE warehouse_batch.attempts;
ALTER TABLE warehouse_batch.attempts_v3 RENAME TO attempts;
CREATE TABLE warehouse_batch.results_v3 AS SELECT * FROM warehouse_batch.results;
DROP VIEW warehouse_batch.usage;
DROP TABLE warehouse_batch.results;
ALTER TABLE warehouse_batch.results_v3 RENAME TO results;
CREATE VIEW warehouse_batch.usage AS
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
