"""Attribution's results kept by the content they are a function of, so that a lake changed in one
family recomputes that family only.

Every step of :func:`lakegen.attribution.attribute` reads fingerprints and hints (release order,
adapter bases) and nothing else, so its result is keyed by a digest of those (see :func:`key`):
the lineage of a whole set of models, of each family, and each root's search for a hidden
derivation that found none. The keys also cover lakegen's attribution and fingerprint code, so
changing an algorithm never serves a result of the old one. Where the results are kept is the
caller's (:class:`Memo`); :mod:`lakegen.lineage.memo` keeps them on disk beside the fingerprints.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from lakegen.attribution.edges import Lineage
from lakegen.fingerprint import Fingerprint
from lakegen.model.index import Edge


class Memo(Protocol):
    def get(self, key: str) -> Any:
        """The value put under ``key``, or None."""
        ...

    def put(self, key: str, value: Any) -> None: ...


@functools.cache
def code_digest() -> str:
    """A digest of the code whose results are kept: attribution and fingerprints."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent / "fingerprint"):
        for file in sorted(folder.glob("*.py")):
            h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def identity(fp: Fingerprint) -> list[Any]:
    """What identifies a fingerprint: the content it was computed from, and what it says of it."""
    return [fp.kind, fp.sha256, fp.architecture, fp.adapter]


def key(step: str, *parts: Any) -> str:
    text = json.dumps([code_digest(), step, parts], separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def lineage_json(lineage: Lineage) -> dict[str, Any]:
    return {
        "models": lineage.models,
        "edges": [e.model_dump(mode="json") for e in lineage.edges],
        "roots": lineage.roots,
        "notes": lineage.notes,
        "rediscovered": lineage.rediscovered,
    }


def lineage_from_json(data: Any) -> Lineage | None:
    try:
        return Lineage(
            list(data["models"]),
            [Edge.model_validate(e) for e in data["edges"]],
            list(data["roots"]),
            list(data["notes"]),
            list(data.get("rediscovered", [])),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a damaged entry is a miss
