-- Classify the sentiment of each product review.
-- Run from this folder:  warehouse-batch run review_sentiment.sql --wait
{{ config(
    name='review_sentiment',
    provider='openai',
    model='gpt-4.1-mini',
    unique_key='review_id',
    system='You label the sentiment of product reviews. '
           'Answer with one word: positive, negative or neutral.',
    prompt_file='review_prompt.j2',
    max_tokens=5,
    # no temperature: Anthropic's current API version refuses it, and this one file runs
    # unchanged on every provider (switch provider and model only)
) }}
SELECT review_id, product, stars, review_text
FROM read_csv('reviews.csv')
