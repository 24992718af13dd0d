"""API keys: which environment variables hold them, and how they are kept out of everything.

A job file is code that travels, and it runs under an account holding the organisation's
keys. Three rules, enforced here and at the points that call this module:

* **Where keys come from.** Every registered provider declares the variables that hold its
  key (`Provider.api_key_env`); `register_key_env` records them here, together with
  `EXTRA_KEY_ENV` (keys of providers not built in yet, e.g. Gemini's). Keys are read from the
  environment only.
* **No key in a request.** A rendered prompt or system prompt that contains the value of one
  of those variables is refused before anything is stored or sent (`refuse_keys_in_requests`,
  set-based in DuckDB). Values shorter than `MIN_KEY_LENGTH` characters are ignored: real keys
  are far longer, and a short value (a placeholder such as "emulator") would match ordinary
  text.
* **No key fragment in any table or log.** `redact` removes literal key values (from the
  environment and from every key a provider client was built with; again only values of at
  least `MIN_KEY_LENGTH` characters) and key-shaped fragments:
  `sk-…`, `sk-proj-…`, `sk-ant-…`, masked forms such as `sk-proj-****abcd` or `abcd…wxyz`, and
  `Bearer …` credentials. It is applied where provider errors are created, where errors are
  written to `runs.error` / `batches.error`, and to everything the CLI prints.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Mapping, overload

import duckdb

from .errors import DataError, JobFileError, Location

MIN_KEY_LENGTH = 16
EXTRA_KEY_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
REDACTED = "[redacted]"

_KEY_ENV: dict[str, None] = dict.fromkeys(EXTRA_KEY_ENV)   # ordered set
_SEEN_KEYS: set[str] = set()   # keys clients were built with (may come from Options.env)

# Variable names that hold a secret by convention; redacted even if no provider declares them.
_SECRET_NAME = re.compile(r"(API_KEY|AUTH_TOKEN)$")
_KEY_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_\-*.…]{4,}"                     # sk-…, sk-proj-…, sk-ant-…, masked
    r"|[\w\-]*\*{4,}[\w\-*]*"                         # other masked forms: abcd****wxyz
    r"|\w{2,}…\w{2,}"                                 # … and abcd…wxyz
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9_\-.=:+/]{8,}",  # a credential as an HTTP header shows it
    re.IGNORECASE)


def register_key_env(names: Iterable[str]) -> None:
    """Record variables that hold a provider's API key (called as providers register)."""
    for n in names:
        _KEY_ENV[n] = None


def key_env_names() -> tuple[str, ...]:
    """Every variable known to hold a provider API key."""
    return tuple(_KEY_ENV)


def remember_key(value: str | None) -> None:
    """Note a key a client is built with, so `redact` removes it wherever it came from."""
    if value and len(value) >= MIN_KEY_LENGTH:
        _SEEN_KEYS.add(value)


def key_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{variable: value} of the provider key variables set in `env` whose values are at least
    `MIN_KEY_LENGTH` characters long (shorter ones cannot be told from ordinary text)."""
    env = os.environ if env is None else env
    return {n: env[n] for n in key_env_names() if len(env.get(n) or "") >= MIN_KEY_LENGTH}


def _secrets(env: Mapping[str, str] | None) -> list[str]:
    found = set(_SEEN_KEYS)
    for source in (os.environ, env or {}):
        for name, value in source.items():
            secret_name = name in _KEY_ENV or _SECRET_NAME.search(name)
            if secret_name and len(value or "") >= MIN_KEY_LENGTH:
                found.add(value)
    return sorted(found, key=len, reverse=True)   # longest first: no partial leftovers


@overload
def redact(text: str, env: Mapping[str, str] | None = None) -> str: ...
@overload
def redact(text: None, env: Mapping[str, str] | None = None) -> None: ...


def redact(text: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """`text` with every API key value and every key-shaped fragment replaced by
    `[redacted]`. None stays None."""
    if not text:
        return text
    for secret in _secrets(env):
        text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)



def refuse_keys_in_requests(con: duckdb.DuckDBPyConnection, system_text: str | None,
                            static_body: str, env: Mapping[str, str], prompt_location: Location,
                            system_location: Location, row_text_sql: str | None = None) -> None:
    """Refuse the job if a rendered request would carry an API key.

    View `wb_prompt` gives the rendered prompts, `system_text` the system prompt and
    `static_body` the request body around the prompt (parameters, schema). `row_text_sql`,
    a condition over `wb_src s` with `{key}` standing for the key value, finds the key in the
    row's columns: a key in a column the prompt does not use would still be written to the
    output table (and a key column to the state). Only prompts rendered now and rows whose
    input fingerprint changed are checked (the others passed when they were new); the error
    names the row (`key_json`) and the variable, never the value.
    """
    values = key_values(env)
    if not values:
        return
    for name, value in values.items():
        if value in (system_text or "") or value in static_body:
            raise JobFileError(
                f"the system prompt or request parameters contain the value of ${name}: "
                "an API key must never be sent in a request", system_location,
                hint="remove the file or text that holds the key from the job")
    con.execute("CREATE OR REPLACE TEMP TABLE wb_key_values (name VARCHAR, value VARCHAR)")
    try:
        con.executemany("INSERT INTO wb_key_values VALUES (?, ?)", list(values.items()))
        hits = con.execute("""SELECT w.key_json, k.name FROM wb_prompt w
            JOIN wb_key_values k ON contains(w.prompt, k.value)
            ORDER BY w.row_number LIMIT 11""").fetchall()
        if not hits and row_text_sql:
            hits = con.execute(f"""SELECT s.__wb_key, k.name FROM wb_src s
                JOIN wb_key_values k ON {row_text_sql.replace('{key}', 'k.value')}
                WHERE NOT s.__wb_same ORDER BY s.__wb_n LIMIT 11""").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS wb_key_values")
    if hits:
        rows = [{"key": key_json, "variable": f"${name}"} for key_json, name in hits]
        raise DataError(
            f"the rendered prompt or selected columns of "
            f"{len(hits) if len(hits) < 11 else 'more than 10'} row(s) contain the value of an "
            "API key variable: it would be sent to the provider or stored; nothing was sent", rows=rows, location=prompt_location,
            hint="remove the key from the source data (or from the prompt template's input)")
