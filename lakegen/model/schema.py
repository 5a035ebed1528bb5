"""JSON Schema of each entry kind, for editors (yaml-language-server) and other tools.

The schemas are generated from the installed lakegen's manifest models, never read from a copy,
so they always match the lakegen that validates the lake. Each manifest's first line points at
``schemas/<kind>.schema.json`` in its lake; ``lakegen new`` writes the ones a lake lacks, and
``lakegen schema --write`` / ``--check`` keep them current.
"""

from __future__ import annotations

import json
from pathlib import Path

from lakegen.model.manifest import KINDS

SCHEMA_DIR = "schemas"


def json_schema(kind: str) -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of manifests of ``kind``."""
    schema = KINDS[kind].model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"lakegen {kind} manifest",
        **schema,
    }


def render(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"


def schema_file(kind: str) -> str:
    return f"{SCHEMA_DIR}/{kind}.schema.json"


def stale(root: Path) -> list[str]:
    """Committed schema files that differ from what the pydantic models produce now."""
    return [schema_file(k) for k in KINDS if _read(root / schema_file(k)) != render(k)]


def write(root: Path, *, missing_only: bool = False) -> list[str]:
    """Write every kind's schema under ``root`` (only those not there yet with ``missing_only``);
    returns the files written."""
    kinds = [k for k in KINDS if not (missing_only and (root / schema_file(k)).is_file())]
    if kinds:
        (root / SCHEMA_DIR).mkdir(exist_ok=True)
    for kind in kinds:
        (root / schema_file(kind)).write_text(render(kind), encoding="utf-8")
    return [schema_file(k) for k in kinds]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
