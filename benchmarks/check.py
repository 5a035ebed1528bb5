"""How long ``lakegen check --base`` takes on a pull request that adds one model.

    .venv/bin/python benchmarks/check.py [--entries 10000] [--keep DIR] [--skip-demo]

Two lakes, each in a fresh git repository with ``main`` holding the lake and a
branch ``pr`` adding one model (manifest and artifact), checked through the real
CLI (``lakegen check --base main``):

1. the demo lake (a copy of this repository's ``catalog/``): the new model is a
   fine-tune of ``digits-mlp-ft-small`` (its weights nudged) with claimed evaluations, so the bench
   stage re-runs them. Timed cold (empty ``.lakegen/cache``) and warm.
2. a generated lake of ``--entries`` manifests (1% datasets, the rest models in
   lineage chains up to 8 deep, with real tiny safetensors artifacts, licences
   that propagate, owners from owners.yaml). Timed warm: one run fills the
   caches, the next is measured. Its exit status is 1, as it should be: every
   generated model's weights are independent random draws, so attribution
   finds no support for the new model's declared parent.

Prints one line per figure.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import save

ROOT = Path(__file__).resolve().parents[1]
LAKEGEN = Path(sys.executable).with_name("lakegen")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def init(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Bench")
    git(repo, "config", "user.email", "bench@example.org")
    git(repo, "config", "commit.gpgsign", "false")


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def timed_check(repo: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(repo), "check", "--base", "main", "--format", "markdown"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    stages = [
        line
        for line in done.stdout.splitlines()
        if line.startswith("| ") and ("ran" in line or "not run" in line)
    ]
    return elapsed, done.returncode, "\n".join(stages) + (done.stderr[-2000:] if done.returncode > 1 else "")


def demo(work: Path) -> None:
    repo = work / "demo"
    shutil.copytree(ROOT / "catalog", repo / "catalog", ignore=shutil.ignore_patterns("__pycache__"))
    init(repo)
    commit_all(repo, "Demo lake")
    git(repo, "checkout", "-q", "-b", "pr")
    src = repo / "catalog/models/digits-mlp-ft-small.yaml"
    data = yaml.safe_load(src.read_text())
    data["id"], data["name"] = "digits-mlp-ft-bench", "Digits MLP fine-tuned (benchmark copy)"
    # Its weights are ft-small's, nudged: declare that, or attribution rightly fails the PR.
    data["base_models"] = [{"id": "digits-mlp-ft-small", "version": "1.0.0", "relation": "finetune"}]
    # new weights (the fine-tune nudged by 1e-4 of its scale), so the evaluations really run
    from safetensors.numpy import load_file

    artifact = data["versions"][0]["artifact"]
    tensors = load_file(src.parent / artifact["uri"])
    rng = np.random.default_rng(0)
    nudged = {
        k: (v + 1e-4 * v.std() * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in tensors.items()
    }
    blob = save(nudged)
    artifact["uri"] = "../artifacts/models/digits-mlp-ft-bench-1.0.0.safetensors"
    artifact["sha256"], artifact["size"] = hashlib.sha256(blob).hexdigest(), len(blob)
    (src.parent / artifact["uri"]).write_bytes(blob)
    (repo / "catalog/models/digits-mlp-ft-bench.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    commit_all(repo, "Add digits-mlp-ft-bench")
    for label in ("cold", "warm"):
        elapsed, rc, stages = timed_check(repo)
        print(
            f"demo lake ({len(list((repo / 'catalog').glob('*/*.yaml')))} manifests), PR adding one model, "
            f"{label} caches: {elapsed:.2f} s (exit {rc})"
        )
        print("  " + stages.replace("\n", "\n  "))


def tensor_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return save({"layer.weight": rng.standard_normal((8, 8)).astype(np.float32)})


def model_manifest(i: int, parent: int | None, licence: str, dataset: int, data: bytes) -> dict:
    return {
        "kind": "model",
        "id": f"m{i:05d}",
        "name": f"Model {i}",
        "description": "A generated model.",
        "owners": ["@ada" if i % 2 else "acme/vision"],
        "license": licence,
        "task": "image-classification",
        "framework": "pytorch",
        "architecture": {"family": "bench"},
        "versions": [
            {
                "version": "1.0.0",
                "released": "2026-01-01",
                "artifact": {
                    "uri": f"../artifacts/m{i:05d}.safetensors",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "format": "safetensors",
                },
            }
        ],
        "base_models": [] if parent is None else [{"id": f"m{parent:05d}", "relation": "finetune"}],
        "datasets": [{"id": f"d{dataset:04d}", "role": "train"}],
        "intended_use": "Benchmarks.",
        "limitations": "None known.",
        "risk": "minimal",
    }


def licence_of(dataset: int) -> str:
    """Every tenth dataset is non-commercial, and so is everything trained on it."""
    return "CC-BY-NC-4.0" if dataset % 10 == 0 else "CC-BY-4.0"


def write_model(repo: Path, i: int, parent: int | None, licence: str, dataset: int) -> None:
    data = tensor_bytes(i)
    (repo / f"catalog/artifacts/m{i:05d}.safetensors").write_bytes(data)
    manifest = model_manifest(i, parent, licence, dataset, data)
    (repo / f"catalog/models/m{i:05d}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def generated(work: Path, entries: int) -> None:
    repo = work / "big"
    for folder in ("models", "datasets", "artifacts"):
        (repo / "catalog" / folder).mkdir(parents=True)
    (repo / "catalog/owners.yaml").write_text(
        "people: [{handle: '@ada'}]\nteams: [{id: acme/vision, members: ['@ada']}]\n"
    )
    (repo / "catalog/policies.yaml").write_text(
        "rules:\n  documentation: off  # generated models claim no evaluations\n"
    )
    n_datasets = max(1, entries // 100)
    for d in range(n_datasets):
        licence = licence_of(d)
        manifest = {
            "kind": "dataset",
            "id": f"d{d:04d}",
            "name": f"Dataset {d}",
            "description": "Generated.",
            "owners": ["@ada"],
            "license": licence,
            "task": "image-classification",
            "source": {"name": "Generated"},
            "personal_data": False,
        }
        (repo / f"catalog/datasets/d{d:04d}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    for i in range(entries - n_datasets):
        chain = i // 8  # chains of 8: a root and 7 successive fine-tunes, all trained on one dataset
        dataset = chain % n_datasets
        write_model(repo, i, None if i % 8 == 0 else i - 1, licence_of(dataset), dataset)
    init(repo)
    commit_all(repo, f"Generated lake of {entries} entries")
    git(repo, "checkout", "-q", "-b", "pr")
    write_model(repo, entries - n_datasets, 1, licence_of(0), 0)
    commit_all(repo, "Add one model")
    count = len(list((repo / "catalog").glob("*/*.yaml")))
    first, rc, _ = timed_check(repo)
    print(
        f"generated lake ({count} manifests), PR adding one model, first run (filling caches): {first:.2f} s (exit {rc})"
    )
    elapsed, rc, stages = timed_check(repo)
    print(
        f"generated lake ({count} manifests), PR adding one model, warm caches: {elapsed:.2f} s (exit {rc})"
    )
    print("  " + stages.replace("\n", "\n  "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--keep", help="build the lakes in this folder and keep them")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lakegen-check-bench-"))
    try:
        if not args.skip_demo:
            demo(work)
        generated(work, args.entries)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
