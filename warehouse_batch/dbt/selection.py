"""The part of dbt's node selection a user reaches for first, over jobs and dbt's own nodes.

The graph holds the project's enrichment jobs and the nodes of dbt's manifest: a job's parents
are the models and sources its SQL reads (`ref`, `source`) and the jobs whose output tables it
`ref`s; a dbt node's parents are the manifest's `parent_map`. Selectors (space-separated: a
union) are each one or more comma-separated parts (an intersection):

* `name` — a job by its output table's name or its file's stem, or a dbt node by name;
  shell wildcards work (`enriched_*`);
* `tag:x` — jobs whose config has `tags=['x', …]` (and dbt nodes with that tag);
* `path:enrich/reviews.sql`, `path:enrich/sub` — by file or folder, relative to the project
  (a bare selector with a `/` or ending in `.sql` is a path too);
* `+x` — x and everything upstream; `x+` — x and everything downstream; `2+x`, `x+1` limit
  the depth. So `stg_reviews+` selects every job fed (directly or through other models and
  jobs) by `stg_reviews`.

Only jobs are run: a selector reaching only dbt models selects nothing. `--exclude` takes the
same syntax and removes what it reaches. Not supported (refused with a message): other
methods (`config.`, `source:`, `state:`, `result:`, …), `@x`, YAML selectors.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable

from ..errors import UserError

METHODS = ("tag", "path", "fqn")
_SELECTOR = re.compile(r"^(?:(\d*)\+)?(?:([a-z_.]+):)?([^+:]+?)(?:\+(\d*))?$")


@dataclass
class Node:
    """A node of the selection graph: a job (`kind='job'`) or a dbt node."""

    id: str
    kind: str
    names: tuple[str, ...]
    path: str                       # relative to the project, with /
    tags: tuple[str, ...] = ()
    parents: set[str] = field(default_factory=set)


class SelectionError(UserError):
    """A selector that this subset of dbt's syntax does not take."""


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node

    def children(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {n: set() for n in self.nodes}
        for node in self.nodes.values():
            for p in node.parents:
                out.setdefault(p, set()).add(node.id)
        return out

    def ancestors(self, node_id: str) -> set[str]:
        """Every node upstream of `node_id`."""
        return self._walk({node_id}, self._parents(), None) - {node_id}

    def _parents(self) -> dict[str, set[str]]:
        return {n.id: n.parents for n in self.nodes.values()}

    def _walk(self, start: set[str], edges: dict[str, set[str]], depth: int | None) -> set[str]:
        seen, frontier, level = set(start), set(start), 0
        while frontier and (depth is None or level < depth):
            frontier = {n for f in frontier for n in edges.get(f, ()) if n not in seen}
            seen |= frontier
            level += 1
        return seen

    def select(self, selectors: Iterable[str], exclude: Iterable[str] = ()) -> set[str]:
        """The ids of the jobs the selectors reach, minus those `exclude` reaches."""
        words = [w for s in selectors for w in s.split()]
        chosen = (set().union(*(self._selector(w) for w in words)) if words
                  else set(self.nodes))
        for w in (w for s in exclude for w in s.split()):
            chosen -= self._selector(w)
        return {n for n in chosen if self.nodes[n].kind == "job"}

    def _selector(self, text: str) -> set[str]:
        parts = [self._part(p, text) for p in text.split(",")]
        return set.intersection(*parts) if parts else set()

    def _part(self, text: str, whole: str) -> set[str]:
        if text.startswith("@"):
            raise SelectionError(f"selector {whole!r}: the @ operator is not supported",
                                 hint="use +name+ (ancestors and descendants) instead")
        m = _SELECTOR.match(text)
        if not m:
            raise SelectionError(f"selector {whole!r} is not understood",
                                 hint="write name, tag:x, path:dir, +name or name+")
        up, method, value, down = m.groups()
        if method is None and ("/" in value or value.endswith(".sql")):
            method = "path"
        if method not in (None, *METHODS):
            raise SelectionError(f"selector {whole!r}: the method {method!r} is not supported",
                                 hint="supported: a name, tag:, path:, and the + operators")
        found = {n.id for n in self.nodes.values() if _matches(n, method, value)}
        result = set(found)
        if up is not None:
            result |= self._walk(found, self._parents(), int(up) if up else None)
        if down is not None:
            result |= self._walk(found, self.children(), int(down) if down else None)
        return result

    def order(self, ids: set[str]) -> list[str]:
        """`ids` so that a job runs after every selected job it reads (directly or through
        models); ties by path."""
        upstream = {i: self.ancestors(i) for i in ids}
        done: list[str] = []
        left = sorted(ids, key=lambda i: self.nodes[i].path)
        while left:
            ready = [i for i in left if not (upstream[i] & set(left))]
            if not ready:   # a cycle: dbt would refuse it too
                names = ", ".join(self.nodes[i].path for i in left)
                raise SelectionError(f"these jobs read each other's tables in a cycle: {names}")
            done.extend(ready)
            left = [i for i in left if i not in ready]
        return done


def _matches(node: Node, method: str | None, value: str) -> bool:
    if method is None:
        return any(fnmatch.fnmatchcase(n, value) for n in node.names)
    if method == "tag":
        return any(fnmatch.fnmatchcase(t, value) for t in node.tags)
    if method == "fqn":
        return any(fnmatch.fnmatchcase(n, value.rsplit(".", 1)[-1]) for n in node.names)
    want = PurePosixPath(value.strip("/").removeprefix("./"))
    have = PurePosixPath(node.path)
    return have == want or want in have.parents or fnmatch.fnmatchcase(str(have), str(want))
