"""Merges of real MiniLM fine-tunes (#15): which models are the merge's children, and which model a
block-quantised copy that sits as near a merge as its original came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file as load_torch
from test_real_models import bert_gguf_names, edges, llama_cpp_gguf, minilm_weights, moved, saved_prints

from lakegen.attribution.merges import Merge, carries_merge
from lakegen.attribution.views import View
from lakegen.fingerprint import compute


def mix(parts: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """A linear merge, as mergekit's ``linear`` method writes it: every float tensor the weighted
    sum of the parts' (the vectors too)."""
    return {
        k: sum(w * p[k].float() for p, w in zip(parts, weights, strict=True)) if v.is_floating_point() else v
        for k, v in parts[0].items()
    }


def with_vectors(sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``sd`` with its norms and biases moved a little, as full fine-tuning moves them."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + 1e-3 * torch.randn(v.shape, generator=g) if v.ndim == 1 and v.is_floating_point() else v
        for k, v in sd.items()
    }


def like_objectives(src: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Two fine-tunes of MiniLM towards one objective (their updates share most of their direction)
    and a linear merge of them."""
    base = load_torch(str(src))
    ft = {
        name: with_vectors(moved(base, torch.Generator().manual_seed(7), own, 0.01, 0.5), own)
        for own, name in ((1, "minilm-ft-a"), (2, "minilm-ft-b"))
    }
    return {**ft, "minilm-merge": mix([ft["minilm-ft-a"], ft["minilm-ft-b"]], [0.6, 0.4])}


@pytest.mark.slow
def test_a_fine_tune_of_a_merge_goes_under_the_merge(tmp_path: Path) -> None:
    """Trained from the merge, a model carries each parent's own update in the merge's proportions
    (measured from the base the merge's parents were tuned from: from one of the parents, that
    parent's own update is nil), and sits nearer the merge than any parent."""
    src = minilm_weights()
    models = like_objectives(src)
    models["minilm-merge-ft"] = moved(models["minilm-merge"], torch.Generator().manual_seed(8), 4, 0.004, 0.5)
    found = edges(saved_prints(src, models, tmp_path))
    assert {(p, c) for (p, c), (r, _) in found.items() if r == "merge"} == {
        ("minilm-ft-a", "minilm-merge"),
        ("minilm-ft-b", "minilm-merge"),
    }
    assert [p for (p, c), (r, _) in found.items() if c == "minilm-merge-ft"] == ["minilm-merge"]


@pytest.mark.slow
def test_a_sibling_of_a_merges_parents_does_not_carry_their_updates_as_the_merge_does(tmp_path: Path) -> None:
    """Held-out SmolLM2 seed 6203: fine-tunes with like objectives share most of their update, and a
    merge of two averages away what is their own, so a third fine-tune of their base sat 0.9 as
    near the merge as the base, and went under it. It carried 0.44 and 1.04 of the two parents'
    own updates, which the merge holds at 0.59 and 0.41; a fine-tune of the merge carries them as
    the merge does."""
    src = minilm_weights()
    base = load_torch(str(src))
    models = like_objectives(src)
    a, b = models["minilm-ft-a"], models["minilm-ft-b"]
    own = moved(base, torch.Generator().manual_seed(11), 3, 0.003, 1.0)
    models["minilm-ft-c"] = {
        k: v + 0.4 * (a[k] - v) + 0.9 * (b[k] - v) + (own[k] - v) if v.is_floating_point() else v
        for k, v in base.items()
    }
    models["minilm-merge-ft"] = moved(models["minilm-merge"], torch.Generator().manual_seed(8), 4, 0.004, 0.5)
    fps = saved_prints(src, models, tmp_path)
    views = [View(fps[n]) for n in ("minilm", "minilm-ft-a", "minilm-ft-b")]
    merge = Merge(parents=(1, 2), weights=(0.6, 0.4), residual=0.0)
    assert carries_merge(View(fps["minilm-merge-ft"]), merge, views, views[0])
    assert not carries_merge(View(fps["minilm-ft-c"]), merge, views, views[0])
    # from one of the merge's parents, its own update is nil: nothing is carried in proportion
    assert not carries_merge(View(fps["minilm-merge-ft"]), merge, views, views[1])


@pytest.mark.slow
def test_a_q4_0_gguf_of_a_fine_tune_goes_under_it_not_under_a_merge_as_near(tmp_path: Path) -> None:
    """Held-out SmolLM2 seed 6203: a Q4_0 file's rounding dwarfs the difference between its source and
    a merge holding most of that source, so closeness cannot choose (the correlations differed by
    4e-8, the merge's the higher). The GGUF keeps its source's norms and biases exactly (float32);
    the merge holds a mix of them."""
    src = minilm_weights()
    models = like_objectives(src)
    models["minilm-merge"] = mix([models["minilm-ft-a"], models["minilm-ft-b"]], [0.9, 0.1])
    fps = saved_prints(src, models, tmp_path)
    ft = {k: v.numpy() for k, v in models["minilm-ft-a"].items()}
    names = bert_gguf_names(ft)
    q4 = {k: f"{v}:q4_0" if ft[k].ndim == 2 and ft[k].shape[1] % 32 == 0 else v for k, v in names.items()}
    fps["minilm-ft-a-q4_0"] = compute(llama_cpp_gguf(tmp_path / "q4.gguf", "bert", ft, q4))
    found = edges(fps)
    assert [p for (p, c) in found if c == "minilm-ft-a-q4_0"] == ["minilm-ft-a"]
    assert found[("minilm-ft-a", "minilm-ft-a-q4_0")][0] == "quantized"
