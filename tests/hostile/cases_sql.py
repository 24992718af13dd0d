"""SELECTs that write, run SQL text, leave the job's folders, or smuggle SQL through --var.

Each is refused at parse time with its file:line:col (the database is also attached
read-only while the SELECT runs; `tests/test_sqlguard.py` tests that layer on its own)."""
from __future__ import annotations

from . import BASE, Case

LOC = r"job\.sql:\d+:\d+: .*"

CASES = [
    Case("cte-delete-results-cache", BASE,
         sql="WITH d AS (DELETE FROM warehouse_batch.results RETURNING 1)\n"
             "SELECT id, text FROM reviews WHERE (SELECT count(*) FROM d) >= 0",
         message=LOC + r"the SELECT contains DELETE"),
    Case("cte-delete-source", BASE,
         sql="WITH d AS (DELETE FROM reviews RETURNING *) SELECT * FROM d",
         message=LOC + r"the SELECT contains DELETE"),
    Case("cte-update-returning", BASE,
         sql="WITH u AS (UPDATE reviews SET text = 'pwned' RETURNING id, text) SELECT * FROM u",
         message=LOC + r"the SELECT contains UPDATE"),
    Case("cte-update-results-cache", BASE,
         sql="WITH u AS (UPDATE warehouse_batch.results SET status = 'failed' RETURNING 1)\n"
             "SELECT id, text FROM reviews WHERE (SELECT count(*) FROM u) >= 0",
         message=LOC + r"the SELECT contains UPDATE"),
    Case("cte-insert-returning", BASE,
         sql="WITH i AS (INSERT INTO other VALUES (2) RETURNING x) "
             "SELECT id, text FROM reviews, i",
         message=LOC + r"the SELECT contains INSERT"),
    Case("subquery-delete", BASE,
         sql="SELECT * FROM (WITH d AS (DELETE FROM reviews RETURNING *) SELECT * FROM d)",
         message=LOC + r"the SELECT contains DELETE"),
    Case("merge-statement", BASE,
         sql="MERGE INTO other USING reviews ON other.x = reviews.id WHEN MATCHED THEN DELETE",
         message=LOC + r"MERGE.*not a SELECT"),
    Case("query-function-delete", BASE,
         sql="SELECT * FROM query('DELETE FROM reviews RETURNING *')",
         message=LOC + r"table function query\(\)"),
    Case("query-table-function", BASE, sql="SELECT * FROM query_table('reviews')",
         message=LOC + r"table function query_table\(\)"),
    Case("copy-to", BASE, sql="COPY reviews TO '{dir}/stolen.csv'",
         message=LOC + r"COPY, not a SELECT"),
    Case("attach", BASE, sql="ATTACH '{dir}/other.duckdb' AS o",
         message=LOC + r"ATTACH, not a SELECT"),
    Case("getenv-key", BASE,
         sql="SELECT id, getenv('OPENAI_API_KEY') AS text FROM reviews",
         message=LOC + r"calls getenv\(\)"),
    Case("secrets", BASE, sql="SELECT 1 AS id, name AS text FROM duckdb_secrets()",
         message=LOC + r"duckdb_secrets\(\)"),
    Case("read-etc-passwd", BASE,
         sql="SELECT 1 AS id, content AS text FROM read_text('/etc/passwd')",
         message=LOC + r"reads '/etc/passwd'.*outside the folders.*\n.*--allow-path"),
    Case("read-proc-environ", BASE,
         sql="SELECT 1 AS id, content AS text FROM read_text('/proc/self/environ')",
         message=LOC + r"reads '/proc/self/environ'.*outside the folders"),
    Case("read-relative-escape", BASE,
         sql="SELECT 1 AS id, content AS text FROM read_text('../../../../../../etc/passwd')",
         message=LOC + r"outside the folders"),
    Case("read-csv-outside", BASE,
         sql="SELECT * FROM read_csv('/etc/passwd', columns={'id': 'VARCHAR', "
             "'text': 'VARCHAR'})",
         message=LOC + r"outside the folders"),
    Case("replacement-scan-outside", BASE, sql="SELECT * FROM '/etc/hosts.csv'",
         message=LOC + r"outside the folders"),
    Case("computed-path", BASE,
         sql="SELECT 1 AS id, content AS text FROM read_text('/etc/' || 'passwd')",
         message=LOC + r"computed at run time"),
    Case("remote-url", BASE,
         sql="SELECT * FROM read_csv('{trap}/reviews.csv')",
         message=LOC + r"not a local file"),
    Case("var-unknown", BASE, sql="SELECT id, text FROM reviews WHERE id > {{ var('min_id', 0) }}",
         args=("--var", "min_ID=3"),
         message=r"--var min_ID is not used by the job\n.*did you mean 'min_id'"),
    Case("var-not-an-identifier", BASE,
         sql="SELECT id, text FROM reviews WHERE {{ var('cond') }}",
         args=("--var", "cond=1=1; DROP TABLE reviews"),
         message=r"the SELECT fails in DuckDB"),
]
