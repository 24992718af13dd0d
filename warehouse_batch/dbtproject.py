"""A dbt project as warehouse-batch reads it: where it is, its manifest, vars and profile.

Nothing here imports dbt: `target/manifest.json` is JSON, and `dbt_project.yml` /
`profiles.yml` are read with PyYAML (a dependency of dbt, installed by the `[dbt]` extra).
The folders are found the way dbt's own flags find them:

* project: `--project-dir`, else `$DBT_PROJECT_DIR`, else the nearest folder holding
  `dbt_project.yml` above the job file, else above the current directory (dbt's default);
* profiles: `--profiles-dir`, else `$DBT_PROFILES_DIR`, else the current directory when it
  holds `profiles.yml` (dbt's default), else the project folder when it does, else `~/.dbt`;
* target: `--target`, else `$DBT_TARGET`, else the profile's `target:`.

A `ref()` resolves to the relation dbt recorded for the model (`relation_name`: database,
schema and identifier, quoted by the adapter). With dbt-duckdb the database is the catalog
DuckDB gives the warehouse file: its stem (`shop.duckdb` → `shop`).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigurationError, JobFileError, Location, UserError

PROJECT_FILE = "dbt_project.yml"
PROFILES_FILE = "profiles.yml"
TOOL_KEY = "warehouse_batch"          # `vars: {warehouse_batch: {...}}` in dbt_project.yml
_EXTRA_HINT = "install the dbt extra: pip install 'warehouse-batch[dbt]'"


@dataclass(frozen=True)
class DbtSettings:
    """dbt's location flags as given (None: dbt's defaults, see the module docstring)."""

    project_dir: str | None = None
    profiles_dir: str | None = None
    target: str | None = None


def _yaml_module(what: str) -> Any:
    """PyYAML, which comes with dbt (the core package does not need it)."""
    try:
        import yaml
    except ImportError:
        raise ConfigurationError(f"{what} needs PyYAML; {_EXTRA_HINT}") from None
    return yaml


def yaml_dump(data: Any) -> str:
    """`data` as YAML, keys in the order given."""
    return _yaml_module("writing YAML").safe_dump(data, sort_keys=False, width=100)


def _yaml(path: Path) -> Any:
    yaml = _yaml_module(f"reading {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigurationError(f"cannot read {path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        raise JobFileError(f"{path.name} is not valid YAML: {e}", loc) from None


def find_project_dir(settings: DbtSettings, job_path: str | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[Path | None, list[str]]:
    """The dbt project folder and the places looked in (for messages)."""
    env = os.environ if env is None else env
    given = settings.project_dir or env.get("DBT_PROJECT_DIR")
    if given:
        p = Path(given).expanduser().resolve()
        return (p if (p / PROJECT_FILE).is_file() else None), [str(p)]
    searched: list[str] = []
    starts = [Path(job_path).resolve().parent] if job_path else []
    starts.append(Path.cwd().resolve())
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / PROJECT_FILE).is_file():
                return folder, searched
        searched.append(f"{start} and the folders above it")
    return None, searched


@dataclass
class DbtProject:
    """A dbt project folder; the manifest and YAML files are read when first needed."""

    root: Path
    settings: DbtSettings = field(default_factory=DbtSettings)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _config: dict | None = None
    _manifest: dict | None = None

    @property
    def project_file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def config(self) -> dict:
        """`dbt_project.yml` as data."""
        if self._config is None:
            data = _yaml(self.project_file)
            self._config = data if isinstance(data, dict) else {}
        return self._config

    @property
    def name(self) -> str:
        """The project's name, as the manifest records it (else dbt_project.yml's)."""
        return str(self.manifest_metadata().get("project_name") or self.config.get("name"))

    @property
    def manifest_path(self) -> Path:
        target = self.env.get("DBT_TARGET_PATH") or self._target_path()
        return (self.root / target / "manifest.json").resolve()

    def _target_path(self) -> str:
        try:
            return str(self.config.get("target-path") or "target")
        except ConfigurationError:   # no PyYAML: dbt's default
            return "target"

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            path = self.manifest_path
            try:
                self._manifest = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise UserError(
                    f"the dbt project {self.root} has no manifest ({path} is missing): run "
                    "`dbt parse` (or `dbt build`) there first") from None
            except (OSError, ValueError) as e:
                raise ConfigurationError(f"cannot read the dbt manifest {path}: {e}") from None
        return self._manifest

    def manifest_metadata(self) -> dict:
        try:
            return self.manifest.get("metadata") or {}
        except (ConfigurationError, UserError):
            return {}

    # -- vars ------------------------------------------------------------------------------------

    def vars(self) -> dict[str, Any]:
        """The project's vars as a model of the root project sees them: global ones, then
        the ones scoped to the project's name (which win); our own key left out."""
        raw = self.config.get("vars") or {}
        if not isinstance(raw, dict):
            return {}
        name = self.config.get("name")
        out = {k: v for k, v in raw.items() if k != TOOL_KEY and k != name
               and not (isinstance(v, dict) and k in self._package_names())}
        scoped = raw.get(name)
        if isinstance(scoped, dict):
            out.update(scoped)
        return out

    def _package_names(self) -> set[str]:
        nodes = self.manifest.get("nodes", {}) if self.manifest_path.exists() else {}
        return {n.get("package_name") for n in nodes.values() if isinstance(n, dict)}

    def tool_config(self) -> dict[str, Any]:
        """`vars: {warehouse_batch: {...}}` in dbt_project.yml (our settings for the project)."""
        raw = (self.config.get("vars") or {}).get(TOOL_KEY) or {}
        return raw if isinstance(raw, dict) else {}

    # -- ref and source --------------------------------------------------------------------------

    def models(self) -> dict[str, list[dict]]:
        """Model (also seed and snapshot) nodes by name."""
        by_name: dict[str, list[dict]] = {}
        for node in self.manifest.get("nodes", {}).values():
            if node.get("resource_type") in ("model", "seed", "snapshot"):
                by_name.setdefault(node.get("name"), []).append(node)
        return by_name

    def find_model(self, name: str, package: str | None = None,
                   version: Any = None) -> dict | None:
        """The node `ref(package?, name, v=version?)` reads, as dbt picks it: the root
        project's before a package's; the latest version unless one is asked for."""
        candidates = [n for n in self.models().get(name, [])
                      if package is None or n.get("package_name") == package]
        if version is not None:
            candidates = [n for n in candidates if str(n.get("version")) == str(version)]
        if not candidates:
            return None
        root = self.manifest_metadata().get("project_name") or self.config.get("name")

        def rank(n: dict) -> tuple:
            latest = n.get("latest_version")
            return (n.get("package_name") != root,
                    latest is not None and str(n.get("version")) != str(latest))
        return sorted(candidates, key=rank)[0]

    def find_source(self, source: str, table: str) -> dict | None:
        for node in self.manifest.get("sources", {}).values():
            if node.get("source_name") == source and node.get("name") == table:
                return node
        return None

    def source_names(self) -> list[str]:
        return sorted(f"{n.get('source_name')}.{n.get('name')}"
                      for n in self.manifest.get("sources", {}).values())

    # -- the profile -----------------------------------------------------------------------------

    def profiles_dir(self) -> Path:
        given = self.settings.profiles_dir or self.env.get("DBT_PROFILES_DIR")
        if given:
            return Path(given).expanduser().resolve()
        for folder in (Path.cwd(), self.root):
            if (folder / PROFILES_FILE).is_file():
                return folder.resolve()
        return Path.home() / ".dbt"

    def output(self) -> tuple[str, dict]:
        """The target name and its output settings in profiles.yml."""
        path = self.profiles_dir() / PROFILES_FILE
        if not path.is_file():
            raise ConfigurationError(f"no {PROFILES_FILE} in {path.parent}",
                                     hint="pass --profiles-dir or set $DBT_PROFILES_DIR")
        profiles = _yaml(path)
        profile_name = self.config.get("profile") or self.config.get("name")
        profile = profiles.get(profile_name) if isinstance(profiles, dict) else None
        if not isinstance(profile, dict):
            raise ConfigurationError(f"{path} has no profile {profile_name!r} "
                                     "(dbt_project.yml's `profile:`)")
        target = (self.settings.target or self.env.get("DBT_TARGET")
                  or _render(str(profile.get("target") or "dev"), self.env))
        outputs = profile.get("outputs") or {}
        if target not in outputs:
            close = difflib.get_close_matches(target, list(outputs), n=1)
            raise ConfigurationError(f"{path}: the profile {profile_name!r} has no target "
                                     f"{target!r}", hint=f"did you mean {close[0]!r}?"
                                     if close else f"targets: {', '.join(outputs)}")
        return target, outputs[target]

    def database_path(self) -> str:
        """The DuckDB file the target writes (relative paths from the project folder)."""
        target, out = self.output()
        if out.get("type") != "duckdb":
            raise ConfigurationError(f"the dbt target {target!r} is of type "
                                     f"{out.get('type')!r}; warehouse-batch works on DuckDB")
        path = _render(str(out.get("path") or ":memory:"), self.env)
        if path == ":memory:" or path.startswith("md:"):
            raise ConfigurationError(f"the dbt target {target!r} has no DuckDB file "
                                     f"(path: {path!r})")
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (self.root / p))


def _render(text: str, env: Mapping[str, str]) -> str:
    """A profile value with `{{ env_var('X', 'default') }}` filled in (as dbt renders it)."""
    if "{{" not in text:
        return text
    def env_var(name: str, default: str | None = None) -> str:
        if name in env:
            return env[name]
        if default is None:
            raise ConfigurationError(f"profiles.yml needs ${name}, which is not set")
        return default
    return ImmutableSandboxedEnvironment().from_string(text).render(env_var=env_var)


def load_project(settings: DbtSettings, job_path: str | None = None,
                 env: Mapping[str, str] | None = None) -> tuple[DbtProject | None, list[str]]:
    """The dbt project for a job (or the current directory), and where it was looked for."""
    env = os.environ if env is None else env
    root, searched = find_project_dir(settings, job_path, env)
    if root is None:
        return None, searched
    return DbtProject(root=root, settings=settings, env=env), searched
