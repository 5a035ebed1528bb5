"""A CycloneDX 1.6 ML-BOM of the lake's models and the datasets they use.

Each model is a ``machine-learning-model`` component with its ``modelCard``, the sha256 of its
latest release and its licence; ``pedigree.ancestors`` holds the verified lineage only (edges
whose declared relation the weights confirmed). Declared parents the weights did not confirm
are component properties that say so. cyclonedx-python-lib's object model has no ``modelCard``
yet, so the JSON is written here and checked against the official schema in the tests.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from lakegen import fastjson
from lakegen.exports.evidence import Evidence, dumped, latest, status_words
from lakegen.model.index import IndexEntry
from lakegen.model.manifest import HUB

SPEC = "1.6"


def licences(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["license"] == "other":
        named: dict[str, Any] = {"name": "other"}
        if manifest.get("license_url"):
            named["url"] = manifest["license_url"]
        return [{"license": named}]
    return [{"expression": manifest["license"]}]


def _release(entry: IndexEntry) -> tuple[str | None, list[dict[str, str]], list[dict[str, Any]]]:
    """The latest version, its sha256 as a CycloneDX hash, and where it is distributed."""
    release = latest(entry)
    if release is None:
        return None, [], []
    artifact = release["artifact"]
    hashes = [{"alg": "SHA-256", "content": artifact["sha256"]}]
    return release["version"], hashes, [{"type": "distribution", "url": artifact["uri"], "hashes": hashes}]


def _ref(entry_id: str, version: str | None) -> str:
    return f"{entry_id}@{version}" if version else entry_id


def _dataset_component(ev: Evidence, ref: str) -> dict[str, Any]:
    entry = ev.entries.get(ref)
    if entry is None:  # outside the lake: a Hub dataset
        hub = ev.hub_id(ref) or ref
        return {
            "type": "data",
            "bom-ref": f"dataset:{ref}",
            "name": hub,
            "externalReferences": [{"type": "distribution", "url": f"{HUB}/datasets/{hub}"}],
            "data": [{"type": "dataset", "name": hub}],
        }
    m = entry.manifest
    version, hashes, where = _release(entry)
    data: dict[str, Any] = {"type": "dataset", "name": m["name"], "description": m.get("description", "")}
    if where:
        data["contents"] = {"url": where[0]["url"]}
    if m.get("personal_data"):
        data["sensitiveData"] = ["personal data"]
    component: dict[str, Any] = {
        "type": "data",
        "bom-ref": f"dataset:{ref}",
        "name": ref,
        "licenses": licences(m),
        "data": [data],
    }
    if version:
        component["version"] = version
    if hashes:
        component["hashes"] = hashes
    return component


def _model_component(ev: Evidence, entry: IndexEntry) -> dict[str, Any]:
    m = entry.manifest
    version, hashes, where = _release(entry)
    card: dict[str, Any] = {
        "modelParameters": {
            "task": m["task"],
            "architectureFamily": m["architecture"]["family"],
            "datasets": [{"ref": f"dataset:{d['id']}"} for d in _dataset_uses(m)],
        },
        "considerations": {},
    }
    claims = ev.claims(entry)
    if claims:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {"type": c.metric, "value": f"{c.value:g}", "slice": f"{c.dataset}/{c.split}"} for c in claims
            ]
        }
    if m.get("intended_use"):
        card["considerations"]["useCases"] = [m["intended_use"]]
    if m.get("limitations"):
        card["considerations"]["technicalLimitations"] = [m["limitations"]]
    if not card["considerations"]:
        del card["considerations"]
    properties = [{"name": "lakegen:risk", "value": m["risk"]}]
    for c in claims:
        reproduced = "" if c.reproduced is None else f", reproduced {c.reproduced:.6g}"
        words = {"verified": "reproduced within tolerance"}.get(c.status) or status_words(c.status)
        properties.append(
            {
                "name": "lakegen:evaluation",
                "value": f"{c.metric} on {c.dataset}/{c.split}: claimed {c.value:g}{reproduced} ({words})",
            }
        )
    for edge in ev.unverified_parents(entry.id):
        properties.append(
            {
                "name": "lakegen:declared-base",
                "value": f"{edge.parent} ({edge.relation}): {status_words(edge.status)}",
            }
        )
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:{_ref(entry.id, version)}",
        "name": entry.id,
        "description": m["name"],
        "licenses": licences(m),
        "modelCard": card,
        "properties": properties,
    }
    if version:
        component["version"] = version
    if hashes:
        component["hashes"] = hashes
        component["externalReferences"] = where
    ancestors = [_ancestor(ev, edge.parent) for edge in ev.ancestors(entry.id)]
    if ancestors:
        component["pedigree"] = {
            "ancestors": ancestors,
            "notes": "Ancestors whose declared relation lakegen verified from the weights.",
        }
    return component


def _ancestor(ev: Evidence, parent: str) -> dict[str, Any]:
    entry = ev.entry(parent)
    out: dict[str, Any] = {"type": "machine-learning-model", "name": parent}
    if entry is not None:
        version, hashes, _ = _release(entry)
        if version:
            out["version"] = version
        if hashes:
            out["hashes"] = hashes
        out["licenses"] = licences(entry.manifest)
    return out


def _dataset_uses(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for use in manifest.get("datasets") or []:
        seen.setdefault(use["id"], use)
    for ev in manifest.get("evaluations") or []:
        seen.setdefault(ev["dataset"], {"id": ev["dataset"], "role": "eval"})
    return list(seen.values())


def _dependency(component: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    return {"ref": component["bom-ref"], "dependsOn": [f"dataset:{d['id']}" for d in _dataset_uses(manifest)]}


def _dataset_refs(models: list[IndexEntry]) -> list[str]:
    return list(dict.fromkeys(d["id"] for e in models for d in _dataset_uses(e.manifest)))


def _head(ev: Evidence, models: list[IndexEntry]) -> dict[str, Any]:
    seed = json.dumps([ev.index.inputs.digest, [e.id for e in models]])
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'lakegen:' + seed)}",
        "version": 1,
        "metadata": {
            "timestamp": ev.index.generated_at,
            "tools": {
                "components": [
                    {"type": "application", "name": "lakegen", "version": ev.index.lakegen_version}
                ]
            },
        },
    }


def bom(ev: Evidence, models: list[IndexEntry]) -> dict[str, Any]:
    components = [_model_component(ev, e) for e in models]
    dependencies = [_dependency(c, e.manifest) for c, e in zip(components, models, strict=True)]
    refs = _dataset_refs(models)
    components += [_dataset_component(ev, ref) for ref in refs]
    dependencies += [{"ref": f"dataset:{ref}"} for ref in refs]
    return {**_head(ev, models), "components": components, "dependencies": dependencies}


def parts(ev: Evidence, entry: IndexEntry) -> tuple[list[bytes], None]:
    """A model's component and its dependencies, as the BOM's JSON text has them (:func:`assemble`);
    no facts besides."""
    component = _model_component(ev, entry)
    return [dumped(component), dumped(_dependency(component, entry.manifest))], None


def assemble(
    ev: Evidence, models: list[IndexEntry], made: list[list[bytes]], facts: list[None]
) -> tuple[list[bytes], list[list[int]]]:
    """The text of :func:`bom` (as :func:`lakegen.exports.export` writes it, unindented) from each
    model's :func:`parts`, which a rebuild keeps for the models that did not change (``facts``:
    none).

    Returns:
        The text as its pieces in order, and where each model's parts are in it (start and end
        of each, in bytes).
    """
    head = dumped({**_head(ev, models), "components": [], "dependencies": []})
    tail = b'"components": [], "dependencies": []}'
    assert head.endswith(tail)
    # the datasets in the order the models name them, read from each model's dependencies: a part
    # kept from the previous BOM names them, and reading every model's manifest again for them cost
    # a third of a one-change rebuild's exports at 10,000 models
    named = (d.removeprefix("dataset:") for p in made for d in fastjson.loads(p[1])["dependsOn"])
    refs = list(dict.fromkeys(named))
    sections = (
        [p[0] for p in made] + [dumped(_dataset_component(ev, ref)) for ref in refs],
        [p[1] for p in made] + [dumped({"ref": f"dataset:{ref}"}) for ref in refs],
    )
    out = [head[: -len(tail)]]
    at = len(out[0])
    spans: list[list[int]] = [[] for _ in made]
    for key, items in zip((b'"components": [', b'], "dependencies": ['), sections, strict=True):
        out.append(key)
        at += len(key)
        for n, item in enumerate(items):
            if n:
                out.append(b", ")
                at += 2
            if n < len(made):
                spans[n] += [at, at + len(item)]
            out.append(item)
            at += len(item)
    out.append(b"]}\n")
    return out, spans
