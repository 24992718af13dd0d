-- warehouse-batch state, version 5: which job file owns which output table.
-- A job only ever creates, replaces or drops the table it owns; a table it did not create
-- (a source, another job's output, anything else in the file) is refused at `plan`.
-- Table identity is lower case (DuckDB names are case-insensitive) and catalog-free (an
-- output always lives in the database file itself, whatever the file is called).
CREATE TABLE IF NOT EXISTS warehouse_batch.outputs (
    table_schema VARCHAR NOT NULL,   -- lower case, e.g. 'main'
    table_name   VARCHAR NOT NULL,   -- lower case
    job_file     VARCHAR NOT NULL,   -- the owning job file (absolute, symlinks resolved)
    job_name     VARCHAR NOT NULL,   -- the job's `name`, as written in the job file
    claimed_at   TIMESTAMP NOT NULL,
    origin       VARCHAR NOT NULL    -- claimed (by a run) | backfilled (from runs, here)
);

-- Output tables written before this version belong to the job file of the latest run that
-- named them (runs.job_file as it was given on the command line, perhaps relative; such a
-- path is matched by its trailing components and replaced by the resolved one on next use).
INSERT INTO warehouse_batch.outputs
SELECT lower(t.schema_name), lower(t.table_name), r.job_file, r.job_name, r.started_at,
       'backfilled'
FROM duckdb_tables() t
JOIN warehouse_batch.runs r
  ON r.job_file IS NOT NULL
 AND (lower(r.job_name) = lower(t.schema_name || '.' || t.table_name)
      OR lower(r.job_name) = lower(t.database_name || '.' || t.schema_name || '.' || t.table_name)
      OR (lower(t.schema_name) = 'main'
          AND lower(r.job_name) IN (lower(t.table_name),
                                    lower(t.database_name || '.' || t.table_name))))
WHERE t.database_name = current_database() AND NOT t.temporary
  AND lower(t.schema_name) <> 'warehouse_batch'
QUALIFY row_number() OVER (PARTITION BY lower(t.schema_name), lower(t.table_name)
                           ORDER BY r.started_at DESC, r.run_id DESC) = 1;
