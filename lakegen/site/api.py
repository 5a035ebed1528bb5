"""The machine-readable side of the site (``api/``) and the Pagefind search index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from lakegen.index import LakeIndex
from lakegen.site.cache import link
from lakegen.site.views import stem


def entry_documents(index: LakeIndex) -> dict[str, dict[str, Any]]:
    """One JSON document per entry: the manifest and every row of the index that concerns it."""
    rows: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for edge in index.edges:
        rows[edge.child]["parents"].append(edge)
        rows[edge.parent]["children"].append(edge)
    for name in ("results", "findings", "history", "artifacts"):
        for row in getattr(index, name):
            key = row.model if name == "results" else row.entry
            if key is not None:
                rows[key][name].append(row)
    docs = {}
    for entry in index.entries:
        doc: dict[str, Any] = entry.model_dump(mode="json")
        for name in ("parents", "children", "results", "findings", "history", "artifacts"):
            doc[name] = [r.model_dump(mode="json") for r in rows[entry.id][name]]
        docs[entry.id] = doc
    return docs


def write(index: LakeIndex, site: Path, previous: Path | None = None) -> tuple[int, int]:
    """Write ``api/lake.json`` and ``api/entries/<id>.json``; unchanged entry files are linked.

    Returns:
        (files written, files linked from ``previous``).
    """
    folder = site / "api" / "entries"
    folder.mkdir(parents=True, exist_ok=True)
    (site / "api" / "lake.json").write_text(
        json.dumps(index.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
    )
    same_dir = previous is not None and previous.resolve() == site.resolve()
    written = linked = 0
    for entry_id, doc in entry_documents(index).items():
        name = f"api/entries/{stem(entry_id)}.json"
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
        old = previous / name if previous is not None else None
        if old is not None and old.is_file() and old.stat().st_size == len(data) and old.read_bytes() == data:
            if not same_dir:
                link(old, site / name)
            linked += 1
            continue
        (site / name).write_bytes(data)
        written += 1
    return written + 1, linked


def pagefind_available() -> bool:
    try:
        import pagefind_bin  # noqa: F401
    except ImportError:
        return shutil.which("pagefind") is not None
    return True


def run_pagefind(site: Path) -> str:
    """Index the built site with Pagefind into ``site/pagefind``; returns its summary line."""
    if not pagefind_available():
        return "skipped: Pagefind is not installed (pip install 'pagefind[bin]')"
    shutil.rmtree(site / "pagefind", ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pagefind", "--site", str(site), "--output-subdir", "pagefind"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pagefind failed:\n{proc.stdout}\n{proc.stderr}")
    lines = [line.strip() for line in proc.stdout.splitlines() if "Indexed" in line or "Found" in line]
    return "; ".join(lines)
