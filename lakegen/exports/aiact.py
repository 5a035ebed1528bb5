"""EU AI Act technical documentation of a model: Annex IV points 1 and 2, and Annex XI section 1.

Each point of the Annexes is filled from the manifest and from the evidence in the lake index
(verified lineage, reproduced results, artifact checks), each fact saying which it is. A point
the lake holds nothing for is a gap, listed at the end with what would fill it: the document
never fills a point with text the lake cannot support.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lakegen.exports.evidence import Evidence, latest, status_words
from lakegen.model.index import IndexEntry

Fill = Callable[[Evidence, IndexEntry], str]


def _purpose(ev: Evidence, e: IndexEntry) -> str:
    m = e.manifest
    lines = [f"Task: `{m['task']}`."]
    if m.get("intended_use"):
        lines.append(m["intended_use"].strip())
    return "\n\n".join(lines) if m.get("intended_use") else ""


def _provider(ev: Evidence, e: IndexEntry) -> str:
    owners = ", ".join(f"`{o}`" for o in e.manifest["owners"])
    return f"Owners in the lake (not necessarily the legal provider): {owners}."


def _versions(ev: Evidence, e: IndexEntry) -> str:
    rows = []
    for v in e.manifest.get("versions") or []:
        state = ev.artifact_status(e.id, v["version"])
        yanked = f" — yanked: {v['yanked']}" if v.get("yanked") else ""
        rows.append(
            f"- {v['version']} ({v['released']}): {(v.get('changelog') or 'no changelog').rstrip('.')}; "
            "artifact sha256 "
            f"`{v['artifact']['sha256'][:16]}…` {state}{yanked}"
        )
    return "\n".join(rows)


def _lineage(ev: Evidence, e: IndexEntry) -> str:
    edges = ev.parents(e.id)
    if not edges:
        return ""
    return "\n".join(
        f"- `{x.parent}` ({x.relation}): {status_words(x.status)}"
        + (f" (confidence {x.confidence:.2f})" if x.status == "verified" and x.confidence is not None else "")
        for x in edges
    )


def _software(ev: Evidence, e: IndexEntry) -> str:
    m = e.manifest
    parts = [f"Framework: {m['framework']}."]
    if m.get("library_name"):
        parts.append(f"Loaded with `{m['library_name']}`.")
    arch = m["architecture"]
    if arch.get("entrypoint"):
        parts.append(f"Built by `{arch['entrypoint']}` of code entry `{arch['code']}`.")
    return " ".join(parts) if m.get("library_name") or arch.get("entrypoint") else ""


def _distribution(ev: Evidence, e: IndexEntry) -> str:
    release = latest(e)
    if release is None:
        return ""
    a = release["artifact"]
    return (
        f"Released {release['released']} as a {a['format']} artifact at `{a['uri']}` ({a['size']:,} bytes)."
    )


def _architecture(ev: Evidence, e: IndexEntry) -> str:
    arch = e.manifest["architecture"]
    params = f"; {e.parameters:,} parameters, counted from the weights" if e.parameters else ""
    return f"Architecture family `{arch['family']}`{params}."


def _development(ev: Evidence, e: IndexEntry) -> str:
    training = e.manifest.get("training") or {}
    parts = []
    if training.get("procedure"):
        parts.append(training["procedure"].strip())
    if training.get("hyperparameters"):
        parts.append("\n".join(f"- {k}: {v}" for k, v in training["hyperparameters"].items()))
    return "\n\n".join(parts)


def _data(ev: Evidence, e: IndexEntry) -> str:
    rows = []
    for use in e.manifest.get("datasets") or []:
        entry = ev.entry(use["id"])
        if entry is None:
            rows.append(f"- `{use['id']}` ({use['role']}): outside the lake; not described here.")
            continue
        m = entry.manifest
        splits = (
            ", ".join(f"{s['name']} {s['rows']:,} rows" for s in m.get("splits") or []) or "splits not given"
        )
        personal = "personal data" if m.get("personal_data") else "no personal data declared"
        source = m["source"]["name"]
        rows.append(f"- `{use['id']}` ({use['role']}): {m['name']}; source: {source}; {splits}; {personal}.")
    return "\n".join(rows)


def _testing(ev: Evidence, e: IndexEntry) -> str:
    words = {"verified": "reproduced by lakegen", "contradicted": "contradicted by lakegen's re-run"}
    rows = []
    for c in ev.claims(e, every_version=True):
        got = f", re-run gave {c.reproduced:.4g}" if c.reproduced is not None else ""
        said = words.get(c.status) or status_words(c.status)
        rows.append(
            f"- {c.version}: {c.metric} on `{c.dataset}`/{c.split}: claimed {c.value:g}{got} — {said}"
        )
    return "\n".join(rows)


def _limitations(ev: Evidence, e: IndexEntry) -> str:
    return e.manifest.get("limitations", "").strip()


def _risk(ev: Evidence, e: IndexEntry) -> str:
    m = e.manifest
    text = f"Risk level declared in the manifest: **{m['risk']}**."
    if m.get("risk_justification"):
        text += f" {m['risk_justification'].strip()}"
    findings = ev.findings(e.id)
    if findings:
        text += "\n\nOpen findings:\n" + "\n".join(f"- {f.severity}: {f.rule}: {f.message}" for f in findings)
    return text


def _licence(ev: Evidence, e: IndexEntry) -> str:
    m = e.manifest
    return f"`{m['license']}`" + (f" ({m['license_url']})" if m.get("license_url") else "")


def _nothing(ev: Evidence, e: IndexEntry) -> str:
    return ""


# (point, what the Annex asks, how the lake fills it, what would fill the gap)
Point = tuple[str, str, Fill, str]
ANNEX_IV: list[Point] = [
    ("1(a)", "Intended purpose", _purpose, "intended_use in the manifest"),
    ("1(a)", "Provider", _provider, "the provider's legal name"),
    ("1(a)", "Versions and their relation to previous versions", _versions, "versions with changelogs"),
    (
        "1(a)",
        "Lineage (pre-trained systems it builds on)",
        _lineage,
        "base_models, verified from the weights",
    ),
    (
        "1(b)",
        "Interaction with hardware or software outside the system",
        _nothing,
        "how deployers integrate it",
    ),
    ("1(c)", "Versions of relevant software, update requirements", _software, "library_name or a code entry"),
    ("1(d)", "Forms in which it is placed on the market", _distribution, "a released artifact"),
    ("1(e)", "Hardware it is intended to run on", _nothing, "the intended hardware"),
    ("1(g)–(h)", "User interface and instructions for use", _nothing, "instructions for deployers"),
    (
        "2(a)",
        "Methods and steps of development, third-party pre-trained systems",
        _development,
        "training.procedure",
    ),
    (
        "2(b)",
        "Design specifications, key design choices, what it optimises for",
        _architecture,
        "architecture",
    ),
    ("2(c)", "System architecture and computational resources", _nothing, "compute used to train and test"),
    (
        "2(d)",
        "Data requirements: training data, provenance, scope, characteristics",
        _data,
        "datasets with roles",
    ),
    ("2(e)", "Human oversight measures", _nothing, "the oversight measures"),
    ("2(f)", "Pre-determined changes", _nothing, "planned changes and how they are controlled"),
    ("2(g)", "Validation and testing: data, metrics, results", _testing, "evaluations the lake can re-run"),
    ("2(g)", "Known limitations", _limitations, "limitations in the manifest"),
    ("2(h)", "Cybersecurity measures", _nothing, "the security measures"),
    ("—", "Risk classification", _risk, "risk"),
]
ANNEX_XI: list[Point] = [
    ("1(a)", "Tasks and the AI systems it can be integrated into", _purpose, "intended_use"),
    ("1(b)", "Acceptable use policies", _nothing, "an acceptable use policy"),
    ("1(c)", "Date of release and methods of distribution", _distribution, "a released artifact"),
    ("1(d)", "Architecture and number of parameters", _architecture, "weights the lake can read"),
    ("1(e)", "Modality and format of inputs and outputs", _nothing, "input and output modalities"),
    ("1(f)", "Licence", _licence, "license"),
    ("2(a)", "Technical means for integration", _software, "library_name or a code entry"),
    ("2(b)", "Design specifications and training process", _development, "training.procedure"),
    ("2(c)", "Data used for training, testing and validation", _data, "datasets with roles"),
    ("2(d)", "Computational resources used to train", _nothing, "FLOPs and training time"),
    ("2(e)", "Known or estimated energy consumption", _nothing, "energy used to train"),
]


def sections(
    ev: Evidence, entry: IndexEntry
) -> tuple[list[tuple[str, list[tuple[str, str, str]]]], list[str]]:
    """Each Annex's points as (point, requirement, text), and the gaps as sentences."""
    out, gaps = [], []
    for annex, points in (("Annex IV", ANNEX_IV), ("Annex XI, section 1", ANNEX_XI)):
        rows = []
        for point, what, fill, hint in points:
            text = fill(ev, entry)
            if not text:
                gaps.append(f"{annex} {point} {what}: not in the lake; record {hint}.")
            rows.append((point, what, text))
        out.append((annex, rows))
    return out, list(dict.fromkeys(gaps))


def render(ev: Evidence, entry: IndexEntry) -> str:
    m: dict[str, Any] = entry.manifest
    parts = [
        f"# Technical documentation: {m['name']} (`{entry.id}`)\n",
        "EU AI Act, Annex IV points 1–2 and Annex XI section 1, filled from the lake's manifest "
        f"(`{entry.path}`) and the evidence lakegen {ev.index.lakegen_version} compiled from the lake as "
        f"of {ev.index.generated_at}. Lineage and results say whether lakegen verified them; "
        "points the lake holds nothing for are listed under Gaps.\n",
    ]
    annexes, gaps = sections(ev, entry)
    for annex, rows in annexes:
        parts.append(f"## {annex}\n")
        for point, what, text in rows:
            parts.append(f"### {point} {what}\n\n{text or '*Gap: not in the lake.*'}\n")
    parts.append("## Gaps\n\n" + ("\n".join(f"- {g}" for g in gaps) if gaps else "None.") + "\n")
    return "\n".join(parts)
