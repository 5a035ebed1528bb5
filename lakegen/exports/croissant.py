"""A Croissant 1.1 description (JSON-LD) of a dataset of the lake.

The latest release is the one ``FileObject`` (pinned by its sha256), each feature a ``Field``
of one ``RecordSet``, the splits a ``cr:Split`` record set as Croissant's split convention
has it. Who trained or evaluated on the dataset is not Croissant's to say; the other exports
carry that.
"""

from __future__ import annotations

import re
from typing import Any

from lakegen.exports.evidence import Evidence, latest
from lakegen.model.index import IndexEntry

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
ENCODING = {
    "npz": "application/x-npz",
    "parquet": "application/x-parquet",
    "csv": "text/csv",
    "jsonl": "application/jsonlines",
    "safetensors": "application/octet-stream",
}


def _data_type(dtype: str) -> str:
    if re.match(r"^(float|bfloat|half|double)", dtype):
        return "sc:Float"
    if re.match(r"^u?int", dtype):
        return "sc:Integer"
    if dtype.startswith("bool"):
        return "sc:Boolean"
    if dtype in ("image", "img"):
        return "sc:ImageObject"
    return "sc:Text"


def _spdx_url(expression: str, fallback: str | None) -> str:
    if " " not in expression and expression != "other":
        return f"https://spdx.org/licenses/{expression}.html"
    return fallback or expression


def description(ev: Evidence, entry: IndexEntry) -> dict[str, Any]:
    m = entry.manifest
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": entry.id,
        "alternateName": m["name"],
        "description": m.get("description", "") or m["name"],
        "license": _spdx_url(m["license"], m.get("license_url")),
        "keywords": [m["task"], *m.get("tags", [])],
    }
    source = m.get("source") or {}
    url = source.get("url") or next((link["url"] for link in m.get("links") or []), None)
    if url:
        doc["url"] = url
    if source.get("citation"):
        doc["citeAs"] = source["citation"].strip()
    if m.get("owners"):
        # owners are @people or org/team
        doc["creator"] = [
            {"@type": "sc:Organization" if "/" in owner else "sc:Person", "name": owner}
            for owner in m["owners"]
        ]
    doc["rai:personalSensitiveInformation"] = (
        "The manifest declares personal data."
        if m.get("personal_data")
        else "The manifest declares no personal data."
    )
    release = latest(entry)
    file_id = None
    if release is not None:
        artifact = release["artifact"]
        doc["version"] = release["version"]
        doc["datePublished"] = release["released"]
        file_id = f"{entry.id}-{release['version']}"
        doc["distribution"] = [
            {
                "@type": "cr:FileObject",
                "@id": file_id,
                "name": artifact["uri"].rsplit("/", 1)[-1],
                "contentUrl": artifact["uri"],
                "contentSize": f"{artifact['size']} B",
                "encodingFormat": ENCODING.get(artifact["format"], "application/octet-stream"),
                "sha256": artifact["sha256"],
            }
        ]
    record_sets: list[dict[str, Any]] = []
    fields = []
    for feature in m.get("features") or []:
        fid = f"{entry.id}/{feature['name']}"
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": fid,
            "name": feature["name"],
            "description": feature.get("description") or feature["name"],
            "dataType": _data_type(feature["dtype"]),
        }
        if feature.get("shape"):
            field["isArray"] = True
            field["arrayShape"] = ",".join(str(n) for n in feature["shape"])
        if file_id:
            field["source"] = {"fileObject": {"@id": file_id}, "extract": {"column": feature["name"]}}
        fields.append(field)
    if fields:
        record_sets.append({"@type": "cr:RecordSet", "@id": entry.id, "name": entry.id, "field": fields})
    splits = m.get("splits") or []
    if splits:
        sid = f"{entry.id}-splits"
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": sid,
                "name": "splits",
                "description": "The dataset's splits and their number of rows.",
                "dataType": "cr:Split",
                "key": {"@id": f"{sid}/name"},
                "field": [
                    {"@type": "cr:Field", "@id": f"{sid}/name", "name": "name", "dataType": "sc:Text"},
                    {"@type": "cr:Field", "@id": f"{sid}/rows", "name": "rows", "dataType": "sc:Integer"},
                ],
                "data": [{f"{sid}/name": s["name"], f"{sid}/rows": s["rows"]} for s in splits],
            }
        )
    if record_sets:
        doc["recordSet"] = record_sets
    return doc
