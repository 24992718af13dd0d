-- Gemini batch result lines -> warehouse-batch's normalised result rows
-- (exactly the columns, types and order of openai_results.sql).
-- Input: temp view wb_records, each non-blank line of the responses file read once by DuckDB's
-- JSON reader as a typed record (`jsonl.read_records` with `GeminiProvider.result_records`:
-- the key, the response as JSON text, the error as a STRUCT). A line is
-- {"key", "response": GenerateContentResponse | EmbedContentResponse} or
-- {"key", "error": {"code", "message", "status"}} (a google.rpc.Status). A cancelled or
-- expired job writes no line for what it never processed: those requests are `missing` and
-- are sent again. A line that is not a JSON object becomes a row of NULLs: it has no key, so
-- it matches no request; rows without a key are not filtered out here (consumers join on it).
-- A field of the wrong type is NULL, or cast where it can be (a code "503" reads 503).
-- Classification:
-- * an `error` line is `errored`; retryable for HTTP 408/409/429/5xx and the transient
--   statuses (RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, ABORTED,
--   UNKNOWN), permanent otherwise (INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, ...);
-- * a response whose prompt was blocked (`promptFeedback.blockReason`, no candidates) is
--   `errored`, permanent, error_type `content_filter`; a candidate stopped for SAFETY,
--   RECITATION, PROHIBITED_CONTENT, BLOCKLIST, SPII (or IMAGE_SAFETY, LANGUAGE) is `errored`,
--   permanent, error_type `refusal`: the same request would be stopped again;
-- * a response without answer text (no candidate, no parts, empty text) and a line with
--   neither `response` nor `error` are `errored`, retryable, error_type `no_answer`.
-- finish_reason is Gemini's finishReason in lower case, so MAX_TOKENS reads `max_tokens`,
-- the cut-off outcomes.answer_check_sql knows. Thought parts (`thought: true`) are not the
-- answer. Tokens: promptTokenCount includes cachedContentTokenCount (as OpenAI's
-- prompt_tokens includes cached tokens); output is candidates + thoughts (both billed as
-- output).
WITH parsed AS (
    SELECT {'key': "key", 'response': response, 'error': error} AS j
    FROM wb_records
), fields AS (
    SELECT
        j.key AS custom_id,
        j.response AS body,
        j.error AS err,
        json_transform(j.response, '{
            "candidates": [{"content": {"parts": [{"text": "VARCHAR", "thought": "BOOLEAN"}]},
                            "finishReason": "VARCHAR"}],
            "promptFeedback": {"blockReason": "VARCHAR"},
            "usageMetadata": {"promptTokenCount": "BIGINT", "candidatesTokenCount": "BIGINT",
                              "cachedContentTokenCount": "BIGINT",
                              "thoughtsTokenCount": "BIGINT"},
            "embedding": {"values": "FLOAT[]"},
            "modelVersion": "VARCHAR"}') AS b
    FROM parsed
), texts AS (
    SELECT *,
        json_type(body) IS NOT DISTINCT FROM 'OBJECT' AS has_response,
        b.candidates[1].finishReason AS reason,
        b.promptFeedback.blockReason AS blocked,
        array_to_string(list_transform(
            list_filter(coalesce(b.candidates[1].content.parts, []),
                        lambda p: NOT coalesce(p.thought, false) AND p.text IS NOT NULL),
            lambda p: p.text), '') AS text
    FROM fields
), judged AS (
    SELECT *,
        CASE
            WHEN err.code IS NOT NULL OR err.status IS NOT NULL THEN NULL
            WHEN blocked IS NOT NULL THEN
                'content filter: Gemini blocked the prompt (blockReason ' || blocked ||
                '); a retry cannot help: change the prompt'
            WHEN reason IN ('SAFETY', 'RECITATION', 'PROHIBITED_CONTENT', 'BLOCKLIST', 'SPII',
                            'IMAGE_SAFETY', 'LANGUAGE') THEN
                'refused: Gemini stopped the answer (finishReason ' || reason || ')'
        END AS non_answer,
        CASE WHEN blocked IS NOT NULL THEN 'content_filter' ELSE 'refusal' END AS non_answer_type,
        CASE
            WHEN err.code IS NOT NULL OR err.status IS NOT NULL THEN NULL
            WHEN NOT has_response THEN
                'no answer: the result line has neither a response nor an error'
            WHEN b.embedding IS NOT NULL THEN CASE WHEN b.embedding."values" IS NULL THEN
                'no answer: the embedding has no values' END
            WHEN coalesce(len(b.candidates), 0) = 0 THEN
                'no answer: the response has no candidates'
            WHEN text = '' THEN
                'no answer: the candidate has no text (finishReason ' ||
                coalesce(reason, 'null') || ')'
        END AS no_answer
    FROM texts
), classified AS (
    SELECT * REPLACE (CASE WHEN non_answer IS NOT NULL THEN NULL ELSE no_answer END AS no_answer),
        err.code IS NULL AND err.status IS NULL AND has_response
            AND non_answer IS NULL
            AND (CASE WHEN non_answer IS NOT NULL THEN NULL ELSE no_answer END) IS NULL AS ok
    FROM judged
)
SELECT
    custom_id,
    CASE WHEN ok THEN 'succeeded' ELSE 'errored' END AS outcome,
    CASE
        WHEN ok THEN false
        WHEN non_answer IS NOT NULL THEN false
        WHEN no_answer IS NOT NULL THEN true
        WHEN err.code IN (408, 409, 429) OR err.code >= 500 THEN true
        WHEN err.status IN ('RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'INTERNAL', 'DEADLINE_EXCEEDED',
                            'ABORTED', 'UNKNOWN') THEN true
        ELSE false
    END AS retryable,
    CASE WHEN NOT ok AND non_answer IS NULL AND no_answer IS NULL THEN err.code END AS status_code,
    CASE WHEN ok OR custom_id IS NULL THEN NULL
         WHEN non_answer IS NOT NULL THEN non_answer_type
         WHEN no_answer IS NOT NULL THEN 'no_answer'
         ELSE lower(coalesce(err.status, 'unknown')) END AS error_type,
    CASE WHEN NOT ok AND non_answer IS NULL AND no_answer IS NULL THEN err.status END AS error_code,
    CASE WHEN ok OR custom_id IS NULL THEN NULL
         WHEN non_answer IS NOT NULL THEN non_answer
         WHEN no_answer IS NOT NULL THEN no_answer
         ELSE coalesce(err.message, 'errored (' || coalesce(err.status, CAST(err.code AS VARCHAR),
                                                            'no error details') || ')')
    END AS error_message,
    CASE WHEN ok AND b.embedding IS NULL THEN text END AS response_text,
    CASE WHEN NOT ok THEN NULL
         -- embeddings: the vector goes to its own typed column, not the body text
         WHEN b.embedding IS NOT NULL THEN CAST(json_object('usageMetadata',
             body -> '$.usageMetadata') AS VARCHAR)
         ELSE CAST(body AS VARCHAR) END AS response_body,
    lower(reason) AS finish_reason,
    b.usageMetadata.promptTokenCount AS input_tokens,
    CASE WHEN b.usageMetadata.candidatesTokenCount IS NOT NULL
              OR b.usageMetadata.thoughtsTokenCount IS NOT NULL THEN
        coalesce(b.usageMetadata.candidatesTokenCount, 0)
        + coalesce(b.usageMetadata.thoughtsTokenCount, 0) END AS output_tokens,
    b.usageMetadata.cachedContentTokenCount AS cached_tokens,
    CAST(NULL AS BIGINT) AS cache_creation_tokens,
    CASE WHEN ok THEN b.embedding."values" END AS embedding
FROM classified
