"""An SPDX 3.0.1 document (JSON-LD) with the AI and Dataset profiles.

Models are ``ai_AIPackage`` elements, datasets ``dataset_DatasetPackage``; a model is
``trainedOn`` its train and fine-tune datasets and ``testedOn`` the ones it is evaluated on,
and a parent is ``ancestorOf`` a child only when the index verified that edge from the weights.
A declared parent the weights did not confirm is an ``Annotation`` on the child that says so.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from lakegen.exports.evidence import Evidence, dumped, latest, status_words
from lakegen.model.index import IndexEntry
from lakegen.model.manifest import HUB

CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
# The EU AI Act's risk levels, on SPDX's safety-risk scale (ai_SafetyRiskAssessmentType).
RISK = {"unacceptable": "serious", "high": "high", "limited": "medium", "minimal": "low"}
# Feature dtypes, on SPDX's dataset types (dataset_DatasetType).
DATASET_TYPES = {
    "float": "numeric",
    "int": "numeric",
    "uint": "numeric",
    "bool": "categorical",
    "str": "text",
}


def base_of(ev: Evidence, models: list[IndexEntry]) -> str:
    """The IRI every element id of the document about ``models`` starts with: one per compiled lake."""
    seed = json.dumps([ev.index.inputs.digest, [e.id for e in models]])
    return f"https://spdx.org/spdxdocs/lakegen-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"


def _licence_id(base: str, expression: str) -> str:
    return f"{base}/licence/{quote(expression, safe='')}"


def _dataset_id(base: str, ref: str) -> str:
    return f"{base}/dataset/{ref.replace(':', '/')}"


def _relationship(
    sid: str, n: int, source: str, kind: str, targets: list[str], comment: str = ""
) -> dict[str, Any]:
    rel: dict[str, Any] = {
        "type": "Relationship",
        "spdxId": f"{sid}/relationship/{n}",
        "from": source,
        "relationshipType": kind,
        "to": targets,
    }
    if comment:
        rel["comment"] = comment
    rel["creationInfo"] = "_:creationinfo"
    return rel


def _package(base: str, entry: IndexEntry, kind: str) -> dict[str, Any]:
    m = entry.manifest
    element: dict[str, Any] = {
        "spdxId": f"{base}/{kind}/{entry.id}",
        "name": entry.id,
        "summary": m["name"],
        "description": m.get("description", ""),
        "software_primaryPurpose": "model" if kind == "model" else "data",
    }
    release = latest(entry)
    if release is not None:
        artifact = release["artifact"]
        element["software_packageVersion"] = release["version"]
        element["releaseTime"] = f"{release['released']}T00:00:00Z"
        element["software_downloadLocation"] = artifact["uri"]
        element["verifiedUsing"] = [{"type": "Hash", "algorithm": "sha256", "hashValue": artifact["sha256"]}]
    return element


def _model(
    ev: Evidence, base: str, entry: IndexEntry, chosen: set[str] | None
) -> tuple[list[dict[str, Any]], list[Any]]:
    """A model's elements (itself, its relationships, then its annotations), and what the document
    needs to know of them besides (:func:`assemble`): its licence, the datasets it names, how many
    relationships and annotations it has. ``chosen``: the models of the document (None: all the lake's)."""
    m = entry.manifest
    element = {"type": "ai_AIPackage", **_package(base, entry, "model")}
    element["ai_typeOfModel"] = [m["architecture"]["family"]]
    element["ai_domain"] = [m["task"]]
    element["ai_safetyRiskAssessment"] = RISK[m["risk"]]
    if m.get("intended_use"):
        element["ai_informationAboutApplication"] = m["intended_use"]
    if m.get("limitations"):
        element["ai_limitation"] = m["limitations"]
    training = m.get("training") or {}
    if training.get("procedure"):
        element["ai_informationAboutTraining"] = training["procedure"]
    if training.get("hyperparameters"):
        element["ai_hyperparameter"] = [
            {"type": "DictionaryEntry", "key": k, "value": str(v)}
            for k, v in training["hyperparameters"].items()
        ]
    # ai_metric holds the numbers the lake reproduced; claims it did not are only commented
    claims = ev.claims(entry)
    reproduced = [c for c in claims if c.status == "verified" and c.reproduced is not None]
    if reproduced:
        element["ai_metric"] = [
            {
                "type": "DictionaryEntry",
                "key": f"{c.dataset}/{c.split}/{c.metric}",
                "value": f"{c.reproduced:.6g}",
            }
            for c in reproduced
        ]
    others = [c for c in claims if c not in reproduced]
    if others:
        element["comment"] = "Claims lakegen did not reproduce: " + "; ".join(
            f"{c.metric} on {c.dataset}/{c.split} = {c.value:g} ({status_words(c.status)})" for c in others
        )
    element["creationInfo"] = "_:creationinfo"
    sid = str(element["spdxId"])
    uses = m.get("datasets") or []
    trained = list(dict.fromkeys(u["id"] for u in uses if u["role"] != "eval"))
    tested = list(dict.fromkeys([u["id"] for u in uses if u["role"] == "eval"] + [c.dataset for c in claims]))
    related = [(sid, "hasDeclaredLicense", [_licence_id(base, m["license"])], "")]
    for kind, named in (("trainedOn", trained), ("testedOn", tested)):
        if named:
            related.append((sid, kind, [_dataset_id(base, d) for d in named], ""))
    for edge in ev.verified_parents(entry.id):
        parent = ev.entry(edge.parent)  # read: whether the parent is a model of the document
        if parent is not None and parent.kind == "model" and (chosen is None or parent.id in chosen):
            comment = f"{edge.relation}, verified by the weights"
            related.append((f"{base}/model/{parent.id}", "ancestorOf", [sid], comment))
    rels = [_relationship(sid, n, *r) for n, r in enumerate(related)]
    notes = [
        {
            "type": "Annotation",
            "spdxId": f"{sid}/annotation/{n}",
            "annotationType": "review",
            "subject": sid,
            "statement": f"Declares base {edge.parent} ({edge.relation}): "
            f"{status_words(edge.status)}; not asserted as ancestorOf.",
            "creationInfo": "_:creationinfo",
        }
        for n, edge in enumerate(ev.unverified_parents(entry.id))
    ]
    return [element, *rels, *notes], [
        m["license"],
        list(dict.fromkeys(trained + tested)),
        len(rels),
        len(notes),
    ]


def _dataset(ev: Evidence, base: str, ref: str) -> list[dict[str, Any]]:
    """A dataset's element, and its licence's relationship when it is the lake's."""
    entry = ev.entries.get(ref)
    if entry is None:  # a Hub dataset outside the lake: named, not described
        hub = ev.hub_id(ref) or ref
        outside = {
            "type": "dataset_DatasetPackage",
            "spdxId": _dataset_id(base, ref),
            "name": hub,
            "software_primaryPurpose": "data",
            "software_downloadLocation": f"{HUB}/datasets/{hub}",
            "dataset_datasetType": ["noAssertion"],
            "creationInfo": "_:creationinfo",
        }
        return [outside]
    m = entry.manifest
    element = {"type": "dataset_DatasetPackage", **_package(base, entry, "dataset")}
    types = {DATASET_TYPES.get(f["dtype"].rstrip("0123456789"), "other") for f in m.get("features") or []}
    element["dataset_datasetType"] = sorted(types) or ["noAssertion"]
    element["dataset_hasSensitivePersonalInformation"] = "yes" if m.get("personal_data") else "no"
    rows = sum(s["rows"] for s in m.get("splits") or [])
    if rows:
        element["dataset_datasetSize"] = rows
    if m.get("source", {}).get("name"):
        element["dataset_dataCollectionProcess"] = m["source"]["name"]
    element["creationInfo"] = "_:creationinfo"
    sid = str(element["spdxId"])
    return [element, _relationship(sid, 0, sid, "hasDeclaredLicense", [_licence_id(base, m["license"])])]


def _base(ev: Evidence) -> str:
    """:func:`base_of` every model of the lake, made once per :class:`Evidence`."""
    found = ev.memo.get("spdx-base")
    if found is None:
        found = ev.memo["spdx-base"] = base_of(ev, ev.select("model", None))
    return str(found)


def parts(ev: Evidence, entry: IndexEntry) -> tuple[list[bytes], list[Any]]:
    """A model's elements in the document about every model of the lake, as its JSON text has them
    (:func:`assemble`), and what the document needs to know of them besides."""
    elements, facts = _model(ev, _base(ev), entry, None)
    return [dumped(e) for e in elements], facts


def rebase(ev: Evidence, models: list[IndexEntry], old: bytes) -> Callable[[bytes], bytes]:
    """What makes a model's text cut from ``old`` (a previous document) that of this document: its
    element ids under this document's base. An entry whose digest is unchanged cannot hold the old
    base in its own text: that base is a digest of the inputs its text was among."""
    found = re.search(rb'"spdxId": "(https://spdx\.org/spdxdocs/lakegen-[0-9a-f-]{36})/document"', old)
    new = base_of(ev, models).encode()
    if found is None:
        raise ValueError("not a lakegen SPDX document")
    before = found.group(1)
    return lambda text: text.replace(before, new)


def assemble(
    ev: Evidence, models: list[IndexEntry], made: list[list[bytes]], facts: list[Any]
) -> tuple[list[bytes], list[list[int]]]:
    """The text of :func:`document` (as :func:`lakegen.exports.export` writes it, unindented) from
    each model's :func:`parts` and their facts, which a rebuild keeps for the models that did not
    change; the datasets and licences they name follow them, made here.

    Returns:
        The text as its pieces in order, and where each model's parts are in it (start and end
        of each, in bytes).
    """
    base = base_of(ev, models)
    sids = [f"{base}/model/{e.id}" for e in models]
    ids: list[str] = []
    for sid, (_, _, rels, notes) in zip(sids, facts, strict=True):
        ids += [sid, *(f"{sid}/relationship/{n}" for n in range(rels))]
        ids += [f"{sid}/annotation/{n}" for n in range(notes)]
    refs = list(dict.fromkeys(d for f in facts for d in f[1]))
    datasets = [e for ref in refs for e in _dataset(ev, base, ref)]
    ids += [str(e["spdxId"]) for e in datasets]
    named = [f[0] for f in facts]
    named += [ev.entries[r].manifest["license"] for r in refs if r in ev.entries]
    licences = [
        {
            "type": "simplelicensing_LicenseExpression",
            "spdxId": _licence_id(base, expression),
            "simplelicensing_licenseExpression": "NOASSERTION" if expression == "other" else expression,
            "creationInfo": "_:creationinfo",
        }
        for expression in dict.fromkeys(named)
    ]
    ids += [str(e["spdxId"]) for e in licences]
    head = b", ".join(dumped(e) for e in _head(ev, base, sids, ids))
    out = [b'{"@context": ' + dumped(CONTEXT) + b', "@graph": [' + head]
    at = len(out[0])
    spans: list[list[int]] = []
    for items in made:
        mine: list[int] = []
        for item in items:
            out.append(b", ")
            mine += [at + 2, at + 2 + len(item)]
            out.append(item)
            at += 2 + len(item)
        spans.append(mine)
    out += [b", " + dumped(e) for e in [*datasets, *licences]]
    out.append(b"]}\n")
    return out, spans


def document(ev: Evidence, models: list[IndexEntry]) -> dict[str, Any]:
    """The SPDX document about ``models``: each model's elements (itself, its relationships, its
    annotations), then the datasets they name, then the licences."""
    base, chosen = base_of(ev, models), {e.id for e in models}
    made, facts = [], []
    for entry in models:
        elements, fact = _model(ev, base, entry, chosen)
        made.append([dumped(e) for e in elements])
        facts.append(fact)
    chunks, _ = assemble(ev, models, made, facts)
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def _head(ev: Evidence, base: str, sids: list[str], ids: list[str]) -> list[dict[str, Any]]:
    """The elements before the models' (creation info, agent, tool, the document itself, which
    lists them all)."""
    agent, tool = f"{base}/agent/lakegen", f"{base}/tool/lakegen"
    return [
        {
            "type": "CreationInfo",
            "@id": "_:creationinfo",
            "specVersion": "3.0.1",
            "created": ev.index.generated_at.replace("+00:00", "Z"),
            "createdBy": [agent],
            "createdUsing": [tool],
        },
        {"type": "SoftwareAgent", "spdxId": agent, "name": "lakegen", "creationInfo": "_:creationinfo"},
        {
            "type": "Tool",
            "spdxId": tool,
            "name": f"lakegen {ev.index.lakegen_version}",
            "creationInfo": "_:creationinfo",
        },
        {
            "type": "SpdxDocument",
            "spdxId": f"{base}/document",
            "name": "lakegen model lake",
            "creationInfo": "_:creationinfo",
            "profileConformance": ["core", "software", "simpleLicensing", "ai", "dataset"],
            "rootElement": sids,
            "element": ids,
        },
    ]
