"""Parsed manifests by the sha256 of their bytes: ``.lakegen/cache/manifests.json``.

Parsing YAML with the line of every value is most of what loading a manifest costs, and a
manifest's parse is a function of its bytes; so a compile parses only the manifests (and, for the
history, the git blobs) it has not seen before. The file is JSON, never pickle: a pull request may
commit a planted cache, and reading it must not run anything. Each manifest is one JSON text, its
dates as ISO text with their paths beside. One compile reads the file once
and writes it back once, kept to about the lake's size (:func:`to_keep`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from lakegen.atomicfile import write_atomic
from lakegen.errors import LakeError
from lakegen.safeyaml import Document, load, parse

FILE = "manifests.json"
FORMAT = 2
PREFETCH_FROM = 256  # manifests to parse before forks pay for themselves (about 1 ms each)


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
        """:func:`lakegen.safeyaml.parse`, from the cache when this text was parsed before."""
        key = hashlib.sha256(text.encode()).hexdigest()
        found = self.used.get(key) or self.old.get(key)
        if isinstance(found, str):
            doc = _decoded(found)
            if doc is not None:
                self.used[key] = found
                return doc
        doc = parse(text)  # raises on a bad manifest: those are not kept, and cost little
        self.used[key] = _encoded(doc)
        return doc

    def prefetch(self, files: list[Path]) -> None:
        """Parse ``files`` that this cache has not seen, side by side in forks of this process
        (:mod:`lakegen.executor.forked`), so that :meth:`parse` finds them parsed. A file that
        changes meanwhile is only parsed again (the cache is keyed by content), one that cannot be
        read or parsed is left to :meth:`parse`, which says why. When the cache holds most of the
        lake, the few new files are not worth a fork: nothing is done."""
        from lakegen.executor.forked import map_forked, workers

        processes = workers(len(files), PREFETCH_FROM)
        if processes <= 1 or 2 * len(self.old) > len(files):
            return
        for found in map_forked(self._new, files, processes):
            if found is not None and found[0] not in self.used:
                self.used[found[0]] = found[1]

    def _new(self, file: Path) -> tuple[str, str] | None:
        """A file's key and parse when this cache has none (what :meth:`parse` would keep)."""
        new: list[tuple[str, str]] = []

        def keep(text: str) -> Document:
            key = hashlib.sha256(text.encode()).hexdigest()
            if key not in self.old:
                new.append((key, _encoded(parse(text))))
            return Document({}, {})

        try:
            load(file, file.name, parser=keep)
        except LakeError:
            return None
        return new[0] if new else None

    def save(self) -> None:
        kept = to_keep(self.old, self.used)
        if kept is not None:
            with contextlib.suppress(OSError):  # a read-only cache only costs speed
                write_atomic(self.path, json.dumps({"format": FORMAT, "docs": kept}, separators=(",", ":")))


def to_keep(old: dict[str, Any], used: dict[str, Any]) -> dict[str, Any] | None:
    """What a content-keyed cache file should hold after a run that read ``old`` and used ``used``;
    None when it holds that already.

    Nothing new: the file stays (a run that reused a whole result used few of its parts, and the
    next run may need them all). Otherwise old and new together, until the entries no run used
    outnumber the used ones: then the used ones only, so the file stays about the lake's size.
    """
    if used.keys() <= old.keys():
        return None
    if not old:
        return used  # a cold build's: its copy would be the same entries in the same order again
    return {**old, **used} if len(old) <= 2 * len(used) + 1000 else used


def _encoded(doc: Document) -> str:
    """One JSON text per manifest, decoded in one call: its data with each date as its ISO text, the
    paths of those dates, and the line of every path."""
    dates: list[list[Any]] = []

    def plain(value: Any, loc: list[Any]) -> Any:
        if isinstance(value, dict):
            return {k: plain(v, [*loc, k]) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v, [*loc, i]) for i, v in enumerate(value)]
        if isinstance(value, dt.date):  # datetime included
            dates.append([loc, isinstance(value, dt.datetime)])
            return value.isoformat()
        return value

    data = plain(doc.data, [])
    locs, lines = [list(loc) for loc in doc.lines], list(doc.lines.values())
    return json.dumps([data, dates, locs, lines], separators=(",", ":"))


def _decoded(text: str) -> Document | None:
    try:
        data, dates, locs, lines = json.loads(text)
        for loc, is_time in dates:
            if not loc:
                return None  # a manifest is a mapping, never a bare date
            holder = data
            for part in loc[:-1]:
                holder = holder[part]
            iso = holder[loc[-1]]
            holder[loc[-1]] = dt.datetime.fromisoformat(iso) if is_time else dt.date.fromisoformat(iso)
        return Document(data, dict(zip(map(tuple, locs), lines, strict=True)))
    except (TypeError, ValueError, KeyError, IndexError):
        return None  # a damaged entry is a miss
