"""``lakegen diff ID A B``: how two versions of an entry differ, in the manifest and in the weights.

The manifest side compares the manifest as it stood when each version was
released (found in git), falling back to the two version records when the lake
is not in git. The weights side reads both artifacts tensor by tensor through
:mod:`lakegen.weights` (the one weight loader) and reports, per tensor, whether
it changed and by how much relative to version A. What the two are to each other
(fine-tune, quantization...) is :mod:`lakegen.attribution`'s call when present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen.artifacts import uris as artifacts
from lakegen.artifacts.digests import default_cache_dir
from lakegen.catalog.loader import Catalog
from lakegen.errors import Finding, LakeError
from lakegen.gitrepo import Repo
from lakegen.governance.changetext import as_text
from lakegen.governance.history import field_changes
from lakegen.model.index import FieldChange
from lakegen.safeyaml import load, parse
from lakegen.terminal import printable
from lakegen.weights import WeightsError, dequantized, logical_tensors, model_location, open_model


@dataclass
class TensorDiff:
    name: str
    status: str  # same, changed, added, removed, reshaped
    dtype: str = ""
    relative_change: float | None = None  # ||B - A|| / ||A||


@dataclass
class VersionDiff:
    entry: str
    a: str
    b: str
    record: list[FieldChange] = field(default_factory=list)  # the two version records
    manifest: list[FieldChange] = field(default_factory=list)  # the rest of the manifest, between releases
    manifest_source: str = ""
    tensors: list[TensorDiff] = field(default_factory=list)
    weights_note: str = ""
    relation: str | None = None

    def summary(self) -> dict[str, int]:
        return {
            s: sum(t.status == s for t in self.tensors)
            for s in ("same", "changed", "added", "removed", "reshaped")
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "a": self.a,
            "b": self.b,
            "record": [f.model_dump(mode="json") for f in self.record],
            "manifest_source": self.manifest_source,
            "manifest": [f.model_dump(mode="json") for f in self.manifest],
            "weights": {
                "note": self.weights_note,
                "relation": self.relation,
                "summary": self.summary(),
                "tensors": [t.__dict__ for t in self.tensors],
            },
        }


def diff_versions(catalog: Catalog, entry_id: str, a: str, b: str, *, weights: bool = True) -> VersionDiff:
    """Compare versions ``a`` and ``b`` of entry ``entry_id``."""
    record = catalog.records.get(entry_id)
    if record is None:
        raise LakeError(Finding(entry_id, 1, "", f"no entry '{entry_id}'{catalog.suggest(entry_id)}"))
    versions = {v.version: v for v in getattr(record.entry, "versions", [])}
    for v in (a, b):
        if v not in versions:
            have = ", ".join(versions) or "none"
            raise LakeError(
                Finding(record.path, record.line("versions"), "versions", f"no version {v} (has {have})")
            )
    out = VersionDiff(entry_id, a, b)
    va, vb = versions[a], versions[b]
    out.record = field_changes(va.model_dump(mode="json"), vb.model_dump(mode="json"))
    out.manifest, out.manifest_source = _manifest_diff(catalog, record, va, vb)
    if weights:
        _weights_diff(catalog, record, va, vb, out)
    else:
        out.weights_note = "not compared (asked not to)"
    return out


def _manifest_diff(catalog: Catalog, record: Any, va: Any, vb: Any) -> tuple[list[FieldChange], str]:
    repo = Repo.find(catalog.root)
    found = None
    if repo is not None:
        try:
            found = [repo.first_commit_adding(v.artifact.sha256, record.path, "HEAD") for v in (va, vb)]
        except LakeError:
            found = None
    ca, cb = found if found is not None else (None, None)
    if repo is not None and ca is not None:
        old = _at(repo, ca.sha, record.path)
        new = _at(repo, cb.sha, record.path) if cb is not None else _now(record.file)
        if old is not None and new is not None:
            where = cb.sha[:12] if cb is not None else "the working tree"
            rest = [f for f in field_changes(old, new) if not f.field.startswith("versions")]
            return rest, f"at {ca.sha[:12]}, which released {va.version}, vs {where}"
    return [], "not compared: no git history of the releases"


def _at(repo: Repo, commit: str, path: str) -> Any:
    raw = repo.file_at(commit, path)
    try:
        return parse(raw.decode("utf-8-sig")).data if raw is not None else None
    except (LakeError, UnicodeDecodeError):
        return None


def _now(file: Path) -> Any:
    """The manifest as the working tree holds it (a loaded catalog keeps its entries, not the data
    they were read from)."""
    try:
        return load(file, file.name).data
    except LakeError:
        return None


def _weights_diff(catalog: Catalog, record: Any, va: Any, vb: Any, out: VersionDiff) -> None:
    paths = []
    for v in (va, vb):
        try:
            where = artifacts.resolve(v.artifact.uri, record.file, catalog.root)
        except artifacts.ArtifactPathError as e:
            out.weights_note = f"not compared: {e}"
            return
        if where.path is None or not where.path.exists():
            out.weights_note = (
                f"not compared: the artifact of {v.version} is not available locally ({v.artifact.uri})"
            )
            return
        paths.append(model_location(where.path))
    if va.artifact.sha256 == vb.artifact.sha256:
        out.weights_note = "identical artifacts (same sha256)"
        return
    try:
        out.tensors = _tensor_diffs(paths[0], paths[1])
    except WeightsError as e:
        out.weights_note = f"not compared: {e}"
        return
    out.weights_note = "compared tensor by tensor"
    out.relation = _relation(catalog, paths[0], paths[1], va, vb)


def _tensor_diffs(a: Path, b: Path) -> list[TensorDiff]:
    import numpy as np

    rows = []
    with open_model(a) as wa, open_model(b) as wb:
        ta = {t.name: t for t in logical_tensors(wa)}
        tb = {t.name: t for t in logical_tensors(wb)}
        for name in sorted(ta.keys() | tb.keys()):
            if name not in tb:
                rows.append(TensorDiff(name, "removed", ta[name].dtype))
            elif name not in ta:
                rows.append(TensorDiff(name, "added", tb[name].dtype))
            elif ta[name].shape != tb[name].shape:
                rows.append(TensorDiff(name, "reshaped", f"{ta[name].dtype}→{tb[name].dtype}"))
            else:
                x = dequantized(wa, ta[name]).astype(np.float64)
                y = dequantized(wb, tb[name]).astype(np.float64)
                norm = float(np.linalg.norm(x))
                delta = float(np.linalg.norm(y - x))
                rel = delta / norm if norm else (0.0 if delta == 0 else float("inf"))
                dtype = (
                    ta[name].dtype
                    if ta[name].dtype == tb[name].dtype
                    else f"{ta[name].dtype}→{tb[name].dtype}"
                )
                rows.append(TensorDiff(name, "same" if delta == 0 else "changed", dtype, rel))
    return rows


def _relation(catalog: Catalog, a: Path, b: Path, va: Any, vb: Any) -> str | None:
    """What :func:`lakegen.attribution.attribute` makes of the two artifacts, when it is available."""
    from lakegen import fingerprint
    from lakegen.attribution import attribute

    cache = fingerprint.Cache(default_cache_dir(catalog.root))
    prints = {va.version: fingerprint.fingerprint(a, cache), vb.version: fingerprint.fingerprint(b, cache)}
    lineage = attribute(prints, order={va.version: str(va.released), vb.version: str(vb.released)})
    if not lineage.edges:
        return "no derivation found between the two"
    return "; ".join(
        f"{e.child} is a {e.relation} of {e.parent} (confidence {e.confidence:.2f})" for e in lineage.edges
    )


def render_text(diff: VersionDiff) -> str:
    """The diff for a terminal: fields through :func:`lakegen.governance.changetext.as_text`, every
    line printable."""
    lines = [f"{diff.entry}: {diff.a} → {diff.b}", "", "version record:"]
    lines += [line for fc in diff.record for line in as_text(fc, "  ")]
    lines += ["", f"rest of the manifest ({diff.manifest_source}):"]
    lines += [line for fc in diff.manifest for line in as_text(fc, "  ")]
    if not diff.manifest:
        lines.append("  no differences")
    lines += ["", f"weights: {diff.weights_note}"]
    if diff.tensors:
        counts = ", ".join(f"{n} {s}" for s, n in diff.summary().items() if n)
        lines.append(f"  {len(diff.tensors)} tensors: {counts}")
        for t in diff.tensors:
            rel = f"  relative change {t.relative_change:.4g}" if t.relative_change is not None else ""
            lines.append(f"  {t.status:9} {t.name} [{t.dtype}]{rel}")
    if diff.relation:
        lines.append(f"  relation (lakegen.attribution): {diff.relation}")
    return "\n".join(printable(line) for line in lines) + "\n"
