"""`job_rows`: what the job last saw of each of its rows (key, input fingerprint, request,
whether that request is answered). It is how a run costs what changed: `source.prepare`
skips rows whose fingerprint is unchanged (and, if answered, does not even look them up);
only rows that changed are rewritten here, and answered flags are set as answers arrive."""
from __future__ import annotations

import duckdb

from .state import SCHEMA
from .tuning import collect_tuning


def record_job_rows(con: duckdb.DuckDBPyConnection, job_name: str, run_id: str,
                    rows: int) -> None:
    """Remember the request, input fingerprint and answered state of each current row whose
    fingerprint changed (`wb_current.unchanged` false), and drop keys no longer selected
    (`rows` is how many rows the SELECT returned; `wb_src.__wb_key` holds every key)."""
    changed = con.execute("SELECT count(*) FROM wb_current WHERE NOT unchanged").fetchone()[0]
    if changed:
        con.execute(f"""DELETE FROM {SCHEMA}.job_rows WHERE job_name = ? AND key_json IN
            (SELECT key_json FROM wb_current WHERE NOT unchanged)""", [job_name])
        con.execute(f"""INSERT INTO {SCHEMA}.job_rows
                (job_name, key_json, request_hash, run_id, input_fp, answered)
            SELECT ?, c.key_json, c.request_hash, ?, c.input_fp,
                   coalesce(r.status = 'succeeded', false)
            FROM wb_current c LEFT JOIN {SCHEMA}.results r USING (request_hash)
            WHERE NOT c.unchanged""", [job_name, run_id])
    recorded = con.execute(f"SELECT count(*) FROM {SCHEMA}.job_rows WHERE job_name = ?",
                           [job_name]).fetchone()[0]
    if recorded != rows:
        con.execute(f"""DELETE FROM {SCHEMA}.job_rows WHERE job_name = ? AND key_json NOT IN
            (SELECT __wb_key FROM wb_src)""", [job_name])


def mark_answered(con: duckdb.DuckDBPyConnection, job_name: str, succeeded_sql: str) -> None:
    """Set `answered` on the job's rows whose request is among `succeeded_sql`: a query
    yielding the request_hash of requests whose cached answer succeeded (the caller has
    judged them: `output.succeeded_since_sql`, or `wb_answers` where status is succeeded).

    First asks whether any row of the job is still unanswered (one pass over two narrow
    columns): when none is, as after a collect that already marked its answers, the lookup
    of `succeeded_sql` is not paid for. The requests are not looked up in the answer cache
    again: at ten million answers that second join of every hash cost ~11 CPU s (spilling
    under the 512MB default) for nothing."""
    if not con.execute(f"""SELECT EXISTS (SELECT 1 FROM {SCHEMA}.job_rows
            WHERE job_name = ? AND NOT coalesce(answered, false))""", [job_name]).fetchone()[0]:
        return
    with collect_tuning(con):   # joins of up to every answer of the job: see tuning.py
        con.execute(f"""UPDATE {SCHEMA}.job_rows SET answered = true
            WHERE job_name = ? AND NOT coalesce(answered, false)
              AND request_hash IN ({succeeded_sql})""", [job_name])
