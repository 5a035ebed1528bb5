"""Benchmarks: claims re-run in worker processes, compared, cached by content; the CLI through its entry point.

One fixture lake (built once per module in a temporary folder) holds real tiny
safetensors models, npz datasets and a code folder, with a correct claim of
each built-in metric, a deliberately wrong claim, a missing dataset file, an
evaluator that raises, one that kills its worker, one that hangs past the
timeout and one that tries to exhaust memory. The cold run happens once; the
tests read its report, then re-run warm.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import artifact, line_of, run_lakegen, write_tree
from safetensors.torch import save_file

from lakegen.bench import metrics
from lakegen.bench.plan import Planner
from lakegen.bench.results import RESULTS_DIR
from lakegen.bench.run import BenchReport, Options, run_bench
from lakegen.catalog.loader import load_catalog
from lakegen.compile import compile_lake

TIMEOUT_S = 4.0
NETS = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.fc(x)


def build(in_features, out_features):
    return Net(in_features, out_features)
"""
EVALS = """\
import os
import time

import numpy as np


def crash(model, data, config):
    raise RuntimeError("evaluator crashed on purpose")


def die(model, data, config):
    os._exit(7)


def hang(model, data, config):
    time.sleep(3600)


def hog(model, data, config):
    import resource

    try:  # a soft limit would be lifted like this
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    return float(np.ones(4 << 30, dtype=np.uint8).sum())  # touches every page


def mean_output(model, data, config):
    return float(model(data["x"]).mean())
"""
CODE = """\
kind: code
id: fixture-code
name: Fixture networks
description: Builds the fixture networks and holds odd evaluators.
owners: ['@ada']
license: MIT
path: src
entrypoints:
  build: fixturenets.nets:build
  crash: fixturenets.evals:crash
  die: fixturenets.evals:die
  hang: fixturenets.evals:hang
  hog: fixturenets.evals:hog
  mean-output: fixturenets.evals:mean_output
"""


def dataset_yaml(dataset_id: str, data: bytes, uri: str) -> str:
    return f"""\
kind: dataset
id: {dataset_id}
name: {dataset_id}
description: Fixture data.
owners: ['@ada']
license: CC-BY-4.0
task: classification
source: {{name: Made up}}
personal_data: false
versions:
  - {{version: 1.0.0, released: 2026-01-01, artifact: {artifact(data, uri, "npz")}}}
splits: [{{name: train, rows: 4}}, {{name: test, rows: 40}}]
"""


def model_yaml(
    model_id: str, weights: bytes, uri: str, evaluations: str, out: int = 3, bases: str = "[]"
) -> str:
    return f"""\
kind: model
id: {model_id}
name: {model_id}
description: Fixture model.
owners: ['@ada']
license: MIT
task: classification
framework: pytorch
architecture:
  family: fixture-linear
  code: fixture-code
  entrypoint: fixturenets.nets:build
  config: {{in_features: 4, out_features: {out}}}
versions:
  - {{version: 1.0.0, released: 2026-01-02, artifact: {artifact(weights, uri)}}}
base_models: {bases}
code: [{{id: fixture-code, role: eval}}]
evaluations:
{evaluations}
risk: minimal
"""


def claim(dataset: str, metric: str, value: float, config: str = "", tolerance: float = 0.001) -> str:
    extra = f", config: {{{config}}}" if config else ""
    return (
        f"  - {{dataset: {dataset}, split: test, metric: {metric}, value: {value:.6f}, "
        f"tolerance: {tolerance:g}{extra}}}\n"
    )


def npz(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def safetensors(tensors: dict[str, np.ndarray], path: Path) -> bytes:
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, str(path))
    return path.read_bytes()


def ranks(v: np.ndarray) -> np.ndarray:
    out = np.empty(len(v))
    out[np.argsort(v)] = np.arange(len(v))
    return out


def build_lake(root: Path) -> dict[str, float]:
    """Write the fixture lake; returns the true value of each correct claim, by model/metric."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 3))).argmax(axis=1).astype(np.int64)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    scale = np.abs(w).max(axis=1) / 127
    q = np.round(w / scale[:, None]).astype(np.int8)
    lora_a, lora_b = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    centres = rng.normal(scale=4, size=(3, 4))
    labels = np.repeat(np.arange(3), 10)
    points = (centres[labels] + rng.normal(size=(30, 4))).astype(np.float32)
    xa, xb = rng.normal(size=(25, 4)).astype(np.float32), rng.normal(size=(25, 4)).astype(np.float32)
    sts_y = (xa * xb).sum(axis=1) + rng.normal(scale=0.5, size=25)
    emb_w, emb_b = rng.normal(size=(2, 4)).astype(np.float32), np.zeros(2, dtype=np.float32)

    def logits(weight: np.ndarray) -> np.ndarray:
        return x @ weight.T + b

    def embed(inputs: np.ndarray) -> np.ndarray:
        return inputs @ emb_w.T + emb_b

    def cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)

    acc = float(np.mean(logits(w).argmax(1) == y))
    top2 = float(np.mean([y[i] in np.argsort(-logits(w)[i])[:2] for i in range(40)]))
    pred = logits(w).argmax(1)
    f1 = float(
        np.mean([2 * np.sum((pred == c) & (y == c)) / (np.sum(pred == c) + np.sum(y == c)) for c in range(3)])
    )
    e = embed(points)
    recall = 0.0
    for i in range(30):
        sims = [cosine(e[i : i + 1], e[j : j + 1])[0] if j != i else -np.inf for j in range(30)]
        recall += labels[int(np.argmax(sims))] == labels[i]
    sims_ab = cosine(embed(xa), embed(xb))
    ra, rb = ranks(sims_ab) - 12, ranks(sts_y) - 12
    spearman = float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))
    truth = {
        "good/accuracy": acc,
        "good/top-k-accuracy": top2,
        "good/macro-f1": f1,
        "int8/accuracy": float(np.mean(logits(q * scale[:, None].astype(np.float32)).argmax(1) == y)),
        "lora/accuracy": float(np.mean(logits(w + 2.0 * lora_b @ lora_a).argmax(1) == y)),
        "embedder/recall-at-k": recall / 30,
        "embedder/spearman": spearman,
        "regressor/mse": float(np.mean((logits(w)[:, 0] - y) ** 2)),
        "regressor/mae": float(np.mean(np.abs(logits(w)[:, 0] - y))),
        "sharded/accuracy": acc,
    }
    art = root / "catalog" / "artifacts"
    (art / "lora-1.0.0").mkdir(parents=True)
    files: dict[str, str | bytes] = {
        "catalog/code/fixture-code.yaml": CODE,
        "src/fixturenets/__init__.py": "",
        "src/fixturenets/nets.py": NETS,
        "src/fixturenets/evals.py": EVALS,
    }
    data = {
        "toy": npz(x_train=x[:4], y_train=y[:4], x_test=x, y_test=y),
        "clusters": npz(x_test=points, y_test=labels),
        "sts": npz(xa_test=xa, xb_test=xb, y_test=sts_y),
        "ghost": npz(x_test=x, y_test=y),
    }
    for name, blob in data.items():
        files[f"catalog/datasets/{name}.yaml"] = dataset_yaml(name, blob, f"../artifacts/{name}.npz")
        if name != "ghost":  # declared, but its file is not in the lake
            files[f"catalog/artifacts/{name}.npz"] = blob
    weights = {
        "good": safetensors({"fc.weight": w, "fc.bias": b}, art / "good.safetensors"),
        "int8": safetensors(
            {"fc.weight": q, "fc.weight_scale": scale.astype(np.float32), "fc.bias": b},
            art / "int8.safetensors",
        ),
        "lora": safetensors(
            {"base_model.model.fc.lora_A.weight": lora_a, "base_model.model.fc.lora_B.weight": lora_b},
            art / "lora-1.0.0" / "adapter_model.safetensors",
        ),
        "embedder": safetensors({"fc.weight": emb_w, "fc.bias": emb_b}, art / "embedder.safetensors"),
        "regressor": safetensors({"fc.weight": w[:1], "fc.bias": b[:1]}, art / "regressor.safetensors"),
    }
    # the good model again, as a sharded checkpoint: the manifest pins the index and each shard
    sharded = art / "sharded-1.0.0"
    sharded.mkdir()
    weight_map = {
        "fc.weight": "model-00001-of-00002.safetensors",
        "fc.bias": "model-00002-of-00002.safetensors",
    }
    shards = {
        name: safetensors({key: {"fc.weight": w, "fc.bias": b}[key]}, sharded / name)
        for key, name in weight_map.items()
    }
    weights["sharded"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    (sharded / "model.safetensors.index.json").write_bytes(weights["sharded"])
    pinned = ", ".join(
        f"{{path: {name}, sha256: {hashlib.sha256(blob).hexdigest()}, size: {len(blob)}}}"
        for name, blob in shards.items()
    )
    (art / "lora-1.0.0" / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4})
    )
    uri = {m: f"../artifacts/{m}.safetensors" for m in weights}
    uri["lora"] = "../artifacts/lora-1.0.0/adapter_model.safetensors"
    uri["sharded"] = "../artifacts/sharded-1.0.0/model.safetensors.index.json"
    models = {
        "good": (
            "good",
            claim("toy", "accuracy", acc)
            + claim("toy", "top-k-accuracy", top2, "k: 2")
            + claim("toy", "macro-f1", f1)
            + claim("toy", "mean-output", 0.0, tolerance=100),
        ),
        "wrong": ("good", claim("toy", "accuracy", 0.99)),
        "no-data": ("good", claim("ghost", "accuracy", 0.5)),
        "crashy": ("good", claim("toy", "crash", 0.5)),
        "dies": ("good", claim("toy", "die", 0.5)),
        "hangs": ("good", claim("toy", "hang", 0.5)),
        "hog": ("good", claim("toy", "hog", 0.5)),
        "int8": ("int8", claim("toy", "accuracy", truth["int8/accuracy"])),
        "lora": ("lora", claim("toy", "accuracy", truth["lora/accuracy"])),
        "embedder": (
            "embedder",
            claim("clusters", "recall-at-k", truth["embedder/recall-at-k"], "k: 1")
            + claim("sts", "spearman", spearman),
        ),
        "regressor": (
            "regressor",
            claim("toy", "mse", truth["regressor/mse"]) + claim("toy", "mae", truth["regressor/mae"]),
        ),
        "sharded": ("sharded", claim("toy", "accuracy", acc)),
    }
    for model_id, (weights_id, evaluations) in models.items():
        out = {"embedder": 2, "regressor": 1}.get(model_id, 3)
        bases = "[{id: good, relation: adapter}]" if model_id == "lora" else "[]"
        text = model_yaml(
            model_id, weights[weights_id], uri[weights_id], evaluations.rstrip("\n"), out, bases
        )
        if model_id == "sharded":
            text = text.replace("format: safetensors}", f"format: safetensors, files: [{pinned}]}}")
        files[f"catalog/models/{model_id}.yaml"] = text
    write_tree(root, files)
    return truth


def options(root: Path, **kwargs: Any) -> Options:
    settings: dict[str, Any] = {"workers": 2, "timeout_s": TIMEOUT_S, "memory_limit_bytes": 3 << 30}
    settings["cache_dir"] = root / ".lakegen" / "bench"
    return Options(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], BenchReport]:
    root = tmp_path_factory.mktemp("bench") / "lake"
    truth = build_lake(root)
    seen: list[tuple[int, int]] = []
    report = run_bench(root, None, options(root), progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, report.executed) and seen[-1] == (report.executed, report.executed)
    return root, truth, report


def by(report: BenchReport, model: str, metric: str | None = None) -> Any:
    return next(r for r in report.results if r.model == model and (metric is None or r.metric == metric))


def test_correct_claims_verify_with_the_reproduced_number(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    _, truth, report = cold
    for key, value in truth.items():
        model, metric = key.split("/")
        row = by(report, model, metric)
        assert row.status == "verified", row
        assert row.reproduced == pytest.approx(value, abs=1e-5)
        assert row.ran_at and row.duration_s is not None and row.device.startswith("cpu")
        assert row.environment["torch"] == torch.__version__ and row.cache_key
    assert by(report, "good", "mean-output").status == "verified"  # a custom metric from the code entry


def test_a_wrong_claim_is_contradicted_with_both_numbers(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    _, truth, report = cold
    row = by(report, "wrong")
    assert row.status == "contradicted"
    assert row.reproduced == pytest.approx(truth["good/accuracy"])
    assert "claimed 0.99" in row.detail and f"reproduced {truth['good/accuracy']:.6g}" in row.detail


def test_missing_data_is_unreproducible_and_says_which(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    row = by(cold[2], "no-data")
    assert row.status == "unreproducible"
    assert row.detail == "dataset ghost 1.0.0: file ../artifacts/ghost.npz is missing"
    assert row.reproduced is None and row.cache_key is None


def test_a_crashing_evaluator_fails_and_keeps_the_error(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    row = by(cold[2], "crashy")
    assert row.status == "failed"
    assert row.detail.startswith("the evaluation raised: RuntimeError: evaluator crashed on purpose")
    assert "evals.py" in row.detail  # the traceback is kept
    died = by(cold[2], "dies")
    assert died.status == "failed" and died.detail.startswith(
        "the worker crashed: the worker exited with status 7"
    )


def test_a_hanging_evaluator_is_stopped_by_the_timeout(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    row = by(cold[2], "hangs")
    assert row.status == "failed"
    assert row.detail == f"timed out: ran past the {TIMEOUT_S:g} s timeout and was stopped"
    assert TIMEOUT_S <= row.duration_s < TIMEOUT_S + 5


def test_a_memory_hog_fails_alone_under_the_memory_cap(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    # The hard address-space limit, which the job cannot lift, fails the allocation at once (the
    # sandbox's memory cgroup, for memory touched bit by bit, is tested in test_sandbox.py).
    row = by(cold[2], "hog")
    assert row.status == "failed" and "MemoryError" in row.detail, row.detail


def test_counts(cold: tuple[Path, dict[str, float], BenchReport]) -> None:
    report = cold[2]
    assert report.counts() == {"verified": 11, "contradicted": 1, "unreproducible": 1, "failed": 4}
    assert report.executed == 15 and report.cached == 0  # good and wrong share one run (same key)
    assert not report.ok


def test_warm_rerun_runs_nothing_and_gives_the_same_results(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    root, _, report = cold
    warm = run_bench(root, None, options(root))
    assert warm.executed == 0 and warm.cached == 16
    assert [r.model_dump() for r in warm.results] == [r.model_dump() for r in report.results]
    committed = run_bench(root, None, options(root, cache_dir=root / "empty-cache"))
    assert committed.executed == 0, "the committed results files alone make a warm run"


def test_results_files_are_committed_per_model(cold: tuple[Path, dict[str, float], BenchReport]) -> None:
    root = cold[0]
    files = sorted(p.name for p in (root / RESULTS_DIR).glob("*.json"))
    assert files == sorted(
        f"{m}.json"
        for m in (
            "good",
            "wrong",
            "no-data",
            "crashy",
            "dies",
            "hangs",
            "hog",
            "int8",
            "lora",
            "embedder",
            "regressor",
            "sharded",
        )
    )
    data = json.loads((root / RESULTS_DIR / "good.json").read_text())
    assert data["model"] == "good" and [r["metric"] for r in data["results"]] == [
        "accuracy",
        "macro-f1",
        "mean-output",
        "top-k-accuracy",
    ]


def test_a_changed_claim_is_judged_again_without_a_run(
    cold: tuple[Path, dict[str, float], BenchReport], tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    shutil.copytree(cold[0], root)
    manifest = root / "catalog" / "models" / "wrong.yaml"
    manifest.write_text(
        manifest.read_text().replace("value: 0.990000", f"value: {cold[1]['good/accuracy']:.6f}")
    )
    again = run_bench(root, ["wrong"], options(root))
    assert again.executed == 0 and by(again, "wrong").status == "verified"
    before = {(p.model.id, p.index): p.key for p in Planner(load_catalog(root)).plans()}
    (root / "src" / "fixturenets" / "evals.py").write_text(EVALS + "\n# changed\n")
    after = {(p.model.id, p.index): p.key for p in Planner(load_catalog(root)).plans()}
    assert all(after[k] != before[k] for k in before if before[k]), "the code folder's hash is in the key"


def test_compile_lake_reads_results_and_points_at_the_claim(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    root = cold[0]
    index = compile_lake(root)
    assert len(index.results) == 17 and index.stages["bench"].startswith("ran (from cache: 11 verified")
    finding = next(f for f in index.findings if f.rule == "claim-contradicted")
    text = (root / "catalog" / "models" / "wrong.yaml").read_text()
    assert (finding.path, finding.line, finding.field) == (
        "catalog/models/wrong.yaml",
        line_of(text, "value: 0.99"),
        "evaluations[0].value",
    )
    unreproducible = next(f for f in index.findings if f.rule == "unreproducible")
    assert unreproducible.entry == "no-data" and unreproducible.field == "evaluations[0].dataset"


def test_compile_lake_without_results_runs_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    build_lake(root)
    index = compile_lake(root)
    assert [r.model for r in index.results] == ["no-data"]  # only what needs no run
    assert sum(f.rule == "not-run" for f in index.findings) == 16
    # No benchmark result was written anywhere (the attribution stage may cache fingerprints).
    assert not (root / ".lakegen" / "bench").exists() and not (root / RESULTS_DIR).exists()


def test_cli_bench_json_strict_and_ids(cold: tuple[Path, dict[str, float], BenchReport]) -> None:
    root = cold[0]
    result = run_lakegen("--root", str(root), "bench", "--json", "--strict")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["executed"] == 0 and data["counts"]["contradicted"] == 1 and result.stderr == ""
    forced = run_lakegen(
        "--root", str(root), "bench", "good", "int8", "--force", "--strict", "--workers", "1"
    )
    assert forced.returncode == 0, forced.stderr
    assert "5 evaluations: 5 verified" in forced.stderr and "5 run, 0 from cache" in forced.stderr
    rows = {r.metric: r for r in run_bench(root, ["good"], options(root)).results}
    assert rows["accuracy"].reproduced == by(cold[2], "good", "accuracy").reproduced  # deterministic
    unknown = run_lakegen("--root", str(root), "bench", "godo")
    assert unknown.returncode == 1 and "no model 'godo' in the lake (did you mean 'good'?)" in unknown.stderr


def test_cli_device_cuda_without_gpu_is_a_clear_error(
    cold: tuple[Path, dict[str, float], BenchReport],
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run_lakegen("--root", str(cold[0]), "bench", "--device", "cuda")
    assert result.returncode == 1
    assert "--device cuda" in result.stderr and "sees no CUDA GPU" in result.stderr


class FakeModel:
    module = None
    device = "cpu"

    def __init__(self, outputs: np.ndarray):
        self.outputs = outputs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.outputs


def test_builtin_metrics_on_known_numbers() -> None:
    out = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    data = {"x": np.zeros((4, 1)), "y": np.array([1, 1, 2, 2])}

    def score(name: str, **config: Any) -> float:
        return metrics.REGISTRY.get(name).metric(FakeModel(out), data, config)

    assert score("accuracy") == 0.5
    assert score("top-k-accuracy", k=2) == 0.75
    # class 0: no hits (F1 0); class 1: P=1, R=.5 -> 2/3; class 2: P=1, R=.5 -> 2/3
    assert score("macro-f1") == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)
    assert metrics.spearman(np.array([1, 2, 2, 3]), np.array([1, 3, 2, 4])) == pytest.approx(0.9486833)
    emb = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    assert metrics.recall_at_k(emb, np.array([0, 0, 1, 1]), 1) == 1.0
    assert metrics.recall_at_k(emb, np.array([0, 1, 0, 1]), 1) == 0.0
    with pytest.raises(ValueError, match="top-k accuracy needs k"):
        score("top-k-accuracy", k=9)
    assert {"accuracy", "top-k-accuracy", "macro-f1", "mse", "mae", "recall-at-k", "spearman"} <= set(
        metrics.REGISTRY.names()
    )


def test_a_sharded_checkpoint_is_benchmarked_and_its_shards_are_checked(
    cold: tuple[Path, dict[str, float], BenchReport], tmp_path: Path
) -> None:
    root, truth, report = cold
    row = by(report, "sharded")
    assert row.status == "verified" and row.reproduced == pytest.approx(truth["good/accuracy"])
    assert row.cache_key != by(report, "good", "accuracy").cache_key  # other files, another run
    # unvalidated (the build's --no-verify), the planner hashes the shards too, not only the index
    copy = tmp_path / "lake"
    shutil.copytree(root, copy)
    shard = copy / "catalog" / "artifacts" / "sharded-1.0.0" / "model-00002-of-00002.safetensors"
    blob = bytearray(shard.read_bytes())
    blob[-1] ^= 1
    shard.write_bytes(bytes(blob))
    plans = Planner(load_catalog(copy, verify_artifacts=False)).plans(["sharded"])
    assert [p.key for p in plans] == [None]
    assert plans[0].missing.startswith(
        "weights of sharded 1.0.0: ../artifacts/sharded-1.0.0/model-00002-of-00002.safetensors: sha256 mismatch"
    )
    assert Planner(load_catalog(root, verify_artifacts=False)).plans(["sharded"])[0].key == row.cache_key
