-- Typed classification: each answer becomes real columns (an enum, a number, a list).
-- Run from this folder:  warehouse-batch run review_labels.sql --wait
{{ config(
    name='review_labels',
    provider='openai',
    model='gpt-4.1-mini',
    unique_key='review_id',
    system='Label the product review: its sentiment, how confident you are (0 to 1), '
           'and the topics it mentions.',
    prompt_file='review_prompt.j2',
    columns={
        'sentiment': "enum('positive','negative','neutral')",
        'confidence': 'double',
        'topics': 'varchar[]',
    },
    # output_columns={'mood': 'sentiment', 'sure': 'confidence >= 0.8'},  # re-parse only
    max_tokens=200,
) }}
SELECT review_id, product, stars, review_text
FROM read_csv('reviews.csv')
