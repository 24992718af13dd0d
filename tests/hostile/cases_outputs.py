"""Output names that would replace what a job must not touch: the state schema in any
spelling, DuckDB's own catalogs, a source, a table or view the tool did not create, another
job file's output, and names no table can be created under. The harness's database file is
`w.duckdb` (catalog `w`) and holds tables `reviews` (the source) and `other`."""
from __future__ import annotations

from . import Case

REST = ("provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "prompt='Summarise: {{ text }}', max_tokens=20")


def named(name: str) -> str:
    return f"name={name!r}, " + REST


LOCATED = r"job\.sql:2:\d+: name="      # the config key `name`, with file:line:column

OWNED_ELSEWHERE = ("CREATE TABLE enriched AS SELECT 1 AS id; "
                   "INSERT INTO warehouse_batch.outputs (table_schema, table_name, job_file, job_name, claimed_at, origin) VALUES ('main', 'enriched', "
                   "'/elsewhere/first_job.sql', 'enriched', TIMESTAMP '2026-01-02 03:04', "
                   "'claimed')")

CASES = [
    # the state schema, in every spelling
    Case("state-schema-upper-case", named("WAREHOUSE_BATCH.results"),
         message=LOCATED + r"'WAREHOUSE_BATCH.results' is reserved"),
    Case("state-schema-mixed-case-ledger", named("Warehouse_Batch.batches"),
         message=LOCATED + r".*is reserved: the warehouse_batch schema"),
    Case("state-schema-catalog-qualified", named("w.warehouse_batch.batches"),
         message=LOCATED + r".*is reserved"),
    Case("state-schema-quoted", named('"warehouse_batch".results'),
         message=LOCATED + r".*not a plain table name"),
    # DuckDB's own catalogs and schemas, and catalogs that are not the file
    Case("duckdb-temp-catalog", named("temp.t"), message=LOCATED + r".*'temp' is DuckDB"),
    Case("duckdb-temp-catalog-upper", named("TEMP.main.t"), message=r"is reserved"),
    Case("duckdb-system-catalog", named("system.main.t"), message=r"'system' is DuckDB"),
    Case("duckdb-memory-catalog", named("memory.t"), message=r"is reserved"),
    Case("duckdb-information-schema", named("information_schema.tables"),
         message=r"is reserved"),
    Case("duckdb-pg-catalog", named("pg_catalog.pg_class"), message=r"is reserved"),
    Case("main-as-catalog", named("main.main.t"),
         message=LOCATED + r".*no catalog 'main' is attached"),
    Case("catalog-not-attached", named("a.b.c"),
         message=LOCATED + r".*no catalog 'a' is attached.*catalog 'w'"),
    # what the SELECT reads
    Case("output-is-the-source", named("reviews"),
         message=LOCATED + r"'reviews': the SELECT reads reviews"),
    Case("output-is-the-source-other-spelling", named("W.Main.REVIEWS"),
         message=r"the SELECT reads reviews"),
    Case("output-is-the-source-behind-a-cte", named("reviews"),
         sql="WITH r AS (SELECT * FROM main.reviews) SELECT id, text FROM r",
         message=r"the SELECT reads main\.reviews"),
    Case("output-is-the-source-behind-a-view", named("reviews"),
         setup_sql="CREATE VIEW rv AS SELECT id, text FROM reviews",
         sql="SELECT id, text FROM rv", message=r"the SELECT reads reviews"),
    # tables and views the tool did not create
    Case("output-is-an-existing-table", named("other"),
         message=LOCATED + r"'other': a table main\.other already exists and was not "
                           r"created by this job"),
    Case("output-is-an-existing-table-upper", named("OTHER"), message=r"already exists"),
    Case("output-is-a-view", named("v"), setup_sql="CREATE VIEW v AS SELECT 1 AS x",
         message=LOCATED + r"'v': main\.v is a view"),
    Case("output-is-a-view-in-a-schema", named("s.v"),
         setup_sql="CREATE SCHEMA s; CREATE VIEW s.v AS SELECT 1 AS x",
         message=r"s\.v is a view"),
    # another job file's output
    Case("output-owned-by-another-job", named("enriched"), setup_sql=OWNED_ELSEWHERE,
         message=LOCATED + r"'enriched': the output table main\.enriched belongs to another "
                           r"job file, /elsewhere/first_job\.sql(.|\n)*UPDATE "
                           r"warehouse_batch\.outputs SET job_file"),
    Case("output-owned-by-another-job-other-spelling", named("w.MAIN.Enriched"),
         setup_sql=OWNED_ELSEWHERE, message=r"belongs to another job file"),
    Case("output-owned-by-another-job-table-dropped", named("enriched"),
         setup_sql=OWNED_ELSEWHERE + "; DROP TABLE enriched",
         message=r"belongs to another job file"),
]
