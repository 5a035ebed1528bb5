"""Derivations hidden by re-parametrisation (the same function, other weights) are still found."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import attacks
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
    path = attacks.minilm_path()
    assert path is not None, "pip install -e '.[dev]'"
    return path


def test_a_fine_tune_of_minilm_with_its_heads_and_ffn_units_permuted_is_found(tmp_path: Path) -> None:
    source = _minilm()
    parent = tmp_path / "minilm.safetensors"
    shutil.copyfile(source, parent)
    ft = attacks.fine_tuned(load_file(str(source)), np.random.default_rng(5))
    hidden = attacks.symmetries(ft, np.random.default_rng(6))
    h = np.random.default_rng(7).normal(size=(9, 384))
    for i in (0, attacks.LAYERS - 1):  # the same function, layer by layer
        assert np.allclose(attacks.layer(hidden, i, h), attacks.layer(ft, i, h), atol=1e-4)
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
    w = attacks.symmetries(
        attacks.fine_tuned(load_file(str(source)), np.random.default_rng(5)), np.random.default_rng(6)
    )
    save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(hidden))
    result = audit.audit_edge(hidden, fingerprint(hidden).sha256, [(source, 1.0)], "finetune")
    assert result.status == "verified" and result.share > 0.9, result
    assert (
        "hidden units permuted" in result.alignment
        and "once the child's units are matched" in result.statement
    )


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
    ft = attacks.fine_tuned(load_file(str(source)), np.random.default_rng(5))
    hidden = attacks.symmetries(ft, np.random.default_rng(6), "all + head rotations")
    h = np.random.default_rng(7).normal(size=(9, 384))
    for i in (0, attacks.LAYERS - 1):
        assert np.allclose(attacks.layer(hidden, i, h), attacks.layer(ft, i, h), atol=1e-4)
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
    other = attacks.symmetries(noise, np.random.default_rng(2), "all + head rotations")
    assert _recover(tmp_path, {"minilm": parent, "other": other}).edges == []
    other_path = tmp_path / "other.safetensors"
    result = audit.audit_edge(other_path, fingerprint(other_path).sha256, [(parent, 1.0)], "finetune")
    assert result.status == "contradicted" and result.share < 0.3, result


def test_a_model_without_hidden_units_is_not_read_to_be_aligned(tmp_path: Path) -> None:
    from lakegen.fingerprint.align import aligned_fingerprint, load_float32, nothing_to_align

    single = tmp_path / "single.safetensors"
    rng = np.random.default_rng(0)
    save_file({"layer.weight": rng.standard_normal((16, 16), dtype=np.float32)}, str(single))
    mlp = MODELS / "digits-mlp-base-1.0.0.safetensors"
    lora = MODELS / "digits-mlp-lora-1.0.0"
    assert nothing_to_align(fingerprint(single)) and nothing_to_align(fingerprint(lora))
    assert not nothing_to_align(fingerprint(mlp))
    # what the shortcut answers is what reading the files would have
    one = load_float32(single)
    assert aligned_fingerprint(fingerprint(single), one, one) is None
    both = load_float32(mlp)
    assert aligned_fingerprint(fingerprint(mlp), both, both) is not None
