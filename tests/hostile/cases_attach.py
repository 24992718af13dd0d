"""Sources and targets (issue 10, item 6): `attach=` files that are not the job's to read, or
not DuckDB files, or names that clash; outputs in an attached or foreign catalog; `export=`
targets outside the job's folders or that are not Parquet; functions of DuckDB extensions
that are not installed. The harness's database is `w.duckdb` (catalog `w`) beside the job."""
from __future__ import annotations

from . import BASE, Case

LOCATED = r"job\.sql:\d+:\d+: .*"
MAKE_CRM = ("ATTACH '{dir}/crm.duckdb' AS crm; "
            "CREATE TABLE crm.customers AS SELECT range AS id, 'c' || range AS name "
            "FROM range(3); DETACH crm")


def attach(value: str, **kw) -> Case:
    return Case(config=f"{BASE}, attach={value}", **kw)


CASES = [
    # the ATTACH statement itself stays refused: attach= is the only way
    Case("attach-statement-in-select", BASE, sql="ATTACH '{dir}/crm.duckdb' AS crm",
         message=r"ATTACH, not a SELECT"),
    Case("attach-in-second-statement", BASE,
         sql="SELECT id, text FROM reviews; ATTACH '{dir}/crm.duckdb' AS crm",
         message=r"2 SQL statements"),
    # aliases
    attach("{'crm-db': 'crm.duckdb'}", id="attach-alias-not-identifier", setup_sql=MAKE_CRM,
           message=LOCATED + r"attach: 'crm-db' is not a plain catalog name"),
    attach("{'temp': 'crm.duckdb'}", id="attach-alias-reserved-temp", setup_sql=MAKE_CRM,
           message=r"the catalog name 'temp' is reserved"),
    attach("{'Main': 'crm.duckdb'}", id="attach-alias-reserved-main", setup_sql=MAKE_CRM,
           message=r"the catalog name 'Main' is reserved"),
    attach("{'warehouse_batch': 'crm.duckdb'}", id="attach-alias-state-schema",
           setup_sql=MAKE_CRM, message=r"reserved"),
    attach("{'W': 'crm.duckdb'}", id="attach-alias-is-the-database", setup_sql=MAKE_CRM,
           message=LOCATED + r"attach: 'W' is already a catalog here"),
    attach("{'crm': 'crm.duckdb', 'CRM': 'crm.duckdb'}", id="attach-alias-twice",
           setup_sql=MAKE_CRM, message=r"'CRM' is given twice"),
    attach("'crm.duckdb'", id="attach-not-a-dict", message=r"attach must map a catalog name"),
    # files
    attach("{'crm': 'w.duckdb'}", id="attach-the-database-itself",
           message=LOCATED + r"is the database file itself"),
    attach("{'crm': 'missing.duckdb'}", id="attach-missing-file",
           message=LOCATED + r"no such file"),
    attach("{'crm': 'data.csv'}", id="attach-not-duckdb", files={"data.csv": "id\n1\n"},
           message=r"is not a DuckDB database file"),
    attach("{'crm': '/etc/passwd'}", id="attach-outside-scope",
           message=LOCATED + r"outside the folders this job may read"),
    attach("{'crm': '../outside.duckdb'}", id="attach-parent-folder",
           message=r"outside the folders this job may read"),
    attach("{'crm': '/proc/self/environ'}", id="attach-proc", message=r"outside the folders"),
    # code in the attached file would run unchecked: a view or macro reading any file
    attach("{'crm': 'crm.duckdb'}", id="attach-file-with-a-view-reading-secrets",
           setup_sql="ATTACH '{dir}/crm.duckdb' AS crm; CREATE VIEW crm.main.v AS SELECT 1 "
                     "AS id, content AS text FROM read_text('/etc/passwd'); DETACH crm",
           sql="SELECT id, text FROM crm.main.v",
           message=LOCATED + r"holds view v; an attached file is read for its tables only"),
    attach("{'crm': 'crm.duckdb'}", id="attach-file-with-a-macro",
           setup_sql="ATTACH '{dir}/crm.duckdb' AS crm; CREATE MACRO crm.main.secret() AS "
                     "(SELECT content FROM read_text('/etc/passwd')); DETACH crm",
           sql="SELECT id, crm.main.secret() AS text FROM reviews",
           message=r"holds macro secret"),
    attach("{'crm': 'crm.duckdb'}", id="attach-file-with-a-table-macro",
           setup_sql="ATTACH '{dir}/crm.duckdb' AS crm; CREATE MACRO crm.main.rows() AS TABLE "
                     "SELECT 1 AS id, 'x' AS text; DETACH crm",
           message=r"holds table macro rows"),
    # the output may not be written into an attached or any other catalog
    Case("output-in-attached-catalog",
         BASE.replace("name='enriched'", "name='crm.main.enriched'")
         + ", attach={'crm': 'crm.duckdb'}",
         setup_sql=MAKE_CRM, message=LOCATED + r"catalog 'crm' is attached read-only"),
    Case("output-in-attached-catalog-two-parts",
         BASE.replace("name='enriched'", "name='crm.enriched'") + ", attach={'crm': 'crm.duckdb'}",
         setup_sql=MAKE_CRM, message=r"catalog 'crm' is attached read-only"),
    Case("output-in-foreign-catalog", BASE.replace("name='enriched'", "name='lake.main.t'"),
         message=LOCATED + r"no catalog 'lake' is attached.*catalog 'w'"),
    # export targets
    Case("export-outside-scope", BASE + ", export='/tmp/../etc/x.parquet'",
         message=LOCATED + r"export .*outside the folders"),
    Case("export-parent-folder", BASE + ", export='../{name}.parquet'",
         message=r"outside the folders"),
    Case("export-over-the-database", BASE + ", export='w.duckdb'",
         message=r"must name a .parquet file or a folder"),
    Case("export-over-the-job-file", BASE + ", export='job.sql'",
         message=r"must name a .parquet file"),
    Case("export-over-a-non-parquet-file", BASE + ", export='notes.parquet'",
         files={"notes.parquet": "my notes"}, message=r"exists and is not a Parquet file"),
    Case("export-other-placeholder", BASE + ", export='{dir}/{user}.parquet'",
         message=r"the only placeholder is \{name\}"),
    Case("export-not-a-string", BASE + ", export=true", message=r"export must be a path"),
    # functions of extensions that are not installed here
    Case("extension-postgres-scan", BASE,
         sql="SELECT * FROM postgres_scan('host=localhost dbname=x', 'public', 'reviews')",
         message=LOCATED + r"the DuckDB extension postgres is not installed here; run INSTALL "
                           r"postgres once where the network is available"),
    Case("extension-mysql-query", BASE, sql="SELECT * FROM mysql_query('db', 'SELECT 1')",
         message=r"the DuckDB extension mysql is not installed here"),
    Case("extension-read-xlsx", BASE, sql="SELECT * FROM read_xlsx('reviews.xlsx')",
         message=LOCATED + r"the DuckDB extension excel is not installed here"),
    Case("extension-sqlite-scan", BASE, sql="SELECT * FROM sqlite_scan('x.db', 'reviews')",
         message=r"the DuckDB extension sqlite is not installed here"),
    Case("extension-st-read", BASE, sql="SELECT * FROM st_read('shapes.shp')",
         message=r"the DuckDB extension spatial is not installed here"),
    Case("extension-scalar-function", BASE,
         sql="SELECT id, text,\n       st_area(st_point(id, id)) AS area FROM reviews",
         message=r"job\.sql:\d+:8: the DuckDB extension spatial is not installed here"),
    Case("extension-read-xlsx-outside-scope", BASE,
         sql="SELECT * FROM read_xlsx('/etc/x.xlsx')",
         message=r"extension excel is not installed|outside the folders"),
]
