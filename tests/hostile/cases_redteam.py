"""Holes found by red-teaming the merged safety work: reads that left the job's folders
through DuckDB's glob (`*/..`) or through a CTE named like a file."""
from __future__ import annotations

from . import ANTHROPIC, BASE, Case

LOC = r"job\.sql:\d+:\d+: .*"
UP = "../" * 30
OUTSIDE = {"../redteam-outside.csv": "id,text\n1,secret outside the job folder\n"}

CASES = [
    # the glob's folder is the job folder, but `*/..` climbs out of it
    Case("glob-star-dotdot-escape", BASE, files={"sub/x.txt": ""},
         sql=f"SELECT 1 AS id, content AS text FROM read_text('*/{UP}etc/passwd')",
         message=LOC + r"outside the folders"),   # run from the job folder: test_sqlguard
    # a CTE's body is not in its own scope: the inner name is the file
    Case("cte-named-like-a-file-reads-it", BASE, files=OUTSIDE,
         sql='WITH "{dir}/../redteam-outside.csv" AS '
             '(SELECT * FROM "{dir}/../redteam-outside.csv")\n'
             'SELECT * FROM "{dir}/../redteam-outside.csv"',
         message=LOC + r"redteam-outside.csv.*outside the folders"),
    # a CTE defined in a subquery does not hide the file named the same outside it
    Case("cte-in-subquery-hides-outer-file", BASE, files=OUTSIDE,
         sql='SELECT * FROM (WITH "{dir}/../redteam-outside.csv" AS (SELECT 1 AS id, \'x\' '
             'AS text) SELECT * FROM "{dir}/../redteam-outside.csv") a\n'
             'UNION ALL SELECT * FROM "{dir}/../redteam-outside.csv"',
         message=LOC + r"redteam-outside.csv.*outside the folders"),
]

OPENAI_KEY = "sk-test-redteam-0123456789abcdefghijklmnopqrstuvwxyz"
CASES += [
    # a key in a column the prompt does not use is not sent, but it would be written to the
    # output table: a `.env` file in the project is inside the job's scope
    Case("key-in-unprompted-column-from-dotenv", BASE, env={"OPENAI_API_KEY": OPENAI_KEY},
         files={".env": f"OPENAI_API_KEY={OPENAI_KEY}\n"},
         sql="SELECT id, text, (SELECT content FROM read_text('.env')) AS config FROM reviews",
         message=r"selected columns of 6 row\(s\) contain the value of an API key variable"
                 r"(.|\n)*'variable': '\$OPENAI_API_KEY'"),
    # a key passed as a --var lands in a column
    Case("key-in-var-bound-column", BASE, env={"OPENAI_API_KEY": OPENAI_KEY},
         sql="SELECT id, text, {{ var('token') }} AS token FROM reviews",
         args=("--var", f"token={OPENAI_KEY}"),
         message=r"contain the value of an API key variable"),
    # the key as the row's unique key: it would be stored as key_json in the state tables
    Case("key-as-unique-key", BASE.replace("unique_key='id'", "unique_key='k'"),
         env={"OPENAI_API_KEY": OPENAI_KEY},
         sql=f"SELECT '{OPENAI_KEY}' AS k, 'x' AS text",
         message=r"contain the value of an API key variable"),
]

# Errors a template or the SQL raises that ended in a traceback (exit 1) instead of exit 2
DEEP_EXPR = "(" * 2000 + "1" + ")" * 2000
CASES += [
    Case("template-zero-division", BASE.replace("prompt='Summarise: {{ text }}'",
                                                "prompt='{{ text }} {{ 1 / 0 }}'"),
         message=r"prompt template failed for the row with key \{'id': 0\}: division by zero"),
    Case("template-truncate-negative", BASE.replace("prompt='Summarise: {{ text }}'",
                                                    "prompt='{{ text|truncate(-5) }}'"),
         message=r"prompt template failed for the row .*expected length >= 3"),
    Case("template-format-missing-argument",
         BASE.replace("prompt='Summarise: {{ text }}'", "prompt='{{ text ~ \"{}\".format() }}'"),
         message=r"prompt template failed for the row .*index out of range"),
    Case("system-template-zero-division", BASE + ", system='{{ 1 / 0 }}'",
         message=r"job\.sql:\d+:\d+: system template: division by zero"),
    Case("template-nested-too-deeply",
         BASE.replace("prompt='Summarise: {{ text }}'", "prompt_file='p.txt'"),
         files={"p.txt": "{{ text }}{{ " + DEEP_EXPR + " }}"},
         message=r"p\.txt:1:1: prompt template is nested too deeply"),
    Case("template-if-nested-too-deeply",
         BASE.replace("prompt='Summarise: {{ text }}'", "prompt_file='p.txt'"),
         files={"p.txt": "{% if true %}" * 500 + "{{ text }}" + "{% endif %}" * 500},
         message=r"p\.txt:1:1: prompt template is nested too deeply"),
    Case("sql-nested-too-deeply", BASE,
         sql="SELECT id, text FROM reviews WHERE " + "abs(" * 950 + "1" + ")" * 950 + " > 0",
         message=LOC + r"nested too deeply to be proven read-only"),
    Case("sql-subqueries-nested-too-deeply", BASE,
         sql="SELECT id, text FROM " + "(SELECT * FROM " * 400 + "reviews" + ")" * 400,
         message=LOC + r"nested too deeply to be proven read-only"),
]

# Bad values that ended in a traceback (exit 1), or were taken, instead of a usage error
CASES += [
    Case("var-given-twice", BASE, sql="SELECT id, text FROM reviews WHERE id > {{ var('a') }}",
         args=("--var", "a=1", "--var", "a=2"), message=r"a is given twice"),
    Case("var-without-value", BASE, args=("--var", "novalue"),
         message=r"expected KEY=VALUE"),
    Case("poll-interval-nan", BASE, commands=("run",), args=("--poll-interval", "nan"),
         message=r"--poll-interval.*finite"),
    Case("max-wait-inf", BASE, commands=("run",), args=("--max-wait", "inf"),
         message=r"--max-wait.*finite"),
    Case("config-number-infinite", BASE + ", params={'temperature': 1e999}",
         message=r"job\.sql:\d+:\d+: config numbers must be finite"),
    Case("config-complex-number", BASE + ", params={'temperature': 1j}",
         message=r"job\.sql:\d+:\d+: config values must be literals"),
]

CASES += [
    # sent as a header: a line break made every request fail as a "connection error" (exit 3)
    Case("anthropic-version-header-injection",
         ANTHROPIC + ", anthropic_version='2023-06-01\\r\\nX-Evil: 1'",
         message=r"job\.sql:\d+:\d+: anthropic_version must be a date"),
]

CASES += [
    # the glob's folder is checked before anything is listed: `/**` would walk the whole disk
    Case("glob-outside-refused-before-listing", BASE,
         sql="SELECT 1 AS id, file AS text FROM glob('/**/passwd')",
         message=LOC + r"reads '/\*\*/passwd' \(/\), outside the folders"),
]
