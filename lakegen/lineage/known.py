"""What a PR check that loads only part of the lake knows the other models by, and how it finds
their input digests in a recorded full run of the attribution stage (:mod:`lakegen.lineage.partial`).

A check from its base's saved index (:mod:`lakegen.compile.frombase`) loads the manifests the pull
request reaches; every other model it knows by the sha256 of its manifest, its artifacts' statuses
and its bases' kinds (:func:`source`), which each full run records beside its result. The model's
input digest is a function of those, so a record that saw each with the same source holds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTS = ".parts.json"  # beside a full run's result: what a check starts from (lakegen.lineage.partial)


class WholeLake(Exception):
    """A check that loaded part of the lake (:class:`Known`) needs the whole of it for attribution."""


@dataclass
class Known:
    """A check's lake whose catalog holds only the models a pull request reaches: every other model
    is known by the sha256 of its manifest (``sources``), which it shares with its base, and
    ``grow`` loads more manifests into the catalog (with those they refer to) when the part
    attributed again needs them."""

    sources: dict[str, str]
    grow: Callable[[Collection[str]], None] = field(default=lambda _: None)


def source(manifest: str, statuses: dict[str, str], bases: list[tuple[Any, Any]]) -> str:
    """What a model's input digest is a function of besides its manifest's text (``manifest``, its
    sha256): its versions' artifact statuses and its bases' kinds."""
    made = [manifest, statuses, [list(b) for b in bases]]
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()


def digests_of(folder: Path, common: str, sources: dict[str, str]) -> dict[str, str] | None:
    """The input digests of the models in ``sources`` as a recorded full run took them, from a run
    that saw each with the manifest it has now (the digest is a function of the manifest, its
    verified artifacts and its bases' kinds, which the check compares besides); None without one."""
    for path in sorted(folder.glob(f"*{PARTS}")):
        try:
            data = json.loads(path.read_bytes())
            models, seen = data["models"], data.get("sources")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if data.get("common") != common or not isinstance(seen, dict) or not isinstance(models, dict):
            continue
        if all(seen.get(m) == sha and isinstance(models.get(m), str) for m, sha in sources.items()):
            return {m: models[m] for m in sources}
    return None
