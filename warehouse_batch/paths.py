"""Where a job may read files from, and where its API keys may be sent.

A job file is code that travels (pull requests, shared repositories) and runs under an
account that holds API keys, so what it may touch is decided by the operator, not by the
file. By default a job reads files only under its own folder and its project root (the
nearest ancestor holding `warehouse-batch.toml`, `dbt_project.yml` or `.git`); the operator
may allow more folders (`--allow-path`, `$WAREHOUSE_BATCH_ALLOWED_PATHS`). The current
directory is *not* a root: cron and orchestrators often run from `/` or `$HOME`.

Likewise a `base_url` written in a job file is honoured only for hosts the operator allows
(`--allow-host`, `$WAREHOUSE_BATCH_ALLOWED_HOSTS`); loopback is no exception, since a
listener on a local port can forward a key anywhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

PROJECT_MARKERS = ("warehouse-batch.toml", "dbt_project.yml", ".git")
ALLOWED_PATHS_ENV = "WAREHOUSE_BATCH_ALLOWED_PATHS"   # os.pathsep-separated folders
ALLOWED_HOSTS_ENV = "WAREHOUSE_BATCH_ALLOWED_HOSTS"   # comma-separated host or host:port
ALLOW_HOOKS_ENV = "WAREHOUSE_BATCH_ALLOW_HOOKS"       # 1/true: job files may name shell hooks


def project_root(job_path: str | Path) -> Path:
    """The nearest ancestor of the job's folder that holds a project marker, else the folder."""
    folder = Path(job_path).resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / m).exists() for m in PROJECT_MARKERS):
            return candidate
    return folder


def _split_paths(value: str | None) -> list[str]:
    return [p for p in (value or "").split(os.pathsep) if p.strip()]


def _split_hosts(value: str | None) -> list[str]:
    return [h.strip().lower() for h in (value or "").split(",") if h.strip()]


@dataclass(frozen=True)
class Scope:
    """What one job may touch: folders it may read, hosts its job-file base_url may name."""

    job_dir: Path
    roots: tuple[Path, ...]
    hosts: frozenset[str] = field(default_factory=frozenset)
    hooks: bool = False   # a shell command in the job's on_complete/on_failure (hooks.py)

    def resolve(self, name: str | Path) -> Path:
        """An absolute, symlink-free path for `name` (relative names are the job folder's)."""
        p = Path(os.path.expanduser(str(name)))
        if not p.is_absolute():
            p = self.job_dir / p
        return p.resolve()

    def allows(self, path: str | Path) -> bool:
        """Whether `path` (resolved, symlinks followed) lies under one of the roots."""
        resolved = self.resolve(path)
        return any(resolved == r or r in resolved.parents for r in self.roots)

    def allows_host(self, host: str | None, port: int | None = None) -> bool:
        """Whether the operator allowed `host` (any port) or `host:port`."""
        if not host:
            return False
        host = host.lower().strip("[]")
        return host in self.hosts or (port is not None and f"{host}:{port}" in self.hosts)

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots)


def make_scope(job_path: str | Path, env: Mapping[str, str] | None = None,
               allowed_paths: Iterable[str | Path] = (),
               allowed_hosts: Iterable[str] = (), allow_hooks: bool = False) -> Scope:
    """The scope of the job at `job_path`: its folder, its project root, and what the
    operator allowed through options or the environment (never through the job file)."""
    env = os.environ if env is None else env
    job_dir = Path(job_path).resolve().parent
    roots = [job_dir, project_root(job_path)]
    for p in [*allowed_paths, *_split_paths(env.get(ALLOWED_PATHS_ENV))]:
        roots.append(Path(os.path.expanduser(str(p))).resolve())
    unique = tuple(dict.fromkeys(roots))
    hosts = frozenset([*(h.lower() for h in allowed_hosts),
                       *_split_hosts(env.get(ALLOWED_HOSTS_ENV))])
    hooks = allow_hooks or (env.get(ALLOW_HOOKS_ENV) or "").strip().lower() in (
        "1", "true", "yes", "on")
    return Scope(job_dir=job_dir, roots=unique, hosts=hosts, hooks=hooks)
