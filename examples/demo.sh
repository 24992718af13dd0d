#!/usr/bin/env bash
# Install warehouse-batch into .venv and run the review-sentiment example end to end.
# Without OPENAI_API_KEY it starts the built-in emulator and points the job at it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet -e .
wb="$root/.venv/bin/warehouse-batch"
db="$root/examples/reviews/reviews.duckdb"
emu_pid=""
cleanup() { [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${OPENAI_API_KEY:-}" ]; then
    log="$(mktemp)"
    "$wb" emulator --port 0 --latency 3 2>"$log" &
    emu_pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
    url="$(grep -o 'http://[0-9.:]*' "$log" | head -1)"
    [ -n "$url" ] || { cat "$log"; echo "emulator did not start" >&2; exit 1; }
    export OPENAI_BASE_URL="$url/v1" OPENAI_API_KEY="emulator"
    echo "using the emulator at $url (set OPENAI_API_KEY to use OpenAI)"
fi

cd examples/reviews
"$wb" plan review_sentiment.sql --db "$db"
"$wb" run review_sentiment.sql --db "$db" --wait --poll-interval 1
"$root/.venv/bin/python" - "$db" <<'PY'
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.sql("SELECT review_id, product, stars, response, _status FROM review_sentiment "
              "ORDER BY review_id LIMIT 10"))
print(con.sql("SELECT _status, response, count(*) AS n, round(avg(stars), 2) AS avg_stars "
              "FROM review_sentiment GROUP BY ALL ORDER BY n DESC"))
PY
echo "running again: nothing should be sent"
"$wb" run review_sentiment.sql --db "$db"
