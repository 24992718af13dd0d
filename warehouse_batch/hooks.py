"""Notification hooks: what `on_complete` / `on_failure` name, whether a job may name it, and
how one is called.

A hook is a shell command (it gets the JSON report on stdin) or an http(s) URL (it gets the
report as a POST). Hooks come from two places:

* **the operator** (the project file's `on_complete` / `on_failure`, applied as
  `$WAREHOUSE_BATCH_ON_COMPLETE` / `$WAREHOUSE_BATCH_ON_FAILURE`, or those variables set
  directly): trusted like CI settings, any command or URL;
* **the job file** (its config's `on_complete` / `on_failure`, which win over the
  operator's for that job): a job file is code that travels, so a shell command there is
  arbitrary code execution and is refused unless the operator allows it (`--allow-hooks`,
  `$WAREHOUSE_BATCH_ALLOW_HOOKS=1`, `allow_hooks = true` in the project file), and a URL
  there must name a host the operator allows, as a job file's `base_url` must
  (`--allow-host`, `paths.Scope`).

A hook's environment never carries a provider API key (`keys.key_env_names`, variables named
`*API_KEY` / `*AUTH_TOKEN`, and any variable holding the value of one), and the payload is
redacted (`keys.redact`) before it leaves. Where the event is recorded and how often a hook
fires is `notify.py`'s part.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, Mapping
from urllib.parse import urlsplit

from . import __version__
from .errors import JobFileError, Location
from .keys import MIN_KEY_LENGTH, key_env_names
from .paths import Scope
from .project import HOOK_DIR_ENV, HOOK_ENV

EVENTS = {"on_complete": "complete", "on_failure": "failure"}   # config key -> event
ENV_OF = {event: HOOK_ENV[key] for key, event in EVENTS.items()}   # the operator's hooks
TIMEOUT_SECONDS = 60.0     # a hook that takes longer failed (it is tried again next run)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = re.compile(r"(API_KEY|AUTH_TOKEN)$", re.IGNORECASE)


class HookError(Exception):
    """A hook did not confirm the notification (non-zero exit, non-2xx answer, timeout)."""


@dataclass(frozen=True)
class Hook:
    """One configured hook: a shell command or an http(s) URL."""

    event: str          # 'complete' | 'failure'
    target: str         # the command line, or the URL
    source: str         # 'job' (its config) | 'operator' (project file / environment)
    cwd: str | None = None   # where a command runs

    @property
    def is_url(self) -> bool:
        return is_url(self.target)

    def describe(self) -> str:
        """For logs and the state: a URL without its path and query (a webhook's path is
        often its secret), a command as written (key-shaped text is redacted later)."""
        if self.is_url:
            parts = urlsplit(self.target)
            try:
                port = f":{parts.port}" if parts.port else ""
            except ValueError:
                port = ""
            return f"POST {parts.scheme}://{parts.hostname or '?'}{port}/…"
        text = " ".join(self.target.split())
        return "command " + (text if len(text) <= 120 else text[:117] + "...")


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def check_job_hook(key: str, value: Any, location: Location, scope: Scope | None) -> str:
    """A job file's `on_complete` / `on_failure`, refused unless the operator allows it: a
    shell command needs `scope.hooks` (--allow-hooks), a URL an allowed host."""
    if not isinstance(value, str) or not value.strip():
        raise JobFileError(f"{key} must be a shell command or an http(s) URL (a string)",
                           location)
    value = value.strip()
    if is_url(value):
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as e:
            raise JobFileError(f"{key} {value!r} is not a valid URL ({e})", location) from None
        if not parts.hostname:
            raise JobFileError(f"{key} {value!r} is not an http(s) URL with a host", location)
        port = port or (443 if parts.scheme.lower() == "https" else 80)
        if scope is None or not scope.allows_host(parts.hostname, port):
            host = parts.hostname
            shown = f"[{host}]" if ":" in host else host
            raise JobFileError(
                f"{key} posts the job's report to {host}:{port}, a host the operator has not "
                "allowed", location,
                hint=f"if you trust this host, run with --allow-host {shown} (or set "
                     "$WAREHOUSE_BATCH_ALLOWED_HOSTS); or set the hook in the project file "
                     "(warehouse-batch.toml), which is the operator's")
        return value
    if _SCHEME.match(value):
        raise JobFileError(f"{key} {value!r}: a hook URL must be http:// or https://",
                           location)
    if scope is None or not scope.hooks:
        raise JobFileError(
            f"{key} is a shell command in a job file: it would run arbitrary code under this "
            "account, so the operator must allow it", location,
            hint="if you trust this job file, run with --allow-hooks (or set "
                 "$WAREHOUSE_BATCH_ALLOW_HOOKS=1, or allow_hooks = true in "
                 "warehouse-batch.toml); or set the hook in the project file instead")
    return value


def resolve(job_hooks: Mapping[str, str], job_dir: str | None,
            env: Mapping[str, str]) -> dict[str, Hook]:
    """The hook for each event of a job: its own (`job_hooks`: config key -> value, already
    checked at parse) else the operator's from `env`."""
    out: dict[str, Hook] = {}
    for key, event in EVENTS.items():
        own = job_hooks.get(key)
        if own:
            out[event] = Hook(event, own, "job", job_dir)
            continue
        operator = (env.get(ENV_OF[event]) or "").strip()
        if operator:
            out[event] = Hook(event, operator, "operator", env.get(HOOK_DIR_ENV) or None)
    return out


def hook_env(env: Mapping[str, str], extra: Mapping[str, str] = {}) -> dict[str, str]:
    """`env` without any provider API key: the key variables, variables named like one,
    and any variable whose value is a key (e.g. the project file's `api_key_env` source)."""
    names = set(key_env_names())
    keys = {env[n] for n in names if len(env.get(n) or "") >= MIN_KEY_LENGTH}
    keys |= {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= MIN_KEY_LENGTH}
    out = {k: v for k, v in env.items()
           if k not in names and not _SECRET_NAME.search(k) and v not in keys}
    out.update(extra)
    return out


def fire(hook: Hook, payload: bytes, env: Mapping[str, str]) -> str:
    """Call `hook` with `payload` (JSON); returns a short note of what answered. Raises
    `HookError` when it did not confirm (the caller keeps the notification pending)."""
    return _post(hook, payload) if hook.is_url else _run(hook, payload, env)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a confirmation: the report would go to a host nobody allowed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(hook: Hook, payload: bytes) -> str:
    request = urllib.request.Request(
        hook.target, data=payload, method="POST",
        headers={"Content-Type": "application/json",
                 "User-Agent": f"warehouse-batch/{__version__}"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
            response.read(1 << 16)
    except urllib.error.HTTPError as e:
        raise HookError(f"{hook.describe()} answered HTTP {e.code}") from None
    except (OSError, HTTPException, ValueError) as e:
        raise HookError(f"{hook.describe()} failed: {e}") from None
    if not 200 <= status < 300:
        raise HookError(f"{hook.describe()} answered HTTP {status}")
    return f"HTTP {status}"


def _run(hook: Hook, payload: bytes, env: Mapping[str, str]) -> str:
    """The command through /bin/sh, in its own process group (killed whole on timeout)."""
    try:
        proc = subprocess.Popen(hook.target, shell=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env), cwd=hook.cwd or None, start_new_session=True)
    except OSError as e:
        raise HookError(f"{hook.describe()} could not start: {e}") from None
    try:
        _, err = proc.communicate(payload, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise HookError(f"{hook.describe()} took longer than {TIMEOUT_SECONDS:g}s and was "
                        "stopped") from None
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
        said = f": {' | '.join(tail)}" if tail else ""
        raise HookError(f"{hook.describe()} exited {proc.returncode}{said}")
    return "exit 0"
