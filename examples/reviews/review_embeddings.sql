-- Embed every review; the output column `embedding` is FLOAT[256].
-- Run from this folder:  warehouse-batch run review_embeddings.sql --wait
{{ config(
    name='review_embeddings',
    provider='openai',
    model='text-embedding-3-small',
    endpoint='embeddings',
    dimensions=256,
    unique_key='review_id',
    prompt='{{ product }}: {{ review_text }}',
) }}
SELECT review_id, product, review_text
FROM read_csv('reviews.csv')
