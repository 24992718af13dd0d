"""Proof that a job's SQL only reads: DuckDB's own parse tree, walked against an allowlist.

A job file travels (pull requests, shared repositories), so its SELECT is treated as
untrusted code. Rather than ask "is this a SELECT?" (a SELECT may hide `DELETE … RETURNING`
in a CTE), the statement is parsed by the DuckDB that will run it (`json_serialize_sql`) and
every node of the tree is checked:

* query nodes, table references, modifiers and expression classes must be of a kind known to
  be read-only; anything else (DML query nodes, a node kind a newer DuckDB adds) is refused;
* table functions must be on a list of readers (`read_csv`, `range`, …); scalar functions
  that run SQL text, touch settings, secrets, sequences or the environment, sleep, or write
  are refused;
* every file a table function or a `FROM 'file.csv'` scan reads must be a literal path that
  lies under the job's `Scope` (job folder, project root, `--allow-path`), resolved from the
  job folder and from the current directory, symlinks followed.

What cannot be proven read-only is refused. The check is one layer: `source.prepare` also
runs the SELECT while the database is attached read-only (`db.read_only`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import duckdb

from .errors import JobFileError, Location
from .paths import Scope

# Query nodes, table references and the small enums that hang off them, all read-only.
_QUERY_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_TABLE_REFS = {"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EMPTY", "EXPRESSION_LIST",
               "PIVOT", "SHOW_REF"}
_MODIFIERS = {"ORDER_MODIFIER", "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER",
              "DISTINCT_MODIFIER", "ORDER_DEFAULT", "ASCENDING", "DESCENDING"}
_ALLOWED_TYPES = _QUERY_NODES | _TABLE_REFS | _MODIFIERS
# Parsed-expression classes; a FUNCTION is checked by name below.
_EXPRESSION_CLASSES = {"BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON",
                       "CONJUNCTION", "CONSTANT", "FUNCTION", "LAMBDA", "LAMBDA_REF",
                       "OPERATOR", "PARAMETER", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY",
                       "WINDOW", "TYPE"}

# Table functions that only read. Those in PATH_FUNCTIONS read the file(s) named by their
# first argument, which must be a literal under the job's scope.
PATH_FUNCTIONS = {
    "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
    "read_json_objects", "read_json_objects_auto", "read_ndjson", "read_ndjson_auto",
    "read_ndjson_objects", "read_text", "read_blob", "glob", "sniff_csv", "parquet_metadata",
    "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata", "parquet_full_metadata",
    "parquet_bloom_probe", "parquet_page_index",
}
TABLE_FUNCTIONS = PATH_FUNCTIONS | {
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "summary", "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_functions",
    "duckdb_indexes", "duckdb_keywords", "duckdb_schemas", "duckdb_sequences", "duckdb_tables",
    "duckdb_types", "duckdb_views", "pragma_table_info", "pragma_version", "pg_timezone_names",
    "icu_calendar_names", "histogram", "histogram_values",
}
# Table functions of DuckDB extensions that read the local file(s) named by their first
# argument: allowed, the path confined like read_csv's, where the extension is installed
# (DuckDB loads an installed extension on first use; it never installs one here).
EXTENSION_READERS = {"read_xlsx": "excel", "sqlite_scan": "sqlite", "st_read": "spatial",
                     "read_avro": "avro"}
# Functions of extensions that DuckDB's own map does not name (its binder answers "Did you
# mean parquet_scan"); they read from a database server, which a job may not.
SERVER_FUNCTIONS = {
    "postgres_scan": "postgres", "postgres_scan_pushdown": "postgres",
    "postgres_query": "postgres", "postgres_execute": "postgres", "postgres_attach": "postgres",
    "mysql_scan": "mysql", "mysql_query": "mysql", "mysql_execute": "mysql",
    "odbc_scan": "odbc", "odbc_query": "odbc",
}
_IN_EXTENSION = re.compile(r'exists in the (\w+) extension|Extension "(\w+)" is an existing '
                           r'extension')

# Scalar functions that run SQL text, reach outside the process, read or change settings,
# secrets, sequences or storage, write, or stall. Every other scalar function only computes.
REFUSED_FUNCTIONS = {
    "query", "query_table", "json_execute_serialized_sql", "getenv", "current_setting",
    "getvariable", "load_extension", "install_extension", "add_parquet_key", "which_secret",
    "nextval", "setval", "currval", "copy_database", "import_database", "checkpoint",
    "force_checkpoint", "write_log", "truncate_duckdb_logs", "setseed", "pg_sleep", "sleep_ms",
    "database_size", "storage_info", "metadata_info", "set_bit_global",
    "enable_logging", "disable_logging", "enable_profiling", "disable_profiling",
    "enable_profile", "disable_profile", "enable_optimizer", "disable_optimizer",
    "enable_object_cache", "disable_object_cache", "enable_checkpoint_on_shutdown",
    "disable_checkpoint_on_shutdown", "enable_progress_bar", "disable_progress_bar",
    "enable_print_progress_bar", "disable_print_progress_bar", "enable_verification",
    "disable_verification", "verify_parallelism", "disable_verify_parallelism",
    "pg_conf_load_time", "pg_postmaster_start_time", "inet_client_addr", "inet_server_addr",
    "inet_client_port", "inet_server_port", "user_agent", "platform",
    "register_external_resource", "create_external_resource", "destroy_external_resource",
    "deregister_external_resource", "register_external_resource_type",
    "add_grammar_extension", "remove_grammar_extension", "duckdb_secrets",
}
_DML_WORDS = {"DELETE_QUERY_NODE": "DELETE", "UPDATE_QUERY_NODE": "UPDATE",
              "INSERT_QUERY_NODE": "INSERT", "MERGE_INTO_QUERY_NODE": "MERGE"}
_NO_LOCATION = 2 ** 64 - 1
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_GLOB = re.compile(r"[*?\[{]")
_FILE_LIKE = re.compile(r"[./\\~*?\[{]")
_HINT_PATH = ("files are read only under the job's folder and project root; the operator may "
              "allow more with --allow-path DIR or $WAREHOUSE_BATCH_ALLOWED_PATHS")
_HINT_READONLY = ("a job's SQL is one SELECT that only reads; warehouse-batch writes the "
                  "output table itself")


class _Text:
    """The SQL text with DuckDB's byte offsets mapped to file line and column."""

    def __init__(self, sql: str, path: str) -> None:
        self.sql, self.path = sql, path
        self.data = sql.encode("utf-8")

    def location(self, byte_offset: int | None) -> Location:
        if byte_offset is None or byte_offset == _NO_LOCATION or byte_offset < 0:
            return self.start()
        offset = len(self.data[:byte_offset].decode("utf-8", errors="ignore"))
        line = self.sql.count("\n", 0, offset) + 1
        column = offset - (self.sql.rfind("\n", 0, offset) + 1) + 1
        return Location(self.path, line, column)

    def start(self) -> Location:
        """Where the statement's first token is."""
        tokens = _tokens(self.sql)
        for offset, kind in tokens:
            if kind != "comment":
                return self.location(offset)
        return Location(self.path, 1, 1)

    def keyword(self, word: str) -> Location:
        """Where the first keyword `word` appears (for nodes DuckDB gives no position)."""
        for offset, kind in _tokens(self.sql):
            if kind == "keyword" and self.data[offset:offset + len(word)].upper() == \
                    word.encode():
                return self.location(offset)
        return self.start()


def _tokens(sql: str) -> list[tuple[int, str]]:
    try:
        return [(o, t.name) for o, t in duckdb.tokenize(sql)]
    except Exception:   # noqa: BLE001 - a tokenizer hiccup only costs a precise location
        return []


def check_read_only(sql: str, path: str, scope: Scope | None = None) -> None:
    """Refuse `sql` (with file:line:col) unless it is one statement proven to only read,
    and every file it reads lies under `scope`. `sql` keeps the job file's line numbers.
    Parsing uses a private in-memory DuckDB: nothing is bound, read or run."""
    text = _Text(sql, path)
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        tree = _parse(con, text)
        _Walker(text, scope, con).walk(tree["statements"][0]["node"])
    except RecursionError:
        raise JobFileError("the SQL is nested too deeply to be proven read-only",
                           text.start(), hint="flatten the nesting, e.g. with CTEs") from None
    finally:
        con.close()


def _parse(con: duckdb.DuckDBPyConnection, text: _Text) -> dict:
    """DuckDB's parse tree of the single SELECT in `text`, or a JobFileError."""
    try:
        statements = con.extract_statements(text.sql)
    except duckdb.Error as e:
        raise JobFileError(f"SQL does not parse: {_first_line(e)}",
                           _error_location(e, text)) from None
    if not statements:
        raise JobFileError("the job file has no SELECT after the config block",
                           Location(text.path))
    if len(statements) > 1:
        raise JobFileError(
            f"the job file has {len(statements)} SQL statements; a job has exactly one SELECT",
            _statement_start(text, 1))
    kind = statements[0].type.name.upper()
    if kind == "MULTI":
        raise JobFileError(
            "this statement cannot be proven read-only: DuckDB runs it as several statements "
            "(a PIVOT without an IN list first creates a type)", text.start(),
            hint="list the pivot values: PIVOT t ON col IN ('a', 'b') USING …")
    if kind != "SELECT":
        raise JobFileError(f"the statement is {kind}, not a SELECT; a job only reads data",
                           text.start(), hint=_HINT_READONLY)
    raw = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [text.sql]).fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        message = tree.get("error_message") or "unknown error"
        if "Only SELECT" in message:
            raise JobFileError(
                "this statement cannot be proven read-only (DuckDB runs it as more than one "
                "statement; a PIVOT without an explicit IN list creates a type first)",
                text.start(),
                hint="list the pivot values: PIVOT t ON col IN ('a', 'b') USING …")
        loc = text.location(int(tree["position"])) if str(tree.get("position", "")).isdigit() \
            else text.start()
        raise JobFileError(f"SQL does not parse: {message}", loc)
    if len(tree.get("statements", [])) != 1:
        raise JobFileError("the job file must hold exactly one SELECT", text.start())
    return tree


def _first_line(e: Exception) -> str:
    return str(e).split("\n")[0].strip()


def _error_location(e: Exception, text: _Text) -> Location:
    m = re.search(r"LINE (\d+):", str(e))
    return Location(text.path, int(m.group(1))) if m else text.start()


def _statement_start(text: _Text, index: int) -> Location:
    """Where statement number `index` (0-based) begins: after the index-th top-level `;`."""
    seen = 0
    after = False
    for offset, kind in _tokens(text.sql):
        if after and kind != "comment":
            return text.location(offset)
        if kind == "operator" and text.data[offset:offset + 1] == b";":
            seen += 1
            after = seen == index
    return text.start()


class _Walker:
    """Checks every node of one parse tree; raises JobFileError on the first refusal."""

    def __init__(self, text: _Text, scope: Scope | None,
                 con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.text, self.scope, self.con = text, scope, con

    def walk(self, node: Any, where: int | None = None) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, where)
            return
        if not isinstance(node, dict):
            return
        loc = node.get("query_location")
        if isinstance(loc, int) and loc != _NO_LOCATION:
            where = loc
        if "class" in node:
            self._expression(node, where)
        elif isinstance(node.get("type"), str) and not _is_type_info(node):
            self._node(node, where)
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                self.walk(value, where)

    def _refuse(self, message: str, where: int | None, hint: str = _HINT_READONLY) -> None:
        raise JobFileError(message, self.text.location(where), hint=hint)

    def _node(self, node: dict, where: int | None) -> None:
        kind = node["type"]
        if kind in _DML_WORDS:
            word = _DML_WORDS[kind]
            raise JobFileError(
                f"the SELECT contains {word} (in a CTE or subquery); a job only reads data",
                self.text.keyword(word), hint=_HINT_READONLY)
        if kind not in _ALLOWED_TYPES:
            self._refuse(f"the SELECT contains a {kind.lower().replace('_', ' ')}, which "
                         "cannot be proven read-only", where)
        if kind == "TABLE_FUNCTION":
            self._table_function(node, where)
        elif kind == "BASE_TABLE":
            self._base_table(node, where)

    def _expression(self, node: dict, where: int | None) -> None:
        cls = node["class"]
        if cls not in _EXPRESSION_CLASSES:
            self._refuse(f"the SELECT contains a {cls.lower()} expression, which cannot be "
                         "proven read-only", where)
        if cls == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in REFUSED_FUNCTIONS:
                self._refuse(f"the SELECT calls {name}(), which a job may not use: it can run "
                             "SQL text, read settings, secrets or the environment, or change "
                             "state", where, hint="compute the value outside the job and pass "
                             "it with --var, or read it from a table")

    def _table_function(self, node: dict, where: int | None) -> None:
        fn = node.get("function") or {}
        name = str(fn.get("function_name", "")).lower()
        if name in EXTENSION_READERS:
            self._extension(EXTENSION_READERS[name], name, where)
            args = _positional(fn)
            if not args:
                self._refuse(f"{name}() needs a file path", where, hint=_HINT_PATH)
            self._paths(args[0], name, where)
            return
        extension = SERVER_FUNCTIONS.get(name) or (
            None if name in TABLE_FUNCTIONS else _extension_of(self.con, name))
        if extension is not None:
            self._extension(extension, name, where)
        if name in SERVER_FUNCTIONS:
            self._refuse(f"{name}() reads from a database server; a job reads the database "
                         "file, attached DuckDB files and local files only", where,
                         hint="copy the data into a DuckDB file and read it with "
                              "attach={'src': 'src.duckdb'}")
        if name in REFUSED_FUNCTIONS or name not in TABLE_FUNCTIONS:
            self._refuse(f"the SELECT reads from the table function {name}(), which cannot "
                         "be proven read-only", where,
                         hint="a job may read tables, views and local files through "
                              "read_csv/read_parquet/read_json/read_text/glob, range, unnest, "
                              "…; see the README")
        if name in PATH_FUNCTIONS:
            args = _positional(fn)
            if not args:
                self._refuse(f"{name}() needs a file path", where, hint=_HINT_PATH)
            self._paths(args[0], name, where)

    def _extension(self, extension: str, name: str, where: int | None) -> None:
        """Refuse `name()` with the extension to install when `extension` is not installed
        here (DuckDB's own words would be "does not exist", or "Did you mean …")."""
        if self.con is not None and not extension_installed(self.con, extension):
            if name in EXTENSION_READERS:
                hint = "warehouse-batch never installs extensions itself (it runs offline)"
            elif name in SERVER_FUNCTIONS:
                hint = ("even then a job may not read from a database server: copy the data "
                        "into a DuckDB file and attach it")
            else:
                hint = (f"even then {name}() cannot be proven read-only, so a job may not use "
                        "it; the README lists the table functions a job may read with")
            raise JobFileError(not_installed(extension) + f" ({name}() is one of its "
                               "functions)", self.text.location(where), hint=hint)

    def _paths(self, expr: dict, name: str, where: int | None) -> None:
        """The literal path(s) of a reading function's first argument, each checked."""
        loc = expr.get("query_location", where)
        text = _string_constant(expr)
        if text is not None:
            self._path(text, loc)
            return
        if expr.get("class") == "FUNCTION" and expr.get("function_name") == "list_value":
            for arg in _positional(expr):
                self._paths(arg, name, loc)
            return
        self._refuse(f"{name}() reads a path computed at run time, which cannot be checked; "
                     "write the path as a string literal", loc, hint=_HINT_PATH)

    def _base_table(self, node: dict, where: int | None) -> None:
        """`FROM 'reviews.csv'`: DuckDB reads a file when no table has that name, joining a
        qualified name with dots (`FROM "/etc/x".csv` reads /etc/x.csv), so the whole name
        is checked as a path. A CTE of the same name is no exception: which of the two a name
        means depends on scope rules (a CTE's own body, earlier CTEs, subqueries) that a
        check must not guess."""
        parts = [str(node.get(k) or "") for k in ("catalog_name", "schema_name", "table_name")]
        name = ".".join(p for p in parts if p)
        if _FILE_LIKE.search(name) or _URL.match(name):
            self._path(name, where)

    def _path(self, raw: str, where: int | None) -> None:
        loc = self.text.location(where)
        if _URL.match(raw) and not re.match(r"^[A-Za-z]:[\\/]", raw):
            raise JobFileError(f"the SELECT reads {raw!r}, which is not a local file; a job "
                               "reads local files only", loc, hint=_HINT_PATH)
        if self.scope is None:
            return
        for candidate in _candidates(raw, self.scope):
            if not self.scope.allows(candidate):
                raise JobFileError(
                    f"the SELECT reads {raw!r} ({candidate}), outside the folders this job "
                    f"may read ({self.scope.describe()})", loc, hint=_HINT_PATH)


def not_installed(extension: str) -> str:
    return (f"the DuckDB extension {extension} is not installed here; run INSTALL "
            f"{extension} once where the network is available")


def extension_installed(con: duckdb.DuckDBPyConnection, extension: str) -> bool:
    """Whether `extension` (a name or an alias: `postgres`, `sqlite`) is installed or built
    in, as DuckDB reports it (`duckdb_extensions()`)."""
    row = con.execute("SELECT bool_or(installed OR loaded) FROM duckdb_extensions() "
                      "WHERE extension_name = ? OR list_contains(aliases, ?)",
                      [extension, extension]).fetchone()
    return bool(row and row[0])


def _extension_of(con: duckdb.DuckDBPyConnection | None, name: str) -> str | None:
    """The extension DuckDB's own map says a table function `name` belongs to, when it is
    not in the catalog (the private connection loads no extension): the binder's error
    names it. None for a function DuckDB does not know at all, or one it has."""
    if con is None or name in REFUSED_FUNCTIONS or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return None
    known = con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?",
                        [name]).fetchone()[0]
    if known:
        return None   # DuckDB has it: nothing is missing (and it is never bound here)
    try:
        con.execute(f'DESCRIBE SELECT * FROM "{name}"()')
    except duckdb.Error as e:
        return extension_in_error(str(e))
    return None


def extension_in_error(message: str) -> str | None:
    """The extension a DuckDB error says is missing ("… exists in the spatial extension",
    "Extension "excel" is an existing extension"), else None."""
    m = _IN_EXTENSION.search(message)
    return (m.group(1) or m.group(2)) if m else None


def extension_error(message: str, sql: str, path: str) -> JobFileError | None:
    """A DuckDB error saying a function's extension is missing, as a JobFileError naming
    the extension and where the function is called (found in `sql`, which keeps the job
    file's lines); None for any other error."""
    extension = extension_in_error(message)
    if extension is None:
        return None
    loc = Location(path)
    m = re.search(r'with name "?(\w+)"?', message)
    if m:
        call = re.search(rf"\b{re.escape(m.group(1))}\s*\(", sql, re.IGNORECASE)
        if call:
            loc = _Text(sql, path).location(len(sql[:call.start()].encode("utf-8")))
    return JobFileError(not_installed(extension), loc,
                        hint="warehouse-batch never installs extensions itself (it runs "
                             "offline)")


def _is_type_info(node: dict) -> bool:
    """A type descriptor (`DECIMAL(10, 2)`), not a node of the query."""
    return ("id" in node and "type_info" in node) or str(node["type"]).endswith("_TYPE_INFO")


def _positional(fn: dict) -> list[dict]:
    """A function's positional arguments (DuckDB 2 lists `arguments` with names; DuckDB 1.4
    lists `children`, a named parameter being `name = value`)."""
    if "arguments" in fn:
        return [a["expression"] for a in fn["arguments"] if not a.get("name")]
    return [c for c in fn.get("children", [])
            if not (c.get("class") == "COMPARISON" and c.get("type") == "COMPARE_EQUAL"
                    and (c.get("left") or {}).get("class") == "COLUMN_REF")]


def _string_constant(expr: dict) -> str | None:
    """The text of a string literal (DuckDB 2: `literal`, DuckDB 1.4: `value`), else None."""
    if expr.get("class") != "CONSTANT":
        return None
    literal = expr.get("literal")
    if isinstance(literal, dict) and literal.get("kind") in ("STRING", "VARCHAR"):
        return str(literal.get("text"))
    value = expr.get("value")
    if isinstance(value, dict) and (value.get("type") or {}).get("id") == "VARCHAR" \
            and not value.get("is_null") and isinstance(value.get("value"), str):
        return value["value"]
    return None


def _candidates(raw: str, scope: Scope) -> Iterator[Path]:
    """The files or folders `raw` may name: from the job folder (DuckDB's file_search_path)
    and, if it exists there, from the current directory. A glob counts as its folder and as
    every file DuckDB's glob finds for it now (`*/../x` and a symlink matched by `*` lead
    out of that folder). The folder comes first: a glob outside the scope (`/**/x`) is
    refused without listing anything."""
    m = _GLOB.search(raw)
    folder = raw
    if m:
        prefix = raw[:m.start()]
        folder = prefix[:prefix.rfind("/") + 1] or "."
    p = Path(folder).expanduser()
    yield scope.resolve(p)
    if not p.is_absolute():
        here = (Path.cwd() / p)
        # A relative glob's folder always exists in the current directory ("." for
        # '*.csv'), so from a cron job's `/` it would refuse every such job; what matters is
        # what the glob matches there (listed below). Only `**`, which would list a whole
        # tree outside the scope, is judged by its folder.
        if (here.exists() or here.is_symlink()) and (not m or "**" in raw):
            yield here.resolve()
    if m:
        yield from _glob_matches(raw, scope)


def _glob_matches(pattern: str, scope: Scope) -> Iterator[Path]:
    """The files DuckDB's own glob finds for `pattern`, from the job folder and the current
    directory, symlinks resolved. Listing names reads no file's contents."""
    p = Path(pattern).expanduser()
    patterns = [p] if p.is_absolute() else [scope.job_dir / p, Path.cwd() / p]
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        for full in dict.fromkeys(str(x) for x in patterns):
            try:
                files = con.execute("SELECT file FROM glob(?)", [full]).fetchall()
            except duckdb.Error:
                continue   # a pattern DuckDB cannot list cannot be read either
            for (name,) in files:
                yield Path(name).resolve()
    finally:
        con.close()
