"""Templates that try to exhaust memory or CPU, and values that must not reach a prompt.

Each is refused before the string is built (exit 2, naming the row's key and the template
line), in well under a second and with bounded memory (`tests/test_render_bounds.py` measures
the peak RSS of one of them).
"""
from __future__ import annotations

from . import Case

BASE = ("name='enriched', provider='openai', model='gpt-4.1-mini', unique_key='id', "
        "max_tokens=20, prompt_file='prompt.j2'")

# The message names the first row's key and the template file and line.
REFUSED = r"prompt\.j2:{line}(:\d+)?: the prompt for the row with key \{{'id': 0\}} was refused"


def _case(id: str, template: str, what: str, line: int = 1) -> Case:
    return Case(id, BASE, files={"prompt.j2": template},
                message=REFUSED.format(line=line) + ".*" + what)


DOUBLING = "".join("{% set s = s~s~s~s~s~s~s~s %}\n" for _ in range(8))

CASES = [
    _case("template-concat-doubling", "{% set s = text %}\n" + DOUBLING + "{{ s }}",
          r"the ~ operator would build", line=8),
    _case("template-center-2g", "{{ text|center(2000000000) }}", r"center filter"),
    _case("template-wordwrap-indent", "{{ text|wordwrap(1)|indent(100000000) }}",
          r"indent filter"),
    _case("template-printf-format-2g", "{{ '%2000000000s'|format(text) }}", r"format filter"),
    _case("template-str-ljust-1g", "{{ ' '.ljust(1000000000) }}", r"str\.ljust\(\)"),
    _case("template-str-format-width", "{{ '{:>1000000000}'.format(text) }}",
          r"str\.format\(\)"),
    _case("template-plus-doubling",
          "{% set a = text + text %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}"
          "{% set e = d + d %}{% set f = e + e %}{% set g = f + f %}{% set h = g + g %}"
          "{% set i = h + h %}{% set j = i + i %}{% set k = j + j %}{% set l = k + k %}"
          "{% set m = l + l %}{% set n = m + m %}{% set o = n + n %}{% set p = o + o %}"
          "{% set q = p + p %}{% set r = q + q %}{% set t = r + r %}{{ t }}", r"the \+ operator"),
    _case("template-percent-operator", "{{ '%1000000000d' % 1 }}", r"the % operator"),
    _case("template-replace-blowup",
          "{{ (text*1000)|replace('e', text*1000)|replace('e', text*1000) }}",
          r"replace filter"),
    _case("template-loop-output",
          "{% set t = text*20000 %}{% for c in text*1000 %}{{ t }}{% endfor %}",
          r"passes 4,000,000 characters"),
    _case("template-nested-loops",
          "{% for a in text*1000 %}{% for b in text*1000 %}{% endfor %}{% endfor %}",
          r"loops run more than 1,000,000 iterations"),
    _case("template-block-set-blowup",
          "{% set t = text*100 %}{% set x %}{% for c in text*10000 %}{{ t }}{% endfor %}"
          "{% endset %}{{ x }}",
          r"a block's text"),
    _case("template-print-huge-list", "{{ [text*10000] * 100000 }}", r"printing a value"),
    Case("template-blob-column", BASE, sql="SELECT id, data FROM blobs",
         setup_sql="CREATE TABLE blobs AS SELECT 1 AS id, '\\xFF\\x00'::BLOB AS data",
         files={"prompt.j2": "Describe:\n{{ data }}"},
         message=r"prompt\.j2:2(:\d+)?: the prompt template uses the column 'data', which is "
                 r"a BLOB(.|\n)*hint: .*decode\(\"?data\"?\)"),
    Case("template-blob-via-row", BASE, sql="SELECT id, data FROM blobs",
         setup_sql="CREATE TABLE blobs AS SELECT 1 AS id, '\\xFF'::BLOB AS data",
         files={"prompt.j2": "{% for k, v in row.items() %}{{ k }}={{ v }}{% endfor %}"},
         message=r"uses the column 'data', which is a BLOB"),
]
