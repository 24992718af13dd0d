"""Storage backends: where the emulator keeps JSON documents, blobs and logs.

:class:`MemoryBackend` keeps everything in dicts (``state_dir=None``).
:class:`DiskBackend` mirrors the same operations onto a directory so that a
restarted emulator sees the state of the one before it::

    state_dir/
      docs/<key>.json        one JSON document per key (key may contain '/')
      blobs/<key>            raw bytes (file contents, batch requests, results)
      logs/<name>.jsonl      append-only logs (received requests, processed requests)

Documents and blobs are written atomically (temp file + ``os.replace``), so a
killed emulator never leaves a half-written file behind. Keys are built from
emulator ids only; they are checked anyway so nothing escapes the directory.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def _check(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class MemoryBackend:
    """Volatile storage used when no ``state_dir`` is configured."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.blobs: dict[str, bytes] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}

    def read_doc(self, key: str) -> Any | None:
        """Return the document stored under key, or None."""
        value = self.docs.get(_check(key))
        return None if value is None else json.loads(value)

    def write_doc(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable document (a copy, like the disk backend)."""
        self.docs[_check(key)] = json.dumps(value)

    def delete_doc(self, key: str) -> None:
        """Remove a document if present."""
        self.docs.pop(_check(key), None)

    def list_docs(self, folder: str) -> list[str]:
        """Return the keys directly inside folder."""
        prefix = _check(folder) + "/"
        return sorted(k for k in self.docs if k.startswith(prefix) and "/" not in k[len(prefix):])

    def read_blob(self, key: str) -> bytes | None:
        """Return blob bytes or None."""
        return self.blobs.get(_check(key))

    def write_blob(self, key: str, data: bytes) -> None:
        """Store blob bytes."""
        self.blobs[_check(key)] = bytes(data)

    def delete_blob(self, key: str) -> None:
        """Remove a blob if present."""
        self.blobs.pop(_check(key), None)

    def append_log(self, name: str, entries: list[dict[str, Any]]) -> None:
        """Append entries to a named log."""
        self.logs.setdefault(_check(name), []).extend(json.loads(json.dumps(entries)))

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """Return all entries of a named log, oldest first."""
        return list(self.logs.get(_check(name), []))

    def wipe(self, keep_docs: set[str]) -> None:
        """Forget everything except the listed documents."""
        self.docs = {k: v for k, v in self.docs.items() if k in keep_docs}
        self.blobs.clear()
        self.logs.clear()


class DiskBackend:
    """Directory-backed storage with atomic writes (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        for sub in ("docs", "blobs", "logs"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def _path(self, area: str, key: str, suffix: str = "") -> str:
        return os.path.join(self.root, area, *_check(key).split("/")) + suffix

    def _atomic_write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def read_doc(self, key: str) -> Any | None:
        """Return the document stored under key, or None."""
        try:
            with open(self._path("docs", key, ".json"), "rb") as handle:
                return json.loads(handle.read())
        except FileNotFoundError:
            return None

    def write_doc(self, key: str, value: Any) -> None:
        """Atomically write a JSON document."""
        self._atomic_write(self._path("docs", key, ".json"), json.dumps(value).encode("utf-8"))

    def delete_doc(self, key: str) -> None:
        """Remove a document if present."""
        try:
            os.unlink(self._path("docs", key, ".json"))
        except FileNotFoundError:
            pass

    def list_docs(self, folder: str) -> list[str]:
        """Return the keys directly inside folder."""
        directory = self._path("docs", folder)
        if not os.path.isdir(directory):
            return []
        return sorted(
            f"{folder}/{name[:-5]}"
            for name in os.listdir(directory)
            if name.endswith(".json") and not name.startswith(".tmp-")
        )

    def read_blob(self, key: str) -> bytes | None:
        """Return blob bytes or None."""
        try:
            with open(self._path("blobs", key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write_blob(self, key: str, data: bytes) -> None:
        """Atomically write blob bytes."""
        self._atomic_write(self._path("blobs", key), data)

    def delete_blob(self, key: str) -> None:
        """Remove a blob if present."""
        try:
            os.unlink(self._path("blobs", key))
        except FileNotFoundError:
            pass

    def append_log(self, name: str, entries: list[dict[str, Any]]) -> None:
        """Append entries (one JSON line each) to a named log."""
        if not entries:
            return
        data = "".join(json.dumps(e) + "\n" for e in entries).encode("utf-8")
        with open(self._path("logs", name, ".jsonl"), "ab") as handle:
            handle.write(data)

    def read_log(self, name: str) -> list[dict[str, Any]]:
        """Return all entries of a named log; a torn last line (from a kill) is ignored."""
        try:
            with open(self._path("logs", name, ".jsonl"), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wipe(self, keep_docs: set[str]) -> None:
        """Forget everything except the listed documents."""
        kept = {key: self.read_doc(key) for key in keep_docs}
        for sub in ("docs", "blobs", "logs"):
            shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        for key, value in kept.items():
            if value is not None:
                self.write_doc(key, value)


Backend = MemoryBackend | DiskBackend
