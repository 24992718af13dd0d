"""provider='gemini' job files refused at plan (and run), naming the file, line and key;
nothing written or sent (not to the emulator, not to a trap)."""
from __future__ import annotations

from . import BASE, Case

GEMINI = BASE.replace("'openai'", "'gemini'").replace("gpt-4.1-mini", "gemini-2.5-flash")

CASES = [
    Case("gemini-logit-bias", GEMINI + ",\nlogit_bias={'1': 2}",
         message=r"job\.sql:\d+:\d+: 'logit_bias' is not a parameter of gemini's chat requests"),
    Case("gemini-max-completion-tokens", GEMINI + ",\nmax_completion_tokens=20",
         message=r"'max_completion_tokens' is not a parameter of gemini's chat requests"
                 r"(.|\n)*did you mean 'max_tokens'\?"),
    Case("gemini-response-schema-in-params",
         GEMINI + ",\ncolumns={'label': 'varchar'},\n"
                  "params={'generationConfig': {'responseSchema': {'type': 'STRING'}}}",
         message=r"generationConfig\.responseSchema is set by columns/output_schema"),
    Case("gemini-generation-config-not-a-dict", GEMINI + ",\nparams={'generationConfig': 5}",
         message=r"params\.generationConfig must be a dict"),
    Case("gemini-base-url-with-version", GEMINI + ",\nbase_url='{trap}/v1beta'",
         args=("--allow-host", "127.0.0.2"),
         message=r"job\.sql:\d+:\d+: base_url '.*/v1beta' must not end in an API version"),
    Case("gemini-base-url-not-allowed", GEMINI + ",\nbase_url='{trap}'",
         message=r"base_url names the host 127\.0\.0\.\d+:\d+, which the operator has not "
                 r"allowed: the API key in \$GEMINI_API_KEY would be sent there"),
    Case("gemini-embeddings-unknown-size",
         GEMINI.replace("gemini-2.5-flash", "my-embedder").replace(", max_tokens=20", "")
         + ",\nendpoint='embeddings'",
         message=r"unknown vector size for model 'my-embedder': set dimensions=N"),
]
