-- The topics of the less happy reviews (a var from dbt_project.yml picks them).
-- warehouse-batch dbt run --select tag:weekly
{{ config(
    name='review_topics',
    provider='openai',
    model='gpt-4.1-mini',
    unique_key='review_id',
    system='List the topics this product review mentions.',
    prompt='{{ review_text }}',
    columns={'topics': 'varchar[]'},
    max_tokens=100,
    tags=['weekly'],
) }}
SELECT review_id, review_text
FROM {{ ref('stg_reviews') }}
WHERE stars <= {{ var('max_topic_stars') }}
