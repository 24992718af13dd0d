"""Storage backends: where the emulator keeps JSON documents, blobs and logs.

Blobs (file contents, batch requests, results, processing plans) are always files on disk,
so that holding ten million requests costs disk, not memory: uploads are written to disk as
they arrive, results are written line by line and downloads are sent from the file.

:class:`DiskBackend` keeps everything under ``state_dir`` so that a restarted emulator sees
the state of the one before it::

    state_dir/
      docs/<key>.json        one JSON document per key (key may contain '/')
      blobs/<key>            raw bytes (file contents, batch requests, results, plans)
      logs/<name>.jsonl      append-only logs (received requests, processed batches), read on demand
      spool/                 request bodies being received (never read after a restart)

:class:`MemoryBackend` (``state_dir=None``) keeps documents in a dict and its blobs
and logs in a private temporary directory that is removed when the backend is closed or
collected.

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
import weakref
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_AREAS = ("docs", "blobs", "logs")


def _check(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class _BlobFiles:
    """Blob, log and spool files under one root directory (shared by both backends)."""

    root: str

    def _path(self, area: str, key: str, suffix: str = "") -> str:
        return os.path.join(self.root, area, *_check(key).split("/")) + suffix

    def _atomic_write(self, path: str, data: bytes) -> None:
        with self._atomic(path) as handle:
            handle.write(data)

    @contextmanager
    def _atomic(self, path: str) -> Iterator[BinaryIO]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                yield handle
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- blobs -------------------------------------------------------------
    def read_blob(self, key: str) -> bytes | None:
        """Return blob bytes or None (for small blobs; large ones are opened)."""
        try:
            with open(self._path("blobs", key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def open_blob(self, key: str) -> BinaryIO | None:
        """Open a blob for reading (the caller closes it), or None if missing. The handle
        stays readable even if the blob is deleted meanwhile."""
        try:
            return open(self._path("blobs", key), "rb")
        except FileNotFoundError:
            return None

    def blob_size(self, key: str) -> int | None:
        """Return a blob's size in bytes, or None if missing."""
        try:
            return os.path.getsize(self._path("blobs", key))
        except FileNotFoundError:
            return None

    def write_blob(self, key: str, data: bytes) -> None:
        """Atomically write blob bytes."""
        self._atomic_write(self._path("blobs", key), data)

    @contextmanager
    def blob_writer(self, key: str) -> Iterator[BinaryIO]:
        """Write a blob through a file handle; it appears (atomically) only if the block
        finishes without an exception."""
        with self._atomic(self._path("blobs", key)) as handle:
            yield handle

    def link_blob(self, source: str, target: str) -> None:
        """Make blob ``target`` hold the bytes of blob ``source`` (a hard link when the file
        system allows, a copy otherwise); later changes to either do not affect the other
        because blobs are only ever replaced, never modified in place."""
        src, dst = self._path("blobs", source), self._path("blobs", target)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = os.path.join(os.path.dirname(dst), f".tmp-link-{os.getpid()}-{id(self)}")
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)

    def delete_blob(self, key: str) -> None:
        """Remove a blob if present."""
        try:
            os.unlink(self._path("blobs", key))
        except FileNotFoundError:
            pass

    # -- logs --------------------------------------------------------------
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

    # -- spool -------------------------------------------------------------
    def spool_file(self) -> tuple[BinaryIO, str]:
        """Open a new scratch file for a request body being received; return it and its path
        (the caller deletes it)."""
        directory = os.path.join(self.root, "spool")
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=directory, prefix="body-")
        return os.fdopen(fd, "w+b"), path

    def _wipe_files(self) -> None:
        for sub in ("blobs", "logs"):
            shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)


class MemoryBackend(_BlobFiles):
    """Volatile storage used when no ``state_dir`` is configured (see the module docstring)."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="warehouse-batch-emulator-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.root, True)
        for sub in ("blobs", "logs"):
            os.makedirs(os.path.join(self.root, sub))
        self.docs: dict[str, Any] = {}

    def close(self) -> None:
        """Remove the temporary directory (safe to call twice)."""
        self._cleanup()

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

    def wipe(self, keep_docs: set[str]) -> None:
        """Forget everything except the listed documents."""
        self.docs = {k: v for k, v in self.docs.items() if k in keep_docs}
        self._wipe_files()


class DiskBackend(_BlobFiles):
    """Directory-backed storage with atomic writes (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        for sub in _AREAS:
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        shutil.rmtree(os.path.join(self.root, "spool"), ignore_errors=True)  # bodies of a killed run

    def close(self) -> None:
        """Nothing to release: the state stays for the next emulator."""

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

    def wipe(self, keep_docs: set[str]) -> None:
        """Forget everything except the listed documents."""
        kept = {key: self.read_doc(key) for key in keep_docs}
        shutil.rmtree(os.path.join(self.root, "docs"), ignore_errors=True)
        os.makedirs(os.path.join(self.root, "docs"), exist_ok=True)
        self._wipe_files()
        for key, value in kept.items():
            if value is not None:
                self.write_doc(key, value)


Backend = MemoryBackend | DiskBackend
