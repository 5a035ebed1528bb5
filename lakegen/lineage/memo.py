"""Attribution's memo (:mod:`lakegen.attribution.memo`) on disk: ``.lakegen/cache/lineage.json``.

One file, read once and written once per compile, atomically, kept to about the lake's size as
:func:`lakegen.catalog.parsecache.to_keep` says; values are functions of their keys, so an entry
that is dropped is only computed again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakegen.atomicfile import writing
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
            with contextlib.suppress(OSError), writing(self.path) as f:  # a read-only cache only costs speed
                f.write(b'{"format":%d,"memo":{' % FORMAT)
                for chunk in _items(kept):
                    f.write(chunk.encode())
                f.write(b"}}")


def _items(memo: dict[str, Any], batch: int = 10_000) -> Iterator[str]:
    """``memo``'s items as ``json.dumps(memo, separators=(",", ":"))`` writes them between its
    braces, a batch at a time: 100,000 models' memo is a text of 240 MB, held twice (text and
    bytes) when written in one piece."""
    items = iter(memo.items())
    sep = ""
    while part := dict(itertools.islice(items, batch)):
        yield sep + json.dumps(part, separators=(",", ":"))[1:-1]
        sep = ","
