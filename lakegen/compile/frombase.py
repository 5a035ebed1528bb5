"""A PR check compiled from the index its base's build saved: only what the pull request reaches is
loaded.

A check walks every entry in every stage, as a build does (10,000 manifests decoded and validated,
their artifacts resolved, every policy run over every entry), although a pull request changes a
handful. The index the last build saved (``.lakegen/lake.json``, with the record of what it read)
holds every entry's rows. When the working tree differs from what that build read in manifests
only (and in files only those manifests name), the check here

- takes the manifests that differ from that record and those the pull request changes against
  its base, and every entry that refers to one of them, transitively (the dirty set, found as
  :mod:`lakegen.compile.delta` finds it, from the saved index's manifests);
- loads those and what they refer to (a small catalog) and runs the check's stages over it: the
  loader's checks, the changed files, attribution from the base's results (the catalog grows by
  the family attributed again: :class:`lakegen.lineage.known.Known`), the bench, and the policies
  over the dirty entries and what their verdicts read (ancestors, the parents the weights showed);
- takes every other entry's rows from the saved index.

Anything it cannot tell apart that way is checked in full instead: another lakegen or other
options, a changed policy, owners, result, artifact or code file, a broken, duplicate or code
manifest, a reference to no entry, a remote artifact, a CODEOWNERS file, a rule from a plugin,
attribution needing the whole lake. The saved index lives in the lake's own cache, which a pull
request that commits ``.lakegen/`` does not get (:mod:`lakegen.check.report`).
``tests/test_check_frombase.py`` compares each report and index with those of a check with no cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen.catalog.loader import CATALOG_DIR, Catalog, load_catalog, load_record
from lakegen.compile import delta
from lakegen.compile.inputs import Inputs, Recorded, code_digest, lake_time, recorded
from lakegen.compile.scope import Scope
from lakegen.errors import Finding, LakeError, by_place
from lakegen.executor import Engine
from lakegen.gitrepo import Repo
from lakegen.governance.changes import LakeChanges, lake_changes
from lakegen.model.index import Edge, IndexEntry, LakeIndex, dicts
from lakegen.model.manifest import is_external
from lakegen.version import __version__

MANIFESTS = (*delta.MANIFEST_FOLDERS, f"{CATALOG_DIR}/code/")


@dataclass
class Part:
    """The lake as the saved index has it, with the pull request's manifests in place: every
    entry's manifest, path and kind, what each refers to, and the small catalog loaded."""

    root: Path
    before: LakeIndex
    now: Inputs
    verify: bool
    engine: Engine
    workers: int | None
    manifests: dict[str, dict[str, Any]]
    paths: dict[str, str]
    kinds: dict[str, str]
    catalog: Catalog = field(init=False)
    _refs: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _up: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def up(self, edges: list[Edge]) -> dict[str, set[str]]:
        """What each entry refers to, with the parents ``edges`` show and its manifest does not."""
        if not self._refs:  # 10,000 manifests' references, read once
            self._refs = {i: delta._refs(m) for i, m in self.manifests.items()}
        return delta._up(self._refs, edges)

    def grow(self, ids: Any) -> None:
        """Load the manifests of ``ids``, and of what they refer to, into the catalog."""
        if not self._up:
            self._up = self.up(self.before.edges)
        wanted = delta._closure({i for i in ids if i in self.manifests}, self._up) & self.manifests.keys()
        missing = sorted(wanted - self.catalog.records.keys())
        if not missing:
            return
        more = self._load(missing)
        for name in ("records", "artifacts", "signatures", "local"):
            getattr(self.catalog, name).update(getattr(more, name))

    def _load(self, ids: list[str]) -> Catalog:
        files = sorted(self.root / self.paths[i] for i in ids)  # as manifest_files orders them
        catalog = load_catalog(
            self.root,
            verify_artifacts=self.verify,
            engine=self.engine,
            workers=self.workers,
            digests=Recorded(self.root, self.now),
            files=files,
        )
        if catalog.records.keys() != set(ids):
            raise _Whole
        return catalog


class _Whole(Exception):
    """This check needs the whole lake."""


def check_from_base(
    root: Path,
    base: str,
    repo: Repo,
    *,
    verify_artifacts: bool,
    run_evaluations: bool,
    trust_code: bool,
    engine: Engine,
    workers: int | None,
) -> tuple[Catalog, LakeChanges, LakeIndex] | None:
    """The check of the lake at ``root`` against ``base`` from the index the last build saved (see
    the module's text): its part of the catalog, the changes and the index; None when it needs
    the whole lake."""
    from lakegen.lineage.known import WholeLake

    try:
        return _check(root, base, repo, verify_artifacts, run_evaluations, trust_code, engine, workers)
    except (_Whole, WholeLake):
        return None


def _check(
    root: Path,
    base: str,
    repo: Repo,
    verify: bool,
    run_evaluations: bool,
    trust_code: bool,
    engine: Engine,
    workers: int | None,
) -> tuple[Catalog, LakeChanges, LakeIndex] | None:
    from lakegen.compile.stages import Attribution, Bench, Files
    from lakegen.governance.codeowners import CODEOWNERS
    from lakegen.governance.policies import builtin_rules, registered
    from lakegen.lineage.known import Known, source

    options = {"verify_artifacts": verify}
    previous = recorded(root)
    if previous is None or previous.index.get("options") != options:
        return None
    if (previous.version, previous.index.get("code")) != (__version__, code_digest()):
        return None
    if set(registered()) != builtin_rules() or (root / CODEOWNERS).is_file():
        return None  # a plugin's rule, or the CODEOWNERS drift, reads the whole lake
    trusted = Recorded(root, previous)
    now = delta.as_before(root, Inputs.take(root, [CATALOG_DIR], digests=trusted), previous, trusted)
    before = delta.saved_index(root, previous, options)
    if before is None:
        return None
    segments = delta._segments(before.findings)
    if segments is None:
        return None
    diff = _diff(now, previous)
    if diff is None:
        return None
    edited, removed_paths, new_files = diff
    try:
        commit = repo.merge_base(repo.commit_of(base))
        edited |= {
            c.new
            for c in repo.changes_since(commit, ".")
            if c.new and c.new.startswith(MANIFESTS) and c.new.endswith((".yaml", ".yml"))
        }
    except LakeError:
        return None  # the whole check says why, in its words
    part = _part(root, before, now, verify, engine, workers, segments[0], edited, removed_paths)
    if part is None:
        return None
    dirty, removed = part[1], part[2]
    lake = part[0]
    catalog = lake.catalog
    if not _named_only(root, catalog, dirty, new_files):
        return None
    folders: dict[str, list[str]] = {}
    for i, m in sorted(lake.manifests.items()):
        if lake.kinds[i] == "code" and isinstance(m.get("path"), str):
            folders.setdefault(m["path"].strip("/"), []).append(i)
    changes = lake_changes(catalog, base, repo, folders)
    if changes.config_changed or any(f.code_entries for f in changes.files):
        return None  # the policies, or code every model built with it reads
    if any(c.path and c.entry not in catalog.records for c in changes.entries):
        return None

    index = _index(lake, dirty, removed, segments[0])
    statuses: dict[str, dict[str, str]] = {}
    for a in index.artifacts:
        statuses.setdefault(a.entry, {})[a.version] = a.status
    sources: dict[str, str] = {}
    for i, m in lake.manifests.items():
        if lake.kinds[i] != "model" or i in catalog.records:
            continue
        for v in dicts(m.get("versions")):
            art = v.get("artifact")
            uri = str(art.get("uri", "")) if isinstance(art, dict) else ""
            if not v.get("yanked") and (
                ":" in uri or statuses.get(i, {}).get(str(v.get("version"))) != "verified"
            ):
                return None  # attribution would run over the whole lake
        bases = sorted(
            {str(b.get("id")): lake.kinds.get(str(b.get("id"))) for b in dicts(m.get("base_models"))}.items()
        )
        sources[i] = source(str(now.files[lake.paths[i]][-1]), statuses.get(i, {}), bases)
    scope = Scope(catalog, changes, check=True, run_evaluations=run_evaluations, trust_code=trust_code)
    scope.engine, scope.workers, scope.digests = engine, workers, Recorded(root, now)
    scope.known = Known(sources, lake.grow)
    for stage in (Files(), Attribution(), Bench()):
        index = stage(scope, index)
    _governance(lake, index, changes, dirty, removed, segments[3])
    return catalog, changes, index


def _diff(now: Inputs, previous: Inputs) -> tuple[set[str], set[str], set[str]] | None:
    """The manifests edited or added since the build, those removed, and the other files added;
    None when another file changed or went."""
    edited: set[str] = set()
    removed: set[str] = set()
    added: set[str] = set()
    before = previous.files
    for path in now.files.keys() | before.keys():
        old, new = before.get(path), now.files.get(path)
        if old and new and old[-1] == new[-1]:
            continue
        if path in before and not old:
            return None  # a file the build found missing: an entry it left unverified names it
        manifest = path.startswith(MANIFESTS) and path.endswith((".yaml", ".yml"))
        if manifest and new:
            edited.add(path)
        elif manifest and old:
            removed.add(path)
        elif new and not old and path.startswith(f"{CATALOG_DIR}/"):
            added.add(path)
        elif old or new:
            return None
    return edited, removed, added


def _part(
    root: Path,
    before: LakeIndex,
    now: Inputs,
    verify: bool,
    engine: Engine,
    workers: int | None,
    validate: list[Finding],
    edited: set[str],
    removed_paths: set[str],
) -> tuple[Part, set[str], set[str]] | None:
    """The lake with the edits in place and its small catalog loaded, the dirty set and the ids
    removed; None when the edits need the whole lake."""
    by_path = {e.path: e for e in before.entries}
    if any(f.path.startswith(MANIFESTS) and f.path not in by_path for f in validate):
        return None  # a manifest that does not load: what refers to it reads so
    manifests = {e.id: e.manifest for e in before.entries}
    paths = {e.id: e.path for e in before.entries}
    kinds: dict[str, str] = {e.id: e.kind for e in before.entries}
    removed: set[str] = set()
    for path in removed_paths:
        old = by_path.get(path)
        if old is None:
            return None
        removed.add(old.id)
        if any(str(before.metrics[m].version).startswith("code:") for m in _named(old.manifest, before)):
            return None  # the lake's metrics may lose one
        del manifests[old.id], paths[old.id], kinds[old.id]
    edited_ids: set[str] = set()
    for path in sorted(edited):
        if (root / path).is_symlink():
            return None
        record = load_record(root / path, path, [])
        if record is None or record.entry.kind == "code":
            return None
        entry, old = record.entry, by_path.get(path)
        if old is not None and (old.id, old.kind) != (entry.id, entry.kind):
            return None
        if old is None and entry.id in manifests:
            return None  # a duplicate id
        new = entry.model_dump(mode="json")
        if old is not None and delta._metrics(new) != delta._metrics(old.manifest):
            return None
        if old is None and not delta._metrics(new) <= before.metrics.keys():
            return None
        manifests[entry.id], paths[entry.id], kinds[entry.id] = new, path, entry.kind
        edited_ids.add(entry.id)
    if not edited_ids and not removed:
        return None
    lake = Part(root, before, now, verify, engine, workers, manifests, paths, kinds)
    up = lake.up(before.edges)
    dirty = delta._closure(edited_ids | removed, delta._down(up))
    if any(
        not is_external(r) and r not in manifests for d in dirty - removed for r in delta._refs(manifests[d])
    ):
        return None  # a reference to no entry: its message suggests ids from the whole lake
    loaded = delta._closure(dirty - removed, up) & manifests.keys()
    if delta._remote(manifests, loaded):
        return None
    lake.catalog = lake._load(sorted(loaded))
    return lake, dirty, removed


def _named(manifest: dict[str, Any], before: LakeIndex) -> set[str]:
    return {m for m in delta._metrics(manifest) if m in before.metrics}


def _named_only(root: Path, catalog: Catalog, dirty: set[str], added: set[str]) -> bool:
    """Whether every file added besides manifests is an artifact (or a file pinned or signed with
    it) of an entry the check loads again: no other entry's verdict can read it."""
    if not added:
        return True
    from lakegen.artifacts import uris as artifacts
    from lakegen.artifacts.layout import model_location
    from lakegen.artifacts.signatures import BUNDLE_SUFFIX

    top = os.path.join(str(root.resolve()), "")
    named: set[str] = set()
    folders: list[str] = []
    for (entry_id, i), where in catalog.local.items():
        if entry_id not in dirty:
            continue
        named |= {str(where), str(where) + BUNDLE_SUFFIX}
        location = model_location(where)
        if location.is_dir():
            folders.append(os.path.join(str(location), ""))
        record = catalog.records[entry_id]
        version = record.entry.versions[i]  # type: ignore[union-attr]
        for _, _, path in artifacts.companions(version.artifact, record.file, catalog.root):
            if isinstance(path, Path):
                named.add(str(path))
    for rel in added:
        full = os.path.realpath(top + rel)
        if full not in named and not any(full.startswith(f) for f in folders):
            return False
    return True


def _index(lake: Part, dirty: set[str], removed: set[str], validate: list[Finding]) -> LakeIndex:
    """The check's index before its stages run: the saved index's rows, the dirty entries' from the
    small catalog, and the declared edges as a check's first stage has them."""
    from lakegen.compile.base import base_index

    before, catalog = lake.before, lake.catalog
    part = base_index(catalog)
    fresh = {e.id: e for e in part.entries if e.id in dirty}
    rows: list[IndexEntry] = [e for e in before.entries if e.id not in dirty] + list(fresh.values())
    index = LakeIndex(generated_at=lake_time(lake.root), metrics=before.metrics)
    index.entries = sorted(rows, key=lambda e: e.id)
    for row in index.entries:
        row.parameters = None  # attribution's, which may not run in a check
    # in the loader's order (paths compared part by part, as manifest_files sorts them)
    for row in sorted((e for e in index.entries if e.kind == "model"), key=lambda e: e.path.split("/")):
        for b in dicts(row.manifest.get("base_models")):
            index.edges.append(
                Edge(
                    parent=b["id"],
                    child=row.id,
                    relation=b["relation"],
                    declared=True,
                    status="unchecked",
                    weight=b.get("weight"),
                )
            )
    old_paths = {e.path for e in before.entries if e.id in dirty}
    mine = {catalog.records[i].path for i in dirty - removed} | old_paths
    index.findings = by_place(
        [f for f in validate if f.path not in mine] + [f for f in part.findings if f.path in mine]
    )
    artifacts = [a for a in before.artifacts if a.entry not in dirty]
    index.artifacts = sorted(
        artifacts + [a for a in part.artifacts if a.entry in dirty], key=lambda a: (a.entry, a.version)
    )
    verified = sum(a.status == "verified" for a in index.artifacts)
    index.stages["validate"] = f"ran: {len(index.entries)} entries, {verified} artifacts verified"
    return index


def _governance(
    lake: Part,
    index: LakeIndex,
    changes: LakeChanges,
    dirty: set[str],
    removed: set[str],
    base: list[Finding],
) -> None:
    """The policies over the dirty entries and every entry whose lineage the weights show otherwise
    now, with what their verdicts read loaded; the saved index's findings on every other entry."""
    from lakegen.governance.policies import governance_stage

    def shown(edges: list[Edge]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for e in edges:
            if e.status == "undeclared":
                out.setdefault(e.child, set()).add(e.parent)
        return out

    then, now = shown(lake.before.edges), shown(index.edges)
    moved = {c for c in then.keys() | now.keys() if then.get(c) != now.get(c)} & lake.manifests.keys()
    up = lake.up(index.edges)
    reach = delta._closure(dirty | moved, delta._down(up))
    lake.grow(delta._closure(reach - removed, up) & lake.manifests.keys())
    catalog = lake.catalog
    scratch = LakeIndex(generated_at=index.generated_at, edges=index.edges)
    scratch.entries = [e for e in index.entries if e.id in catalog.records]
    governance_stage(catalog, scratch, changes)
    if any(f.rule == "codeowners" for f in base):
        raise _Whole
    findings = [f for f in base if f.entry not in reach] + [f for f in scratch.findings if f.entry in reach]
    findings.sort(key=lambda f: (f.path, f.line, f.rule, f.message))
    index.findings += findings
    index.stages["governance"] = scratch.stages["governance"]
