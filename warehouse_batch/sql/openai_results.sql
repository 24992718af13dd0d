-- OpenAI batch output/error file lines -> warehouse-batch's normalised result rows.
-- Input: temp table wb_lines(line VARCHAR) holding the valid JSON lines of both files.
-- Each line is classified by response.status_code, never by the top-level `error`
-- (per-request HTTP failures carry error = null: batch-apis.md §0.3, openai-openapi#302).
-- Each line and each body is parsed once (json_transform into a STRUCT; lenient: a field of
-- the wrong type becomes NULL instead of failing the batch).
WITH parsed AS (
    SELECT json_transform(line, '{"custom_id": "VARCHAR",
                                  "response": {"status_code": "INTEGER", "body": "JSON"},
                                  "error": {"code": "VARCHAR", "message": "VARCHAR"}}') AS j
    FROM wb_lines
), fields AS (
    SELECT
        j.custom_id,
        j.response.status_code AS status_code,
        j.response.body        AS body,
        j.error                AS top_error,
        json_transform(j.response.body, '{
            "object": "VARCHAR", "status": "VARCHAR", "model": "VARCHAR",
            "choices": [{"message": {"content": "VARCHAR"}, "finish_reason": "VARCHAR"}],
            "output": [{"content": [{"text": "VARCHAR"}]}],
            "usage": {"prompt_tokens": "BIGINT", "completion_tokens": "BIGINT",
                      "input_tokens": "BIGINT", "output_tokens": "BIGINT",
                      "prompt_tokens_details": {"cached_tokens": "BIGINT"},
                      "input_tokens_details": {"cached_tokens": "BIGINT"}},
            "error": {"type": "VARCHAR", "code": "VARCHAR", "message": "VARCHAR"},
            "data": [{"embedding": "FLOAT[]"}]}') AS b
    FROM parsed
), classified AS (
    SELECT *,
        coalesce(status_code BETWEEN 200 AND 299, false) AS ok,
        coalesce(b.error.type,
                 CASE WHEN top_error.code IS NOT NULL THEN 'batch_error' END) AS err_type,
        coalesce(b.error.code, top_error.code)       AS err_code,
        coalesce(b.error.message, top_error.message) AS err_message
    FROM fields
)
SELECT
    custom_id,
    CASE
        WHEN ok THEN 'succeeded'
        WHEN status_code IS NOT NULL THEN 'errored'
        WHEN err_code = 'batch_expired' THEN 'expired'
        WHEN err_code IN ('batch_cancelled', 'batch_canceled') THEN 'cancelled'
        ELSE 'errored'
    END AS outcome,
    CASE
        WHEN ok THEN false
        WHEN status_code IN (408, 409, 429) OR status_code >= 500 THEN true
        WHEN status_code IS NOT NULL THEN false      -- 4xx: the request itself is wrong
        ELSE true                                    -- never ran (expired, cancelled, other)
    END AS retryable,
    status_code,
    CASE WHEN NOT ok THEN err_type END AS error_type,
    CASE WHEN NOT ok THEN err_code END AS error_code,
    CASE WHEN NOT ok THEN coalesce(err_message, 'HTTP ' || status_code) END AS error_message,
    CASE WHEN ok THEN coalesce(b.choices[1].message.content, b.output[1].content[1].text)
    END AS response_text,
    CASE WHEN NOT ok THEN NULL
         -- embeddings: the vector goes to its own typed column, not the body text
         WHEN b.object = 'list' THEN CAST(json_object('object', 'list', 'model', b.model,
             'usage', body -> '$.usage') AS VARCHAR)
         ELSE CAST(body AS VARCHAR) END AS response_body,
    coalesce(b.choices[1].finish_reason, b.status) AS finish_reason,
    coalesce(b.usage.prompt_tokens, b.usage.input_tokens) AS input_tokens,
    coalesce(b.usage.completion_tokens, b.usage.output_tokens) AS output_tokens,
    coalesce(b.usage.prompt_tokens_details.cached_tokens,
             b.usage.input_tokens_details.cached_tokens) AS cached_tokens,
    CAST(NULL AS BIGINT) AS cache_creation_tokens,
    CASE WHEN ok AND b.object = 'list' THEN b.data[1].embedding END AS embedding
FROM classified
WHERE custom_id IS NOT NULL
