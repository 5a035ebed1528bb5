"""Where benchmark results live: one committed file per model, and a local content-addressed cache.

``catalog/results/<model>.json`` holds the current result of every evaluation
the model's manifest declares. It is committed with the manifest, so the site
and the PR report read it, git history shows when a number changed, and a fresh
clone (CI) starts warm. ``.lakegen/bench/<key>.json`` (not committed) keeps every
result ever computed on this machine, so switching branches or reverting a
change does not re-run anything either. Both are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from lakegen.atomicfile import write_atomic
from lakegen.model.index import Result

RESULTS_DIR = "catalog/results"
CACHE_DIR = ".lakegen/bench"
FORMAT = 1


class ResultStore:
    """Results by cache key: the local cache first, then the committed files."""

    def __init__(self, root: Path, *, cache_dir: Path | None = None, read_committed: bool = True):
        self.results_dir = root / RESULTS_DIR
        self.cache_dir = cache_dir if cache_dir is not None else root / CACHE_DIR
        self.read_committed = read_committed
        self._committed: dict[str, Result] | None = None

    def get(self, key: str) -> Result | None:
        path = self.cache_dir / f"{key}.json"
        if path.is_file():
            try:
                return Result.model_validate_json(path.read_bytes())
            except (ValidationError, OSError):
                pass  # a damaged cache entry is a miss; the run rewrites it
        return self.committed().get(key)

    def put(self, result: Result) -> None:
        assert result.cache_key is not None
        write_atomic(self.cache_dir / f"{result.cache_key}.json", result.model_dump_json())

    def committed(self) -> dict[str, Result]:
        if self._committed is None:
            self._committed = {}
            if self.read_committed and self.results_dir.is_dir():
                for path in sorted(self.results_dir.glob("*.json")):
                    for row in read_results_file(path):
                        if row.cache_key:
                            self._committed[row.cache_key] = row
        return self._committed

    def write_model(self, model_id: str, results: Iterable[Result]) -> bool:
        """Rewrite ``catalog/results/<model_id>.json``; False when its content did not change."""
        rows = sorted(results, key=lambda r: (r.version, r.dataset, r.split, r.metric, r.cache_key or ""))
        data = {"format": FORMAT, "model": model_id, "results": [r.model_dump(mode="json") for r in rows]}
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        path = self.results_dir / f"{model_id}.json"
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
        write_atomic(path, text)
        return True

    def prune(self, model_ids: Iterable[str]) -> list[Path]:
        """Delete the results files of models no longer in the lake; returns them."""
        keep = {f"{m}.json" for m in model_ids}
        gone = [p for p in sorted(self.results_dir.glob("*.json")) if p.name not in keep]
        for path in gone:
            path.unlink()
        return gone


def read_results_file(path: Path) -> list[Result]:
    """The rows of one committed results file; an unreadable file counts as empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Result.model_validate(row) for row in data.get("results", [])]
    except (OSError, ValueError, AttributeError):
        return []
