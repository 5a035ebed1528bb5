"""The pipeline's stages, in the order both ``lakegen build`` and ``lakegen check`` run them.

Each stage is called as ``stage(scope, index)`` and returns the index with what it found added and
its line in ``index.stages`` set: ``ran ...``, or ``not run: <why>``, never a silent pass. The work is
done by the stage packages (lineage, bench, governance); a stage here only says which part of the
lake it covers in this scope: everything for a build, what the pull request changes for a check.
"""

from __future__ import annotations

from typing import Protocol

from lakegen.compile.scope import Scope
from lakegen.errors import Finding
from lakegen.model.index import LakeIndex


class Stage(Protocol):
    name: str

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        """Add this stage's evidence and findings about ``scope`` to ``index``; return it."""
        ...


class Validate:
    """Schema, references and artifact digests: done while loading, reported here."""

    name = "validate"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        catalog = scope.catalog
        verified = list(catalog.artifacts.values()).count("verified")
        index.stages[self.name] = f"ran: {len(catalog.records)} entries, {verified} artifacts verified"
        return index


class Files:
    """Every changed file that is not a manifest, classified (:mod:`lakegen.governance.filechanges`)."""

    name = "files"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        from lakegen.governance.filechanges import findings

        if not scope.check:
            return index  # a build has no base to compare with
        if scope.changes is None:
            return _skip(index, self.name, "no --base")
        index.findings += findings(scope.changes, scope.catalog.root)
        code = sorted(scope.changed_code())
        rerun = f"; source of {', '.join(code)} changed: their models' evaluations re-run" if code else ""
        index.stages[self.name] = f"ran: {len(scope.changes.files)} other files{rerun}"
        return index


class Attribution:
    """Lineage from the weights against the declared lineage; a check reports on changed models only."""

    name = "attribution"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        from lakegen.lineage.stage import attribution_stage

        def attribute(changed: list[str] | None = None) -> LakeIndex:
            return attribution_stage(
                scope.catalog,
                index,
                engine=scope.engine,
                workers=scope.workers,
                memo=scope.memo,
                digests=scope.digests,
                changed=changed,
                known=scope.known,
            )

        if not scope.check:
            return attribute()
        if scope.changes is None:
            return _skip(index, self.name, "no --base, so no model counts as new or changed")
        models = scope.changed_models()
        if not models:
            return _skip(index, self.name, "the pull request adds or changes no model")
        before = len(index.findings)
        attribute(models)  # from the base's results where the lake's cache holds them
        wanted = set(models)
        index.findings[before:] = [f for f in index.findings[before:] if f.entry in wanted]
        edges = [e for e in index.edges if e.child in wanted]
        verified = sum(e.status == "verified" for e in edges)
        index.stages[self.name] = (
            f"ran: {len(models)} models, {len(edges)} edges ({verified} verified by weights)"
        )
        return index


class Bench:
    """Claimed evaluations: from the results cache for a build (run with ``run_evaluations``); a check
    re-runs the new or changed ones and never reads results the pull request brings."""

    name = "bench"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        from lakegen.bench.run import BenchError, Options, bench_stage, evaluate_catalog, result_findings

        if not scope.check:
            options = Options(engine=scope.engine, workers=scope.workers)
            return bench_stage(scope.catalog, index, run=scope.run_evaluations, options=options)
        if scope.changes is None:
            return _skip(index, self.name, "no --base, so no evaluation counts as new or changed")
        models = scope.changed_evaluations()
        if not models:
            return _skip(index, self.name, "the pull request adds or changes no evaluation")
        if not scope.run_evaluations:
            return _skip(index, self.name, "evaluations disabled (--no-bench)")
        # results a pull request commits are its own claims: re-run them, never read them
        options = Options(write_results=False, read_committed=False, trust_code=scope.trust_code)
        options.engine, options.workers = scope.engine, scope.workers
        # A pull request that commits lakegen's cache may have planted results in it: read none.
        options.force = any(f.what == "lakegen's cache" for f in scope.changes.files)
        try:
            report = evaluate_catalog(scope.catalog, models, options, run=True)
        except BenchError as e:
            index.findings.append(Finding("catalog", 1, "", str(e), stage="bench", rule="sandbox"))
            return _skip(index, self.name, str(e))
        index.results += report.results
        index.findings += result_findings(report)
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n) or "no results"
        runs = f"{len(report.results)} evaluations of {len(models)} models"
        index.stages[self.name] = f"ran: {runs} ({counts}; {report.cached} from cache)"
        return index


class Governance:
    """The policies, over the lineage the weights showed as well as the declared one."""

    name = "governance"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        from lakegen.governance.policies import governance_stage

        governance_stage(scope.catalog, index, scope.changes)
        if scope.check and scope.changes is None:
            index.stages[self.name] += " (immutable-releases needs --base)"
        return index


class History:
    """The audit trail from git; a check reports changes against its base instead."""

    name = "history"

    def __call__(self, scope: Scope, index: LakeIndex) -> LakeIndex:
        from lakegen.governance.history import history_stage

        if scope.check:
            return index  # a check reports the pull request's changes instead
        return history_stage(scope.catalog, index)


STAGES: tuple[Stage, ...] = (Validate(), Files(), Attribution(), Bench(), Governance(), History())


def _skip(index: LakeIndex, name: str, why: str) -> LakeIndex:
    index.stages[name] = f"not run: {why}"
    return index
