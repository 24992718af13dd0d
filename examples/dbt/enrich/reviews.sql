-- The sentiment of every review. Runs inside `dbt build` as models/enriched_reviews.py,
-- or on its own:  warehouse-batch dbt run --select tag:nightly
{{ config(
    name='review_answers',        # the job's own table; dbt's model enriched_reviews copies it
    provider='openai',
    model='gpt-4.1-mini',
    unique_key='review_id',
    system='You label the sentiment of product reviews. '
           'Answer with one word: positive, negative or neutral.',
    prompt='Product: {{ product }} ({{ stars }} stars)\nReview: {{ review_text }}',
    max_tokens=5,
    tags=['nightly'],
) }}
SELECT review_id, product, stars, review_text
FROM {{ ref('stg_reviews') }}
