"""The reviews with their sentiment: the job enrich/reviews.sql as a node of `dbt build`.

Each build collects the batches that have ended, submits new or changed reviews and returns
the table at once (rows still in flight have _status = 'pending'); it never waits for a batch.
"""
import warehouse_batch.dbt


def model(dbt, session):
    dbt.ref("stg_reviews")      # lineage: what the job's SQL reads, so dbt builds it first
    return warehouse_batch.dbt.model(dbt, session, "enrich/reviews.sql")
