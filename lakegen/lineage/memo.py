"""Attribution's memo (:mod:`lakegen.attribution.memo`) on disk: ``.lakegen/cache/lineage.json``.

One file, read once and written once per compile, atomically, kept to about the lake's size as
:func:`lakegen.catalog.parsecache.to_keep` says; values are functions of their keys, so an entry
that is dropped is only computed again.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from lakegen.atomicfile import write_atomic
from lakegen.catalog.parsecache import to_keep

FILE = "lineage.json"
FORMAT = 1


class DiskMemo:
    def __init__(self, folder: Path):
        self.path = folder / FILE
        self.old: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("memo"), dict):
                self.old = data["memo"]
        except (OSError, ValueError):
            pass  # none yet, or unreadable: everything is computed again
        self.used: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        found = self.used.get(key)
        if found is None:
            found = self.old.get(key)
            if found is not None:
                self.used[key] = found
        return found

    def put(self, key: str, value: Any) -> None:
        self.used[key] = value

    def save(self) -> None:
        kept = to_keep(self.old, self.used)
        if kept is not None:
            with contextlib.suppress(OSError):  # a read-only cache only costs speed
                write_atomic(self.path, json.dumps({"format": FORMAT, "memo": kept}, separators=(",", ":")))
