"""Re-run every evaluation a manifest claims, and compare the claimed number with the reproduced one.

Each declared evaluation ends in one of four states:

- ``verified``: reproduced within the manifest's tolerance;
- ``contradicted``: reproduced, but further from the claim than the tolerance;
- ``unreproducible``: code, data or weights are missing (the detail says which);
- ``failed``: the evaluation raised, crashed or ran past its timeout (the error is kept).

Results are cached by content (see :mod:`lakegen.bench.plan` for the key and
:mod:`lakegen.bench.results` for where they live), so an unchanged evaluation never
runs twice. Jobs go through an :class:`~lakegen.executor.local.Executor`; by default a
:class:`~lakegen.executor.local.LocalExecutor` of worker subprocesses, or Ray actors running the same
workers (``engine="ray"``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lakegen.artifacts.digests import default_cache_dir
from lakegen.bench.plan import Plan, Planner
from lakegen.bench.results import ResultStore
from lakegen.catalog.loader import Catalog, load_catalog
from lakegen.errors import Finding, Severity, format_loc
from lakegen.executor import Engine, make_executor
from lakegen.executor.local import Executor, Job, Outcome
from lakegen.executor.sandbox import Sandbox, unavailable
from lakegen.model.index import LakeIndex, Result

Device = Literal["auto", "cpu", "cuda"]
Progress = Callable[[int, int], None]
STATUSES = ("verified", "contradicted", "unreproducible", "failed")
DEFAULT_TIMEOUT_S = 600.0
_SLACK = 1e-9  # a claim rounded to the tolerance's last digit still verifies


class BenchError(Exception):
    """A bench run refused before it started (an unknown model, no GPU for --device cuda)."""


@dataclass
class Options:
    """How evaluations run; the defaults suit one machine."""

    workers: int | None = None  # None: half the CPUs here (1-4), or one per CPU of a Ray cluster
    engine: Engine = "local"  # where evaluations run (lakegen.executor); each in the sandbox on either
    device: Device = "auto"
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_limit_bytes: int | None = None  # None: default_memory_limit; 0: no cap
    force: bool = False
    cache_dir: Path | None = None
    read_committed: bool = True
    write_results: bool = True
    executor: Executor | None = None
    # Code entries are contributed code: they run in a sandbox (lakegen.executor.sandbox), or, where there
    # is none, only when trusted. Trusting runs them as the user running lakegen, unconfined.
    trust_code: bool = False


@dataclass
class BenchReport:
    """The results of a bench run, and how much of it ran versus came from the cache."""

    results: list[Result]
    plans: list[Plan] = field(default_factory=list)
    executed: int = 0
    cached: int = 0
    not_run: list[Plan] = field(default_factory=list)
    duration_s: float = 0.0

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """No claim contradicted and no evaluation failed (what ``--strict`` checks)."""
        return not any(r.status in ("contradicted", "failed") for r in self.results)


def run_bench(
    root: Path | str,
    model_ids: Sequence[str] | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
) -> BenchReport:
    """Run (or read from cache) the evaluations of ``model_ids`` (default: every model) of the lake."""
    catalog = load_catalog(root)
    if model_ids:
        unknown = [m for m in model_ids if m not in catalog or catalog.get(m).kind != "model"]
        if unknown:
            raise BenchError(
                "; ".join(f"no model '{m}' in the lake{catalog.suggest(m, 'model')}" for m in unknown)
            )
    return evaluate_catalog(catalog, model_ids, options or Options(), run=True, progress=progress)


def evaluate_catalog(
    catalog: Catalog,
    model_ids: Sequence[str] | None,
    options: Options,
    *,
    run: bool,
    progress: Progress | None = None,
) -> BenchReport:
    """Results for the catalog's evaluations: cached ones read, the others run when ``run`` is set."""
    start = time.perf_counter()
    if run and options.device == "cuda":
        require_cuda()
    plans = Planner(catalog).plans(list(model_ids) if model_ids else None)
    store = ResultStore(catalog.root, cache_dir=options.cache_dir, read_committed=options.read_committed)
    rows: dict[int, Result] = {}
    todo: dict[str, list[int]] = {}
    report = BenchReport(results=[])
    for i, plan in enumerate(plans):
        cached = None if options.force or plan.key is None else store.get(plan.key)
        if plan.key is None:
            rows[i] = judge(plan, Result(**_ids(plan), status="unreproducible", detail=plan.missing))
        elif cached is not None:
            rows[i] = judge(plan, cached)
            report.cached += 1
        elif run:
            todo.setdefault(plan.key, []).append(i)
        else:
            report.not_run.append(plan)
    if todo:
        jobs = [
            Job(key, "lakegen.bench.evaluator:run", {**plans[ix[0]].payload, "device": options.device})
            for key, ix in todo.items()
        ]
        executor = options.executor or default_executor(options, catalog.root)
        if progress:
            progress(0, len(jobs))

        def finished(outcome: Outcome) -> None:
            first = plans[todo[outcome.job.key][0]]
            result = judge(first, outcome_result(first, outcome))
            store.put(result)
            for ix in todo[outcome.job.key]:
                rows[ix] = judge(plans[ix], result)
            report.executed += 1
            if progress:
                progress(report.executed, len(jobs))

        executor.run(jobs, finished)
    report.results = [rows[i] for i in sorted(rows)]
    report.plans = [plans[i] for i in sorted(rows)]
    if run and options.write_results:
        _write(store, catalog, plans, rows, prune=not model_ids)
    report.duration_s = time.perf_counter() - start
    return report


def default_executor(options: Options, root: Path | None = None) -> Executor:
    """Workers for the evaluations: sandboxed unless ``options.trust_code``; see :class:`Options`."""
    limit = options.memory_limit_bytes
    if limit is None:
        limit = default_memory_limit(options)
    sandbox = None
    if not options.trust_code:
        why = unavailable()
        if why is not None:
            raise BenchError(
                f"code entries are contributed code and run only in a sandbox, but {why}; "
                "--trust-code runs them without one, as the user running lakegen"
            )
        # The sandbox's memory cgroup holds host memory on CUDA too, unlike an address-space cap.
        gpus = options.device == "cuda" or (
            options.device == "auto" and any(Path("/dev").glob("nvidia[0-9]*"))
        )
        # the download cache too: remote weights are read from there
        visible = [root, default_cache_dir(root)] if root else []
        sandbox = Sandbox(memory_limit_bytes=limit or None, gpus=gpus, visible=visible)
    # On CUDA the address-space cap cannot work (see lakegen.bench.evaluator); GPU memory errors
    # still fail alone.
    rlimit = None if options.device == "cuda" or limit == 0 or sandbox is not None else limit
    workers = options.workers or (local_workers() if options.engine == "local" else None)
    return make_executor(
        options.engine,
        workers=workers,
        timeout_s=options.timeout_s,
        memory_limit_bytes=rlimit,
        preload=["lakegen.bench.evaluator"],
        env={"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0"},
        sandbox=sandbox,
    )


def local_workers() -> int:
    """Half the CPUs of this machine, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def default_memory_limit(options: Options) -> int:
    """Half this machine's memory, shared between the workers, and never under 2 GiB each (on Ray, the
    same cap per worker: the nodes are taken to be like the machine that starts the run)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(2 << 30, total // (2 * (options.workers or local_workers())))


def require_cuda() -> None:
    """Refuse ``--device cuda`` early and clearly on a machine without a usable GPU."""
    import torch

    if not torch.cuda.is_available():
        raise BenchError(
            f"--device cuda: torch {torch.__version__} sees no CUDA GPU on this machine; "
            "use --device cpu, or auto to take a GPU only when there is one"
        )


def _ids(plan: Plan) -> dict[str, object]:
    ev = plan.evaluation
    return {
        "model": plan.model.id,
        "version": plan.version,
        "dataset": ev.dataset,
        "split": ev.split,
        "metric": ev.metric,
        "claimed": ev.value,
        "tolerance": ev.tolerance,
    }


def outcome_result(plan: Plan, outcome: Outcome) -> Result:
    """The cacheable row for one executed job (status relative to the claim of ``plan``)."""
    base = {
        **_ids(plan),
        "ran_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(outcome.duration_s, 3),
        "cache_key": outcome.job.key,
    }
    if outcome.ok:
        value = outcome.value
        return Result(
            **base,
            reproduced=float(value["value"]),
            status="verified",
            device=value.get("device"),
            environment=value.get("environment", {}),
        )
    if outcome.error_type == "MissingInput":
        first_line = outcome.message.split("\n", 1)[0]
        return Result(**base, status="unreproducible", detail=first_line.removeprefix("MissingInput: "))
    what = {"raised": "the evaluation raised", "timeout": "timed out", "crashed": "the worker crashed"}
    return Result(**base, status="failed", detail=f"{what[outcome.error]}: {outcome.message}")


def judge(plan: Plan, row: Result) -> Result:
    """``row`` relabelled for ``plan`` and compared with its current claim and tolerance."""
    row = row.model_copy(update=_ids(plan))
    if row.reproduced is None:
        return row
    diff = abs(row.reproduced - row.claimed)
    if diff <= row.tolerance + _SLACK:
        return row.model_copy(update={"status": "verified", "detail": ""})
    detail = (
        f"claimed {row.claimed:g}, reproduced {row.reproduced:.6g}: off by {diff:.4g}, "
        f"more than the tolerance {row.tolerance:g}"
    )
    return row.model_copy(update={"status": "contradicted", "detail": detail})


def _write(
    store: ResultStore, catalog: Catalog, plans: list[Plan], rows: dict[int, Result], prune: bool
) -> None:
    by_model: dict[str, list[Result]] = {}
    for i, plan in enumerate(plans):
        by_model.setdefault(plan.model.id, [])
        if i in rows:
            by_model[plan.model.id].append(rows[i])
    for model_id, results in by_model.items():
        store.write_model(model_id, results)
    if prune:
        store.prune([m.id for m in catalog.models() if m.evaluations])


_RULES: dict[str, tuple[str, Severity, str | None]] = {
    "contradicted": ("claim-contradicted", "error", "value"),
    "failed": ("evaluation-failed", "error", ""),
    "unreproducible": ("unreproducible", "warning", ""),
}


def result_findings(report: BenchReport) -> list[Finding]:
    """A finding at the manifest line of every claim that did not verify."""
    findings = []
    for plan, result in zip(report.plans, report.results, strict=True):
        rule = _RULES.get(result.status)
        if rule is not None:
            name, severity, field_name = rule
            loc = ("evaluations", plan.index, field_name) if field_name else plan.missing_loc
            message = f"{result.metric} on {result.dataset}/{result.split}: {result.detail}"
            findings.append(_finding(plan, name, severity, loc, message))
    return findings


def bench_stage(
    catalog: Catalog, index: LakeIndex, *, run: bool = False, options: Options | None = None
) -> LakeIndex:
    """The compile stage: put every evaluation's result into ``index``, from the cache unless ``run``."""
    report = evaluate_catalog(catalog, None, options or Options(), run=run)
    index.results.extend(report.results)
    index.findings.extend(result_findings(report))
    for plan in report.not_run:
        ev = plan.evaluation
        message = f"{ev.metric} on {ev.dataset}/{ev.split} has not run yet; run 'lakegen bench'"
        index.findings.append(_finding(plan, "not-run", "info", ("evaluations", plan.index), message))
    index.stages["bench"] = stage_line(report.results, len(report.not_run), run)
    return index


def stage_line(results: list[Result], not_run: int, run: bool) -> str:
    """The bench stage's line in ``index.stages``, from its results and how many claims did not run."""
    counts = ", ".join(f"{n} {s}" for s, n in BenchReport(results).counts().items() if n) or "no results"
    pending = f"; {not_run} not run yet" if not_run else ""
    return f"ran ({'evaluated' if run else 'from cache'}: {counts}{pending})"


def _finding(plan: Plan, rule: str, severity: Severity, loc: tuple[str | int, ...], message: str) -> Finding:
    loc = loc or ("evaluations", plan.index)
    return Finding(
        stage="bench",
        rule=rule,
        severity=severity,
        entry=plan.model.id,
        owners=tuple(plan.model.owners),
        path=plan.record.path,
        line=plan.record.line(*loc),
        field=format_loc(loc),
        message=message.split("\n", 1)[0],
    )
