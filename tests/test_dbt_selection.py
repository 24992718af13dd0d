"""dbt's selection syntax over jobs and dbt nodes (`warehouse_batch.dbt.selection`); the
command itself runs against real dbt in tests/integrations/dbt."""
from __future__ import annotations

import pytest

from warehouse_batch.dbt.selection import Graph, Node, SelectionError


@pytest.fixture
def graph() -> Graph:
    """raw -> stg -> job a (tag nightly) -> job b (reads a's table); stg -> job c (weekly);
    other -> job d (in enrich/sub)."""
    g = Graph()
    g.add(Node("seed.p.raw", "dbt", ("raw",), "seeds/raw.csv"))
    g.add(Node("model.p.stg", "dbt", ("stg",), "models/stg.sql", parents={"seed.p.raw"}))
    g.add(Node("model.p.other", "dbt", ("other",), "models/other.sql"))
    g.add(Node("job:enrich/a.sql", "job", ("answers_a", "a"), "enrich/a.sql", ("nightly",),
               {"model.p.stg"}))
    g.add(Node("job:enrich/b.sql", "job", ("answers_b", "b"), "enrich/b.sql", ("nightly",),
               {"job:enrich/a.sql"}))
    g.add(Node("job:enrich/c.sql", "job", ("answers_c", "c"), "enrich/c.sql", ("weekly",),
               {"model.p.stg"}))
    g.add(Node("job:enrich/sub/d.sql", "job", ("answers_d", "d"), "enrich/sub/d.sql", (),
               {"model.p.other"}))
    return g


def sel(g: Graph, *selectors: str, exclude: tuple[str, ...] = ()) -> list[str]:
    return g.order(g.select(selectors, exclude))


def test_names_tags_paths(graph):
    assert sel(graph, "answers_a") == ["job:enrich/a.sql"]
    assert sel(graph, "c") == ["job:enrich/c.sql"]                 # the file's stem
    # in dependency order: b reads a's table
    assert sel(graph, "answers_*") == ["job:enrich/a.sql", "job:enrich/c.sql",
                                       "job:enrich/sub/d.sql", "job:enrich/b.sql"]
    assert sel(graph, "tag:weekly") == ["job:enrich/c.sql"]
    assert sel(graph, "path:enrich/sub") == ["job:enrich/sub/d.sql"]
    assert sel(graph, "enrich/sub/d.sql") == ["job:enrich/sub/d.sql"]
    assert sel(graph, "stg") == []                                 # a model is not a job


def test_graph_operators_union_intersection_exclude(graph):
    assert sel(graph, "stg+") == ["job:enrich/a.sql", "job:enrich/c.sql", "job:enrich/b.sql"]
    assert sel(graph, "stg+1") == ["job:enrich/a.sql", "job:enrich/c.sql"]
    assert sel(graph, "+b") == ["job:enrich/a.sql", "job:enrich/b.sql"]
    assert sel(graph, "1+b") == ["job:enrich/a.sql", "job:enrich/b.sql"]
    assert sel(graph, "tag:weekly d") == ["job:enrich/c.sql", "job:enrich/sub/d.sql"]
    assert sel(graph, "raw+,tag:nightly") == ["job:enrich/a.sql", "job:enrich/b.sql"]
    assert sel(graph, "stg+", exclude=("tag:weekly b",)) == ["job:enrich/a.sql"]
    assert len(sel(graph)) == 4


def test_order_puts_a_job_after_the_job_it_reads(graph):
    # b sorts after a anyway; make the reader sort first
    graph.nodes["job:enrich/b.sql"].path = "enrich/0.sql"
    assert sel(graph, "tag:nightly") == ["job:enrich/a.sql", "job:enrich/b.sql"]
    graph.nodes["job:enrich/a.sql"].parents.add("job:enrich/b.sql")
    with pytest.raises(SelectionError, match="in a cycle"):
        sel(graph, "tag:nightly")


@pytest.mark.parametrize("selector, message", [
    ("config.materialized:table", "the method 'config.materialized' is not supported"),
    ("state:modified", "the method 'state' is not supported"),
    ("@stg", "the @ operator is not supported"),
    ("a+b+c", "is not understood"),
])
def test_unsupported_syntax_is_refused(graph, selector, message):
    with pytest.raises(SelectionError, match=message):
        graph.select([selector])
