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
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, nodes

from .errors import JobFileError, Location

_HINT_VAR = "write {{ var('name') }} or {{ var('name', default) }} in the SQL"


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


def _calls(tree: nodes.Template, path: str) -> list[tuple[nodes.Call, str, Any]]:
    """The `var(...)` calls of the SQL body; anything else in a `{{ }}` or `{% %}` is refused."""
    found = []
    for child in tree.body:
        if not isinstance(child, nodes.Output):
            raise JobFileError("the SQL part of a job file takes only {{ var(...) }}; "
                               f"found a {{% {type(child).__name__.lower()} %}} block",
                               Location(path, child.lineno), hint=_HINT_VAR)
        for part in child.nodes:
            if isinstance(part, nodes.TemplateData):
                continue
            ok = (isinstance(part, nodes.Call) and isinstance(part.node, nodes.Name)
                  and part.node.name == "var" and not part.kwargs and not part.dyn_args
                  and not part.dyn_kwargs and 1 <= len(part.args) <= 2
                  and all(isinstance(a, (nodes.Const, nodes.List, nodes.Dict))
                          for a in part.args)
                  and isinstance(part.args[0], nodes.Const)
                  and isinstance(part.args[0].value, str))
            if not ok:
                raise JobFileError("the SQL part of a job file takes only {{ var('name') }} "
                                   "or {{ var('name', default) }} with literal arguments",
                                   Location(path, part.lineno), hint=_HINT_VAR)
            default = part.args[1].as_const() if len(part.args) == 2 else ...
            found.append((part, part.args[0].value, default))
    return found


def render_sql_body(body: str, path: str, vars: dict[str, Any]) -> tuple[str, set[str]]:
    """The SQL with each `{{ var(...) }}` replaced by a literal, and the var names it used.

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
    for call, name, default in _calls(tree, path):
        used.add(name)
        loc = Location(path, call.lineno)
        if name in vars:
            value = vars[name]
        elif default is not ...:
            value = default
        else:
            raise JobFileError(f"the SQL uses var({name!r}) but no value was given", loc,
                               hint=f"pass --var {name}=VALUE")
        literals[id(call)] = sql_value(value, name, loc)
    # Render through Jinja (keeps whitespace control like {{- -}}), each call a literal.
    for child in tree.body:
        child.nodes = [nodes.TemplateData(literals[id(p)], lineno=p.lineno)
                       if isinstance(p, nodes.Call) else p for p in child.nodes]
    return env.from_string(tree).render(), used


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
