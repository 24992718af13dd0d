-- OpenAI batch output/error file lines -> warehouse-batch's normalised result rows.
-- Input: temp table wb_lines(line VARCHAR) holding the valid JSON lines of both files.
-- Each line is classified by response.status_code, never by the top-level `error`
-- (per-request HTTP failures carry error = null: batch-apis.md §0.3, openai-openapi#302).
WITH parsed AS (
    SELECT CAST(line AS JSON) AS j FROM wb_lines
), fields AS (
    SELECT
        j ->> '$.custom_id'                                      AS custom_id,
        TRY_CAST(j ->> '$.response.status_code' AS INTEGER)      AS status_code,
        j -> '$.response.body'                                   AS body,
        coalesce(j ->> '$.response.body.error.type',
                 CASE WHEN j ->> '$.error.code' IS NOT NULL THEN 'batch_error' END) AS error_type,
        coalesce(j ->> '$.response.body.error.code', j ->> '$.error.code')       AS error_code,
        coalesce(j ->> '$.response.body.error.message', j ->> '$.error.message') AS error_message
    FROM parsed
)
SELECT
    custom_id,
    CASE
        WHEN status_code BETWEEN 200 AND 299 THEN 'succeeded'
        WHEN status_code IS NOT NULL THEN 'errored'
        WHEN error_code = 'batch_expired' THEN 'expired'
        WHEN error_code IN ('batch_cancelled', 'batch_canceled') THEN 'cancelled'
        ELSE 'errored'
    END AS outcome,
    CASE
        WHEN status_code BETWEEN 200 AND 299 THEN false
        WHEN status_code IN (408, 409, 429) OR status_code >= 500 THEN true
        WHEN status_code IS NOT NULL THEN false      -- 4xx: the request itself is wrong
        ELSE true                                    -- never ran (expired, cancelled, other)
    END AS retryable,
    status_code,
    CASE WHEN status_code BETWEEN 200 AND 299 THEN NULL ELSE error_type END    AS error_type,
    CASE WHEN status_code BETWEEN 200 AND 299 THEN NULL ELSE error_code END    AS error_code,
    CASE WHEN status_code BETWEEN 200 AND 299 THEN NULL
         ELSE coalesce(error_message, 'HTTP ' || status_code) END            AS error_message,
    CASE WHEN status_code BETWEEN 200 AND 299 THEN
        coalesce(body ->> '$.choices[0].message.content',
                 body ->> '$.output[0].content[0].text')
    END AS response_text,
    CASE WHEN status_code NOT BETWEEN 200 AND 299 THEN NULL
         -- embeddings: the vector goes to its own typed column, not the body text
         WHEN (body ->> '$.object') = 'list' THEN CAST(json_object('object', 'list',
             'model', body -> '$.model', 'usage', body -> '$.usage') AS VARCHAR)
         ELSE CAST(body AS VARCHAR) END AS response_body,
    coalesce(body ->> '$.choices[0].finish_reason', body ->> '$.status') AS finish_reason,
    TRY_CAST(coalesce(body ->> '$.usage.prompt_tokens', body ->> '$.usage.input_tokens') AS BIGINT)
        AS input_tokens,
    TRY_CAST(coalesce(body ->> '$.usage.completion_tokens', body ->> '$.usage.output_tokens')
             AS BIGINT) AS output_tokens,
    TRY_CAST(coalesce(body ->> '$.usage.prompt_tokens_details.cached_tokens',
                      body ->> '$.usage.input_tokens_details.cached_tokens') AS BIGINT)
        AS cached_tokens,
    CAST(NULL AS BIGINT) AS cache_creation_tokens,
    CASE WHEN status_code BETWEEN 200 AND 299 AND (body ->> '$.object') = 'list' THEN
        TRY_CAST(body -> '$.data[0].embedding' AS FLOAT[]) END AS embedding
FROM fields
WHERE custom_id IS NOT NULL
