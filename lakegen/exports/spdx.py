"""An SPDX 3.0.1 document (JSON-LD) with the AI and Dataset profiles.

Models are ``ai_AIPackage`` elements, datasets ``dataset_DatasetPackage``; a model is
``trainedOn`` its train and fine-tune datasets and ``testedOn`` the ones it is evaluated on,
and a parent is ``ancestorOf`` a child only when the index verified that edge from the weights.
A declared parent the weights did not confirm is an ``Annotation`` on the child that says so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from typing import IO, Any

from lakegen.exports.evidence import Evidence, latest, status_words
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


class _Doc:
    def __init__(self, ev: Evidence, models: list[IndexEntry], spool: IO[bytes] | None = None):
        self.ev = ev
        seed = json.dumps([ev.index.inputs.digest, [e.id for e in models]])
        self.base = f"https://spdx.org/spdxdocs/lakegen-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
        self.graph: list[dict[str, Any]] = []
        self.element_ids: list[str] = []
        self.spool = spool
        """Where each element goes as compact JSON, as it is made, rather than into :attr:`graph`."""
        self.ids: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.created = ev.index.generated_at.replace("+00:00", "Z")

    def iri(self, what: str) -> str:
        return f"{self.base}/{what}"

    def serial(self, kind: str) -> str:
        """The next element id of ``kind``: relationship/0, relationship/1..."""
        n = self.counts[kind] = self.counts.get(kind, -1) + 1
        return self.iri(f"{kind}/{n}")

    def add(self, element: dict[str, Any]) -> str:
        element.setdefault("creationInfo", "_:creationinfo")
        self.element_ids.append(str(element["spdxId"]))
        if self.spool is None:
            self.graph.append(element)
        else:  # each element follows the document's head: the separator json.dumps puts between them
            self.spool.write(b", " + json.dumps(element, ensure_ascii=False).encode())
        return str(element["spdxId"])

    def relate(self, source: str, kind: str, targets: list[str], comment: str = "") -> None:
        if not targets:
            return
        rel: dict[str, Any] = {
            "type": "Relationship",
            "spdxId": self.serial("relationship"),
            "from": source,
            "relationshipType": kind,
            "to": targets,
        }
        if comment:
            rel["comment"] = comment
        self.add(rel)

    def licence(self, expression: str) -> str:
        key = f"licence:{expression}"
        if key not in self.ids:
            self.ids[key] = self.add(
                {
                    "type": "simplelicensing_LicenseExpression",
                    "spdxId": self.serial("licence"),
                    "simplelicensing_licenseExpression": "NOASSERTION"
                    if expression == "other"
                    else expression,
                }
            )
        return self.ids[key]

    def package(self, entry: IndexEntry, kind: str) -> dict[str, Any]:
        m = entry.manifest
        element: dict[str, Any] = {
            "spdxId": self.iri(f"{kind}/{entry.id}"),
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
            element["verifiedUsing"] = [
                {"type": "Hash", "algorithm": "sha256", "hashValue": artifact["sha256"]}
            ]
        return element

    def dataset(self, ref: str) -> str:
        key = f"dataset:{ref}"
        if key in self.ids:
            return self.ids[key]
        entry = self.ev.entries.get(ref)
        if entry is None:  # a Hub dataset outside the lake: named, not described
            hub = self.ev.hub_id(ref) or ref
            element = {
                "type": "dataset_DatasetPackage",
                "spdxId": self.iri(f"dataset/{ref.replace(':', '/')}"),
                "name": hub,
                "software_primaryPurpose": "data",
                "software_downloadLocation": f"{HUB}/datasets/{hub}",
                "dataset_datasetType": ["noAssertion"],
            }
            self.ids[key] = self.add(element)
            return self.ids[key]
        m = entry.manifest
        element = {"type": "dataset_DatasetPackage", **self.package(entry, "dataset")}
        types = {DATASET_TYPES.get(f["dtype"].rstrip("0123456789"), "other") for f in m.get("features") or []}
        element["dataset_datasetType"] = sorted(types) or ["noAssertion"]
        element["dataset_hasSensitivePersonalInformation"] = "yes" if m.get("personal_data") else "no"
        rows = sum(s["rows"] for s in m.get("splits") or [])
        if rows:
            element["dataset_datasetSize"] = rows
        if m.get("source", {}).get("name"):
            element["dataset_dataCollectionProcess"] = m["source"]["name"]
        self.ids[key] = self.add(element)
        self.relate(self.ids[key], "hasDeclaredLicense", [self.licence(m["license"])])
        return self.ids[key]

    def model(self, entry: IndexEntry) -> str:
        m = entry.manifest
        element = {"type": "ai_AIPackage", **self.package(entry, "model")}
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
        claims = self.ev.claims(entry)
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
                f"{c.metric} on {c.dataset}/{c.split} = {c.value:g} ({status_words(c.status)})"
                for c in others
            )
        sid = self.add(element)
        self.relate(sid, "hasDeclaredLicense", [self.licence(m["license"])])
        uses = m.get("datasets") or []
        self.relate(sid, "trainedOn", [self.dataset(u["id"]) for u in uses if u["role"] != "eval"])
        tested = dict.fromkeys([u["id"] for u in uses if u["role"] == "eval"] + [c.dataset for c in claims])
        self.relate(sid, "testedOn", [self.dataset(d) for d in tested])
        return sid


def document(ev: Evidence, models: list[IndexEntry]) -> dict[str, Any]:
    doc = _Doc(ev, models)
    head = _fill(doc, models)
    return {"@context": CONTEXT, "@graph": [*head, *doc.graph]}


def write(ev: Evidence, models: list[IndexEntry], out: IO[bytes]) -> None:
    """Write :func:`document` to ``out`` as compact JSON, the bytes ``json.dumps`` makes of it (and a
    newline), without holding the document: each element is serialised as it is made. The whole
    graph as dicts was the site build's peak (a 29 MB document at 10,000 models)."""
    with tempfile.TemporaryFile() as spool:
        doc = _Doc(ev, models, spool)
        head = ", ".join(json.dumps(e, ensure_ascii=False) for e in _fill(doc, models))
        out.write(f'{{"@context": {json.dumps(CONTEXT)}, "@graph": [{head}'.encode())
        spool.seek(0)
        shutil.copyfileobj(spool, out)
        out.write(b"]}\n")


def _fill(doc: _Doc, models: list[IndexEntry]) -> list[dict[str, Any]]:
    """Add every element of the document about ``models`` to ``doc``; return the ones before them
    (creation info, agent, tool, the document itself, which lists them all)."""
    ev = doc.ev
    agent = doc.iri("agent/lakegen")
    tool = doc.iri("tool/lakegen")
    sids = {e.id: doc.model(e) for e in models}
    for entry in models:
        for edge in ev.verified_parents(entry.id):
            if edge.parent in sids:
                doc.relate(
                    sids[edge.parent],
                    "ancestorOf",
                    [sids[entry.id]],
                    f"{edge.relation}, verified by the weights",
                )
        for edge in ev.unverified_parents(entry.id):
            doc.add(
                {
                    "type": "Annotation",
                    "spdxId": doc.serial("annotation"),
                    "annotationType": "review",
                    "subject": sids[entry.id],
                    "statement": f"Declares base {edge.parent} ({edge.relation}): "
                    f"{status_words(edge.status)}; not asserted as ancestorOf.",
                }
            )
    head: list[dict[str, Any]] = [
        {
            "type": "CreationInfo",
            "@id": "_:creationinfo",
            "specVersion": "3.0.1",
            "created": doc.created,
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
    ]
    spdx_doc = {
        "type": "SpdxDocument",
        "spdxId": doc.iri("document"),
        "name": "lakegen model lake",
        "creationInfo": "_:creationinfo",
        "profileConformance": ["core", "software", "simpleLicensing", "ai", "dataset"],
        "rootElement": list(sids.values()),
        "element": doc.element_ids,
    }
    return [*head, spdx_doc]
