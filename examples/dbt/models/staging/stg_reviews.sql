select review_id, product, stars, review_text
from {{ ref('raw_reviews') }}
where review_text is not null
