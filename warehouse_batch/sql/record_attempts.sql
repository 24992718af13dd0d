-- Append one batch's outcomes (temp table wb_outcomes) to the attempts history.
-- Parameters: $batch_id, $now. Runs in the transaction that marks the batch collected.
INSERT INTO warehouse_batch.attempts
SELECT $batch_id, request_hash, custom_id, outcome, retryable, status_code, error_type,
       error_code, error_message, $now
FROM wb_outcomes;
