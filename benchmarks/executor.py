"""Fingerprinting throughput through the executors: local 1 and 2 workers, Ray 1 and 2 workers.

    .venv/bin/python benchmarks/executor.py [--files 200] [--mib 4] [--repeat 3] [--ray-address HOST:PORT]

Generates a lake's worth of safetensors files (``--files``, ``--mib`` each, distinct random
float32 matrices), reads them once so every run finds them in the page cache, then fingerprints
all of them with :func:`lakegen.lineage.fingerprinting.fingerprint_all` into a fresh cache per
run (nothing is cached between runs). Local 1 worker is the in-process path a build takes by
default. Ray runs against ``--ray-address``, else a head node of this machine started with
``--num-cpus 2`` (and stopped at the end). The time includes starting the workers (and, for Ray,
the actors), which is what a build pays; that start-up is also measured on its own, before each
run, as one empty job a worker through the same executor settings, and the speedups are given in
all and past it. Each configuration runs ``--repeat`` times, interleaved (a machine shared with
others changes speed from minute to minute); the best run counts. Prints files/s and MiB/s per
configuration, the speedups and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from lakegen.executor import make_executor
from lakegen.executor.local import Job, Outcome
from lakegen.fingerprint import Cache
from lakegen.lineage import fingerprinting


def generate(folder: Path, files: int, mib: float) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rows = max(8, int(mib * (1 << 20) / 4 / 4 / 512))  # four 512-wide float32 matrices per file
    paths = {}
    for i in range(files):
        tensors = {f"layer{j}.weight": rng.standard_normal((rows, 512), dtype=np.float32) for j in range(4)}
        path = folder / f"model-{i:04d}.safetensors"
        save_file(tensors, str(path))
        paths[f"model-{i:04d}@1.0.0"] = path
    for path in paths.values():
        path.read_bytes()  # into the page cache: the runs compare CPU, not the disk
    return paths


@dataclass
class Run:
    total_s: float
    startup_s: float  # starting the workers (and actors), measured just before the run


def startup(engine: str, workers: int) -> float:
    """Seconds until every worker (and actor) a fingerprint run of ``engine`` starts has answered
    an empty job: what :func:`fingerprint_all` pays before fingerprinting anything."""
    if engine == "local" and workers <= 1:
        return 0.0  # fingerprinted in this process: nothing to start
    executor = make_executor(engine, workers=workers, preload=[fingerprinting.__name__])  # type: ignore[arg-type]
    jobs = [Job(str(i), fingerprinting.TARGET, {"paths": [], "cache": None}) for i in range(workers)]
    done: list[Outcome] = []
    start = time.perf_counter()
    executor.run(jobs, done.append)
    took = time.perf_counter() - start
    assert all(o.ok for o in done) and len(done) == workers, done
    return took


def timed(paths: dict[str, Path], engine: str, workers: int, scratch: Path) -> Run:
    started = startup(engine, workers)
    cache = Cache(tempfile.mkdtemp(dir=scratch))
    start = time.perf_counter()
    fps, failed = fingerprinting.fingerprint_all(
        paths,
        cache,
        engine=engine,  # type: ignore[arg-type]
        workers=workers,
    )
    took = time.perf_counter() - start
    assert len(fps) == len(paths) and not failed, failed
    return Run(took, started)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def cluster(address: str | None) -> Iterator[str]:
    if address:
        yield address
        return
    from lakegen.executor.ray import head_node

    with head_node(cpus=2) as started:
        yield started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--mib", type=float, default=4.0, help="size of each file")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each configuration; the best counts")
    parser.add_argument("--ray-address", help="a running Ray cluster (default: start one here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "lake").mkdir()
        paths = generate(scratch / "lake", args.files, args.mib)
        total_mib = sum(p.stat().st_size for p in paths.values()) / (1 << 20)
        print(f"{len(paths)} safetensors files, {total_mib:.0f} MiB in all; load average {load()}")
        runs: dict[str, list[Run]] = {}
        with cluster(args.ray_address) as address:
            import ray

            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            timed(dict(list(paths.items())[:4]), "ray", 2, scratch)  # Ray's own first-connection costs
            for _ in range(args.repeat):
                for engine in ("local", "ray"):
                    for workers in (1, 2):
                        runs.setdefault(f"{engine} {workers}", []).append(
                            timed(paths, engine, workers, scratch)
                        )
            ray.shutdown()
        best = {name: min(r.total_s for r in done) for name, done in runs.items()}
        # the work past start-up: the best run less the quickest start-up
        work = {name: best[name] - min(r.startup_s for r in done) for name, done in runs.items()}
        for name, done in runs.items():
            every = ", ".join(f"{r.total_s:.2f}" for r in done)
            starts = ", ".join(f"{r.startup_s:.2f}" for r in done)
            print(
                f"{name} worker(s): {best[name]:6.2f} s  {len(paths) / best[name]:6.1f} files/s  "
                f"{total_mib / best[name]:6.1f} MiB/s  (runs: {every} s; start-up: {starts} s)"
            )
        for a, b in (("local 1", "local 2"), ("ray 1", "ray 2"), ("local 1", "ray 2")):
            print(
                f"speedup {b} vs {a}: {best[a] / best[b]:.2f}x in all, {work[a] / work[b]:.2f}x past start-up"
            )
        print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
