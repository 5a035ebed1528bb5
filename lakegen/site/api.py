"""The machine-readable side of the site (``api/``) and the Pagefind search index."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lakegen.index import LakeIndex, write_json_atomic
from lakegen.site.cache import link
from lakegen.site.views import LakeView, stem


def write(
    index: LakeIndex,
    view: LakeView,
    site: Path,
    previous: Path | None = None,
    known: dict[str, str] | None = None,
) -> tuple[dict[str, str], int]:
    """Write ``api/lake.json`` and ``api/entries/<id>.json``.

    An entry file whose digest is in ``known`` (the previous build's) and exists in
    ``previous`` is linked from there rather than written again.

    Returns:
        The digest of every entry file, and how many were linked.
    """
    folder = site / "api" / "entries"
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(site / "api" / "lake.json", index.model_dump(mode="json"))
    same_dir = previous is not None and previous.resolve() == site.resolve()
    digests, linked = {}, 0
    for entry_id, data in view.documents.items():
        name = f"api/entries/{stem(entry_id)}.json"
        digest = digests[name] = view.digest(entry_id)
        old = previous / name if previous is not None else None
        if old is not None and (known or {}).get(name) == digest and old.is_file():
            if not same_dir:
                link(old, site / name)
            linked += 1
            continue
        (site / name).write_bytes(data)
    return digests, linked


# Only entry pages are searchable; Pagefind need not parse the rest.
ENTRY_GLOB = "{models,datasets,code}/**/*.html"


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
        [
            sys.executable,
            "-m",
            "pagefind",
            "--site",
            str(site),
            "--output-subdir",
            "pagefind",
            "--glob",
            ENTRY_GLOB,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pagefind failed:\n{proc.stdout}\n{proc.stderr}")
    lines = [line.strip() for line in proc.stdout.splitlines() if "Indexed" in line or "Found" in line]
    return "; ".join(lines)
