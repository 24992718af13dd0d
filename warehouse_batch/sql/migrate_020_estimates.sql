-- warehouse-batch state, version 20: token estimates that learn (estimate.py).
-- Each request put in a batch records the characters of its message text (system prompt +
-- prompt, no JSON framing), counted when the intent is written. With the input tokens the
-- provider billed for it (attempts.input_tokens, version 16), the job's collected batches
-- give per-request pairs (characters, tokens): `plan` and `submit` fit tokens = overhead +
-- characters * tokens_per_char to them (per job, provider and model), instead of the
-- documented ratio (data/tokens.json). Sends recorded before this version have no count and
-- teach nothing.
ALTER TABLE warehouse_batch.batch_requests ADD COLUMN IF NOT EXISTS text_chars INTEGER;
