"""Deterministic hashing helpers and provider-style identifiers.

Everything the emulator "decides" (ids, failures, shuffles, answers) comes
from SHA-256 of its inputs, so the same seed and the same calls give the same
results, across runs and restarts. Only per-response request ids are random,
as they are in real services.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Callable, Iterable, TypeVar

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
T = TypeVar("T")


def digest(*parts: object) -> bytes:
    """Return the SHA-256 digest of the parts, joined unambiguously (unit separator between them)."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()


def digester(*parts: object) -> Callable[[object], bytes]:
    """Return ``f`` with ``f(key) == digest(*parts, key)``, cheaper for many keys."""
    prefix = "".join(f"{part}\x1f" for part in parts)
    sha256 = hashlib.sha256
    return lambda key: sha256((prefix + str(key)).encode("utf-8")).digest()


def unit(*parts: object) -> float:
    """Return a deterministic float in [0, 1) derived from the parts."""
    return int.from_bytes(digest(*parts)[:8], "big") / 2**64


def pick(n: int, *parts: object) -> int:
    """Return a deterministic index in range(n) derived from the parts."""
    return int.from_bytes(digest(*parts)[:8], "big") % n


def hex_token(length: int, *parts: object) -> str:
    """Return ``length`` deterministic hex characters."""
    out = digest(*parts).hex()
    counter = 0
    while len(out) < length:
        counter += 1
        out += digest(counter, *parts).hex()
    return out[:length]


def b62_token(length: int, *parts: object) -> str:
    """Return ``length`` deterministic alphanumeric characters (base64 of digests, '+' and '/' remapped)."""
    out = ""
    counter = 0
    while len(out) < length:
        out += base64.b64encode(digest(counter, *parts), altchars=b"Ab").decode("ascii").rstrip("=")
        counter += 1
    return out[:length]


def shuffled(items: Iterable[T], key_of: Callable[[T], object], *salt: object) -> list[T]:
    """Return the items in a seeded pseudo-random order (sorted by a hash of salt + key)."""
    key = digester(*salt)
    return sorted(items, key=lambda item: key(key_of(item)))


def openai_request_id() -> str:
    """Return a fresh ``x-request-id`` value like OpenAI's (``req_`` + 32 hex)."""
    return "req_" + secrets.token_hex(16)


def anthropic_request_id() -> str:
    """Return a fresh ``request-id`` value like Anthropic's (``req_011C`` + base62)."""
    return "req_011C" + "".join(secrets.choice(_B62) for _ in range(20))


def object_id(kind: str, seed: int, seq: int) -> str:
    """Return a provider-style id for the seq-th created object of a kind."""
    if kind == "file":
        return "file-" + b62_token(22, seed, kind, seq)
    if kind == "batch":
        return "batch_" + hex_token(32, seed, kind, seq)
    if kind == "msgbatch":
        return "msgbatch_01" + b62_token(22, seed, kind, seq)
    raise ValueError(f"unknown id kind {kind!r}")
