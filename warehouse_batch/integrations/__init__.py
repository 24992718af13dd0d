"""Pieces for orchestrators: Dagster (`warehouse_batch.dagster`) and Airflow
(`warehouse_batch.airflow`), each behind its own extra, over the library (`api`).

`standing` is what both share and imports neither orchestrator: where a job stands, judged
cheaply (no source read, no SDK while batches run, no write lock held while waiting), and
what a pass reported, flattened for metadata.
"""
