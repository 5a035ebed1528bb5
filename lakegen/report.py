"""``lakegen check``: everything a pull request must pass, and the Markdown report of it.

A check is a list of stages (:class:`CheckStage`): validation, the governance
policies, attribution of new or changed models, and re-running new or changed
evaluations. A stage that cannot run here says why ("not run: ...") instead of
passing silently. The report lists what the pull request adds and changes and
every finding with its severity; any error-level finding fails the check.

:mod:`lakegen.render` writes the report out: as text for a terminal, as the
Markdown GitHub renders (where everything from a manifest or git is escaped), or
as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import networkx as nx

from lakegen.catalog import Catalog, load_catalog
from lakegen.changes import LakeChanges, lake_changes
from lakegen.index import Finding
from lakegen.manifest import Model

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class StageOutcome:
    """What one stage did: ``ran ...`` or ``not run: <why>``, and what it found."""

    name: str
    status: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CheckContext:
    catalog: Catalog
    changes: LakeChanges | None
    run_evaluations: bool = True
    trust_code: bool = False  # run code entries without the sandbox (see lakegen.sandbox)

    def changed_models(self) -> list[str]:
        """Models the pull request adds, renames or modifies (present at head)."""
        if self.changes is None:
            return []
        records = self.catalog.records
        return sorted(
            c.entry
            for c in self.changes.entries
            if c.path and c.entry in records and isinstance(records[c.entry].entry, Model)
        )

    def changed_code(self) -> set[str]:
        """Code entries whose source files the pull request changes."""
        if self.changes is None:
            return set()
        return {c for f in self.changes.files for c in f.code_entries}

    def changed_evaluations(self) -> list[str]:
        """Models whose claimed evaluations are new or may read differently (new weights, new claims,
        or code entries they are built or evaluated with whose source changed)."""
        if self.changes is None:
            return []
        code = self.changed_code()
        out = []
        for model in self.catalog.models():
            uses = {c.id for c in model.code} | (
                {model.architecture.code} if model.architecture.code else set()
            )
            if model.evaluations and uses & code:
                out.append(model.id)
        for model_id in self.changed_models():
            if model_id in out:
                continue
            change = self.changes.of(model_id)
            entry = self.catalog.get(model_id)
            assert change is not None and isinstance(entry, Model)
            touched = change.base_data is None or any(
                f.field.startswith(("evaluations", "versions", "architecture", "datasets"))
                for f in change.fields
            )
            if entry.evaluations and touched:
                out.append(model_id)
        return sorted(out)


class CheckStage(Protocol):
    """One part of ``lakegen check``."""

    name: str

    def run(self, ctx: CheckContext) -> StageOutcome:
        """Run over ``ctx`` and say what happened."""
        ...


class ValidateStage:
    name = "validate"

    def run(self, ctx: CheckContext) -> StageOutcome:
        findings = [Finding.from_problem(p, ctx.catalog) for p in ctx.catalog.problems]
        states = list(ctx.catalog.artifacts.values())
        verified = states.count("verified")
        return StageOutcome(
            self.name, f"ran: {len(ctx.catalog.records)} entries, {verified} artifacts verified", findings
        )


class PolicyStage:
    name = "governance"

    def run(self, ctx: CheckContext) -> StageOutcome:
        from lakegen.policies import load_config, registered, run_policies

        rules = registered()
        config = load_config(ctx.catalog.root, set(rules))
        findings = run_policies(ctx.catalog, changes=ctx.changes, config=config)
        findings += _codeowners_drift(ctx.catalog, config.governance)
        on = [n for n in sorted(rules) if config.level(n) != "off"]
        base = "" if ctx.changes else " (immutable-releases needs --base)"
        return StageOutcome(self.name, f"ran: {len(on)} rules ({', '.join(on)}){base}", findings)


def _codeowners_drift(catalog: Catalog, governance: list[str]) -> list[Finding]:
    """A committed CODEOWNERS file that no longer follows the owners is an error: reviews would
    go to the wrong people."""
    from lakegen.codeowners import CODEOWNERS, drift, render

    if not (catalog.root / CODEOWNERS).is_file():
        return []
    why = drift(catalog.root, render(catalog, governance))
    if why is None:
        return []
    return [
        Finding(stage="governance", rule="codeowners", severity="error", path=CODEOWNERS, line=1, message=why)
    ]


class AttributionStage:
    """Lineage from weights for the models a pull request adds or changes.

    It calls the attribution engine's compile stage (``attribution_stage(catalog,
    index)``, in :mod:`lakegen.attribution` or :mod:`lakegen.lineage`) on a scratch
    index and keeps what it found about those models.
    """

    name = "attribution"

    def run(self, ctx: CheckContext) -> StageOutcome:
        if ctx.changes is None:
            return StageOutcome(self.name, "not run: no --base, so no model counts as new or changed")
        models = ctx.changed_models()
        if not models:
            return StageOutcome(self.name, "not run: the pull request adds or changes no model")
        stage = _find("attribution_stage", "lakegen.attribution", "lakegen.lineage")
        if stage is None:
            return StageOutcome(self.name, "not run: no attribution_stage() in lakegen.attribution")
        from lakegen.index import base_index

        scratch = base_index(ctx.catalog)
        before = len(scratch.findings)
        stage(ctx.catalog, scratch)
        wanted = set(models)
        findings = [f for f in scratch.findings[before:] if f.entry in wanted]
        edges = [e for e in scratch.edges if e.child in wanted]
        verified = sum(e.status == "verified" for e in edges)
        status = f"ran: {len(models)} models, {len(edges)} edges ({verified} verified by weights)"
        return StageOutcome(self.name, status, findings)


def _find(name: str, *modules: str) -> Any:
    """``name`` from the first of ``modules`` that has it, or None."""
    import importlib

    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


class BenchStage:
    name = "bench"

    def run(self, ctx: CheckContext) -> StageOutcome:
        if ctx.changes is None:
            return StageOutcome(self.name, "not run: no --base, so no evaluation counts as new or changed")
        models = ctx.changed_evaluations()
        if not models:
            return StageOutcome(self.name, "not run: the pull request adds or changes no evaluation")
        if not ctx.run_evaluations:
            return StageOutcome(self.name, "not run: evaluations disabled (--no-bench)")
        from lakegen.bench import BenchError, Options, evaluate_catalog, result_findings

        # results a pull request commits are its own claims: re-run them, never read them
        options = Options(write_results=False, read_committed=False, trust_code=ctx.trust_code)
        # A pull request that commits lakegen's cache may have planted results in it: read none.
        options.force = any(f.what == "lakegen's cache" for f in ctx.changes.files)
        try:
            report = evaluate_catalog(ctx.catalog, models, options, run=True)
        except BenchError as e:
            problem = Finding(
                stage="bench", rule="sandbox", severity="error", path="catalog", line=1, message=str(e)
            )
            return StageOutcome(self.name, f"not run: {e}", [problem])
        findings = result_findings(report)
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n) or "no results"
        runs = f"{len(report.results)} evaluations of {len(models)} models"
        status = f"ran: {runs} ({counts}; {report.cached} from cache)"
        return StageOutcome(self.name, status, findings)


class FilesStage:
    """Every changed file that is not a manifest, classified (see :mod:`lakegen.filechanges`)."""

    name = "files"

    def run(self, ctx: CheckContext) -> StageOutcome:
        if ctx.changes is None:
            return StageOutcome(self.name, "not run: no --base")
        from lakegen.filechanges import findings

        found = findings(ctx.changes, ctx.catalog.root)
        code = sorted(ctx.changed_code())
        rerun = f"; source of {', '.join(code)} changed: their models' evaluations re-run" if code else ""
        return StageOutcome(self.name, f"ran: {len(ctx.changes.files)} other files{rerun}", found)


DEFAULT_STAGES: list[CheckStage] = [
    ValidateStage(),
    PolicyStage(),
    FilesStage(),
    AttributionStage(),
    BenchStage(),
]


@dataclass
class CheckReport:
    """The outcome of ``lakegen check``."""

    catalog: Catalog
    changes: LakeChanges | None
    stages: list[StageOutcome]

    @property
    def findings(self) -> list[Finding]:
        found = [f for s in self.stages for f in s.findings]
        return sorted(found, key=lambda f: (SEVERITY_ORDER[f.severity], f.path, f.line, f.rule))

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
            return set(self.catalog.records)
        graph = _dependents(self.catalog)
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
            "findings": [f.model_dump(mode="json") for f in self.findings],
        }

    def markdown(self) -> str:
        from lakegen.render import render_markdown

        return render_markdown(self)

    def render(self, fmt: str, *, colour: bool = False) -> str:
        """The report as ``text`` (for a terminal; ANSI colour when ``colour``), ``markdown`` or ``json``."""
        from lakegen.render import render

        return render(self, fmt, colour=colour)


def _dependents(catalog: Catalog) -> nx.DiGraph:
    """An edge from each entry to every entry that uses it (base models, datasets, sources)."""
    graph = nx.DiGraph()
    for entry_id, record in catalog.records.items():
        entry = record.entry
        graph.add_node(entry_id)
        refs = [b.id for b in getattr(entry, "base_models", [])]
        refs += [d.id for d in getattr(entry, "datasets", [])]
        refs += [d.id for d in getattr(entry, "derived_from", [])]
        for ref in refs:
            graph.add_edge(ref, entry_id)
    return graph


def run_check(
    root: Path | str,
    base: str | None = None,
    *,
    stages: Iterable[CheckStage] | None = None,
    run_evaluations: bool = True,
    verify_artifacts: bool = True,
    trust_code: bool = False,
) -> CheckReport:
    """Check the lake at ``root`` as a pull request against ``base`` (or on its own without one)."""
    if base:
        from lakegen import remote

        remote.fetch_under(Path(root), remote.settings_at(Path(root), base))
    catalog = load_catalog(root, verify_artifacts=verify_artifacts)
    changes = lake_changes(catalog, base) if base else None
    ctx = CheckContext(catalog, changes, run_evaluations, trust_code)
    outcomes = [stage.run(ctx) for stage in (stages if stages is not None else DEFAULT_STAGES)]
    return CheckReport(catalog, changes, outcomes)
