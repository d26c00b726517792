"""Validation of the changes an owner posts, shared by the server and the agents.

A change names a file by a relative, ``/``-separated UTF-8 path. Anything that could escape the
project folder or that a filesystem cannot hold is refused here, before it reaches the log, and the
agents check again before they write (defence in depth: never trust the network).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from vidsync.errors import ApiError, bad_request
from vidsync.jsonint import json_int

MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255
MAX_CHANGES_PER_BATCH = 1000
OPS = ("create", "update", "delete")
# The agents keep their state in this folder at the top of a shared or mirrored directory.
RESERVED_DIR = ".vidsync"
_HASH_RE = re.compile(r"[0-9a-f]{64}")
# 2**53: the largest integer every JSON client (JavaScript included) reads exactly.
MAX_JSON_INT = 2**53


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    op: str
    hash: str | None
    size: int | None
    mtime: int | None

    def to_json(self) -> dict:
        return {"path": self.path, "op": self.op, "hash": self.hash, "size": self.size,
                "mtime": self.mtime}


def normalize_path(path: object) -> str:
    """Return ``path`` in NFC if it is a safe relative project path, else raise ``ValueError``."""
    if not isinstance(path, str):
        raise ValueError("path must be a string")
    if path == "":
        raise ValueError("path is empty")
    if "\x00" in path:
        raise ValueError("path contains a NUL byte")
    if "\\" in path:
        raise ValueError("path contains a backslash; use '/' as the separator")
    if path.startswith("/"):
        raise ValueError("path must be relative")
    if re.match(r"^[A-Za-z]:", path):
        raise ValueError("path must be relative (drive letter)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("path contains a control character")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("path is not valid UTF-8") from None
    # The limit is on the path as stored: NFC can lengthen a path (composition exclusions).
    path = unicodedata.normalize("NFC", path)
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise ValueError(f"path is longer than {MAX_PATH_BYTES} bytes")
    if path.split("/", 1)[0] == RESERVED_DIR:
        raise ValueError(f"'{RESERVED_DIR}/' is reserved for the agents' own state")
    for segment in path.split("/"):
        if segment == "":
            raise ValueError("path has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise ValueError(f"path has a '{segment}' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return path


def normalize_prefixes(prefixes: list[str] | None) -> tuple[str, ...]:
    """Selective-sync prefixes: each a safe relative path; ``clips`` and ``clips/`` mean the folder."""
    if not prefixes:
        return ()
    if len(prefixes) > 100:
        raise bad_request("at most 100 path prefixes", code="invalid_paths")
    out = []
    for raw in prefixes:
        try:
            p = normalize_path(raw.rstrip("/") if isinstance(raw, str) else raw)
        except ValueError as e:
            raise bad_request(f"invalid path prefix {raw!r}: {e}", code="invalid_paths") from None
        out.append(p + "/")
    return tuple(sorted(set(out)))


def matches(path: str, prefixes: tuple[str, ...]) -> bool:
    """True if ``path`` is in one of the folders named by ``prefixes`` (or no filter is set).
    A file named like the folder itself is not in it: the stores' SQL filters agree, so replayed
    and live events are filtered alike."""
    if not prefixes:
        return True
    return any(path.startswith(p) for p in prefixes)


def _int_field(raw: dict, name: str, index: int, required: bool) -> int | None:
    raw_value = raw.get(name)
    if raw_value is None:
        if required:
            raise _invalid(index, f"'{name}' is required")
        return None
    value = json_int(raw_value)
    if value is None:
        raise _invalid(index, f"'{name}' must be an integer")
    if value < 0 or value > MAX_JSON_INT:
        raise _invalid(index, f"'{name}' must be between 0 and 2**53")
    return value


def _invalid(index: int, reason: str) -> ApiError:
    return bad_request(f"changes[{index}]: {reason}", code="invalid_change", index=index)


def parse_changes(body: object) -> list[Change]:
    """Validate a ``files/update`` body; the first bad change rejects the whole request."""
    if not isinstance(body, dict) or not isinstance(body.get("changes"), list):
        raise bad_request("body must be an object with a 'changes' array", code="invalid_body")
    raw_changes = body["changes"]
    if not 1 <= len(raw_changes) <= MAX_CHANGES_PER_BATCH:
        raise bad_request(
            f"'changes' must hold 1 to {MAX_CHANGES_PER_BATCH} changes, got {len(raw_changes)}",
            code="invalid_body",
        )
    changes = []
    for i, raw in enumerate(raw_changes):
        if not isinstance(raw, dict):
            raise _invalid(i, "must be an object")
        unknown = set(raw) - {"path", "op", "hash", "size", "mtime", "base"}
        if unknown:
            raise _invalid(i, f"unknown field(s) {sorted(unknown)}")
        op = raw.get("op")
        if op not in OPS:
            raise _invalid(i, f"'op' must be one of {', '.join(OPS)}, got {op!r}")
        try:
            path = normalize_path(raw.get("path"))
        except ValueError as e:
            raise _invalid(i, f"invalid path: {e}") from None
        digest = raw.get("hash")
        if op == "delete":
            if digest is not None and not (isinstance(digest, str) and _HASH_RE.fullmatch(digest)):
                raise _invalid(i, "'hash' must be 64 lowercase hex digits or null")
            digest = None
        elif not (isinstance(digest, str) and _HASH_RE.fullmatch(digest)):
            raise _invalid(i, "'hash' must be the SHA-256 of the content as 64 lowercase hex digits")
        size = _int_field(raw, "size", i, required=op != "delete")
        mtime = _int_field(raw, "mtime", i, required=False)
        changes.append(Change(path, op, digest, size, mtime))
    return changes


def parse_bases(body: dict) -> dict[int, str | None]:
    """The ``base`` of each change that carries one (a body ``parse_changes`` accepted): the hash
    of the version the writer's copy came from, or None for "the path does not exist". A change
    without ``base`` is unconditional and is not in the result."""
    bases: dict[int, str | None] = {}
    for i, raw in enumerate(body["changes"]):
        if "base" not in raw:
            continue
        base = raw["base"]
        if base is not None and not (isinstance(base, str) and _HASH_RE.fullmatch(base)):
            raise _invalid(i, "'base' must be the hash the change was made from (64 lowercase hex"
                              " digits) or null for a path that did not exist")
        bases[i] = base
    return bases
