"""``lakegen check``: everything a pull request must pass, and the Markdown report of it.

A check is a list of stages (:class:`CheckStage`): validation, the governance
policies, attribution of new or changed models, and re-running new or changed
evaluations. A stage that cannot run here says why ("not run: ...") instead of
passing silently. The report lists what the pull request adds and changes and
every finding with its severity; any error-level finding fails the check.

Everything in the report that comes from a manifest or from git (names, ids,
paths, commit subjects, values) is escaped with :func:`md`, so a pull request
cannot inject markup, links or mentions into the summary GitHub renders.
"""

from __future__ import annotations

import json
import re
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
_ICON = {"error": "❌ error", "warning": "⚠️ warning", "info": "ℹ️ info"}
# one pass: Markdown punctuation backslash-escaped; HTML, '#' (issue links) and '@' (mentions) as entities
_ESCAPES = str.maketrans(
    {
        **{c: "\\" + c for c in "\\`*_{}[]()+-.!|~^=:"},
        **{"&": "&amp;", "<": "&lt;", ">": "&gt;", "#": "&#35;", "@": "&#64;"},
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def md(value: Any, limit: int = 300) -> str:
    """``value`` as inert Markdown text: no markup, HTML, links, mentions or table breaks survive."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.translate(_ESCAPES)


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

    def changed_evaluations(self) -> list[str]:
        """Models whose claimed evaluations are new or may read differently (new weights, new claims)."""
        if self.changes is None:
            return []
        out = []
        for model_id in self.changed_models():
            change = self.changes.of(model_id)
            model = self.catalog.get(model_id)
            assert change is not None and isinstance(model, Model)
            touched = change.base_data is None or any(
                f.field.startswith(("evaluations", "versions", "architecture", "datasets"))
                for f in change.fields
            )
            if model.evaluations and touched:
                out.append(model_id)
        return out


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
        on = [n for n in sorted(rules) if config.level(n) != "off"]
        base = "" if ctx.changes else " (immutable-releases needs --base)"
        return StageOutcome(self.name, f"ran: {len(on)} rules ({', '.join(on)}){base}", findings)


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
        from lakegen.bench import Options, evaluate_catalog, result_findings

        # results a pull request commits are its own claims: re-run them, never read them
        options = Options(write_results=False, read_committed=False)
        report = evaluate_catalog(ctx.catalog, models, options, run=True)
        findings = result_findings(report)
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n) or "no results"
        runs = f"{len(report.results)} evaluations of {len(models)} models"
        status = f"ran: {runs} ({counts}; {report.cached} from cache)"
        return StageOutcome(self.name, status, findings)


DEFAULT_STAGES: list[CheckStage] = [ValidateStage(), PolicyStage(), AttributionStage(), BenchStage()]


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
        return render_markdown(self)


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
) -> CheckReport:
    """Check the lake at ``root`` as a pull request against ``base`` (or on its own without one)."""
    catalog = load_catalog(root, verify_artifacts=verify_artifacts)
    changes = lake_changes(catalog, base) if base else None
    ctx = CheckContext(catalog, changes, run_evaluations)
    outcomes = [stage.run(ctx) for stage in (stages if stages is not None else DEFAULT_STAGES)]
    return CheckReport(catalog, changes, outcomes)


def _where(f: Finding) -> str:
    where = f"{md(f.path)}:{f.line}"
    return f"{where} {md(f.field)}" if f.field else where


def _findings_table(findings: list[Finding]) -> list[str]:
    lines = ["| severity | where | rule | message |", "|---|---|---|---|"]
    for f in findings:
        lines.append(
            f"| {_ICON[f.severity]} | {_where(f)} | {md(f.stage)}/{md(f.rule)} | {md(f.message, 600)} |"
        )
    return lines


def _change_summary(change: Any, limit: int = 6) -> str:
    if change.status == "added":
        return "new entry"
    if change.status == "removed":
        return "manifest deleted"
    parts = []
    for fc in change.fields[:limit]:
        if fc.old is None:
            parts.append(f"{md(fc.field)}: added {md(fc.new, 80)}")
        elif fc.new is None:
            parts.append(f"{md(fc.field)}: removed")
        else:
            parts.append(f"{md(fc.field)}: {md(fc.old, 80)} → {md(fc.new, 80)}")
    if len(change.fields) > limit:
        parts.append(f"and {len(change.fields) - limit} more fields")
    return "; ".join(parts) or "formatting only"


def render_markdown(report: CheckReport) -> str:
    """The pull-request summary: verdict, what changes, stages, then every finding by severity."""
    findings = report.findings
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITY_ORDER}
    verdict = "❌ failed" if counts["error"] else "✅ passed"
    tally = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())
    out = [
        f"## lakegen check: {verdict}",
        "",
        f"{len(report.catalog.records)} entries; findings: {tally}.",
        "",
    ]
    changes = report.changes
    if changes is not None:
        out += [f"Compared with {md(changes.base_ref)} (merge base {changes.base_commit[:12]}).", ""]
        out += ["### What this pull request changes", ""]
        if changes.entries or changes.config_changed:
            out += ["| change | entry | kind | what |", "|---|---|---|---|"]
            for c in changes.entries:
                record = report.catalog.records.get(c.entry)
                kind = record.entry.kind if record and c.path else (c.base_entry.kind if c.base_entry else "")
                out.append(f"| {c.status} | {md(c.entry)} | {kind} | {_change_summary(c)} |")
            for path, status in sorted(changes.config_changed.items()):
                out.append(f"| {status} | {md(path)} | configuration | governance settings |")
        else:
            out.append("No manifest changes.")
        out.append("")
    out += ["### Stages", "", "| stage | status |", "|---|---|"]
    out += [f"| {md(s.name)} | {md(s.status, 400)} |" for s in report.stages]
    out.append("")
    affected = report.affected()
    mine: list[Any] = []
    rest: list[Any] = []
    for f in findings:
        (mine if affected is None or f.entry is None or f.entry in affected else rest).append(f)
    title = "Findings" if affected is None else "Findings in this pull request"
    out += [f"### {title} ({len(mine)})", ""]
    out += _findings_table(mine) if mine else ["None."]
    out.append("")
    if rest:
        out += [
            f"<details><summary>Elsewhere in the lake ({len(rest)})</summary>",
            "",
            *_findings_table(rest),
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)
