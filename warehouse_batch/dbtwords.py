"""dbt's words in a job's SQL: `ref()`, `source()`, `env_var()`, and project vars for `var()`.

`DbtWords` is what `sqlvars.render_sql_body` calls for each of them. The dbt project is looked
for only when a job uses one (`dbtproject.find_project_dir`), so jobs outside dbt pay nothing.

* `ref('model')`, `ref('package', 'model')`, `ref('model', v=2)`: the relation dbt recorded
  for the model in `target/manifest.json`; a job output table of the same project (the
  `dbt run` command passes them in `outputs`) resolves too. An unknown name is an error at
  the call's file, line and column, with a "did you mean".
* `source('source', 'table')`: the source's relation.
* `env_var('NAME', default?)`: as dbt's (an error if unset and no default), a SQL literal.
  A job file is code that travels and runs beside API keys, so names that hold secrets (the
  providers' key variables, `*API_KEY`, `*AUTH_TOKEN`, `*SECRET*`, `*PASSWORD*`, `*TOKEN`,
  dbt's `DBT_ENV_SECRET_*`) are refused, and so is any variable whose value is an API key.
* `var('x')`: a `--var` first, then the project's `vars:` in dbt_project.yml, then the default.

Every model and source a job reads is recorded (`depends_on`, dbt unique ids), for lineage.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .dbtproject import DbtProject, DbtSettings, load_project
from .errors import ConfigurationError, JobFileError, Location, UserError
from .keys import MIN_KEY_LENGTH, key_env_names, key_values
from .sqlutil import quote_ident
from .sqlvars import sql_value

_SECRET_NAME = re.compile(r"API_KEY|AUTH_TOKEN|SECRET|PASSWORD|PASSWD|TOKEN$|^DBT_ENV_SECRET",
                          re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    return name in key_env_names() or bool(_SECRET_NAME.search(name))


def _secret_values(env: Mapping[str, str]) -> set[str]:
    """Values of the variables that hold secrets (keys of providers not imported yet too)."""
    return set(key_values(env).values()) | {
        v for n, v in env.items() if is_secret_name(n) and len(v or "") >= MIN_KEY_LENGTH}


@dataclass
class DbtWords:
    """Resolves dbt's words for one job file (see the module docstring)."""

    job_path: str
    settings: DbtSettings = field(default_factory=DbtSettings)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    outputs: dict[str, str] = field(default_factory=dict)   # job output name -> relation
    catalog: str | None = None   # the warehouse file's catalog, to check a ref's database
    depends_on: list[str] = field(default_factory=list)      # dbt unique ids, in order
    job_refs: list[str] = field(default_factory=list)        # names in `outputs` it read
    files: list[str] = field(default_factory=list)           # files read (manifest, yml)
    env_names: list[str] = field(default_factory=list)       # variables env_var() read
    _project: DbtProject | None = None
    _searched: list[str] | None = None

    def project(self, location: Location | None, word: str) -> DbtProject:
        """The dbt project, or an error saying where it was looked for."""
        if self._project is None:
            self._project, self._searched = load_project(self.settings, self.job_path,
                                                         self.env)
        if self._project is None:
            raise JobFileError(
                f"{word}() needs a dbt project, and none was found (looked in "
                f"{'; '.join(self._searched or [])})", location,
                hint="run from the dbt project, or pass --project-dir (or set "
                     "$DBT_PROJECT_DIR)")
        return self._project

    def _note(self, unique_id: str | None, *paths: Path) -> None:
        if unique_id and unique_id not in self.depends_on:
            self.depends_on.append(unique_id)
        for p in paths:
            if str(p) not in self.files:
                self.files.append(str(p))

    def var(self, name: str, location: Location) -> Any:
        """The dbt project's value for `name`; KeyError without a project or such a var."""
        if self._project is None and self._searched is None:
            self._project, self._searched = load_project(self.settings, self.job_path,
                                                         self.env)
        if self._project is None:
            raise KeyError(name)
        try:
            values = self._located(self._project.vars, location)
        except ConfigurationError:
            # no PyYAML (dbt is not installed here): the job's own default, as before dbt
            raise KeyError(name) from None
        self._note(None, self._project.project_file)
        return values[name]

    def ref(self, args: list[str], kwargs: dict[str, Any], location: Location) -> str:
        package, name = (None, args[0]) if len(args) == 1 else (args[0], args[1])
        version = kwargs.get("v", kwargs.get("version"))
        if package is None and version is None and name in self.outputs:
            if name not in self.job_refs:
                self.job_refs.append(name)
            return self.outputs[name]
        project = self.project(location, "ref")
        node = self._located(lambda: project.find_model(name, package, version), location)
        self._note(None, project.manifest_path)
        if node is None:
            known = sorted(set(project.models()) | set(self.outputs))
            close = difflib.get_close_matches(name, known, n=1)
            what = f"{package}.{name}" if package else name
            what += f" (version {version})" if version is not None else ""
            raise JobFileError(
                f"ref({', '.join(repr(a) for a in args)}): the dbt project "
                f"{project.name!r} has no model {what}", location,
                hint=f"did you mean {close[0]!r}?" if close else
                f"models: {', '.join(known[:20]) or 'none (run dbt parse?)'}")
        self._note(node.get("unique_id"))
        return self._relation(node, location, f"ref({args[-1]!r})")

    def source(self, args: list[str], location: Location) -> str:
        if len(args) != 2:
            raise JobFileError("source() takes the source's name and the table's: "
                               "source('shop', 'reviews')", location)
        project = self.project(location, "source")
        node = self._located(lambda: project.find_source(*args), location)
        self._note(None, project.manifest_path)
        if node is None:
            known = project.source_names()
            close = difflib.get_close_matches(".".join(args), known, n=1)
            raise JobFileError(
                f"source({args[0]!r}, {args[1]!r}): the dbt project {project.name!r} has no "
                f"such source table", location,
                hint=f"did you mean {close[0]!r}?" if close else
                f"sources: {', '.join(known[:20]) or 'none'}")
        self._note(node.get("unique_id"))
        return self._relation(node, location, f"source({args[0]!r}, {args[1]!r})")

    def env_var(self, name: str, default: Any, location: Location) -> str:
        if name not in self.env_names:
            self.env_names.append(name)
        if is_secret_name(name):
            raise JobFileError(f"env_var({name!r}): a job file may not read a variable that "
                               "holds a secret (API keys, tokens, passwords)", location,
                               hint="pass the value you need with --var instead")
        if name in self.env:
            value = self.env[name]
            if value in _secret_values(self.env):
                raise JobFileError(f"env_var({name!r}) holds the value of an API key "
                                   "variable; a job file may not read it", location)
        elif default is not None:
            value = default
        else:
            raise JobFileError(f"env_var({name!r}): the variable is not set and no default "
                               "is given", location,
                               hint=f"set ${name}, or write env_var({name!r}, 'default')")
        return sql_value(value, name, location)

    def _relation(self, node: dict, location: Location, what: str) -> str:
        database = node.get("database")
        if self.catalog and database and database.lower() != self.catalog.lower():
            raise JobFileError(
                f"{what} is in the database {database!r} (as dbt built it), but the "
                f"warehouse file here is attached as {self.catalog!r}", location,
                hint="pass --db with the DuckDB file of the dbt target")
        parts = [database, node.get("schema"),
                 node.get("alias") or node.get("identifier") or node.get("name")]
        return ".".join(quote_ident(p) for p in parts if p)

    @staticmethod
    def _located(fn: Any, location: Location) -> Any:
        """Call `fn`; a problem with the project's files is reported at the call too."""
        try:
            return fn()
        except UserError as e:
            if e.location is None:
                e.location = location
                e.args = (e._render(),)
            raise
