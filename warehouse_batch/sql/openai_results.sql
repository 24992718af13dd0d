-- OpenAI batch output/error file lines -> warehouse-batch's normalised result rows.
-- Each line is classified by response.status_code, never by the top-level `error`
-- (per-request HTTP failures carry error = null: batch-apis.md §0.3, openai-openapi#302).
-- A 2xx line without an answer is not an answer: no body, no `choices`, no message, an empty
-- message (no content, no tool call) for chat; no `data[0].embedding` for embeddings. It is
-- `errored` (retryable, counted against max_attempts) with error_type `no_answer` and a
-- message saying what was missing. So is a line with neither `response` nor `error`.
-- A 2xx line that is a non-answer is `errored` and permanent (the same request would be refused
-- again): a refusal (chat `choices[0].message.refusal`, Responses `output[].content[]` of type
-- `refusal`; error_type `refusal`, the refusal text in the message) and a content-filter stop
-- (`finish_reason = content_filter`, Responses `incomplete_details.reason = content_filter`;
-- error_type `content_filter`). Answers cut off by max_tokens are judged by
-- outcomes.answer_check_sql (the job may allow them).
-- Each line is parsed once, by DuckDB's JSON reader into typed records (temp view wb_records,
-- `jsonl.read_records` with `OpenAIProvider.result_records`: custom_id, the response's
-- status_code and body as JSON text, the top-level error), and each body once more
-- (json_transform into a STRUCT). Both are lenient: a field of the wrong type becomes NULL
-- instead of failing the batch, and a line that is not a JSON object becomes a row of NULLs:
-- it has no custom_id, so it matches no request. A plain answer (chat content, no refusal)
-- is recognised from the structs alone; the costlier checks that parse again (json_type: is
-- the body an object, is `choices` an array) run only, lazily inside CASE, for the rare
-- lines that are not one. `response` and `error` are STRUCTs: NULL when absent or null,
-- present (with NULL fields) for any other value.
-- Rows without a custom_id are not filtered out here: DuckDB would push such a filter below
-- the parse. Consumers join on custom_id (NULL never matches).
WITH parsed AS (
    SELECT {'custom_id': custom_id, 'response': response, 'error': error} AS j
    FROM wb_records
), fields AS (
    SELECT
        j.custom_id,
        j.response.status_code AS status_code,
        j.response.body        AS body,
        j.error                AS top_error,
        j.response IS NOT NULL AS has_response,
        json_transform(j.response.body, '{
            "object": "VARCHAR", "status": "VARCHAR", "model": "VARCHAR",
            "choices": [{"message": {"content": "VARCHAR", "refusal": "VARCHAR",
                                     "tool_calls": ["JSON"]},
                         "finish_reason": "VARCHAR"}],
            "output": [{"content": [{"type": "VARCHAR", "text": "VARCHAR",
                                     "refusal": "VARCHAR"}]}],
            "incomplete_details": {"reason": "VARCHAR"},
            "usage": {"prompt_tokens": "BIGINT", "completion_tokens": "BIGINT",
                      "input_tokens": "BIGINT", "output_tokens": "BIGINT",
                      "prompt_tokens_details": {"cached_tokens": "BIGINT"},
                      "input_tokens_details": {"cached_tokens": "BIGINT"}},
            "error": {"type": "VARCHAR", "code": "VARCHAR", "message": "VARCHAR"},
            "data": [{"embedding": "FLOAT[]"}]}') AS b,
        coalesce(j.response.status_code BETWEEN 200 AND 299, false) AS is_2xx
    FROM parsed
), refusals AS (
    SELECT *,
        CASE WHEN NOT is_2xx THEN NULL
             WHEN b.output IS NULL THEN b.choices[1].message.refusal
             ELSE coalesce(b.choices[1].message.refusal,
                 list_filter(flatten(list_transform(b.output,
                                                    lambda o: coalesce(o.content, []))),
                             lambda c: c.type = 'refusal')[1].refusal) END AS refusal_text,
        is_2xx AND (b.choices[1].finish_reason = 'content_filter'
                    OR b.incomplete_details.reason = 'content_filter') AS filtered
    FROM fields
), answered AS (
    SELECT *,
        CASE
            WHEN NOT is_2xx THEN NULL
            WHEN refusal_text IS NOT NULL OR filtered THEN NULL   -- a non-answer, below
            -- a plain chat answer (lenient structs: content implies an object body whose
            -- choices is a non-empty array with a message)
            WHEN b.object IS DISTINCT FROM 'list' AND b.output IS NULL
                 AND b.choices[1].message.content <> '' THEN NULL
            WHEN json_type(body) IS DISTINCT FROM 'OBJECT' THEN
                'no answer: HTTP ' || status_code || ' with no response body'
            WHEN b.object = 'list' THEN CASE WHEN b.data[1].embedding IS NULL THEN
                'no answer: HTTP ' || status_code || ' but the body has no data[0].embedding' END
            WHEN b.output IS NOT NULL THEN CASE WHEN b.output[1].content[1].text IS NULL THEN
                'no answer: HTTP ' || status_code || ' but the body has no output text' END
            WHEN json_type(body, '$.choices') IS DISTINCT FROM 'ARRAY' OR len(b.choices) = 0 THEN
                'no answer: HTTP ' || status_code || ' but the body has no choices'
            WHEN b.choices[1].message IS NULL THEN
                'no answer: HTTP ' || status_code || ' but choices[0] has no message'
            WHEN coalesce(b.choices[1].message.content, '') = ''
                 AND coalesce(len(b.choices[1].message.tool_calls), 0) = 0 THEN
                'no answer: HTTP ' || status_code || ' but the message content is empty' ||
                ' (finish_reason ' || coalesce(b.choices[1].finish_reason, 'null') || ')'
        END AS no_answer,
        CASE WHEN refusal_text IS NOT NULL THEN
                 'refused: the model declined to answer: ' || refusal_text
             WHEN filtered THEN
                 'content filter: the provider''s content filter stopped the answer ' ||
                 '(finish_reason content_filter); a retry cannot help: change the prompt'
        END AS non_answer,
        CASE WHEN refusal_text IS NOT NULL THEN 'refusal'
             WHEN filtered THEN 'content_filter' END AS non_answer_type
    FROM refusals
), classified AS (
    SELECT *,
        is_2xx AND no_answer IS NULL AND non_answer IS NULL AS ok,
        coalesce(b.error.type,
                 CASE WHEN top_error.code IS NOT NULL THEN 'batch_error' END) AS err_type,
        coalesce(b.error.code, top_error.code)       AS err_code,
        coalesce(b.error.message, top_error.message) AS err_message
    FROM answered
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
        WHEN non_answer IS NOT NULL THEN false       -- refused or filtered: would be again
        WHEN no_answer IS NOT NULL THEN true         -- paid, but nothing came: may pass again
        WHEN status_code IN (408, 409, 429) OR status_code >= 500 THEN true
        WHEN status_code IS NOT NULL THEN false      -- 4xx: the request itself is wrong
        ELSE true                                    -- never ran (expired, cancelled, other)
    END AS retryable,
    status_code,
    CASE WHEN ok OR custom_id IS NULL THEN NULL
         WHEN non_answer IS NOT NULL THEN non_answer_type
         WHEN no_answer IS NOT NULL OR NOT (has_response OR top_error IS NOT NULL)
             THEN 'no_answer'
         ELSE err_type END AS error_type,
    CASE WHEN NOT ok AND no_answer IS NULL AND non_answer IS NULL THEN err_code
    END AS error_code,
    CASE WHEN custom_id IS NULL THEN NULL
         WHEN non_answer IS NOT NULL THEN non_answer
         WHEN no_answer IS NOT NULL THEN no_answer
         WHEN NOT ok THEN coalesce(err_message, 'HTTP ' || status_code,
             CASE WHEN has_response THEN
                 'the result line has a response without a status_code'
             WHEN top_error IS NULL THEN
                 'the result line has neither a response nor an error (response: null)'
             ELSE 'the result line has an error without a message' END)
    END AS error_message,
    CASE WHEN ok THEN coalesce(b.choices[1].message.content, b.output[1].content[1].text)
    END AS response_text,
    CASE WHEN NOT ok THEN NULL
         -- embeddings: the vector goes to its own typed column, not the body text
         WHEN b.object = 'list' THEN CAST(json_object('object', 'list', 'model', b.model,
             'usage', body -> '$.usage') AS VARCHAR)
         ELSE CAST(body AS VARCHAR) END AS response_body,
    coalesce(b.choices[1].finish_reason, b.incomplete_details.reason, b.status)
        AS finish_reason,
    coalesce(b.usage.prompt_tokens, b.usage.input_tokens) AS input_tokens,
    coalesce(b.usage.completion_tokens, b.usage.output_tokens) AS output_tokens,
    coalesce(b.usage.prompt_tokens_details.cached_tokens,
             b.usage.input_tokens_details.cached_tokens) AS cached_tokens,
    CAST(NULL AS BIGINT) AS cache_creation_tokens,
    CASE WHEN ok AND b.object = 'list' THEN b.data[1].embedding END AS embedding
FROM classified
