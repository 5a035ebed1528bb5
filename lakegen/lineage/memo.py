"""Attribution's memo (:mod:`lakegen.attribution.memo`) on disk: ``.lakegen/cache/lineage.json``.

One file, read once and written once per compile, atomically. It keeps what the last compile
used or made, no more, so it stays the size of the lake; values are functions of their keys, so an
entry a branch switch drops is only computed again.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from lakegen.atomicfile import write_atomic

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
        if self.used == self.old:
            return
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_atomic(self.path, json.dumps({"format": FORMAT, "memo": self.used}, separators=(",", ":")))
