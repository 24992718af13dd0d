"""`{{ var('name') }}` in a job's SQL, bound as SQL literals, and `--var` names checked.

A `--var` value is data, never SQL: `{{ var('s') }}` becomes a string literal with `'`
doubled, a number, TRUE/FALSE or NULL, so `--var "s=x' OR '1'='1"` compares against that
text and cannot change the query. A var gives a value, not an identifier (a table or column
name cannot come from `--var`). Lists and dicts are refused (no single literal form that
reads the same in every position). The SQL part of a job file takes only `{{ var(...) }}`
expressions (and `{# comments #}`); anything else Jinja could do there is refused, which keeps
the rendering small and bounded.

Every `--var` given must be used, by a `var('name')` in the SQL or by `vars.name` in the
prompt or system template; an unused one is a typo until proven otherwise.

dbt's words (`ref`, `source`, `env_var`, and project vars behind `var`) are resolved by a
`SqlWords` the caller passes in (`dbtwords.DbtWords`); this module only finds the calls,
with the line and column of each, and puts what the resolver returns in their place.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Iterable, Protocol

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, nodes

from .errors import JobFileError, Location

_HINT_VAR = ("write {{ var('name') }} or {{ var('name', default) }} in the SQL (in a dbt "
             "project also ref(), source() and env_var())")
WORDS = ("var", "ref", "source", "env_var")
_KWARGS = {"ref": {"v", "version"}}     # ref('model', v=2)


class SqlWords(Protocol):
    """Resolves dbt's words in a job's SQL; each returns SQL text (a relation or a literal)."""

    def var(self, name: str, location: Location) -> Any:
        """The project's value of a var no `--var` gave; KeyError when it has none."""

    def ref(self, args: list[str], kwargs: dict[str, Any], location: Location) -> str: ...

    def source(self, args: list[str], location: Location) -> str: ...

    def env_var(self, name: str, default: Any, location: Location) -> str:
        """`default` is None when the call gives none (as in dbt)."""


def sql_value(value: Any, name: str, location: Location) -> str:
    """The DuckDB literal for one var value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"'{value}'::DOUBLE"
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise JobFileError(f"--var {name} contains a NUL character", location)
        return "'" + value.replace("'", "''") + "'"
    raise JobFileError(
        f"--var {name} is a {type(value).__name__}; a var in the SQL is one string, number, "
        "true/false or null", location,
        hint="pass lists and objects to the prompt template (vars.NAME) instead, or pass the "
             "value as text: --var 'name=\"[1, 2]\"'")


def _env() -> Environment:
    return Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _calls(tree: nodes.Template, path: str,
           columns: list[int | None]) -> list[tuple[nodes.Call, str, list, dict, Location]]:
    """The calls of the SQL body (`var`, `ref`, `source`, `env_var` with literal arguments),
    each with its arguments and location; anything else in a `{{ }}` or `{% %}` is refused."""
    found = []
    for child in tree.body:
        if not isinstance(child, nodes.Output):
            raise JobFileError("the SQL part of a job file takes only {{ var(...) }}; "
                               f"found a {{% {type(child).__name__.lower()} %}} block",
                               Location(path, child.lineno), hint=_HINT_VAR)
        for part in child.nodes:
            if isinstance(part, nodes.TemplateData):
                continue
            column = columns[len(found)] if len(found) < len(columns) else None
            loc = Location(path, part.lineno, column)
            word = (part.node.name if isinstance(part, nodes.Call)
                    and isinstance(part.node, nodes.Name) else None)
            ok = (word in WORDS and not part.dyn_args and not part.dyn_kwargs
                  and all(k.key in _KWARGS.get(word, ()) for k in part.kwargs)
                  and all(isinstance(a, (nodes.Const, nodes.List, nodes.Dict))
                          for a in [*part.args, *(k.value for k in part.kwargs)])
                  and 1 <= len(part.args) <= 2
                  and all(isinstance(a, nodes.Const) and isinstance(a.value, str)
                          for a in (part.args if word in ("ref", "source") else
                                    part.args[:1])))
            if not ok:
                raise JobFileError("the SQL part of a job file takes only {{ var('name') }} "
                                   "or {{ var('name', default) }} (and dbt's ref('model'), "
                                   "source('source', 'table'), env_var('NAME', default)) with "
                                   "literal arguments", loc, hint=_HINT_VAR)
            args = [a.as_const() for a in part.args]
            kwargs = {k.key: k.value.as_const() for k in part.kwargs}
            found.append((part, word, args, kwargs, loc))
    return found


_EXPRESSION = re.compile(r"\{\{-?\s*(\w*)", re.DOTALL)
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)


def _call_columns(body: str) -> list[int | None]:
    """The column of each `{{ … }}` expression's first word, in order (each holds one call)."""
    text = _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), body)
    out: list[int | None] = []
    for m in _EXPRESSION.finditer(text):
        start = m.start(1)
        out.append(start - (text.rfind("\n", 0, start) + 1) + 1)
    return out


def _quoted(body: str, call: nodes.Call, loc: Location) -> bool:
    """Whether the `{{ … }}` holding the call at `loc` sits inside '…' quotes."""
    if loc.column is None:
        return False
    line = body.split("\n")[loc.line - 1] if loc.line else ""
    before = line[:loc.column - 1].rstrip()
    opened = before.rfind("{{")
    closed = line.find("}}", loc.column - 1)
    return (opened > 0 and line[opened - 1] == "'" and closed >= 0
            and line[closed + 2:closed + 3] == "'")


def render_sql_body(body: str, path: str, vars: dict[str, Any],
                    words: SqlWords | None = None) -> tuple[str, set[str]]:
    """The SQL with each `{{ var(...) }}` replaced by a literal (and each dbt word by what
    `words` resolves it to), and the var names it used.

    Line numbers are kept (a var's literal never contains a newline unless its value does).
    """
    if "{{" not in body and "{%" not in body and "{#" not in body:
        return body, set()
    env = _env()
    try:
        tree = env.parse(body)
    except TemplateSyntaxError as e:
        raise JobFileError(f"SQL template: {e.message}", Location(path, e.lineno)) from None
    used: set[str] = set()
    literals: dict[int, str] = {}
    for call, word, args, kwargs, loc in _calls(tree, path, _call_columns(body)):
        if word == "var":
            used.add(args[0])
            literals[id(call)] = _var(args, vars, words, loc)
            continue
        if words is None:
            raise JobFileError(f"{word}() is dbt's and needs a dbt project", loc)
        if _quoted(body, call, loc):
            what = "a quoted literal" if word == "env_var" else "a quoted relation name"
            raise JobFileError(f"{word}() already gives SQL ({what}); remove the quotes "
                               "around it", loc)
        if word == "ref":
            literals[id(call)] = words.ref(args, kwargs, loc)
        elif word == "source":
            literals[id(call)] = words.source(args, loc)
        else:
            literals[id(call)] = words.env_var(args[0], args[1] if len(args) > 1 else None,
                                               loc)
    # Render through Jinja (keeps whitespace control like {{- -}}), each call a literal.
    for child in tree.body:
        child.nodes = [nodes.TemplateData(literals[id(p)], lineno=p.lineno)
                       if isinstance(p, nodes.Call) else p for p in child.nodes]
    return env.from_string(tree).render(), used


def _var(args: list, vars: dict[str, Any], words: SqlWords | None, loc: Location) -> str:
    """`var(name, default?)`: `--var`, else the dbt project's vars, else the default."""
    name = args[0]
    if name in vars:
        return sql_value(vars[name], name, loc)
    if words is not None:
        try:
            return sql_value(words.var(name, loc), name, loc)
        except KeyError:
            pass
    if len(args) > 1:
        return sql_value(args[1], name, loc)
    raise JobFileError(f"the SQL uses var({name!r}) but no value was given", loc,
                       hint=f"pass --var {name}=VALUE")


def template_var_names(texts: Iterable[str]) -> set[str] | None:
    """Names read as `vars.x` / `vars['x']` in templates; None if `vars` is used whole."""
    names: set[str] = set()
    env = _env()
    for text in texts:
        try:
            tree = env.parse(text)
        except (TemplateSyntaxError, RecursionError):
            continue   # reported with its location when the template is compiled
        attrs = set()
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node.node, nodes.Name) and node.node.name == "vars":
                if isinstance(node, nodes.Getattr):
                    names.add(node.attr)
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    names.add(node.arg.value)
                else:
                    return None
                attrs.add(id(node.node))
        for name in tree.find_all(nodes.Name):
            if name.name == "vars" and name.ctx == "load" and id(name) not in attrs:
                return None
    return names


def check_unknown_vars(vars: dict[str, Any], used_in_sql: set[str],
                       templates: Iterable[str], location: Location) -> None:
    """Every `--var` must be used by the SQL or a template; suggest the closest name."""
    in_templates = template_var_names(templates)
    if in_templates is None:
        return
    known = used_in_sql | in_templates
    for name in sorted(vars):
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = (f"did you mean {close[0]!r}?" if close else
                    "the job uses no var of that name (var('…') in the SQL, vars.… in the "
                    "prompt or system)")
            raise JobFileError(f"--var {name} is not used by the job", location, hint=hint)
