-- Append one batch's outcomes (temp table wb_outcomes) to the attempts history.
-- Parameters: $batch_id, $now. Runs in the transaction that marks the batch collected.
-- custom_id is not written: it is derived from request_hash (migration 014).
-- The usage billed for each attempt is kept with it (migration 016), whatever its outcome;
-- cache writes made with the 1-hour TTL are split out of the body's usage.cache_creation
-- (Anthropic), only where there were cache writes.
INSERT INTO warehouse_batch.attempts (batch_id, request_hash, outcome, retryable, status_code,
        error_type, error_code, error_message, collected_at, input_tokens, output_tokens,
        cached_tokens, cache_creation_tokens, cache_write_1h_tokens)
SELECT $batch_id, request_hash, outcome, retryable, status_code, error_type, error_code,
       error_message, $now, input_tokens, output_tokens, cached_tokens, cache_creation_tokens,
       CASE WHEN coalesce(cache_creation_tokens, 0) = 0 THEN 0
            ELSE least(cache_creation_tokens, coalesce(TRY_CAST(json_extract_string(
                     response_body, '$.usage.cache_creation.ephemeral_1h_input_tokens')
                 AS BIGINT), cache_creation_tokens)) END
FROM wb_outcomes;
