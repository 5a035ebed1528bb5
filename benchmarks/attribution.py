"""Weight-based attribution: accuracy on generated model trees, and speed.

    .venv/bin/python benchmarks/attribution.py [--seed 9001] [--seeds 9001,9002,9003]
                                               [--big-gib 2] [--cached 10000] [--keep DIR]

For each seed it trains model trees the way practitioners make them, writes
them as real files (safetensors, a PyTorch checkpoint, adapter folders), runs
``lakegen attribute DIR/* --json`` through the real CLI, and prints:

- directed-edge precision, recall and F1 (an edge counts when parent and child
  are right; its relation is scored separately);
- the F1 of lake mode, where release dates order the models (the creation
  order stands in for them; run in process on the same fingerprints);
- relation accuracy over the edges found;
- edges between models of independent roots (must be 0);
- ``lakegen fingerprint`` time over ``openssl dgst -sha256`` time on the same files;

and over all seeds: F1 pooled over every edge, the seeds under 0.95, and how
often fine-tune edges are right at confidence >= 0.9 and under 0.6.

``--big-gib N`` writes an N GiB safetensors file, then the same N GiB as a
sharded checkpoint (four shards and an index), and compares ``lakegen
fingerprint`` (wall time, peak RSS) with ``openssl dgst -sha256``.
``--cached N`` times comparing one new model against N cached fingerprints.

How the trees are made (see ``make_trees``): per architecture, several roots
trained from independent random initialisations on the same task; from each,
full fine-tunes on different data with different optimisers and
hyper-parameters (Adam, AdamW, SGD), grandchildren fine-tuned from those, LoRA
trained and merged into the weights, LoRA adapters kept as PEFT folders, int8
per-channel quantisation, magnitude pruning (30–70%), weight-averaged merges of
two or three siblings, and casts to float16/bfloat16.

Which relation is correct: a LoRA trained and merged into the weights counts as
``finetune`` (the result is a full model whose weights moved, like any
fine-tune); a dtype cast (float16, bfloat16) counts as ``quantized`` (a lossy
change of number format, like int8); a fine-tune saved in bfloat16 counts as
``finetune``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

LAKEGEN = Path(sys.executable).with_name("lakegen")
DEFAULT_SEED = 9001  # the tests use seeds below 1000

# ------------------------------------------------------------------------------ tasks


@dataclass
class Task:
    """A classification task: inputs and labels."""

    x: torch.Tensor
    y: torch.Tensor


def teacher_task(
    rng: np.random.Generator,
    teacher: list[np.ndarray],
    n: int,
    shift: float = 0.0,
    noise: float = 0.0,
    label_noise: float = 0.0,
    classes: int = 10,
) -> Task:
    d = teacher[0].shape[1]
    x = rng.normal(0.0, 1.0, (n, d)) + shift * rng.normal(0.0, 1.0, d)
    h = np.maximum(x @ teacher[0].T, 0.0)
    logits = h @ teacher[1].T
    y = logits.argmax(1)
    if label_noise:
        flip = rng.random(n) < label_noise
        y[flip] = rng.integers(0, classes, int(flip.sum()))
    if noise:
        x = x + rng.normal(0.0, noise, x.shape)
    return Task(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))


def make_teacher(rng: np.random.Generator, d: int, classes: int = 10) -> list[np.ndarray]:
    return [rng.normal(0, 1 / math.sqrt(d), (64, d)), rng.normal(0, 1 / 8, (classes, 64))]


def variant(rng: np.random.Generator, teacher: list[np.ndarray], amount: float) -> list[np.ndarray]:
    return [w + amount * rng.normal(0, w.std(), w.shape) for w in teacher]


# ----------------------------------------------------------------------------- models


class MLP(nn.Module):
    def __init__(self, sizes: list[int]):
        super().__init__()
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def linear_names(sizes: list[int]) -> list[str]:
    return [f"layers.{2 * i}" for i in range(len(sizes) - 1)]


def train(
    model: nn.Module,
    task: Task,
    *,
    seed: int,
    epochs: int,
    lr: float,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    batch: int = 64,
    params: list[nn.Parameter] | None = None,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    params = params if params is not None else list(model.parameters())
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    n = len(task.y)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            loss = nn.functional.cross_entropy(model(task.x[idx]), task.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def load(sizes: list[int], sd: dict[str, torch.Tensor]) -> MLP:
    m = MLP(sizes)
    m.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()})
    return m


def lora(
    sd: dict[str, torch.Tensor],
    sizes: list[int],
    task: Task,
    *,
    seed: int,
    rank: int,
    alpha: float,
    epochs: int,
    lr: float,
) -> dict[str, torch.Tensor]:
    """Train LoRA A/B on a frozen copy; returns PEFT-named tensors."""
    torch.manual_seed(seed)
    model = load(sizes, sd)
    for p in model.parameters():
        p.requires_grad_(False)
    pairs = {}
    for name in linear_names(sizes):
        lin = model.get_submodule(name)
        a = nn.Parameter(torch.empty(rank, lin.in_features))
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        b = nn.Parameter(torch.zeros(lin.out_features, rank))
        pairs[name] = (lin, a, b)

    def forward(x: torch.Tensor) -> torch.Tensor:
        for i, mod in enumerate(model.layers):
            name = f"layers.{i}"
            if name in pairs:
                lin, a, b = pairs[name]
                x = lin(x) + (alpha / rank) * (x @ a.T @ b.T)
            else:
                x = mod(x)
        return x

    class Wrapped(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return forward(x)

    train(
        Wrapped(),
        task,
        seed=seed,
        epochs=epochs,
        lr=lr,
        params=[p for _, a, b in pairs.values() for p in (a, b)],
    )
    out = {}
    for name, (_, a, b) in pairs.items():
        out[f"base_model.model.{name}.lora_A.weight"] = a.detach().clone()
        out[f"base_model.model.{name}.lora_B.weight"] = b.detach().clone()
    return out


def merge_lora(
    sd: dict[str, torch.Tensor], ad: dict[str, torch.Tensor], scaling: float
) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in sd.items()}
    for key, a in ad.items():
        if ".lora_A." in key:
            module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
            b = ad[key.replace(".lora_A.", ".lora_B.")]
            out[module + ".weight"] = (sd[module + ".weight"] + scaling * b @ a).contiguous()
    return out


def quantize_int8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        t = t.to(torch.float32)
        if t.dim() == 2:
            scale = t.abs().amax(dim=1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            out[name] = torch.clamp(torch.round(t / scale[:, None]), -127, 127).to(torch.int8)
            out[name + "_scale"] = scale.contiguous()
        else:
            out[name] = t.clone()
    return out


def prune(sd: dict[str, torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        t = t.clone()
        if t.dim() == 2:
            k = int(amount * t.numel())
            flat = t.flatten()
            flat[torch.argsort(flat.abs(), stable=True)[:k]] = 0.0
            t = flat.reshape(t.shape)
        out[name] = t.contiguous()
    return out


def average(sds: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    return {
        k: sum(w * sd[k].to(torch.float32) for w, sd in zip(weights, sds, strict=True)).contiguous()
        for k in sds[0]
    }


def cast(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype).contiguous() for k, v in sd.items()}


# -------------------------------------------------------------------------------- trees


@dataclass
class Truth:
    """What was made: each model's file, and the true edges."""

    models: dict[str, Path] = field(default_factory=dict)
    edges: dict[tuple[str, str], str] = field(default_factory=dict)
    weights: dict[tuple[str, str], float] = field(default_factory=dict)
    family: dict[str, str] = field(default_factory=dict)  # model -> its root
    arch: dict[str, str] = field(default_factory=dict)


class Builder:
    def __init__(self, out: Path, seed: int):
        self.out, self.truth = out, Truth()
        self.rng = np.random.default_rng(seed)
        self.py = random.Random(seed)
        self.sd: dict[str, dict[str, torch.Tensor]] = {}
        self.sizes: dict[str, list[int]] = {}
        self.count = 0
        self.seed = seed

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}-{self.count:03d}"

    def save(
        self,
        model_id: str,
        sd: dict[str, torch.Tensor],
        sizes: list[int],
        parents: list[tuple[str, str]],
        root: str,
        fmt: str = "safetensors",
        weights: list[float] | None = None,
    ) -> str:
        if fmt == "pytorch":
            path = self.out / f"{model_id}.pt"
            torch.save(sd, path)
        else:
            path = self.out / f"{model_id}.safetensors"
            save_file(sd, str(path))
        self.truth.models[model_id] = path
        for i, (parent, relation) in enumerate(parents):
            self.truth.edges[(parent, model_id)] = relation
            if weights:
                self.truth.weights[(parent, model_id)] = weights[i]
        self.truth.family[model_id] = root
        self.truth.arch[model_id] = "-".join(map(str, sizes))
        self.sd[model_id] = sd
        self.sizes[model_id] = sizes
        return model_id

    def save_adapter(
        self, model_id: str, ad: dict[str, torch.Tensor], parent: str, rank: int, alpha: float, root: str
    ) -> str:
        folder = self.out / model_id
        folder.mkdir()
        save_file(ad, str(folder / "adapter_model.safetensors"))
        targets = sorted({k.removeprefix("base_model.model.").split(".lora_")[0] for k in ad})
        config = {
            "peft_type": "LORA",
            "base_model_name_or_path": parent,
            "r": rank,
            "lora_alpha": alpha,
            "target_modules": targets,
            "lora_dropout": 0.0,
            "bias": "none",
        }
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
        self.truth.models[model_id] = folder
        self.truth.edges[(parent, model_id)] = "adapter"
        self.truth.family[model_id] = root
        self.truth.arch[model_id] = self.truth.arch[parent]
        return model_id


def make_trees(out: Path, seed: int, *, archs: int = 2, roots: int = 3, small: bool = False) -> Truth:
    """Train model trees into ``out`` and return what was made (see the module docstring)."""
    torch.set_num_threads(1)
    b = Builder(out, seed)
    rng, py = b.rng, b.py
    d = 32
    teacher = make_teacher(rng, d)
    base_task = teacher_task(rng, teacher, 2000 if small else 4000)
    arch_sizes = [[d, 96, 64, 10], [d, 128, 10], [d, 64, 64, 64, 10]][:archs]

    def data() -> Task:
        kind = py.choice(["shift", "noise", "labels", "teacher", "subset"])
        n = py.choice([500, 1000, 2000])
        if kind == "shift":
            return teacher_task(rng, teacher, n, shift=py.uniform(0.3, 1.0))
        if kind == "noise":
            return teacher_task(rng, teacher, n, noise=py.uniform(0.2, 0.6))
        if kind == "labels":
            return teacher_task(rng, teacher, n, label_noise=py.uniform(0.1, 0.3))
        if kind == "teacher":
            return teacher_task(rng, variant(rng, teacher, py.uniform(0.2, 0.6)), n)
        idx = torch.tensor(rng.choice(len(base_task.y), n, replace=False))
        return Task(base_task.x[idx], base_task.y[idx])

    def finetune(parent: str, root: str, stem: str = "ft") -> str:
        sizes = b.sizes[parent]
        model = load(sizes, b.sd[parent])
        opt = py.choice(["adam", "adamw", "sgd"])
        lr = {
            "adam": py.choice([3e-5, 1e-4, 3e-4]),
            "adamw": py.choice([1e-4, 3e-4]),
            "sgd": py.choice([1e-3, 3e-3, 1e-2]),
        }[opt]
        wd = {"adam": 0.0, "adamw": py.choice([0.01, 0.1]), "sgd": py.choice([0.0, 1e-4])}[opt]
        train(
            model,
            data(),
            seed=py.randrange(1 << 30),
            epochs=py.choice([1, 2, 3]),
            lr=lr,
            optimizer=opt,
            weight_decay=wd,
            batch=py.choice([32, 64]),
        )
        sd = state(model)
        child = b.name(stem)
        if py.random() < 0.15:  # released in bfloat16, as many fine-tunes are
            sd = cast(sd, torch.bfloat16)
        fmt = "pytorch" if py.random() < 0.15 else "safetensors"
        return b.save(child, sd, sizes, [(parent, "finetune")], root, fmt=fmt)

    def f32(model_id: str) -> dict[str, torch.Tensor]:
        return {k: v.to(torch.float32) for k, v in b.sd[model_id].items()}

    def trained_lora(parent: str, rank: int, alpha: float) -> dict[str, torch.Tensor]:
        return lora(
            f32(parent),
            b.sizes[parent],
            data(),
            seed=py.randrange(1 << 30),
            rank=rank,
            alpha=alpha,
            epochs=py.choice([3, 6]),
            lr=py.choice([1e-3, 3e-3]),
        )

    for a, sizes in enumerate(arch_sizes):
        for r in range(roots if a == 0 else max(2, roots - 1)):
            torch.manual_seed(seed * 1000 + a * 100 + r)
            model = MLP(sizes)
            train(
                model,
                base_task,
                seed=seed * 7 + a * 31 + r,
                epochs=10 if small else 30,
                lr=1e-3,
                optimizer=py.choice(["adam", "adamw"]),
                weight_decay=0.01,
            )
            root = b.save(b.name(f"root{a}"), state(model), sizes, [], "")
            b.truth.family[root] = root
            kids = [finetune(root, root) for _ in range(py.choice([2, 3]))]
            for kid in list(kids):
                if b.sd[kid][next(iter(b.sd[kid]))].dtype != torch.float32:
                    continue
                for _ in range(py.choice([0, 1, 2] if not small else [0, 1])):
                    kids.append(finetune(kid, root))
            full = [k for k in kids if b.sd[k][next(iter(b.sd[k]))].dtype == torch.float32]
            # LoRA, trained then merged into the weights (relation: finetune), and one kept as an adapter
            parent = py.choice([root, *full])
            rank, alpha = py.choice([4, 8]), py.choice([8, 16])
            ad = trained_lora(parent, rank, alpha)
            b.save(
                b.name("lora-merged"),
                merge_lora(f32(parent), ad, alpha / rank),
                sizes,
                [(parent, "finetune")],
                root,
            )
            parent = py.choice([root, *full])
            ad = trained_lora(parent, rank, alpha)
            b.save_adapter(b.name("adapter"), ad, parent, rank, alpha, root)
            # deployment copies
            for target in py.sample([root, *full], k=min(2, 1 + len(full))):
                b.save(b.name("int8"), quantize_int8(f32(target)), sizes, [(target, "quantized")], root)
            target = py.choice([root, *full])
            b.save(
                b.name("pruned"),
                prune(f32(target), py.choice([0.3, 0.5, 0.7])),
                sizes,
                [(target, "pruned")],
                root,
            )
            for dtype in py.sample([torch.float16, torch.bfloat16], k=1 if small else 2):
                target = py.choice([root, *full])
                b.save(b.name("cast"), cast(f32(target), dtype), sizes, [(target, "quantized")], root)
            # a weight-averaged merge of two or three fine-tunes of one parent
            groups: dict[str, list[str]] = {}
            for k in full:
                (p,) = [pp for (pp, c) in b.truth.edges if c == k]
                groups.setdefault(p, []).append(k)
            pool = max(groups.values(), key=len, default=[])
            if len(pool) >= 2:
                parts = py.sample(pool, k=min(len(pool), py.choice([2, 3])))
                w = rng.dirichlet([4.0] * len(parts)).round(3)
                w[-1] = round(1.0 - float(w[:-1].sum()), 3)
                b.save(
                    b.name("merge"),
                    average([f32(p) for p in parts], list(map(float, w))),
                    sizes,
                    [(p, "merge") for p in parts],
                    root,
                    weights=list(map(float, w)),
                )
    return b.truth


# ------------------------------------------------------------------------------ scoring


CONFIDENCE_BANDS = {  # fine-tune edges whose confidence is in the band: how often they are right
    "finetune_conf_ge_0.9": lambda c: c >= 0.9,
    "finetune_conf_lt_0.6": lambda c: c < 0.6,
}


def score(truth: Truth, out: dict[str, Any]) -> dict[str, float]:
    """Directed-edge precision/recall/F1, relation accuracy, and edges across independent families."""
    predicted = {(e["parent"], e["child"]): e["relation"] for e in out["edges"]}
    true = truth.edges
    hits = [k for k in predicted if k in true]
    precision = len(hits) / max(1, len(predicted))
    recall = len(hits) / max(1, len(true))
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    relation = sum(predicted[k] == true[k] for k in hits) / max(1, len(hits))
    across = [k for k in predicted if truth.family[k[0]] != truth.family[k[1]]]
    same_arch = [k for k in across if truth.arch[k[0]] == truth.arch[k[1]]]
    reversed_ = [k for k in predicted if (k[1], k[0]) in true]
    # fine-tune edges by confidence: how often each band is right
    bands = {band: [0, 0] for band in CONFIDENCE_BANDS}
    for e in out["edges"]:
        if e["relation"] != "finetune":
            continue
        for band, inside in CONFIDENCE_BANDS.items():
            if inside(e["confidence"]):
                bands[band][0] += true.get((e["parent"], e["child"])) == "finetune"
                bands[band][1] += 1
    return {
        "models": len(truth.models),
        "true_edges": len(true),
        "found_edges": len(predicted),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "relation_accuracy": relation,
        "edges_to_independent_same_arch": len(same_arch),
        "reversed_edges": len(reversed_),
        "hits": len(hits),
        **{f"{k}_right": v[0] for k, v in bands.items()},
        **{f"{k}_edges": v[1] for k, v in bands.items()},
    }


def weight_files(truth: Truth) -> list[Path]:
    return [p / "adapter_model.safetensors" if p.is_dir() else p for p in truth.models.values()]


def timed(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, result


def peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of ``cmd``, measured in a fresh wrapper process."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    seconds, kib = out.stdout.split()
    return float(seconds), int(kib) / 1024


def run_seed(seed: int, work: Path) -> dict[str, Any]:
    out = work / f"seed-{seed}"
    out.mkdir(parents=True)
    start = time.perf_counter()
    truth = make_trees(out, seed)
    made = time.perf_counter() - start
    (work / f"truth-{seed}.json").write_text(
        json.dumps(
            {
                "models": {m: str(p) for m, p in truth.models.items()},
                "edges": [{"parent": p, "child": c, "relation": r} for (p, c), r in truth.edges.items()],
                "family": truth.family,
            },
            indent=1,
        )
    )
    env = {**os.environ, "LAKEGEN_CACHE": str(work / f"cache-{seed}")}
    paths = [str(p) for p in truth.models.values()]
    seconds, result = timed([str(LAKEGEN), "attribute", *paths, "--json"], env)
    if result.returncode != 0:
        raise SystemExit(f"lakegen attribute failed:\n{result.stderr}")
    metrics = score(truth, json.loads(result.stdout))
    files = [str(p) for p in weight_files(truth)]
    fp_seconds = min(
        timed([str(LAKEGEN), "fingerprint", "--no-cache", "--json", *files])[0] for _ in range(2)
    )
    ssl_seconds = min(timed(["openssl", "dgst", "-sha256", *files])[0] for _ in range(2))
    from lakegen.fingerprint import compute

    start = time.perf_counter()
    fps = {m: compute(p) for m, p in truth.models.items()}
    in_process = time.perf_counter() - start
    # lake mode: the same trees with release dates (creation order), as `lakegen attribute` reads a lake
    from lakegen.attribution import attribute

    dated = attribute(fps, order={m: i for i, m in enumerate(truth.models)})
    metrics["f1_with_dates"] = score(truth, dated.to_json())["f1"]
    metrics.update(
        train_s=made,
        attribute_s=seconds,
        fingerprint_cli_s=fp_seconds,
        openssl_s=ssl_seconds,
        fingerprint_in_process_s=in_process,
        bytes=sum(Path(f).stat().st_size for f in files),
    )
    return metrics


# ---------------------------------------------------------------------------------- speed


def write_big(path: Path, gib: float, first: int = 0) -> list[str]:
    """An N GiB safetensors file of float32 4096x8192 matrices (``layers.<first + i>.weight``),
    written in slices; returns the tensor names."""
    import struct

    rows, cols = 4096, 8192
    per = rows * cols * 4
    count = max(1, int(gib * (1 << 30) // per))
    header, offset = {}, 0
    for i in range(first, first + count):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [rows, cols],
            "data_offsets": [offset, offset + per],
        }
        offset += per
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _ in range(count):
            for _ in range(0, rows, 512):
                f.write(rng.standard_normal((512, cols), dtype=np.float32).tobytes())
    return list(header)


def against_openssl(files: list[Path], target: Path) -> dict[str, float]:
    """``lakegen fingerprint TARGET`` against ``openssl dgst -sha256 FILES`` (the same bytes), page
    cache warm: best wall time and peak RSS of three runs each."""
    names = [str(f) for f in files]
    subprocess.run(["openssl", "dgst", "-sha256", *names], capture_output=True, check=True)  # warm the cache
    ssl = min(peak_rss_mib(["openssl", "dgst", "-sha256", *names]) for _ in range(3))
    lg = min(
        peak_rss_mib([str(LAKEGEN), "fingerprint", "--no-cache", "--json", str(target)]) for _ in range(3)
    )
    return {
        "gib": sum(f.stat().st_size for f in files) / (1 << 30),
        "openssl_s": ssl[0],
        "lakegen_s": lg[0],
        "ratio": lg[0] / ssl[0],
        "openssl_peak_rss_mib": ssl[1],
        "lakegen_peak_rss_mib": lg[1],
    }


def big_file(work: Path, gib: float) -> dict[str, float]:
    path = work / "big.safetensors"
    write_big(path, gib)
    figures = against_openssl([path], path)
    figures.update(sampling_share(path))
    path.unlink()
    return figures


def sampling_share(path: Path) -> dict[str, float]:
    """In process, best of three: the whole fingerprint (sha256 of every byte, with the sampling
    running beside it) against the sampling alone. The sampling (gathering each matrix's grid,
    the sketch) is the only part a GPU could take over; the sha256 stays on the CPU."""
    from lakegen.fingerprint import compute
    from lakegen.fingerprint.sampling import sample_model
    from lakegen.weights import open_model

    def best(fn: Any) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def sample() -> None:
        wf = open_model(path)
        try:
            sample_model(wf)
        finally:
            wf.close()

    whole = best(lambda: compute(path))
    part = best(sample)
    return {"in_process_s": whole, "sampling_s": part, "sampling_share": part / whole}


def big_sharded(work: Path, gib: float, shards: int = 4) -> dict[str, float]:
    """The same N GiB as a Hugging Face sharded checkpoint: ``shards`` files and their index."""
    folder = work / "big-sharded"
    folder.mkdir()
    weight_map: dict[str, str] = {}
    first = 0
    for k in range(1, shards + 1):
        name = f"model-{k:05d}-of-{shards:05d}.safetensors"
        names = write_big(folder / name, gib / shards, first)
        weight_map.update(dict.fromkeys(names, name))
        first += len(names)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    figures = against_openssl(sorted(folder.glob("*.safetensors")), folder)
    shutil.rmtree(folder)
    return {**figures, "shards": shards}


def print_against_openssl(what: str, b: dict[str, float]) -> None:
    print(
        f"{what}: lakegen fingerprint {b['lakegen_s']:.2f} s, openssl {b['openssl_s']:.2f} s, "
        f"ratio {b['ratio']:.2f}; peak RSS lakegen {b['lakegen_peak_rss_mib']:.0f} MiB, "
        f"openssl {b['openssl_peak_rss_mib']:.0f} MiB"
    )


def one_vs_cached(work: Path, seed: int, count: int) -> dict[str, float]:
    """Time ranking one new model against ``count`` cached fingerprints (load from cache included)."""
    from dataclasses import replace

    from lakegen.attribution import closest
    from lakegen.fingerprint import Cache, Cached, compute
    from lakegen.fingerprint.sampling import signature_of

    out = work / "cached-src"
    out.mkdir()
    truth = make_trees(out, seed, archs=1, roots=2, small=True)
    base = [compute(p) for p in truth.models.values() if p.is_file()]
    rng = np.random.default_rng(seed)
    cache = Cache(work / "cache-many")
    keys = []
    for i in range(count):
        src = base[i % len(base)]
        noisy = src.samples + rng.normal(0, 1e-3, src.samples.shape).astype(np.float32) * np.abs(src.samples)
        key = f"{i:064x}"
        noisy = noisy.astype(np.float32)
        cache.put(key, replace(src, sha256=key, samples=noisy, signature=signature_of(src.tensors, noisy)))
        keys.append(key)
    new_path = next(p for p in truth.models.values() if p.is_file() and "int8" in p.name)
    new = compute(new_path)
    start = time.perf_counter()
    known = Cached(cache, {k: k for k in keys})
    matches = closest(new, known)
    total = time.perf_counter() - start
    start = time.perf_counter()
    everything = {k: fp for k in keys if (fp := cache.get(k)) is not None}
    load_all = time.perf_counter() - start
    return {
        "cached": len(everything),
        "total_s": total,
        "load_all_s": load_all,
        "best": matches[0].relation if matches else "-",
    }


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def cli_start() -> float:
    return min(timed([str(LAKEGEN), "--help"])[0] for _ in range(5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--seeds", help="comma-separated seeds (overrides --seed)")
    parser.add_argument("--big-gib", type=float, default=0, help="also time an N GiB file against openssl")
    parser.add_argument(
        "--cached", type=int, default=10_000, help="fingerprints for the 1-vs-N timing (0: skip)"
    )
    parser.add_argument("--keep", help="keep generated files (and truth-SEED.json) in this folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lakegen-attr-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"seeds": {}}
    try:
        for seed in seeds:
            m = run_seed(seed, work)
            report["seeds"][seed] = m
            if not args.json:
                print(
                    f"seed {seed}: {m['models']} models, {m['true_edges']} true edges, {m['found_edges']} found; "
                    f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f}; "
                    f"relation accuracy {m['relation_accuracy']:.3f}; F1 with release dates "
                    f"{m['f1_with_dates']:.3f}; edges to independent same-architecture "
                    f"models {m['edges_to_independent_same_arch']}; reversed {m['reversed_edges']}; "
                    f"fingerprint CLI {m['fingerprint_cli_s']:.2f} s / openssl {m['openssl_s']:.3f} s "
                    f"= {m['fingerprint_cli_s'] / m['openssl_s']:.1f}x on {m['bytes'] / 1e6:.1f} MB "
                    f"(in-process {m['fingerprint_in_process_s']:.2f} s); attribute {m['attribute_s']:.2f} s",
                    flush=True,
                )
        per = list(report["seeds"].values())
        keys = ("f1", "relation_accuracy", "f1_with_dates")
        report["mean"] = {k: float(np.mean([m[k] for m in per])) for k in keys}
        report["min"] = {k: float(np.min([m[k] for m in per])) for k in keys}
        report["independent_edges_total"] = int(sum(m["edges_to_independent_same_arch"] for m in per))
        hits = sum(m["hits"] for m in per)
        found, true_edges = sum(m["found_edges"] for m in per), sum(m["true_edges"] for m in per)
        report["pooled_f1"] = 2 * hits / max(1, found + true_edges)
        report["seeds_under_0.95"] = sorted(
            str(seed) for seed, m in report["seeds"].items() if m["f1"] < 0.95
        )
        for band in CONFIDENCE_BANDS:
            right, edges = sum(m[f"{band}_right"] for m in per), sum(m[f"{band}_edges"] for m in per)
            report[band] = right / edges if edges else None
        report["cli_start_s"] = cli_start()
        if not args.json:
            print(
                f"mean F1 {report['mean']['f1']:.3f} (min {report['min']['f1']:.3f}); mean relation accuracy "
                f"{report['mean']['relation_accuracy']:.3f} (min {report['min']['relation_accuracy']:.3f}); "
                f"edges to independent models {report['independent_edges_total']}; "
                f"lakegen --help {report['cli_start_s'] * 1000:.0f} ms",
                flush=True,
            )
            under = report["seeds_under_0.95"]
            print(
                f"pooled F1 over all seeds {report['pooled_f1']:.3f}; seeds under 0.95: "
                f"{len(under)} of {len(per)}{' (' + ', '.join(under) + ')' if under else ''}; fine-tune edges "
                f"right: {_share(report['finetune_conf_ge_0.9'])} at confidence >= 0.9, "
                f"{_share(report['finetune_conf_lt_0.6'])} under 0.6",
                flush=True,
            )
            print(
                f"lake mode (release dates = creation order, in process): mean F1 "
                f"{report['mean']['f1_with_dates']:.3f} (min {report['min']['f1_with_dates']:.3f})",
                flush=True,
            )
        if args.cached:
            c = report["one_vs_cached"] = one_vs_cached(work, seeds[0], args.cached)
            if not args.json:
                print(
                    f"1 new vs {c['cached']} cached fingerprints: {c['total_s']:.2f} s (signatures read from "
                    f"the cache, the best 32 loaded and compared; loading all {c['cached']} would take "
                    f"{c['load_all_s']:.2f} s); best match: {c['best']}",
                    flush=True,
                )
        if args.big_gib:
            b = report["big_file"] = big_file(work, args.big_gib)
            if not args.json:
                print_against_openssl(f"{args.big_gib:g} GiB safetensors", b)
                print(
                    f"  in process: fingerprint {b['in_process_s']:.2f} s, of which sampling (the only "
                    f"part a GPU could run) {b['sampling_s'] * 1000:.0f} ms = {b['sampling_share']:.1%}",
                    flush=True,
                )
            b = report["big_sharded"] = big_sharded(work, args.big_gib)
            if not args.json:
                print_against_openssl(f"the same as {b['shards']:.0f} shards + index", b)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
