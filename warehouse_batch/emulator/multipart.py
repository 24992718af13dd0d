"""A small ``multipart/form-data`` parser for file uploads.

The standard library's ``cgi`` module is deprecated and ``email`` is slow on
large bodies, so this splits the body on the boundary with ``bytes.find``. It
understands what the OpenAI SDK sends: simple text fields (``purpose``,
``expires_after[anchor]``, ``expires_after[seconds]``) and one ``file`` part
with a filename.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)=("(?:[^"\\]|\\.)*"|[^;]*)')


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass
class Part:
    """One form field: its name, optional filename and content type, and bytes."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self) -> str:
        """Return the field value decoded as UTF-8."""
        return self.data.decode("utf-8", errors="replace")


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


def parse(body: bytes, content_type: str) -> list[Part]:
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
        for line in body[pos:header_end].decode("utf-8", errors="replace").split("\r\n"):
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
                data=body[header_end + 4:next_delim],
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
            )
        )
        pos = next_delim + 2 + len(delimiter)
