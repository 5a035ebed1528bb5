"""How lakegen scales with the number of models: generated lakes of 1,000, 10,000, 100,000 models.

    .venv/bin/python benchmarks/scale.py                       # 1000 and 10000
    .venv/bin/python benchmarks/scale.py --sizes 100000 --keep /tmp/scale
    .venv/bin/python benchmarks/scale.py --query-bytes /tmp/scale/lake-10000/site   # its queries only

Each lake is a git repository holding this repository's demo catalog (real code, datasets and
committed results) plus ``N`` generated models with real small safetensors files, in families of 8:
a root with random weights and fine-tunes of it and of one another (the parent's weights nudged,
so attribution really verifies the declared lineage), each trained on and claiming an accuracy on
its family's dataset (so there are leaderboards), committed in ten commits (so there is history).

Every figure comes from the real CLI in a subprocess (peak memory is that process's own), timed in
wall seconds and in CPU seconds (the command's and what it waited for: git, Pagefind), which a
shared machine's load inflates much less:

- cold build: ``lakegen build`` with no ``.lakegen/`` cache and no ``site/``;
- no-op rebuild: the same again, nothing changed;
- one-change rebuild: one model's description edited in the working tree;
- PR check: ``lakegen check --base main --no-bench`` on a branch adding one model (its manifest and
  weights), with the caches the builds left, as a CI job restoring ``.lakegen/`` would have them;
- site size, and the bytes of the search index the site's search page reads to open and for each of
  two queries (headless Chromium, when there);
- fingerprinting throughput: every artifact fingerprinted cold as a build does, in this process (one
  worker) and in batches on ``--workers`` local workers.

The last lines give the growth ratio between consecutive sizes (time per model at the larger size
over time per model at the smaller; 1.0 is linear).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from safetensors.numpy import save

ROOT = Path(__file__).resolve().parents[1]
LAKEGEN = Path(sys.executable).with_name("lakegen")
FAMILY = 8  # models per family: a root and its fine-tunes
COMMITS = 10
SHAPE = (16, 16)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def weights(i: int, parent: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    if parent is None:
        return {
            "layer.weight": rng.standard_normal(SHAPE).astype(np.float32),
            "layer.bias": rng.standard_normal(SHAPE[0]).astype(np.float32),
        }
    return {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in parent.items()}


def manifest(i: int, parent: int | None, dataset: int, blob: bytes) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    return {
        "kind": "model",
        "id": f"g{i:06d}",
        "name": f"Generated model {i}",
        "description": f"Generated model {i} of family {i // FAMILY}.",
        "owners": ["@ada" if i % 2 else "acme/vision"],
        "license": "CC-BY-NC-4.0" if dataset % 10 == 0 else "Apache-2.0",
        "task": "image-classification",
        "framework": "pytorch",
        "tags": ["generated", f"family-{i // FAMILY % 50}"],
        "architecture": {"family": "generated"},
        "versions": [
            {
                "version": "1.0.0",
                "released": "2026-01-01",
                "artifact": {
                    "uri": f"../artifacts/generated/g{i:06d}.safetensors",
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    "size": len(blob),
                    "format": "safetensors",
                },
            }
        ],
        "base_models": [] if parent is None else [{"id": f"g{parent:06d}", "relation": "finetune"}],
        "datasets": [{"id": f"gd{dataset:05d}", "role": "train"}, {"id": f"gd{dataset:05d}", "role": "eval"}],
        "evaluations": [
            {
                "dataset": f"gd{dataset:05d}",
                "split": "test",
                "metric": "accuracy",
                "value": round(float(rng.uniform(0.5, 0.99)), 4),
            }
        ],
        "intended_use": "Benchmarks.",
        "limitations": "Generated; it recognises nothing.",
        "risk": "minimal",
    }


def write_model(
    repo: Path, i: int, parent: int | None, tensors: dict[str, np.ndarray], family: int | None = None
) -> None:
    blob = save(tensors)
    dataset = (i // FAMILY if family is None else family) % max(1, n_datasets(repo))
    (repo / f"catalog/artifacts/generated/g{i:06d}.safetensors").write_bytes(blob)
    text = yaml.safe_dump(manifest(i, parent, dataset, blob), sort_keys=False)
    (repo / f"catalog/models/g{i:06d}.yaml").write_text(text)


def n_datasets(repo: Path) -> int:
    return int((repo / ".scale-datasets").read_text())


def generate(repo: Path, n: int) -> None:
    """The demo catalog plus ``n`` generated models in families, committed on ``main``."""
    shutil.copytree(ROOT / "catalog", repo / "catalog", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "catalog/artifacts/generated").mkdir(parents=True)
    datasets = max(1, n // 100)
    (repo / ".scale-datasets").write_text(str(datasets))
    (repo / ".gitignore").write_text(".scale-datasets\n.lakegen/\nsite/\n")
    for d in range(datasets):
        data = {
            "kind": "dataset",
            "id": f"gd{d:05d}",
            "name": f"Generated dataset {d}",
            "description": "Generated.",
            "owners": ["acme/data"],
            "license": "CC-BY-NC-4.0" if d % 10 == 0 else "CC-BY-4.0",
            "task": "image-classification",
            "source": {"name": "Generated"},
            "personal_data": False,
            "splits": [{"name": "train", "rows": 1000}, {"name": "test", "rows": 200}],
        }
        (repo / f"catalog/datasets/gd{d:05d}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "Bench"),
        ("user.email", "bench@example.org"),
        ("commit.gpgsign", "false"),
    ):
        git(repo, "config", key, value)
    family: dict[int, dict[str, np.ndarray]] = {}
    per_commit = max(1, -(-n // COMMITS))
    for i in range(n):
        first = i - i % FAMILY
        parent = None if i == first else first + (i - first - 1) // 2  # a binary tree under the root
        tensors = weights(i, None if parent is None else family[parent])
        family[i] = tensors
        if i == first:
            family = {i: tensors}
        write_model(repo, i, parent, tensors)
        if (i + 1) % per_commit == 0 or i == n - 1:
            commit_all(repo, f"Add generated models up to g{i:06d}")


def timed(repo: Path, *args: str) -> dict[str, Any]:
    """Run ``lakegen --root repo ARGS``; its wall time, exit status, peak memory and JSON output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(LAKEGEN), "--root", str(repo), *args], stdout=out, stderr=err)
        # reaped here rather than by Popen.wait, for this child's own peak memory
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    data: Any = None
    with contextlib.suppress(ValueError):
        data = json.loads(stdout)
    if proc.returncode > 1:
        raise SystemExit(f"lakegen {' '.join(args)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    rss = round(usage.ru_maxrss / 1024, 1)
    return {
        "s": round(seconds, 2),
        # CPU seconds of the command and what it waited for (git, Pagefind): on a shared machine
        # the wall time grows with the load, this much less
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "load": round(os.getloadavg()[0], 1),  # the machine is shared: how busy it was meanwhile
        "rc": proc.returncode,
        "rss_mb": rss,
        "json": data,
        "stderr": stderr[-2000:],
    }


def add_one_model(repo: Path, n: int) -> None:
    """A branch ``pr`` adding one fine-tune of ``g000001``."""
    from safetensors.numpy import load_file

    git(repo, "checkout", "-q", "-b", "pr")
    parent = load_file(repo / "catalog/artifacts/generated/g000001.safetensors")
    write_model(repo, n, 1, weights(n, parent), family=0)  # trained on its parent's data
    commit_all(repo, "Add one model")


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def fingerprint_throughput(repo: Path, workers: int) -> dict[str, Any]:
    """Every generated artifact fingerprinted cold, as a build does (``fingerprint_all``: in this
    process with one worker, else batches of files on the local executor), into a fresh cache."""
    from lakegen.fingerprint import Cache
    from lakegen.lineage.fingerprinting import fingerprint_all

    files = sorted((repo / "catalog/artifacts/generated").glob("*.safetensors"))
    paths = {f"{p.stem}@1.0.0": p for p in files}
    with tempfile.TemporaryDirectory() as scratch:
        start, cpu = time.perf_counter(), time.process_time()
        done, failed = fingerprint_all(paths, Cache(scratch), workers=workers)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {
        "workers": workers,
        "files": len(paths),
        "s": round(seconds, 2),
        "parent_cpu_s": round(cpu_s, 2),  # this process's share; the workers' is on top
        "files_per_s": round(len(paths) / seconds, 1),
        "mb_per_s": round(sum(p.stat().st_size for p in files) / seconds / 1e6, 2),
        "failed": len(failed),
        "made": len(done),
        "load": round(os.getloadavg()[0], 1),
    }


def query_bytes(site: Path) -> Any:
    if not Path("/usr/bin/chromium").exists():
        return "no chromium"
    import importlib.util

    # benchmarks/site.py measures it; "site" is also the standard library's module, so load it by path
    spec = importlib.util.spec_from_file_location("site_benchmark", Path(__file__).with_name("site.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the local server logs every request
            return module.measure_query_bytes(
                site, [("generated", {}), ("family", {"task": ["image-classification"]})]
            )
    except Exception as e:  # a measurement that could not run is reported, not hidden
        return f"failed: {e}"


def reset(repo: Path) -> None:
    """A lake kept by an earlier run, put back as ``generate`` left it: ``main`` checked out, no
    ``pr`` branch, no caches and no site (a 100,000-model lake takes ten minutes to generate)."""
    git(repo, "checkout", "-q", "-f", "main")
    with contextlib.suppress(subprocess.CalledProcessError):
        git(repo, "branch", "-q", "-D", "pr")
    git(repo, "clean", "-q", "-f", "-d", "-x", "-e", ".scale-datasets")


def one(n: int, keep: Path | None, workers: int, reuse: bool = False) -> dict[str, Any]:
    work = keep if keep else Path(tempfile.mkdtemp(prefix=f"lakegen-scale-{n}-"))
    repo = work / f"lake-{n}"
    start = time.perf_counter()
    if reuse and (repo / ".git").is_dir():
        reset(repo)
        out: dict[str, Any] = {"models": n, "generate_s": "reused"}
    else:
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        generate(repo, n)
        out = {"models": n, "generate_s": round(time.perf_counter() - start, 1)}
    try:
        cold = timed(repo, "build", "--json")
        out["cold_build"] = cold
        out["noop_rebuild"] = timed(repo, "build", "--json")
        target = repo / "catalog/models/g000003.yaml"
        target.write_text(target.read_text().replace("Generated model 3 ", "Generated model three "))
        out["one_change_rebuild"] = timed(repo, "build", "--json")
        git(repo, "checkout", "-q", "--", ".")
        out["restored_rebuild"] = timed(repo, "build", "--json")
        files, size = folder_size(repo / "site")
        out["site_files"], out["site_mb"] = files, round(size / 1e6, 1)
        out["search_query_bytes"] = query_bytes(repo / "site")
        add_one_model(repo, n)
        out["pr_check"] = timed(repo, "check", "--base", "main", "--no-bench", "--format", "json")
        out["pr_check_again"] = timed(repo, "check", "--base", "main", "--no-bench", "--format", "json")
        out["fingerprint"] = [fingerprint_throughput(repo, w) for w in sorted({1, workers})]
        return out
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def show(r: dict[str, Any]) -> None:
    print(f"\n== {r['models']} generated models (+ the demo catalog), generated in {r['generate_s']} s ==")
    for name in ("cold_build", "noop_rebuild", "one_change_rebuild", "restored_rebuild"):
        run = r[name]
        j = run["json"] or {}
        print(
            f"  {name:20} {run['s']:7.2f} s  cpu {run['cpu_s']} s  load {run['load']}  "
            f"peak {run['rss_mb']} MB  pages {j.get('pages')} ({j.get('rendered')} rendered, {j.get('reused')} reused)  "
            f"compile {j.get('compile_s')} s  site {j.get('seconds')} s"
        )
    for name in ("pr_check", "pr_check_again"):
        run = r[name]
        stages = (run["json"] or {}).get("stages", {})
        print(
            f"  {name:20} {run['s']:7.2f} s  cpu {run['cpu_s']} s  load {run['load']}  "
            f"peak {run['rss_mb']} MB  exit {run['rc']}"
        )
        for stage, status in stages.items():
            print(f"      {stage}: {status}")
    print(f"  site: {r['site_files']} files, {r['site_mb']} MB")
    q = r["search_query_bytes"]
    if isinstance(q, list):
        for row in q:
            print(f"  search {row['query']!r} {row['filters'] or ''}: {row['listed']} listed ({row['status']}), "
                  f"{row['bytes'] / 1024:.0f} KiB in {row['requests']} requests")  # fmt: skip
    else:
        print(f"  search bytes: {q}")
    for fp in r["fingerprint"]:
        print(
            f"  fingerprinting (local executor, {fp['workers']} workers): {fp['files']} files in {fp['s']} s, "
            f"{fp['files_per_s']} files/s, {fp['mb_per_s']} MB/s, this process's CPU {fp['parent_cpu_s']} s, "
            f"load {fp['load']} ({fp['made']} made, {fp['failed']} failed)"
        )


def growth(results: list[dict[str, Any]]) -> None:
    for small, big in itertools.pairwise(results):
        ratio = big["models"] / small["models"]
        print(f"\n== growth {small['models']} -> {big['models']} (x{ratio:g}; 1.00 is linear) ==")
        for name in ("cold_build", "noop_rebuild", "one_change_rebuild", "pr_check"):
            a, b = small[name]["s"], big[name]["s"]
            print(f"  {name:20} {a:7.2f} s -> {b:7.2f} s: {b / a / ratio:.2f} of linear")
        a, b = small["cold_build"]["rss_mb"], big["cold_build"]["rss_mb"]
        print(f"  {'peak memory (cold)':20} {a} MB -> {b} MB: {b / a / ratio:.2f} of linear")
        a, b = small["site_mb"], big["site_mb"]
        print(f"  {'site size':20} {a} MB -> {b} MB: {b / a / ratio:.2f} of linear")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--keep", type=Path, help="build the lakes in this folder and keep them")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: time a lake kept there before instead of generating it",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="with --keep: generate the lakes, time nothing"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="fingerprinting workers")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--query-bytes", type=Path, metavar="SITE", help="only measure the queries on a built site"
    )
    args = parser.parse_args()
    if args.query_bytes:
        print(json.dumps(query_bytes(args.query_bytes), indent=2, ensure_ascii=False))
        return
    if (args.reuse or args.generate_only) and not args.keep:
        parser.error("--reuse and --generate-only need --keep")
    if args.generate_only:
        for n in args.sizes:
            repo = args.keep / f"lake-{n}"
            shutil.rmtree(repo, ignore_errors=True)
            repo.mkdir(parents=True)
            start = time.perf_counter()
            generate(repo, n)
            print(f"{repo}: {n} models generated in {time.perf_counter() - start:.1f} s")
        return
    results = []
    for n in args.sizes:
        r = one(n, args.keep, args.workers, reuse=args.reuse)
        show(r)
        results.append(r)
        sys.stdout.flush()
    growth(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
