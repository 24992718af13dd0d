-- Every request of batch $batch_id with its outcome: from the provider's normalised lines
-- (temp view wb_norm) or, when a custom_id is in no file, 'missing' (never processed).
-- A SELECT: outcomes.build_outcomes judges the answers around it and materialises it once.
-- A provider may repeat a custom_id: then the request has several rows here, and
-- build_outcomes keeps one, preferring a success (`_line_succeeded`), then any line. Deduping
-- only when it is needed spares sorting every batch's wide rows.
-- The batch's requests (narrow) are the join's build side, the result lines stream through:
-- build_outcomes asks DuckDB to keep the sides as written (its estimate for the lines is a
-- few dozen rows, so it would build a hash table of the wide result rows instead).
SELECT br.request_hash, br.custom_id,
       coalesce(n.outcome, 'missing') AS outcome,
       coalesce(n.retryable, true) AS retryable,
       n.status_code, n.error_type, n.error_code,
       coalesce(n.error_message, CASE WHEN n.outcome IS NULL THEN $missing_message END)
           AS error_message,
       n.response_text, n.response_body, n.finish_reason, n.input_tokens, n.output_tokens,
       n.cached_tokens, n.cache_creation_tokens, n.embedding,
       coalesce(n.outcome = 'succeeded', false) AS _line_succeeded
FROM wb_norm n
RIGHT JOIN (SELECT request_hash, custom_id FROM warehouse_batch.batch_requests
            WHERE batch_id = $batch_id) br USING (custom_id)
