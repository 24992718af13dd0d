"""Every hostile job file in `tests/hostile/` is refused through the CLI, with its exit code
and message, and changes nothing: no table or view differs afterwards, and no provider
(the emulator, or a listener a job file names) receives a single request."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers import checksum, emulator_env, write_job
from hostile import Case, all_cases
from warehouse_batch.db import connect

EXE = [sys.executable, "-m", "warehouse_batch.cli"]


def _fill(text: str, subs: dict[str, str]) -> str:
    for k, v in subs.items():
        text = text.replace("{" + k + "}", v)
    return text


CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_job_is_refused_and_changes_nothing(case: Case, tmp_path, fast_emulator, trap):
    subs = {"trap": trap.url, "dir": str(tmp_path)}
    db = str(tmp_path / "w.duckdb")
    con = connect(db)   # the state schema exists, as after any earlier run
    con.execute("CREATE TABLE reviews AS SELECT range AS id, 'review number ' || range AS text "
                "FROM range(6)")
    con.execute("CREATE TABLE other AS SELECT 1 AS x")
    if case.setup_sql:
        con.execute(_fill(case.setup_sql, subs))
    con.close()
    for rel, text in case.files.items():
        f = tmp_path / _fill(rel, subs)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(_fill(text, subs))
    if case.job_text is not None:
        job = tmp_path / "job.sql"
        job.write_text(_fill(case.job_text, subs))
    else:
        job = write_job(tmp_path, _fill(case.config, subs), _fill(case.sql, subs))
    env = emulator_env(fast_emulator, **{k: _fill(v, subs) for k, v in case.env.items()})
    before = checksum(db)
    for command in case.commands:
        args = [command, str(job), "--db", db, *(_fill(a, subs) for a in case.args)]
        if command == "run":
            args.append("--wait")
            for flag, value in (("--poll-interval", "1"), ("--max-wait", "5")):
                if flag not in case.args:
                    args += [flag, value]
        p = subprocess.run(EXE + args, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == case.exit_code, (command, p.returncode, p.stderr)
        assert re.search(case.message, p.stderr), (command, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        assert checksum(db) == before, f"{command} changed the database"
        assert fast_emulator.admin("GET", "/_emulator/requests")["data"] == [], command
        assert trap.received == [], trap.received
