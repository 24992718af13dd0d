-- Anthropic Message Batches results lines -> warehouse-batch's normalised result rows
-- (exactly the columns, types and order of openai_results.sql).
-- Input: temp view wb_records (jsonl.read_records with AnthropicProvider.result_records):
-- each line read once by DuckDB's JSON reader as custom_id and result (its type, its
-- message as JSON text, its error's type and message); each message is parsed once more into
-- a STRUCT (content blocks, stop_reason, usage). Both are lenient: a line that is not a JSON
-- object is a row of NULLs (no custom_id, so it matches no request), a field of the wrong
-- type is NULL. `result` is NULL when absent or null, and a STRUCT of NULLs for any other
-- non-object value; a result with neither type, message nor error counts as none. Rows without a custom_id are not filtered out here (a filter would be pushed below
-- the parse); consumers join on custom_id. A plain answer (text or tool use) is recognised
-- from the STRUCT alone; the check that parses again (json_type: is the message an object)
-- runs only, lazily inside CASE, for the rare succeeded lines that are not one.
-- A line is {"custom_id", "result": {"type": succeeded|errored|canceled|expired, ...}}
-- (batch-apis.md §2.6). Anthropic spells it `canceled`; we say `cancelled`.
-- Retry policy (field-facts.md, "Error classification"): an errored request whose
-- error.type says the request, the model or the account must change
-- (`invalid_request_error`, `not_found_error`, `permission_error`, `authentication_error`,
-- `billing_error`, `request_too_large`) is permanent; the others (`api_error`,
-- `overloaded_error`, `rate_limit_error`, `timeout_error`, and any type we do not know) may
-- pass on a resend. Expired and canceled requests never ran and are simply sent again.
-- A succeeded message with `stop_reason = refusal` is not an answer: `errored`, permanent,
-- error_type `refusal`, with whatever text the model gave. Answers cut off by max_tokens are
-- judged by outcomes.answer_check_sql (the job may allow them).
-- Cache writes: usage.cache_creation splits them by TTL (ephemeral_5m_input_tokens,
-- ephemeral_1h_input_tokens); the costs view reads the split from response_body.
-- Tokens: Anthropic's usage.input_tokens EXCLUDES cache reads and writes, OpenAI's
-- prompt_tokens includes cached tokens; input_tokens here is the total prompt
-- (input + cache read + cache write) so the column means the same for every provider and
-- cached_tokens / cache_creation_tokens are parts of it.
-- A `succeeded` result without an answer (no message, or no text or tool_use block with
-- content), and a line without a `result`, are `errored` (retryable) with error_type
-- `no_answer` and a message saying what was missing.
WITH fields AS (
    SELECT
        custom_id,
        result.type                 AS result_type,
        result.message              AS message,
        result.error.error.type     AS err_type,
        result.error.error.message  AS err_message,
        -- an object with none of these reads as no result (as a non-object does)
        (result.type IS NOT NULL OR result.message IS NOT NULL
         OR result.error IS NOT NULL) AS has_result,
        json_transform(result.message, '{
            "content": [{"type": "VARCHAR", "text": "VARCHAR"}],
            "stop_reason": "VARCHAR",
            "usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT",
                      "cache_read_input_tokens": "BIGINT",
                      "cache_creation_input_tokens": "BIGINT"}}') AS m
    FROM wb_records
), usage AS (
    SELECT *,
        m.usage.input_tokens                                         AS raw_input,
        m.usage.cache_read_input_tokens                              AS cache_read,
        m.usage.cache_creation_input_tokens                          AS cache_write,
        list_filter(m.content, lambda b: b.type = 'text')            AS text_blocks,
        len(list_filter(m.content, lambda b: b.type = 'tool_use'))   AS tool_uses
    FROM fields
), answered AS (
    SELECT *,
        CASE
            WHEN NOT has_result THEN
                'no answer: the result line has no result'
            WHEN result_type <> 'succeeded' THEN NULL
            -- a plain answer: content blocks imply an object message
            WHEN m.content IS NOT NULL AND (coalesce(tool_uses, 0) > 0 OR array_to_string(
                list_transform(text_blocks, lambda b: b.text), '') <> '') THEN NULL
            WHEN json_type(message) IS DISTINCT FROM 'OBJECT' THEN
                'no answer: the succeeded result has no message'
            WHEN coalesce(tool_uses, 0) > 0 THEN NULL
            WHEN coalesce(len(text_blocks), 0) = 0 THEN
                'no answer: the message has no text content (stop_reason ' ||
                coalesce(m.stop_reason, 'null') || ')'
            WHEN array_to_string(list_transform(text_blocks, lambda b: b.text), '') = ''
                THEN 'no answer: the message text is empty (stop_reason ' ||
                coalesce(m.stop_reason, 'null') || ')'
        END AS no_answer,
        result_type = 'succeeded' AND m.stop_reason = 'refusal' AS refused
    FROM usage
), judged AS (
    SELECT * REPLACE (CASE WHEN refused THEN NULL ELSE no_answer END AS no_answer),
        CASE WHEN refused THEN 'refused: the model declined to answer (stop_reason refusal)' ||
            coalesce(': ' || nullif(array_to_string(
                list_transform(text_blocks, lambda b: b.text), ''), ''), '')
        END AS non_answer
    FROM answered
)
SELECT
    custom_id,
    CASE WHEN no_answer IS NOT NULL OR non_answer IS NOT NULL THEN 'errored' ELSE CASE result_type
        WHEN 'succeeded' THEN 'succeeded'
        WHEN 'expired' THEN 'expired'
        WHEN 'canceled' THEN 'cancelled'
        WHEN 'cancelled' THEN 'cancelled'
        ELSE 'errored'
    END END AS outcome,
    CASE
        WHEN non_answer IS NOT NULL THEN false
        WHEN no_answer IS NOT NULL THEN true
        WHEN result_type = 'succeeded' THEN false
        WHEN result_type IN ('expired', 'canceled', 'cancelled') THEN true
        WHEN err_type IN ('invalid_request_error', 'not_found_error', 'permission_error',
                          'authentication_error', 'billing_error', 'request_too_large')
            THEN false
        ELSE true
    END AS retryable,
    CAST(NULL AS INTEGER) AS status_code,      -- per-request results carry no HTTP status
    CASE WHEN non_answer IS NOT NULL THEN 'refusal'
         WHEN no_answer IS NOT NULL THEN 'no_answer'
         WHEN result_type = 'succeeded' THEN NULL
         WHEN result_type IN ('expired', 'canceled', 'cancelled') THEN 'batch_error'
         ELSE coalesce(err_type, 'unknown_error') END                        AS error_type,
    CASE result_type
        WHEN 'expired' THEN 'batch_expired'
        WHEN 'canceled' THEN 'batch_cancelled'
        WHEN 'cancelled' THEN 'batch_cancelled'
    END                                                                      AS error_code,
    CASE
        WHEN non_answer IS NOT NULL THEN non_answer
        WHEN no_answer IS NOT NULL THEN no_answer
        WHEN result_type = 'succeeded' THEN NULL
        WHEN result_type = 'expired' THEN
            'expired: the batch reached its 24-hour limit before this request was processed'
        WHEN result_type IN ('canceled', 'cancelled') THEN
            'cancelled: the batch was cancelled before this request was processed'
        WHEN result_type = 'errored' THEN
            coalesce(err_message, 'errored (' || coalesce(err_type, 'no error details') || ')')
        ELSE 'unknown result type ' || coalesce(result_type, 'null')
    END                                                                      AS error_message,
    CASE WHEN no_answer IS NULL AND non_answer IS NULL AND result_type = 'succeeded'
              AND len(text_blocks) > 0 THEN
        array_to_string(list_transform(text_blocks, lambda b: b.text), '')
    END                                                                      AS response_text,
    CASE WHEN no_answer IS NULL AND non_answer IS NULL AND result_type = 'succeeded'
         THEN CAST(message AS VARCHAR)
    END                                                                      AS response_body,
    CASE WHEN result_type = 'succeeded' THEN m.stop_reason END            AS finish_reason,
    raw_input + coalesce(cache_read, 0) + coalesce(cache_write, 0)           AS input_tokens,
    m.usage.output_tokens                                                    AS output_tokens,
    cache_read                                                               AS cached_tokens,
    cache_write                                                         AS cache_creation_tokens,
    CAST(NULL AS FLOAT[])                                               AS embedding  -- none here
FROM judged
