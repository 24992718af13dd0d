-- warehouse-batch state, version 2: embedding vectors stored typed, not as JSON text
-- (a 1536-float vector is ~6 KB as FLOAT[] and ~30 KB as JSON).
ALTER TABLE warehouse_batch.results ADD COLUMN embedding FLOAT[];
