"""Parameters a provider or model refuses, and output schemas the answer check could not
enforce: refused at plan (and run) naming the file, line and key; nothing written or sent."""
from __future__ import annotations

from . import BASE, Case

ANTHROPIC = BASE.replace("'openai'", "'anthropic'").replace("gpt-4.1-mini", "claude-haiku-4-5")

CASES = [
    Case("openai-top-k", BASE + ",\ntop_k=40",
         message=r"job\.sql:\d+:\d+: 'top_k' is not a parameter of openai's chat requests"
                 r"(.|\n)*use top_p"),
    Case("openai-stop-sequences", BASE + ",\nstop_sequences=['END']",
         message=r"job\.sql:\d+:\d+: 'stop_sequences' is not a parameter(.|\n)*did you mean "
                 r"'stop'\?"),
    Case("openai-thinking-in-params", BASE + ",\nparams={'thinking': {'type': 'enabled'}}",
         message=r"'thinking' \(in params\) is not a parameter of openai's chat requests"),
    Case("azure-top-k", BASE.replace("'openai'", "'azure_openai'") + ",\ntop_k=40",
         message=r"'top_k' is not a parameter of azure_openai's chat requests"),
    Case("reasoning-temperature", BASE.replace("gpt-4.1-mini", "o3-mini") + ",\ntemperature=0",
         message=r"job\.sql:\d+:\d+: 'temperature' is refused by 'o3-mini': reasoning models"),
    Case("gpt5-top-p", BASE.replace("gpt-4.1-mini", "gpt-5") + ",\ntop_p=0.5",
         message=r"'top_p' is refused by 'gpt-5'"),
    Case("opus-4-7-sampling",
         ANTHROPIC.replace("claude-haiku-4-5", "claude-opus-4-7")
         + ",\ntemperature=0.3, anthropic_version='2023-06-01'",
         message=r"'temperature' is refused by 'claude-opus-4-7': Claude Opus 4\.7 and later "
                 r"generations refuse sampling parameters on every API version"),
    Case("anthropic-seed", ANTHROPIC + ",\nseed=1",
         message=r"'seed' is not a parameter of anthropic's chat requests(.|\n)*no seed"),
    Case("schema-unenforceable-keyword",
         BASE + ",\noutput_schema={'type': 'object', 'properties': {'x': {'type': 'array', "
                "'items': {'type': 'string'}, 'uniqueItems': True}}}",
         message=r"job\.sql:\d+:\d+: output property 'x' uses 'uniqueItems', which the answer "
                 r"check cannot enforce"),
    Case("schema-bad-pattern",
         BASE + ",\ncolumns={'code': {'type': 'string', 'pattern': '(?<=a)b'}}",
         message=r"output property 'code': pattern '\(\?<=a\)b' is not a regular expression"),
]
