"""Benchmark runner speed on the demo lake: a cold run, a warm re-run, and cuda when there is a GPU.

    .venv/bin/python benchmarks/bench.py [--workers N]

The demo lake (``catalog/`` and its code folder) is copied into a temporary
folder without ``catalog/results/`` or a local cache, then ``lakegen bench``
(the real CLI) runs there: cold (every evaluation executes), warm (the same
command again: nothing may execute), and warm from the committed results files
only (a fresh clone: no local cache). With a CUDA GPU the cold run is repeated
with ``--device cuda`` on a fresh copy, and the CPU/GPU ratio printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LAKEGEN = Path(sys.executable).with_name("lakegen")


def fresh_copy(parent: Path, name: str) -> Path:
    root = parent / name
    shutil.copytree(
        REPO / "catalog", root / "catalog", ignore=shutil.ignore_patterns("results", "__pycache__")
    )
    return root


def bench(root: Path, *args: str) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(root), "bench", "--json", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"lakegen bench failed ({done.returncode}):\n{done.stderr}")
    return wall, json.loads(done.stdout)


def line(label: str, wall: float, data: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n)
    print(
        f"{label:<34} {wall:7.2f} s wall  executed {data['executed']:>3}  cached {data['cached']:>3}  ({counts})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args()
    workers = ["--workers", str(args.workers)]
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = fresh_copy(Path(tmp), "cpu")
        cold_wall, cold = bench(root, "--device", "cpu", *workers)
        line(f"cold, cpu, {args.workers} worker(s)", cold_wall, cold)
        warm_wall, warm = bench(root, "--device", "cpu", *workers)
        line("warm re-run (local cache)", warm_wall, warm)
        shutil.rmtree(root / ".lakegen")
        clone_wall, clone = bench(root, "--device", "cpu", *workers)
        line("warm, committed results only", clone_wall, clone)
        if warm["executed"] or clone["executed"]:
            print("FAIL: a warm run executed evaluations")
            return 1
        evaluations = sum(r["duration_s"] or 0 for r in cold["results"] if r.get("cache_key"))
        print(f"{'sum of per-evaluation times (cold)':<34} {evaluations:7.2f} s")
        if torch.cuda.is_available():
            gpu_wall, gpu = bench(fresh_copy(Path(tmp), "gpu"), "--device", "cuda", *workers)
            line(f"cold, cuda ({torch.cuda.get_device_name()})", gpu_wall, gpu)
            print(f"{'cpu / cuda cold wall time':<34} {cold_wall / gpu_wall:7.2f} x")
        else:
            print("cuda: no GPU on this machine; the cuda run was skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
