"""JSON Schema of each entry kind, for editors (yaml-language-server) and other tools."""

from __future__ import annotations

import json
from pathlib import Path

from lakegen.manifest import KINDS

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


def write(root: Path) -> list[str]:
    """Write every kind's schema under ``root``; returns the files written."""
    (root / SCHEMA_DIR).mkdir(exist_ok=True)
    for kind in KINDS:
        (root / schema_file(kind)).write_text(render(kind), encoding="utf-8")
    return [schema_file(k) for k in KINDS]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
