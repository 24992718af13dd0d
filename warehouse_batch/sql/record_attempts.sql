-- Append one batch's outcomes (temp table wb_outcomes) to the attempts history.
-- Parameters: $batch_id, $now. Runs in the transaction that marks the batch collected.
-- custom_id is not written: it is derived from request_hash (migration 014).
INSERT INTO warehouse_batch.attempts (batch_id, request_hash, outcome, retryable, status_code,
        error_type, error_code, error_message, collected_at)
SELECT $batch_id, request_hash, outcome, retryable, status_code, error_type, error_code,
       error_message, $now
FROM wb_outcomes;
