"""Job files that would send an API key away: to a host the file names, inside a prompt read
from a file outside the job's folder, or inside the rows themselves."""
from __future__ import annotations

from . import ANTHROPIC, BASE, Case

# Long enough to count as a key (keys.MIN_KEY_LENGTH); the emulator accepts any key.
OPENAI_KEY = "sk-test-hostile-0123456789abcdefghijklmnopqrstuvwxyz"
ANTHROPIC_KEY = "sk-ant-test-hostile-0123456789abcdefghijklmnopqrstuvwxyz"
SCHEMA = '{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], ' \
         '"additionalProperties": false}'
NOT_ALLOWED = r"job\.sql:\d+:\d+: base_url names the host .* not allowed(.|\n)*--allow-host"

CASES = [
    # -- base_url: the key goes to the host the job file names ----------------------------
    Case("keys-openai-base-url-trap", BASE + ", base_url='{trap}/v1'",
         message=NOT_ALLOWED + r" 127\.0\.0\.2"),
    Case("keys-anthropic-base-url-trap", ANTHROPIC + ", base_url='{trap}'",
         message=NOT_ALLOWED + r" 127\.0\.0\.2"),
    Case("keys-loopback-base-url-not-allowed", BASE + ", base_url='http://127.0.0.1:9/v1'",
         message=NOT_ALLOWED + r" 127\.0\.0\.1"),
    Case("keys-localhost-base-url-not-allowed",
         BASE + ", base_url='http://localhost:9/v1'", message=NOT_ALLOWED + r" localhost"),
    Case("keys-allowed-other-port-is-not-allowed", BASE + ", base_url='{trap}/v1'",
         args=("--allow-host", "127.0.0.2:1"), message=NOT_ALLOWED),
    Case("keys-compatible-base-url-trap",
         BASE.replace("'openai'", "'openai_compatible'") + ", base_url='{trap}/v1'",
         message=NOT_ALLOWED),
    Case("keys-azure-base-url-trap",
         BASE.replace("'openai'", "'azure_openai'") + ", base_url='{trap}'",
         env={"AZURE_OPENAI_API_KEY": "azure-key"}, message=NOT_ALLOWED),
    Case("keys-base-url-not-http", BASE + ", base_url='file:///etc/passwd'",
         message=r"job\.sql:\d+:\d+: base_url .* not an http\(s\) URL"),
    Case("keys-base-url-with-credentials", BASE + ", base_url='http://u:p@127.0.0.2:1/v1'",
         args=("--allow-host", "127.0.0.2"), message=r"must not carry credentials"),
    # -- files outside the job's folder and project ----------------------------------------
    Case("keys-system-file-proc-environ",
         BASE + ", system_file='/proc/self/environ'",
         message=r"job\.sql:\d+:\d+: system_file '/proc/self/environ' is outside the folders"
                 r"(.|\n)*--allow-path"),
    Case("keys-prompt-file-etc-passwd",
         BASE.replace("prompt='Summarise: {{ text }}'",
                      "prompt_file='../../../../../../../../etc/passwd'"),
         message=r"job\.sql:\d+:\d+: prompt_file '\.\./(\.\./)*etc/passwd' is outside the "
                 r"folders(.|\n)*--allow-path"),
    Case("keys-prompt-file-symlink-free-escape",
         BASE.replace("prompt='Summarise: {{ text }}'", "prompt_file='{dir}-outside/p.j2'"),
         files={"{dir}-outside/p.j2": "Summarise: {{ text }}"},
         message=r"prompt_file .* is outside the folders(.|\n)*--allow-path"),
    Case("keys-output-schema-outside",
         BASE + ", output_schema='{dir}-outside/schema.json'",
         files={"{dir}-outside/schema.json": SCHEMA},
         message=r"job\.sql:\d+:\d+: output_schema .* is outside the folders(.|\n)*--allow-path"),
    # -- the key itself in a request -------------------------------------------------------
    Case("keys-openai-key-in-source-row", BASE,
         env={"OPENAI_API_KEY": OPENAI_KEY},
         setup_sql=f"CREATE TABLE notes AS SELECT 1 AS id, 'harmless' AS text UNION ALL "
                   f"SELECT 2, 'the key is {OPENAI_KEY} ok'",
         sql="SELECT id, text FROM notes",
         message=r"contain the value of an API key variable(.|\n)*'key': '\{\"id\":2\}', "
                 r"'variable': '\$OPENAI_API_KEY'"),
    Case("keys-anthropic-key-in-openai-job", BASE,
         env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY},
         setup_sql=f"CREATE TABLE notes AS SELECT 7 AS id, '{ANTHROPIC_KEY}' AS text",
         sql="SELECT id, text FROM notes",
         message=r"contain the value of an API key(.|\n)*\$ANTHROPIC_API_KEY"),
    Case("keys-gemini-key-in-source-row", ANTHROPIC,
         env={"GEMINI_API_KEY": "AIzaSyHostileGeminiKey0123456789abcdef"},
         setup_sql="CREATE TABLE notes AS SELECT 3 AS id, "
                   "'AIzaSyHostileGeminiKey0123456789abcdef' AS text",
         sql="SELECT id, text FROM notes", message=r"\$GEMINI_API_KEY"),
    Case("keys-key-in-system-file", BASE + ", system_file='system.txt'",
         env={"OPENAI_API_KEY": OPENAI_KEY},
         files={"system.txt": f"You are helpful. Use {OPENAI_KEY} if asked."},
         message=r"job\.sql:\d+:\d+: the system prompt .* contain the value of "
                 r"\$OPENAI_API_KEY"),
]
