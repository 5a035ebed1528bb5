"""Fingerprinting throughput through the executors: local 1 and 2 workers, Ray 1 and 2 workers.

    .venv/bin/python benchmarks/executor.py [--files 200] [--mib 4] [--repeat 3] [--ray-address HOST:PORT]

Generates a lake's worth of safetensors files (``--files``, ``--mib`` each, distinct random
float32 matrices), reads them once so every run finds them in the page cache, then fingerprints
all of them with :func:`lakegen.lineage.fingerprinting.fingerprint_all` into a fresh cache per
run (nothing is cached between runs). Local 1 worker is the in-process path a build takes by
default. Ray runs against ``--ray-address``, else a head node of this machine started with
``--num-cpus 2`` (and stopped at the end). The time includes starting the workers (and, for Ray,
the actors), which is what a build pays. Each configuration runs ``--repeat`` times, interleaved
(a machine shared with others changes speed from minute to minute); the best run counts. Prints
files/s and MiB/s per configuration and the speedups.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from lakegen.fingerprint import Cache
from lakegen.lineage.fingerprinting import fingerprint_all


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
    first_s: float  # until the first fingerprint came back: starting the workers (and actors)

    @property
    def steady_s(self) -> float:
        return self.total_s - self.first_s


def timed(paths: dict[str, Path], engine: str, workers: int, scratch: Path) -> Run:
    cache = Cache(tempfile.mkdtemp(dir=scratch))
    marks: list[float] = []
    start = time.perf_counter()
    fps, failed = fingerprint_all(
        paths,
        cache,
        lambda _: marks.append(time.perf_counter() - start),
        engine=engine,  # type: ignore[arg-type]
        workers=workers,
    )
    took = time.perf_counter() - start
    assert len(fps) == len(paths) and not failed, failed
    return Run(took, marks[0])


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
        print(f"{len(paths)} safetensors files, {total_mib:.0f} MiB in all")
        runs: dict[str, list[Run]] = {}
        with cluster(args.ray_address) as address:
            import ray

            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            timed(dict(list(paths.items())[:4]), "ray", 2, scratch)  # Ray's own first-connection costs
            for _ in range(args.repeat):
                for engine in ("local", "ray"):
                    for workers in (1, 2):
                        runs.setdefault(f"{engine} {workers}", []).append(
                            timed(paths, engine, workers, scratch)
                        )
            ray.shutdown()
        best = {name: min(done, key=lambda r: r.total_s) for name, done in runs.items()}
        for name, run in best.items():
            every = ", ".join(f"{r.total_s:.2f}" for r in runs[name])
            print(
                f"{name} worker(s): {run.total_s:6.2f} s  {len(paths) / run.total_s:6.1f} files/s  "
                f"{total_mib / run.total_s:6.1f} MiB/s  (first print after {run.first_s:.2f} s; runs: {every} s)"
            )
        for a, b in (("local 1", "local 2"), ("ray 1", "ray 2"), ("local 1", "ray 2")):
            whole = best[a].total_s / best[b].total_s
            steady = best[a].steady_s / best[b].steady_s
            print(f"speedup {b} vs {a}: {whole:.2f}x in all, {steady:.2f}x after the first print")


if __name__ == "__main__":
    main()
