"""Load the lake's manifests into a typed, cross-referenced catalog.

Every problem of a run is collected (never only the first), each tied to a file
and a line, and returned sorted. Loading writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import ValidationError

from lakegen.artifacts import uris as artifacts
from lakegen.artifacts.digests import Digests, default_cache_dir
from lakegen.artifacts.layout import INDEX_SUFFIX, model_layout, model_location
from lakegen.catalog.parsecache import ParseCache
from lakegen.catalog.remotejobs import Verified, fans_out, verify_all
from lakegen.catalog.schemaerrors import did_you_mean, validation_problems
from lakegen.errors import Finding, LakeError, Severity, WeightsError, by_place, format_loc
from lakegen.executor import Engine
from lakegen.model.manifest import (
    FOLDERS,
    KINDS,
    Artifact,
    Code,
    CompanionFile,
    Dataset,
    Entry,
    Model,
    is_external,
    semver_key,
)
from lakegen.safeyaml import Document, Loc, load

CATALOG_DIR = "catalog"
# The lake's two governance files (read by lakegen.governance.policies.config).
POLICIES_FILE = "catalog/policies.yaml"
OWNERS_FILE = "catalog/owners.yaml"
ArtifactState = Literal["verified", "contradicted", "unchecked"]


@dataclass
class Record:
    """One manifest as loaded: the entry, where it came from, and its line map."""

    entry: Entry
    path: str
    file: Path
    doc: Document

    def line(self, *loc: str | int) -> int:
        return self.doc.line(loc)


@dataclass
class Catalog:
    """Every entry of a lake, with the problems found while loading and checking it."""

    root: Path
    records: dict[str, Record] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    artifacts: dict[tuple[str, str], ArtifactState] = field(default_factory=dict)
    signatures: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Verdicts on the model-signing bundles beside artifacts (lakegen.artifacts.signatures.Signature)."""
    local: dict[tuple[str, int], Path] = field(default_factory=dict)
    """Where each local artifact (entry id, index in its versions) resolved to, symlinks followed."""
    broken: dict[str, str] = field(default_factory=dict)
    """Ids of manifests that failed to load, mapped to their paths, so references say why."""
    parsed: ParseCache | None = None
    """Manifests parsed by earlier compiles (the stages parse old versions from git through it too);
    whoever loaded the catalog saves it once the compile is done."""
    _by_path: dict[str, Record] = field(default_factory=dict, repr=False, compare=False)

    @property
    def errors(self) -> list[Finding]:
        return [p for p in self.problems if p.severity == "error"]

    def owned(self, finding: Finding, **changes: Any) -> Finding:
        """``finding`` tied to the entry whose manifest is at its path (its id and owners), if any."""
        # records by path, made once: stages tie thousands of findings this way
        if len(self._by_path) != len(self.records):
            self._by_path = {r.path: r for r in self.records.values()}
        return _owned(finding, self._by_path.get(finding.path), **changes)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self.records

    def get(self, entry_id: str) -> Entry:
        return self.records[entry_id].entry

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        for record in self.records.values():
            if kind is None or record.entry.kind == kind:
                yield record.entry

    def models(self) -> Iterator[Model]:
        return (e for e in self.entries("model") if isinstance(e, Model))

    def suggest(self, entry_id: str, kind: str | None = None) -> str:
        """`` (did you mean 'x'?)`` for the closest id of ``kind``, or ''."""
        pool = [r.entry.id for r in self.records.values() if kind is None or r.entry.kind == kind]
        return did_you_mean(entry_id, pool)

    def lineage(self) -> nx.DiGraph:
        """Declared lineage inside the lake: an edge base -> derived, with its relation."""
        graph = nx.DiGraph()
        for model in self.models():
            graph.add_node(model.id)
            for base in model.base_models:
                if base.id in self.records:
                    graph.add_edge(base.id, model.id, relation=base.relation)
        return graph


def manifest_files(root: Path) -> list[Path]:
    """The lake's manifests: ``catalog/{models,datasets,code}/**/*.yaml``."""
    files: list[Path] = []
    for folder in FOLDERS.values():
        base = root / CATALOG_DIR / folder
        if base.is_dir():
            files.extend(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml"))
    return sorted(files)


def load_catalog(
    root: Path | str,
    *,
    verify_artifacts: bool = True,
    parse_cache: Path | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    digests: Digests | None = None,
    files: list[Path] | None = None,
) -> Catalog:
    """Load and check every manifest under ``root``; problems are collected, not raised.

    ``files``: only these manifests (sorted, as :func:`manifest_files` lists them), for a compile
    redoing part of the lake (:mod:`lakegen.compile.delta`); references outside them are missing.

    Artifacts' sha256 come through ``digests`` (default: the memo in the lake's cache folder).

    With ``parse_cache`` (a cache folder), manifests parsed before are read from
    :mod:`lakegen.catalog.parsecache` there (``catalog.parsed``; save it when done), the others
    parsed side by side. Remote artifacts are verified on the executor of ``engine`` with
    ``workers`` (:mod:`lakegen.catalog.remotejobs`); one worker checks them here, in turn.
    """
    root = Path(root)
    catalog = Catalog(root=root)
    if not (root / CATALOG_DIR).is_dir():
        raise LakeError(Finding(str(root), 1, "", f"no {CATALOG_DIR}/ folder here; is this a lake?"))
    real_root = root.resolve()
    catalog.parsed = parsed = ParseCache(parse_cache) if parse_cache is not None else None
    listed = manifest_files(root) if files is None else files
    if parsed is not None:  # a symlink, which may leave the lake, is not read before the check below
        parsed.prefetch([f for f in listed if not f.is_symlink()])
    for file in listed:
        display = file.relative_to(root).as_posix()
        if file.is_symlink() and not file.resolve().is_relative_to(real_root):
            catalog.problems.append(Finding(display, 1, "", "manifest is a symlink that leaves the lake"))
            continue
        record = load_record(file, display, catalog.problems, parsed)
        if record is None:
            catalog.broken.setdefault(file.name.rsplit(".", 1)[0], display)
            continue
        first = catalog.records.get(record.entry.id)
        if first is not None:
            catalog.problems.append(
                Finding(
                    display,
                    record.line("id"),
                    "id",
                    f"duplicate id '{record.entry.id}' (also in {first.path})",
                )
            )
            continue
        catalog.records[record.entry.id] = record
    _check_references(catalog)
    _check_cycles(catalog)
    if verify_artifacts and digests is None:
        digests = Digests(default_cache_dir(root))
    _check_local_paths(catalog, digests if verify_artifacts else None, engine, workers)
    by_path = {r.path: r for r in catalog.records.values()}
    catalog.problems = [_owned(p, by_path.get(p.path)) for p in by_place(catalog.problems)]
    return catalog


def _owned(finding: Finding, record: Record | None, **changes: Any) -> Finding:
    if record is not None:
        changes = {"entry": record.entry.id, "owners": tuple(record.entry.owners), **changes}
    return finding.replace(**changes) if changes else finding


def load_record(
    file: Path, display: str, problems: list[Finding], parsed: ParseCache | None = None
) -> Record | None:
    try:
        doc = load(file, display, parser=parsed.parse if parsed is not None else None)
    except LakeError as e:
        problems.extend(e.problems)
        return None
    data = doc.data
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"a {type(data).__name__} scalar"
        problems.append(Finding(display, 1, "", f"a manifest is a YAML mapping, not {what}"))
        return None
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        if kind is None:
            message = "required field is missing (model, dataset or code)"
        else:
            message = f"unknown kind {kind!r} (one of model, dataset, code)"
        problems.append(Finding(display, doc.line(("kind",)), "kind", message))
        return None
    expected_folder = f"{CATALOG_DIR}/{FOLDERS[kind]}/"
    if not display.startswith(expected_folder):
        problems.append(
            Finding(display, doc.line(("kind",)), "kind", f"a {kind} manifest belongs in {expected_folder}")
        )
    cls = KINDS[kind]
    try:
        entry = cls.model_validate(data)
    except ValidationError as e:
        problems.extend(validation_problems(e, cls, doc, display))
        return None
    record = Record(entry, display, file, doc.kept())
    stem = file.name.rsplit(".", 1)[0]
    if entry.id != stem:
        problems.append(
            Finding(display, record.line("id"), "id", f"id '{entry.id}' must equal the file name '{stem}'")
        )
    return record


def _check_references(catalog: Catalog) -> None:
    def ref(record: Record, loc: Loc, target: str, kind: str, version: str | None = None) -> None:
        if is_external(target):
            return
        where = Finding(record.path, record.doc.line(loc), format_loc(loc), "")
        other = catalog.records.get(target)
        if other is None and target in catalog.broken:
            message = f"'{target}' does not load; fix {catalog.broken[target]} first"
        elif other is None:
            message = f"no {kind} '{target}' in the lake" + catalog.suggest(target, kind)
        elif other.entry.kind != kind:
            message = f"'{target}' is a {other.entry.kind}, not a {kind}"
        elif version is not None and version not in _versions(other.entry):
            message = f"{kind} '{target}' has no version {version}"
        else:
            return
        catalog.problems.append(Finding(where.path, where.line, where.field, message))

    for record in catalog.records.values():
        entry = record.entry
        if isinstance(entry, Model):
            if entry.architecture.code:
                ref(record, ("architecture", "code"), entry.architecture.code, "code")
            for i, base in enumerate(entry.base_models):
                if base.id == entry.id:
                    _add(catalog, record, ("base_models", i, "id"), "a model cannot be its own base")
                else:
                    ref(record, ("base_models", i, "id"), base.id, "model", base.version)
            for i, use in enumerate(entry.datasets):
                ref(record, ("datasets", i, "id"), use.id, "dataset", use.version)
            for i, code in enumerate(entry.code):
                ref(record, ("code", i, "id"), code.id, "code")
            _check_evaluations(catalog, record, entry, ref)
        elif isinstance(entry, Dataset):
            for i, source in enumerate(entry.derived_from):
                if source.id == entry.id:
                    _add(catalog, record, ("derived_from", i, "id"), "a dataset cannot derive from itself")
                else:
                    ref(record, ("derived_from", i, "id"), source.id, "dataset")


def _check_evaluations(catalog: Catalog, record: Record, model: Model, ref: Any) -> None:
    versions = _versions(model)
    for i, ev in enumerate(model.evaluations):
        ref(record, ("evaluations", i, "dataset"), ev.dataset, "dataset")
        target = catalog.records.get(ev.dataset)
        if target is not None and isinstance(target.entry, Dataset) and target.entry.splits:
            splits = [s.name for s in target.entry.splits]
            if ev.split not in splits:
                message = f"dataset '{ev.dataset}' has no split '{ev.split}' (it has {', '.join(splits)})"
                _add(catalog, record, ("evaluations", i, "split"), message)
        if ev.version is not None and ev.version not in versions:
            _add(catalog, record, ("evaluations", i, "version"), f"model has no version {ev.version}")
        if ev.version is None and not versions:
            _add(catalog, record, ("evaluations", i), "model has no versions to evaluate")


def _versions(entry: Entry) -> list[str]:
    return [v.version for v in getattr(entry, "versions", [])]


def latest_version(entry: Model | Dataset) -> str | None:
    """The highest semantic version of an entry that is not yanked, or None when it has none."""
    live = [v.version for v in entry.versions if not getattr(v, "yanked", None)]
    return max(live, key=semver_key, default=None)


def _add(catalog: Catalog, record: Record, loc: Loc, message: str) -> None:
    catalog.problems.append(Finding(record.path, record.doc.line(loc), format_loc(loc), message))


def _check_cycles(catalog: Catalog) -> None:
    graph = catalog.lineage()
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        text = " → ".join([cycle[0][0], *(v for _, v in cycle)])
        for model_id in sorted(component):
            record = catalog.records[model_id]
            for i, base in enumerate(record.entry.base_models):  # type: ignore[union-attr]
                if base.id in component:
                    _add(catalog, record, ("base_models", i, "id"), f"lineage cycle: {text}")


def _check_local_paths(
    catalog: Catalog, digests: Digests | None, engine: Engine = "local", workers: int | None = None
) -> None:
    """Resolve every local artifact; with ``digests``, check its size and sha256 too (and verify
    the remote ones, on the executor when there are workers for them)."""
    fanned = _verify_remote(catalog, engine, workers) if digests is not None else {}
    for record in catalog.records.values():
        entry = record.entry
        if isinstance(entry, Code) and entry.path is not None:
            _check_code_path(catalog, record, entry)
        for i, version in enumerate(getattr(entry, "versions", [])):
            loc: Loc = ("versions", i, "artifact")
            art = version.artifact
            try:
                where = artifacts.resolve(art.uri, record.file, catalog.root)
            except artifacts.ArtifactPathError as e:
                _add(catalog, record, (*loc, "uri"), str(e))
                continue
            key = (entry.id, version.version)
            if where.path is not None:
                catalog.local[(entry.id, i)] = where.path
            else:
                catalog.artifacts[key] = "unchecked"
                if digests is not None and not version.yanked:
                    catalog.artifacts[key] = _check_remote(
                        catalog, record, loc, art, _benchmarked(entry, version.version), fanned.get(key)
                    )
                continue
            if version.yanked and not where.path.exists():
                catalog.artifacts[key] = "unchecked"  # withdrawn, with a reason: its bytes may go
                continue
            if digests is None:
                if not where.path.is_file():
                    _add(catalog, record, (*loc, "uri"), f"artifact not found: {art.uri}")
                catalog.artifacts[key] = "unchecked"
                continue
            ok = _verify_file(catalog, record, loc, where.path, art.uri, art.size, art.sha256, digests)
            for j, (extra, uri, path) in enumerate(artifacts.companions(art, record.file, catalog.root)):
                extra_loc: Loc = (*loc, "files", j)
                if isinstance(path, artifacts.ArtifactPathError):
                    _add(catalog, record, (*extra_loc, "path"), str(path))
                    ok = False
                    continue
                ok &= _verify_file(
                    catalog, record, extra_loc, path, uri, extra.size, extra.sha256, digests, "path"
                )
            if ok and art.uri.endswith((INDEX_SUFFIX, ".onnx")):
                ok = _check_companions_pinned(catalog, record, loc, where.path, art.files)
            catalog.artifacts[key] = "verified" if ok else "contradicted"
            if ok:
                _check_signature(catalog, record, loc, key, where.path, art.sha256)


def _check_signature(
    catalog: Catalog, record: Record, loc: Loc, key: tuple[str, str], path: Path, sha256: str
) -> None:
    from lakegen.artifacts import signatures

    bundle = signatures.bundle_of(path)
    if bundle is None:
        return
    verdict = signatures.check(catalog.root, path, bundle, sha256, default_cache_dir(catalog.root))
    catalog.signatures[key] = verdict
    if verdict.state != "verified":
        severity: Severity = "error" if verdict.state == "contradicted" else "warning"
        message = f"signature {bundle.name} is {verdict.state}: {verdict.detail}"
        catalog.problems.append(
            Finding(record.path, record.doc.line((*loc, "uri")), format_loc((*loc, "uri")), message, severity)
        )


def _benchmarked(entry: Any, version: str) -> bool:
    """Whether ``lakegen bench`` re-runs an evaluation of ``version``: it needs the whole file, so
    validation keeps the remote bytes it streams for it."""
    latest = latest_version(entry)
    evaluations = getattr(entry, "evaluations", [])
    return any(not is_external(ev.dataset) and (ev.version or latest) == version for ev in evaluations)


def _verify_remote(catalog: Catalog, engine: Engine, workers: int | None) -> dict[tuple[str, str], Verified]:
    """The remote artifacts verified side by side by executor jobs, when there are workers for them
    (else none here: :func:`_check_remote` checks each in turn, with its HEAD requests sent ahead)."""
    from lakegen.artifacts import remote

    items = {
        (record.entry.id, v.version): (v.artifact, _benchmarked(record.entry, v.version))
        for record in catalog.records.values()
        for v in getattr(record.entry, "versions", [])
        if not v.yanked and ":" in v.artifact.uri
    }
    if not items or remote.Remote.offline():
        return {}
    if fans_out(engine, workers, len(items)):
        return verify_all(catalog.root, items, engine, workers)
    remote.prefetch(remote.for_lake(catalog.root), [art for art, _ in items.values()])
    return {}


def _check_remote(
    catalog: Catalog, record: Record, loc: Loc, art: Artifact, keep: bool, fanned: Verified | None = None
) -> ArtifactState:
    from lakegen.artifacts import remote
    from lakegen.weights.capture import Capture

    def add(at: tuple[str | int, ...], message: str) -> None:
        _add(catalog, record, (*loc, *at), message)

    if fanned is not None:  # verified by a job (lakegen.catalog.remotejobs)
        state = fanned.state
        for at, message in fanned.problems:
            add(at, message)
    else:
        state = remote.check(remote.for_lake(catalog.root), art, add, keep, Capture)
    if state == "verified" and art.uri.endswith(INDEX_SUFFIX):
        index = remote.readable_weights(catalog.root, art)  # beside its shards, as in a local folder
        if isinstance(index, str):
            _add(catalog, record, (*loc, "uri"), index)
            return "unchecked"
        state = (
            "verified" if _check_companions_pinned(catalog, record, loc, index, art.files) else "contradicted"
        )
    return state  # type: ignore[return-value]


def _check_companions_pinned(
    catalog: Catalog, record: Record, loc: Loc, main: Path, files: list[CompanionFile]
) -> bool:
    """Every file the layout says the artifact needs must be pinned in ``files``: a sharded
    checkpoint's shards (its artifact is its index), an ONNX model's external data files."""
    try:
        needed = model_layout(model_location(main)).companions
    except WeightsError as e:
        _add(catalog, record, (*loc, "uri"), e.reason)
        return False
    missing = sorted({f.relative_to(main.parent).as_posix() for f in needed} - {f.path for f in files})
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        what = (
            "the index names shards" if main.name.endswith(INDEX_SUFFIX) else "the model names external data"
        )
        _add(catalog, record, (*loc, "files"), f"{what} not pinned here: {', '.join(missing[:3])}{more}")
    return not missing


def _verify_file(
    catalog: Catalog,
    record: Record,
    loc: Loc,
    path: Path,
    uri: str,
    size: int,
    sha256: str,
    digests: Digests,
    where: str = "uri",
) -> bool:
    problem = artifacts.verify(path, size, sha256, digests)
    if problem:
        field_name = "size" if problem.startswith("size") else "sha256"
        if problem.startswith(("file not found", "not a regular")):
            field_name, problem = where, f"{problem}: {uri}"
        _add(catalog, record, (*loc, field_name), problem)
    return problem is None


def _check_code_path(catalog: Catalog, record: Record, code: Code) -> None:
    assert code.path is not None
    root = catalog.root.resolve()
    folder = (root / code.path).resolve()
    if code.path.startswith("/") or not folder.is_relative_to(root):
        _add(catalog, record, ("path",), f"'{code.path}' leaves the repository")
        return
    if not folder.is_dir():
        _add(catalog, record, ("path",), f"no folder '{code.path}' in the repository")
        return
    for name, target in code.entrypoints.items():
        module = target.split(":", 1)[0].replace(".", "/")
        if not ((folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file()):
            _add(catalog, record, ("entrypoints", name), f"no module for '{target}' under {code.path}")
