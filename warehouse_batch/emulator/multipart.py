"""A small ``multipart/form-data`` parser for file uploads.

The standard library's ``cgi`` module is deprecated and ``email`` is slow on
large bodies, so this splits the body on the boundary with ``find``. It
understands what the OpenAI SDK sends: simple text fields (``purpose``,
``expires_after[anchor]``, ``expires_after[seconds]``) and one ``file`` part
with a filename.

The body may be ``bytes`` or a memory map of the spooled upload: a part only records where
its bytes are, so a 200 MB file part is copied once, from the map to its blob, by
:meth:`Part.write_to`, and never held in memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Union

Buffer = Union[bytes, "mmap.mmap"]  # noqa: F821 - anything with find() and slicing
_COPY_CHUNK = 1 << 20

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)=("(?:[^"\\]|\\.)*"|[^;]*)')


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass
class Part:
    """One form field: its name, optional filename and content type, and where its bytes are
    in the body (``source[start:end]``)."""

    name: str
    source: Buffer
    start: int
    end: int
    filename: str | None = None
    content_type: str | None = None

    @property
    def size(self) -> int:
        """Return the number of bytes in the field."""
        return self.end - self.start

    @property
    def data(self) -> bytes:
        """Return the field's bytes (a copy: for small fields)."""
        return bytes(self.source[self.start:self.end])

    def text(self) -> str:
        """Return the field value decoded as UTF-8."""
        return self.data.decode("utf-8", errors="replace")

    def write_to(self, handle: BinaryIO) -> None:
        """Copy the field's bytes to a file handle, a chunk at a time."""
        view = memoryview(self.source)
        try:
            for pos in range(self.start, self.end, _COPY_CHUNK):
                handle.write(view[pos:min(pos + _COPY_CHUNK, self.end)])
        finally:
            view.release()


def boundary_of(content_type: str) -> str:
    """Return the boundary parameter of a multipart content type."""
    for key, value in _PARAM.findall(";" + content_type.split(";", 1)[-1]):
        if key.lower() == "boundary":
            return value.strip().strip('"')
    raise MultipartError("missing multipart boundary")


def _params(header_value: str) -> dict[str, str]:
    out = {}
    for key, value in _PARAM.findall(header_value):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key.lower()] = value
    return out


def parse(body: Buffer, content_type: str) -> list[Part]:
    """Split a multipart body into parts; raise MultipartError when malformed."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("boundary not found in body")
    parts: list[Part] = []
    pos = start + len(delimiter)
    while True:
        if body[pos:pos + 2] == b"--":
            return parts
        if body[pos:pos + 2] == b"\r\n":
            pos += 2
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise MultipartError("unterminated part headers")
        headers = {}
        for line in bytes(body[pos:header_end]).decode("utf-8", errors="replace").split("\r\n"):
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        next_delim = body.find(b"\r\n" + delimiter, header_end + 4)
        if next_delim < 0:
            raise MultipartError("unterminated part")
        params = _params(headers.get("content-disposition", ""))
        parts.append(
            Part(
                name=params.get("name", ""),
                source=body,
                start=header_end + 4,
                end=next_delim,
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
            )
        )
        pos = next_delim + 2 + len(delimiter)
