"""``lakegen check``: everything a pull request must pass, and the Markdown report of it.

A check compiles the lake with the same stages as a build (:mod:`lakegen.compile.stages`),
scoped to what the pull request changes: validation, the changed files, attribution of new or
changed models, re-running new or changed evaluations, and the governance policies. A stage that
cannot run here says why ("not run: ...") instead of passing silently. The report lists what the
pull request adds and changes and every finding with its severity; any error-level finding fails
the check.

:mod:`lakegen.check.render` writes the report out: as text for a terminal, as the
Markdown GitHub renders (where everything from a manifest or git is escaped), or
as JSON.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from lakegen.artifacts.digests import CACHE_ENV, default_cache_dir
from lakegen.catalog.loader import Catalog, load_catalog
from lakegen.compile import compile_catalog
from lakegen.compile.inputs import Recorded, recorded
from lakegen.compile.scope import Scope
from lakegen.errors import SEVERITY_ORDER, Finding
from lakegen.executor import Engine
from lakegen.gitrepo import Repo
from lakegen.governance.changes import LakeChanges, lake_changes
from lakegen.model.index import LakeIndex


@dataclass
class StageOutcome:
    """What one stage did: ``ran ...`` or ``not run: <why>``, and what it found."""

    name: str
    status: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CheckReport:
    """The outcome of ``lakegen check``."""

    catalog: Catalog  # the manifests loaded: part of the lake, when checked from the base's index
    changes: LakeChanges | None
    index: LakeIndex

    @property
    def stages(self) -> list[StageOutcome]:
        return [
            StageOutcome(name, status, [f for f in self.index.findings if f.stage == name])
            for name, status in self.index.stages.items()
        ]

    @property
    def findings(self) -> list[Finding]:
        return sorted(self.index.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.path, f.line, f.rule))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def affected(self) -> set[str] | None:
        """Entries the pull request touches, and everything derived from them; None without a base."""
        if self.changes is None:
            return None
        if self.changes.config_changed:
            return {row.id for row in self.index.entries}
        graph = _dependents(self.index)
        touched = self.changes.touched()
        out = set(touched)
        for entry in touched:
            if entry in graph:
                out |= nx.descendants(graph, entry)
        return out

    def grouped(self) -> tuple[list[Finding], list[Finding]]:
        """The findings on what the pull request touches (all of them without a base), and the rest."""
        affected = self.affected()
        mine: list[Finding] = []
        rest: list[Finding] = []
        for f in self.findings:
            (mine if affected is None or f.entry is None or f.entry in affected else rest).append(f)
        return mine, rest

    def to_json(self) -> dict[str, Any]:
        changes = self.changes
        return {
            "ok": self.ok,
            "base": {"ref": changes.base_ref, "commit": changes.base_commit} if changes else None,
            "changes": [
                {
                    "entry": c.entry,
                    "status": c.status,
                    "path": c.path,
                    "base_path": c.base_path,
                    "fields": [f.model_dump(mode="json") for f in c.fields],
                }
                for c in (changes.entries if changes else [])
            ],
            "stages": {s.name: s.status for s in self.stages},
            "findings": [f.to_json() for f in self.findings],
        }


def _dependents(index: LakeIndex) -> nx.DiGraph:
    """An edge from each entry to every entry that uses it (base models, datasets, sources); from the
    index, which holds every entry's manifest where a check's catalog may hold part of the lake."""
    graph = nx.DiGraph()
    for row in index.entries:
        graph.add_node(row.id)
        for key in ("base_models", "datasets", "derived_from"):
            for ref in row.manifest.get(key) or ():
                if isinstance(ref, dict) and isinstance(ref.get("id"), str):
                    graph.add_edge(ref["id"], row.id)
    return graph


def run_check(
    root: Path | str,
    base: str | None = None,
    *,
    run_evaluations: bool = True,
    verify_artifacts: bool = True,
    trust_code: bool = False,
    engine: Engine = "local",
    workers: int | None = None,
) -> CheckReport:
    """Check the lake at ``root`` as a pull request against ``base`` (or on its own without one)."""
    root = Path(root)
    repo = Repo.find(root)
    # What earlier compiles kept (parsed manifests, attribution's memo) makes a check cost what the
    # pull request changes; but a pull request that commits lakegen's cache could plant results in
    # it (fingerprints, audits, alignments), so then nothing kept is read and the check runs on a
    # cache of its own.
    kept = repo is None or not repo.tracked(".lakegen/")
    with contextlib.nullcontext() if kept else _private_cache(root):
        return _check(root, base, repo, kept, run_evaluations, verify_artifacts, trust_code, engine, workers)


@contextlib.contextmanager
def _private_cache(root: Path) -> Iterator[None]:
    """``$LAKEGEN_CACHE`` pointed at an empty folder for the check, unless it already points outside
    the lake (a cache the pull request cannot commit to)."""
    current = os.environ.get(CACHE_ENV)
    if current and not Path(current).resolve().is_relative_to(root.resolve()):
        yield
        return
    from lakegen.artifacts import remote

    with tempfile.TemporaryDirectory(prefix="lakegen-check-") as folder:
        os.environ[CACHE_ENV] = folder
        try:
            yield
        finally:
            remote.forget(root)  # it fetched into the folder about to go
            if current is None:
                del os.environ[CACHE_ENV]
            else:
                os.environ[CACHE_ENV] = current


def _check(
    root: Path,
    base: str | None,
    repo: Repo | None,
    kept: bool,
    run_evaluations: bool,
    verify_artifacts: bool,
    trust_code: bool,
    engine: Engine,
    workers: int | None,
) -> CheckReport:
    if base:  # remote artifacts are fetched, and signatures trusted, under the base's rules
        from lakegen.artifacts import remote, signatures

        remote.fetch_under(root, remote.settings_at(root, base))
        signatures.trust_from(root, base, default_cache_dir(root) / "trust" / Repo(root).commit_of(base))
    if base and kept and repo is not None:
        from lakegen.compile.frombase import check_from_base

        found = check_from_base(
            root,
            base,
            repo,
            verify_artifacts=verify_artifacts,
            run_evaluations=run_evaluations,
            trust_code=trust_code,
            engine=engine,
            workers=workers,
        )
        if found is not None:
            return CheckReport(*found)
    parse_cache = default_cache_dir(root) if kept else None
    # the last build's record of its inputs (kept: not committed by the pull request) names the
    # sha256 of each file whose stat is still the one recorded: those artifacts are not read again
    digests = Recorded(root, recorded(root)) if kept else None
    catalog = load_catalog(
        root,
        verify_artifacts=verify_artifacts,
        parse_cache=parse_cache,
        engine=engine,
        workers=workers,
        digests=digests,
    )
    changes = lake_changes(catalog, base, repo) if base else None
    scope = Scope(
        catalog, changes, check=True, run_evaluations=run_evaluations, trust_code=trust_code, memo=kept
    )
    scope.engine, scope.workers, scope.digests = engine, workers, digests
    index = compile_catalog(scope)
    if catalog.parsed is not None:
        catalog.parsed.save()
    return CheckReport(catalog, changes, index)
