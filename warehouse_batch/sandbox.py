"""The bounded Jinja sandbox prompts are rendered in: no string may outgrow the budget.

Jinja's immutable sandbox stops attribute tricks and mutation, but not size: `s ~ s` doubling,
`center(2000000000)`, `indent(10**8)` or `' '.ljust(10**9)` allocate gigabytes before any
check after rendering could look at the result. Here every operation that can grow a string
(or a list) *predicts* the size of its result and refuses before allocating it:

* `~` (compiled by a code generator of ours to a checked join, not Jinja's plain `str_join`),
  `+`, `*` and `%` (intercepted binary operators);
* block bodies joined into a string (`{% set %}…{% endset %}`, macros, `{% filter %}`), through
  the environment's `concat`;
* growing filters (`center`, `indent`, `wordwrap`, `format`, `join`, `replace`, `truncate`, …)
  and `str` methods (`ljust`, `center`, `zfill`, `expandtabs`, `replace`, `join`, `format`, …),
  with pre-checks on their size arguments; any other filter or method returning a string is
  checked afterwards (they grow it by a small factor at most);
* every printed value before it is turned into text (`finalize`), and the output as it streams.

The limits live on a `Budget` the caller resets for each render: the largest string one value
may be (the per-prompt limit), how many characters all checked operations of one render may
build in total (so a loop of small concatenations cannot burn CPU) and how many loop
iterations one render may run (nested loops that print nothing).
"""
from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import update_wrapper
from typing import Any, Callable

from jinja2 import nodes, pass_context
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.runtime import markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TemplateBudgetError

_MAX_REPEAT = 100_000
_MAX_INT_BITS = 100_000       # far more than any printable number (Python prints 4,300 digits)
_LIST_ITEM_COST = 8           # budget characters charged per item of a list a call returns


class Budget:
    """Limits for one render, and what that render has used so far."""

    def __init__(self, max_chars: int, max_work: int, max_steps: int) -> None:
        self.max_chars = max_chars      # the largest string (or list) one value may be
        self.max_work = max_work        # characters all checked operations may build
        self.max_steps = max_steps      # loop iterations one render may run
        self.reset()

    def reset(self) -> None:
        self.work = 0
        self.steps = 0

    def want(self, size: int, what: str) -> None:
        """Refuse (before allocating) a value of `size` characters built by `what`."""
        if size > self.max_chars:
            raise TemplateBudgetError(
                f"{what} would build a value of {size:,} characters (the limit for one prompt "
                f"is {self.max_chars:,})")
        self.work += size
        if self.work > self.max_work:
            raise TemplateBudgetError(
                f"{what}: the template builds more than {self.max_work:,} characters of "
                "strings for one prompt")

    def charge(self, n: int) -> None:
        """Count work that builds no single large value (e.g. the items of a list)."""
        self.work += n
        if self.work > self.max_work:
            raise TemplateBudgetError(f"the template builds more than {self.max_work:,} "
                                      "characters of strings and list items for one prompt")

    def step(self, n: int) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise TemplateBudgetError(
                f"the template's loops run more than {self.max_steps:,} iterations for one "
                "prompt")


def text_size(obj: Any, cap: int, quoted: bool = False) -> int | None:
    """An upper bound on `len(str(obj))` (`repr` if `quoted`), or None if unknown.

    Stops adding once the bound passes `cap`, so a huge container costs at most `cap` steps.
    """
    if obj is None or isinstance(obj, (bool, float)):
        return 32 if isinstance(obj, float) else 5
    if isinstance(obj, int):
        return obj.bit_length() * 31 // 100 + 3
    if isinstance(obj, str):
        if not quoted:
            return len(obj)
        return 2 * len(obj) + 2 if obj.isprintable() else 10 * len(obj) + 2
    if isinstance(obj, (bytes, bytearray)):
        return 4 * len(obj) + 3
    if isinstance(obj, (list, tuple, set, frozenset, Mapping)):
        total = 2
        items = obj.items() if isinstance(obj, Mapping) else ((x,) for x in obj)
        for pair in items:
            for x in pair:
                size = text_size(x, cap, quoted=True)
                if size is None:
                    return None
                total += size + 2
            if total > cap:
                return total
        return total
    return None


_COUNTED = "_wb_counted"      # the filter every loop's iterable is wrapped in


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `~` to the environment's checked join instead of Jinja's plain `str_join`,
    and makes every `for` loop count its iterations (recursive loops are refused: their
    inner iterables could not be counted)."""

    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        # Before super(): it collects the filters the template uses from the tree.
        for loop in node.find_all(nodes.For):
            if loop.recursive:
                self.fail("recursive loops are not allowed in templates", loop.lineno)
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == _COUNTED):
                loop.iter = nodes.Filter(loop.iter, _COUNTED, [], [], None, None,
                                         lineno=loop.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("), context.eval_ctx.autoescape)")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every string-growing operation checked against `budget`.

    `null_as_empty` prints NULL (None) as an empty string, in `{{ }}` and in `~`.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, budget: Budget, null_as_empty: bool = False, **kw: Any) -> None:
        self.budget = budget
        self.null_as_empty = null_as_empty
        super().__init__(finalize=self._finalize, **kw)
        self.concat = self._checked_buffer_concat       # block bodies, macros, filter blocks
        self.globals["lipsum"] = self._lipsum(self.globals["lipsum"])
        self.filters = {name: _guard_filter(self, name, f) for name, f in self.filters.items()}
        self.filters[_COUNTED] = pass_context(lambda context, it: self._counted(it))

    # -- printed values and joins

    def _finalize(self, value: Any) -> Any:
        if value is None and self.null_as_empty:
            return ""
        if not isinstance(value, str):
            size = text_size(value, self.budget.max_chars)
            if size is not None and size > self.budget.max_chars:
                self.budget.want(size, "printing a value")
        return value

    def checked_concat(self, items: tuple, autoescape: bool) -> str:
        """`a ~ b ~ …`: refuse before joining if the result would be too large."""
        if self.null_as_empty:
            items = tuple("" if x is None else x for x in items)
        if not autoescape and all(type(x) is str for x in items):   # the common case
            self.budget.want(sum(map(len, items)), "the ~ operator")
            return "".join(items)
        total = 0
        for x in items:
            size = text_size(x, self.budget.max_chars)
            total += size if size is not None else 0
        self.budget.want(total, "the ~ operator")
        result = markup_join(items) if autoescape else "".join(map(str, items))
        if len(result) > self.budget.max_chars:     # an item whose size was not known
            self.budget.want(len(result), "the ~ operator")
        return result

    def _checked_buffer_concat(self, parts: Any) -> str:
        parts = list(parts)
        self.budget.want(sum(len(p) for p in parts), "a block's text")
        return "".join(parts)

    # -- operators and calls

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            raise SecurityError("the ** operator is not allowed in templates")
        seq = (str, list, tuple)
        if op == "*" and (isinstance(left, seq) or isinstance(right, seq)):
            value, count = (left, right) if isinstance(left, seq) else (right, left)
            if isinstance(count, int):
                if count > _MAX_REPEAT:
                    raise SecurityError(f"repeating a string {count} times is not allowed")
                self.budget.want(len(value) * max(count, 0), "the * operator")
        elif op == "*" and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            if bits > _MAX_INT_BITS:
                raise TemplateBudgetError(f"the * operator would build a number of {bits:,} "
                                          f"bits (the limit is {_MAX_INT_BITS:,})")
        elif op == "+" and isinstance(left, seq) and isinstance(right, seq):
            self.budget.want(len(left) + len(right), "the + operator")
        elif op == "%" and isinstance(left, str):
            args = right if isinstance(right, tuple) else (right,)
            self.budget.want(_printf_size(left, args, self.budget.max_chars),
                             "the % operator")
        result = super().call_binop(context, op, left, right)
        if isinstance(result, str) and len(result) > self.budget.max_chars:  # Markup escapes
            self.budget.want(len(result), f"the {op} operator")
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(owner, str) and name in _STR_METHOD_SIZE:
            if name == "join":
                args = (list(args[0]),) + args[1:] if args else args
            size = _STR_METHOD_SIZE[name](owner, __self.budget.max_chars, *args, **kwargs)
            __self.budget.want(size, f"str.{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str) and len(result) > __self.budget.max_chars:
            __self.budget.want(len(result), f"calling {name or 'a function'}()")
        elif isinstance(result, (list, tuple)):
            __self.budget.charge(_LIST_ITEM_COST * len(result))
        return result

    def _counted(self, iterable: Any) -> Any:
        """A loop's iterable, each item counted against the budget's steps. (Its filter
        takes the context so that Jinja never evaluates it at compile time.)"""
        step = self.budget.step
        for item in iterable:
            step(1)
            yield item

    def _lipsum(self, lipsum: Callable[..., str]) -> Callable[..., str]:
        def checked(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
            self.budget.want(int(n) * int(max) * 16, "lipsum()")
            return lipsum(n, html, min, max)
        return checked


# -- size bounds of str methods and filters: f(value, cap, *args, **kwargs) -> characters

def _width(s: str, cap: int, width: Any = 0, *_: Any, **__: Any) -> int:
    return max(len(s), width if isinstance(width, int) else 0)


def _expandtabs(s: str, cap: int, tabsize: Any = 8, **kw: Any) -> int:
    tabsize = kw.get("tabsize", tabsize)
    return len(s) + s.count("\t") * max(tabsize if isinstance(tabsize, int) else 0, 0)


def _replace(s: str, cap: int, old: Any = "", new: Any = "", count: Any = -1, **kw: Any) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    count = kw.get("count", count)
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(len(new) - len(old), 0)


def _join(sep: str, cap: int, items: Any = (), *_: Any, **__: Any) -> int:
    items = list(items)
    total = len(sep) * max(len(items) - 1, 0)
    for x in items:
        total += text_size(x, cap) or 0
        if total > cap:
            break
    return total


def _translate(s: str, cap: int, table: Any = None, *_: Any, **__: Any) -> int:
    longest = 1
    if isinstance(table, Mapping):
        longest = max([len(v) for v in table.values() if isinstance(v, str)] + [1])
    return len(s) * longest


def _format_method(s: str, cap: int, *args: Any, **kwargs: Any) -> int:
    total = len(s)
    for _, field, spec, _ in string.Formatter().parse(s):
        if field is None:
            continue
        if spec and "{" in spec:
            raise TemplateBudgetError("nested {} fields in a format spec are not allowed in "
                                      "templates")
        total += sum(int(n) for n in re.findall(r"\d+", spec or "")) + 40
    for x in [*args, *kwargs.values()]:
        total += text_size(x, cap, quoted=True) or 0
    return total


_STR_METHOD_SIZE: dict[str, Callable[..., int]] = {
    "ljust": _width, "rjust": _width, "center": _width, "zfill": _width,
    "expandtabs": _expandtabs, "replace": _replace, "join": _join, "translate": _translate,
    "format": _format_method,
    "format_map": lambda s, cap, m=None: _format_method(s, cap, **(dict(m) if isinstance(
        m, Mapping) else {})),
}

_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _printf_size(fmt: str, args: tuple, cap: int) -> int:
    """An upper bound on the length of `fmt % args`."""
    total = len(fmt)
    values = list(args[0].values()) if len(args) == 1 and isinstance(args[0], Mapping) \
        else list(args)
    stars = iter(a for a in args if isinstance(a, int))
    for m in _PRINTF.finditer(fmt):
        for n in (m.group(1), m.group(2)):
            if n == "*":
                n = next(stars, 0)
            total += max(int(n), 0) if n is not None else 0
        total += 330      # the longest number %f prints (1e308) and a sign
    for x in values:
        total += text_size(x, cap, quoted=True) or 0
    return total


def _value_size(cap: int, value: Any, *_: Any, **__: Any) -> int:
    return text_size(value, cap) or 0


def _f_center(cap: int, value: Any, width: Any = 80, *_: Any, **__: Any) -> int:
    return max(text_size(value, cap) or 0, width if isinstance(width, int) else 0)


def _f_indent(cap: int, s: Any, width: Any = 4, *_: Any, **kw: Any) -> int:
    width = kw.get("width", width)
    s = str(s) if isinstance(s, str) else ""
    w = width if isinstance(width, int) else len(str(width))
    return len(s) + (s.count("\n") + 1) * max(w, 0)


_WRAP_BREAKS = "\t\n\x0b\x0c\r \x1c\x1d\x1e\x85\u2028\u2029-"


def _f_wordwrap(cap: int, s: Any, width: Any = 79, break_long_words: Any = True,
                wrapstring: Any = None, *_: Any, **kw: Any) -> int:
    """Bound the output and refuse the quadratic case (long words at a tiny width)."""
    width = kw.get("width", width)
    wrapstring = kw.get("wrapstring", wrapstring)
    s = s if isinstance(s, str) else ""
    if not isinstance(width, int) or width < 1:
        return len(s)
    breaks = sum(s.count(c) for c in _WRAP_BREAKS) + len(s) // width + 1
    out = len(s) + breaks * len(wrapstring if isinstance(wrapstring, str) else "\n")
    if len(s) * len(s) // (2 * width) > cap:   # textwrap copies a long word once per line
        longest = max((m.end() - m.start() for m in re.finditer(r"\S{%d,}" % (width + 1), s)),
                      default=0)
        out = max(out, longest * len(s) // (2 * width))
    return out


def _f_replace(cap: int, s: Any, old: Any = "", new: Any = "", count: Any = None,
               *_: Any, **__: Any) -> int:
    s = s if isinstance(s, str) else str(s) if isinstance(s, (int, float)) else ""
    return _replace(s, cap, str(old), str(new), -1 if count is None else count)


def _f_truncate(cap: int, s: Any, length: Any = 255, killwords: Any = False, end: Any = "...",
                *_: Any, **kw: Any) -> int:
    end = kw.get("end", end)
    return min(text_size(s, cap) or 0, length if isinstance(length, int) else cap) + \
        len(str(end))


def _f_join(cap: int, value: Any, d: Any = "", attribute: Any = None, *_: Any, **__: Any) -> int:
    return _join(str(d), cap, value)


def _f_format(cap: int, value: Any, *args: Any, **kwargs: Any) -> int:
    return _printf_size(str(value), tuple(args) or (kwargs,), cap)


def _f_count_arg(cap: int, value: Any, n: Any = 0, *_: Any, **__: Any) -> int:
    return n if isinstance(n, int) else 0


def _f_tojson(cap: int, value: Any, indent: Any = None, *_: Any, **__: Any) -> int:
    size = text_size(value, cap, quoted=True) or 0
    return size * (1 + (indent if isinstance(indent, int) and indent > 0 else 0))


def _f_urlize(cap: int, value: Any, *args: Any, **kwargs: Any) -> int:
    s = value if isinstance(value, str) else ""
    extra = sum(len(str(x)) for x in [*args, *kwargs.values()] if isinstance(x, str))
    return 3 * len(s) + (s.count(" ") + s.count("\n") + 1) * (extra + 60)


def _f_sum(cap: int, value: Any, *_: Any, **kw: Any) -> int:
    start = kw.get("start", 0)
    if isinstance(start, (list, tuple)) and isinstance(value, (list, tuple)):
        return len(start) + sum(len(x) for x in value if isinstance(x, (list, tuple)))
    return 0


# Filters whose result may grow beyond a small factor of their input, with a size bound.
# Iterables a pre-check must look at are turned into lists first (see _guard_filter).
_FILTER_SIZE: dict[str, Callable[..., int]] = {
    "center": _f_center, "indent": _f_indent, "wordwrap": _f_wordwrap,
    "replace": _f_replace, "truncate": _f_truncate, "join": _f_join, "format": _f_format,
    "string": _value_size, "pprint": _value_size, "tojson": _f_tojson, "urlize": _f_urlize,
    "batch": _f_count_arg, "slice": _f_count_arg, "sum": _f_sum,
}
_MATERIALISE = {"join", "sum"}


def _guard_filter(env: BoundedSandbox, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """`f` with its size pre-check (if it has one) and a check of a string result."""
    passes = getattr(f, "jinja_pass_arg", None) is not None   # takes context/env first
    size_of = _FILTER_SIZE.get(name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        lead, rest = (args[:1], args[1:]) if passes else ((), args)
        if size_of is not None and rest:
            if name in _MATERIALISE and not isinstance(rest[0], (str, Mapping)):
                rest = (list(rest[0]),) + rest[1:]
            env.budget.want(size_of(env.budget.max_chars, *rest, **kwargs),
                            f"the {name} filter")
        if name == "slice" and len(rest) > 1 and isinstance(rest[1], int):
            env.budget.step(rest[1])                # slice loops once per slice
        result = f(*lead, *rest, **kwargs)
        if isinstance(result, (str, list)) and len(result) > env.budget.max_chars:
            env.budget.want(len(result), f"the {name} filter")
        if isinstance(result, list):
            env.budget.charge(_LIST_ITEM_COST * len(result))
        return result

    return update_wrapper(guarded, f)
