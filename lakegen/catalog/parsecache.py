"""Parsed manifests by the sha256 of their bytes: ``.lakegen/cache/manifests.json``.

Parsing YAML with the line of every value is most of what loading a manifest costs, and a
manifest's parse is a function of its bytes; so a compile parses only the manifests (and, for the
history, the git blobs) it has not seen before. The file is JSON, never pickle: a pull request may
commit a planted cache, and reading it must not run anything. Dates are kept as ``{"\\0d": iso}``
(``\\0`` cannot occur in YAML, so no manifest key reads as one). One compile reads the file once
and writes back what it used, so the file stays the size of the lake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from lakegen.atomicfile import write_atomic
from lakegen.catalog.safeyaml import Document, parse

FILE = "manifests.json"
FORMAT = 1
_DATE, _TIME = "\0d", "\0t"


class ParseCache:
    def __init__(self, folder: Path):
        self.path = folder / FILE
        self.old: dict[str, Any] = {}
        self.used: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("docs"), dict):
                self.old = data["docs"]
        except (OSError, ValueError):
            pass  # none yet, or unreadable: every manifest is parsed again

    def parse(self, text: str) -> Document:
        """:func:`lakegen.catalog.safeyaml.parse`, from the cache when this text was parsed before."""
        key = hashlib.sha256(text.encode()).hexdigest()
        found = self.used.get(key) or self.old.get(key)
        if found is not None:
            doc = _decoded(found)
            if doc is not None:
                self.used[key] = found
                return doc
        doc = parse(text)  # raises on a bad manifest: those are not kept, and cost little
        self.used[key] = [_encode(doc.data), [[list(loc), line] for loc, line in doc.lines.items()]]
        return doc

    def save(self) -> None:
        """Write back what this compile used, and what earlier ones kept while that is not more than
        this one used (a build and a check read different versions; neither should evict the other's,
        and the file should not grow without end)."""
        kept = {**self.old, **self.used} if len(self.old) <= len(self.used) + 1000 else self.used
        if kept.keys() == self.old.keys():
            return
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_atomic(self.path, json.dumps({"format": FORMAT, "docs": kept}, separators=(",", ":")))


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dt.datetime):
        return {_TIME: value.isoformat()}
    if isinstance(value, dt.date):
        return {_DATE: value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            if _DATE in value:
                return dt.date.fromisoformat(value[_DATE])
            if _TIME in value:
                return dt.datetime.fromisoformat(value[_TIME])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _decoded(found: Any) -> Document | None:
    try:
        data, lines = found
        return Document(_decode(data), {tuple(loc): int(line) for loc, line in lines})
    except (TypeError, ValueError):
        return None  # a damaged entry is a miss
