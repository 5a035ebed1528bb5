"""The compiled lake: one serialisable product that the site, CLI search and exports read.

``compile_lake`` runs the pipeline's stages over a loaded catalog and gathers
what each one found into a :class:`LakeIndex`. Nothing downstream of this
module re-derives lineage, results or findings: it reads them from here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lakegen import __version__, inputs
from lakegen.atomicfile import write_atomic
from lakegen.catalog import CATALOG_DIR, Catalog, latest_version, load_catalog
from lakegen.errors import Problem
from lakegen.inputs import Inputs

INDEX_FILE = ".lakegen/lake.json"
Status = Literal["verified", "contradicted", "unchecked"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IndexEntry(_Row):
    """One manifest: where it is and what it says (the manifest as JSON)."""

    id: str
    kind: Literal["model", "dataset", "code"]
    path: str
    latest_version: str | None = None
    documentation: float | None = Field(None, description="Documentation completeness, 0 to 1 (models).")
    parameters: int | None = Field(None, description="Parameter count of the latest version (weights).")
    manifest: dict[str, Any]


class Edge(_Row):
    """A lineage edge parent -> child, declared, recovered from weights, or both."""

    parent: str
    child: str
    relation: str
    declared: bool = Field(description="The child's manifest declares it.")
    status: Literal["verified", "contradicted", "unchecked", "undeclared"] = Field(
        description="verified: weights agree; contradicted: weights disagree; "
        "unchecked: not compared (e.g. a base outside the lake); "
        "undeclared: weights show it, manifest does not."
    )
    weights_relation: str | None = Field(None, description="The relation the weights show, when compared.")
    confidence: float | None = None
    weight: float | None = Field(None, description="Estimated mixing weight, for merges.")
    proof: str | None = Field(
        None,
        description="What the audit at coordinates drawn from the child's sha256 showed, or why the "
        "edge could not be checked.",
    )


class Finding(_Row):
    """Something a stage wants a person to look at, tied to a manifest line."""

    stage: Literal["validate", "attribution", "bench", "governance"]
    rule: str
    severity: Literal["error", "warning", "info"]
    entry: str | None = None
    owners: list[str] = []
    path: str
    line: int = 1
    field: str = ""
    message: str

    @classmethod
    def from_problem(
        cls, problem: Problem, catalog: Catalog, stage: str = "validate", rule: str = "schema"
    ) -> Finding:
        entry = next((r.entry for r in catalog.records.values() if r.path == problem.path), None)
        return cls(
            stage=stage,
            rule=rule,
            severity=problem.severity,
            entry=entry.id if entry else None,
            owners=list(entry.owners) if entry else [],
            path=problem.path,
            line=problem.line,
            field=problem.field,
            message=problem.message,
        )


class Result(_Row):
    """A re-run of a declared evaluation, compared with the claimed number."""

    model: str
    version: str
    dataset: str
    split: str
    metric: str
    claimed: float
    tolerance: float
    reproduced: float | None = None
    status: Literal["verified", "contradicted", "unreproducible", "failed"]
    detail: str = ""
    ran_at: str | None = None
    device: str | None = None
    duration_s: float | None = None
    environment: dict[str, str] = {}
    cache_key: str | None = None


class FieldChange(_Row):
    field: str
    old: Any = None
    new: Any = None


class Change(_Row):
    """One commit's change to one entry's manifest."""

    entry: str
    commit: str
    author: str
    email: str = ""
    date: str
    subject: str = ""
    pr: int | None = Field(None, description="Only from a commit GitHub made (its merge or squash button).")
    path: str
    action: Literal["added", "modified", "renamed", "deleted"]
    changes: list[FieldChange] = []
    committer: str = ""
    committer_email: str = ""
    committer_date: str = ""
    signature: str = Field("N", description="git's %G?: G good, B bad, U untrusted, E unchecked, N none.")
    in_merge: bool = Field(False, description="Made by the merge commit itself (against its first parent).")
    dates_disagree: bool = Field(False, description="The author date is later than the commit date.")


class ArtifactCheck(_Row):
    entry: str
    version: str
    status: Status
    signature: Literal["verified", "contradicted", "untrusted", "invalid"] | None = Field(
        None, description="The model-signing bundle shipped beside the artifact, if any (lakegen.signatures)."
    )
    signer: str = Field("", description="The trusted key's holder, or the signing certificate's subject.")


class CompiledFrom(_Row):
    """What an index was compiled from (see :mod:`lakegen.inputs`), to tell when it is out of date."""

    digest: str = Field("", description="sha256 of lakegen's version, git HEAD and every file read.")
    folders: list[str] = Field(default_factory=list, description="Folders read whole, from the lake root.")
    files: list[str] = Field(default_factory=list, description="Single files read outside those folders.")


class LakeIndex(_Row):
    """Everything the builder knows about a lake."""

    format: int = 1
    generated_at: str
    lakegen_version: str = __version__
    entries: list[IndexEntry] = []
    edges: list[Edge] = []
    findings: list[Finding] = []
    results: list[Result] = []
    history: list[Change] = []
    artifacts: list[ArtifactCheck] = []
    stages: dict[str, str] = Field(default_factory=dict, description="Stage name -> ran / skipped (why).")
    inputs: CompiledFrom = Field(default_factory=lambda: CompiledFrom())

    def entry(self, entry_id: str) -> IndexEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


def base_index(catalog: Catalog) -> LakeIndex:
    """The index of a catalog before any evidence is gathered: entries, declared edges, validation."""
    index = LakeIndex(generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    for record in sorted(catalog.records.values(), key=lambda r: r.entry.id):
        entry = record.entry
        versions = getattr(entry, "versions", None)
        index.entries.append(
            IndexEntry(
                id=entry.id,
                kind=entry.kind,
                path=record.path,
                latest_version=latest_version(entry) if versions is not None else None,  # type: ignore[arg-type]
                manifest=entry.model_dump(mode="json"),
            )
        )
    for model in catalog.models():
        for base in model.base_models:
            index.edges.append(
                Edge(
                    parent=base.id,
                    child=model.id,
                    relation=base.relation,
                    declared=True,
                    status="unchecked",
                    weight=base.weight,
                )
            )
    index.findings.extend(Finding.from_problem(p, catalog) for p in catalog.problems)
    index.artifacts = [
        ArtifactCheck(entry=e, version=v, status=s, **_signed(catalog.signatures.get((e, v))))
        for (e, v), s in sorted(catalog.artifacts.items())
    ]
    index.stages["validate"] = "ran"
    return index


def compile_lake(
    root: Path | str, *, verify_artifacts: bool = True, run_evaluations: bool = False
) -> LakeIndex:
    """Load the lake at ``root`` and run every stage into one :class:`LakeIndex`.

    Benchmark results are read from the results cache; evaluations run only with ``run_evaluations``.
    """
    from lakegen.bench import bench_stage

    root = Path(root)
    read = Inputs.take(root, [CATALOG_DIR])  # before loading, so an edit made meanwhile shows as stale
    catalog = load_catalog(root, verify_artifacts=verify_artifacts)
    read.add(root, *_named_inputs(catalog))
    index = base_index(catalog)
    index.inputs = CompiledFrom(digest=read.digest, folders=read.folders, files=read.extra)
    bench_stage(catalog, index, run=run_evaluations)
    from lakegen.history import history_stage
    from lakegen.lineage import attribution_stage
    from lakegen.policies import governance_stage

    attribution_stage(catalog, index)

    governance_stage(catalog, index)
    history_stage(catalog, index)
    return index


def _signed(verdict: Any) -> dict[str, Any]:
    return {} if verdict is None else {"signature": verdict.state, "signer": verdict.signer}


def _named_inputs(catalog: Catalog) -> tuple[list[str], list[str]]:
    """Folders and files outside ``catalog/`` that manifests name, relative to the lake: local
    artifacts (an adapter or sharded checkpoint as its folder), their pinned companions, code folders."""
    from lakegen import artifacts
    from lakegen.weights import model_location

    root = catalog.root.resolve()
    folders: set[Path] = set()
    files: set[Path] = set()
    for record in catalog.records.values():
        entry = record.entry
        code_path = getattr(entry, "path", None) if entry.kind == "code" else None
        if isinstance(code_path, str):
            folders.add(root / code_path)
        for version in getattr(entry, "versions", []):
            try:
                where = artifacts.resolve(version.artifact.uri, record.file, catalog.root).path
            except artifacts.ArtifactPathError:
                continue
            if where is not None:
                location = model_location(where)
                (folders if location.is_dir() else files).add(location)
            pinned = artifacts.companions(version.artifact, record.file, catalog.root)
            files.update(p for _, _, p in pinned if isinstance(p, Path))

    def outside_catalog(paths: set[Path]) -> list[str]:
        rel = [p.resolve().relative_to(root) for p in paths if p.resolve().is_relative_to(root)]
        return sorted(r.as_posix() for r in rel if r.parts and r.parts[0] != CATALOG_DIR)

    return outside_catalog(folders), outside_catalog(files)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def save(index: LakeIndex, root: Path) -> Path:
    """Write ``index`` to ``.lakegen/lake.json``, and beside it the stat records of its inputs when
    the working tree still holds what it was compiled from (else the next reader compiles again)."""
    path = root / INDEX_FILE
    write_json_atomic(path, index.model_dump(mode="json"))
    now = Inputs.take(root, index.inputs.folders, index.inputs.files)
    if index.inputs.digest and now.digest == index.inputs.digest:
        inputs.write(root, now)
    else:
        (root / inputs.INPUTS_FILE).unlink(missing_ok=True)
    return path


def load_index(path: Path) -> LakeIndex:
    return LakeIndex.model_validate_json(path.read_bytes())


def load_current(root: Path) -> tuple[LakeIndex | None, str]:
    """The saved index of the lake at ``root`` when it still matches the working tree; else None and
    why not (none yet, unreadable, or what changed since it was compiled), as a sentence."""
    path = root / INDEX_FILE
    if not path.is_file():
        return None, f"no {INDEX_FILE} yet"
    try:
        index = load_index(path)
    except (OSError, ValueError):
        return None, f"{INDEX_FILE} cannot be read"
    why = inputs.stale(root, index.inputs.digest)
    return (index, "") if why is None else (None, f"{INDEX_FILE} is out of date ({why})")
