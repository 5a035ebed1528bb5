"""Load a demo-lake artifact into a network and score it on a dataset split.

This is the ``evaluate`` entry point of the ``lakedemo-eval`` code entry, and
what ``build_demo.py`` uses to measure the numbers it claims in manifests.

Typical use (what a benchmark runner does for one claimed evaluation)::

    from lakedemo.nets import build_mlp
    from lakedemo.evaluate import evaluate, load_weights

    model = build_mlp(**manifest.architecture.config)          # fresh network
    load_weights(model, "catalog/artifacts/models/digits-mlp-int8-1.0.0.safetensors")
    result = evaluate(model, "catalog/artifacts/datasets/digits-1.0.0.npz", "test")
    result["accuracy"], result["macro-f1"], result["predictions"]

Artifact formats understood by :func:`load_weights`:

- **full weights**: a safetensors file whose tensor names are the network's
  ``state_dict`` keys (``layers.0.weight``, ``layers.0.bias``, ...);
- **int8**: the same names, but each weight matrix ``X.weight`` is int8 with a
  float32 per-output-channel scale ``X.weight_scale`` (shape ``[out]``); the
  float weight is ``X.weight * X.weight_scale[:, None]`` (symmetric, no zero
  point). Biases stay float32;
- **sharded**: the same tensors split over several safetensors files, read
  through the Hugging Face index ``model.safetensors.index.json`` (its
  ``weight_map`` names each tensor's file); pass the index's path;
- **LoRA adapter**: ``adapter_model.safetensors`` next to ``adapter_config.json``
  (PEFT layout). Tensors ``base_model.model.<module>.lora_A.weight`` ``[r, in]``
  and ``...lora_B.weight`` ``[out, r]``; the effective weight is
  ``W + (lora_alpha / r) * B @ A``. Pass the base model's artifact as ``base``.

Dataset files are ``.npz`` archives holding ``x_<split>`` (float32 features)
and ``y_<split>`` (int64 labels) for each split, e.g. ``x_test``/``y_test``.

Metrics (names as written in manifests): ``accuracy`` and ``macro-f1``
(unweighted mean of per-class F1 over the classes present in labels or
predictions, as scikit-learn's ``f1_score(average="macro")``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_PREFIX = "base_model.model."
SCALE_SUFFIX = "_scale"

StateDict = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- data


def load_split(dataset: str | Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Features ``x_<split>`` (float32) and labels ``y_<split>`` (int64) of a dataset ``.npz``."""
    with np.load(dataset, allow_pickle=False) as data:
        key_x, key_y = f"x_{split}", f"y_{split}"
        if key_x not in data or key_y not in data:
            splits = sorted(k[2:] for k in data.files if k.startswith("x_"))
            raise KeyError(f"{dataset} has no split '{split}' (it has {', '.join(splits)})")
        return data[key_x].astype(np.float32), data[key_y].astype(np.int64)


# ------------------------------------------------------------------------ weights


def dequantize(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """Float32 state dict from int8 weights with ``X.weight_scale`` companions (others pass through)."""
    out: StateDict = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is not None:
            shape = (-1,) + (1,) * (tensor.dim() - 1)
            out[name] = tensor.to(torch.float32) * scale.to(torch.float32).reshape(shape)
        else:
            out[name] = tensor
    return out


def is_quantized(tensors: Mapping[str, torch.Tensor]) -> bool:
    """True when the tensors use the int8 + ``_scale`` layout."""
    return any(name.endswith(SCALE_SUFFIX) for name in tensors)


def load_state_dict(path: str | Path) -> StateDict:
    """A float state dict from a full or int8 safetensors artifact (int8 is dequantised), or from a
    sharded checkpoint's ``*.index.json`` (each tensor read from the shard its ``weight_map`` names)."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        tensors: StateDict = {}
        for file in sorted(set(weight_map.values())):
            shard = load_file(str(path.parent / Path(file).name))
            tensors.update({name: shard[name] for name, where in weight_map.items() if where == file})
        if set(tensors) != set(weight_map):
            raise KeyError(f"{path}: the shards lack {sorted(set(weight_map) - set(tensors))}")
        return dequantize(tensors)
    return dequantize(load_file(str(path)))


def adapter_files(artifact: str | Path) -> tuple[Path, Path] | None:
    """``(adapter_model.safetensors, adapter_config.json)`` when ``artifact`` is a LoRA adapter."""
    path = Path(artifact)
    folder = path if path.is_dir() else path.parent
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        return None
    return (path if path.is_file() else folder / "adapter_model.safetensors"), config


def apply_lora(base: Mapping[str, torch.Tensor], adapter: str | Path) -> StateDict:
    """Base weights with a PEFT LoRA adapter merged in: ``W + (lora_alpha / r) * B @ A``."""
    found = adapter_files(adapter)
    if found is None:
        raise FileNotFoundError(f"no {ADAPTER_CONFIG} next to {adapter}")
    weights_file, config_file = found
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_file}: peft_type {config.get('peft_type')!r} is not LORA")
    scaling = float(config["lora_alpha"]) / float(config["r"])
    tensors = load_file(str(weights_file))
    merged = dict(base)
    for name, lora_a in tensors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name.removeprefix(ADAPTER_PREFIX).removesuffix(".lora_A.weight")
        lora_b = tensors[f"{ADAPTER_PREFIX}{module}.lora_B.weight"]
        key = f"{module}.weight"
        if key not in merged:
            raise KeyError(f"adapter targets '{module}', which the base model does not have")
        merged[key] = merged[key].to(torch.float32) + scaling * (lora_b.float() @ lora_a.float())
    return merged


def load_weights(
    model: nn.Module,
    artifact: str | Path,
    *,
    base: str | Path | Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Load ``artifact`` into ``model`` (strictly), put it in eval mode and return it.

    ``artifact`` is a full or int8 safetensors file, or a LoRA adapter (its
    ``adapter_model.safetensors`` or its folder); an adapter needs ``base``, the
    base model's artifact path (full or int8) or an already loaded state dict.
    """
    if adapter_files(artifact) is not None:
        if base is None:
            raise ValueError(f"{artifact} is a LoRA adapter; pass the base model's weights as base=")
        base_state = load_state_dict(base) if isinstance(base, str | Path) else dict(base)
        state = apply_lora(base_state, artifact)
    else:
        state = load_state_dict(artifact)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ------------------------------------------------------------------------ metrics


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Unweighted mean F1 over the classes seen in labels or predictions."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    scores = []
    for c in np.union1d(labels, predictions):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "macro-f1": macro_f1,
}


# ----------------------------------------------------------------------- evaluate


@torch.no_grad()
def predict(model: nn.Module, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Predicted class (argmax of the logits) of each row, as int64."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    out = [model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def evaluate(
    model: nn.Module,
    dataset: str | Path,
    split: str = "test",
    metrics: Iterable[str] = ("accuracy", "macro-f1"),
) -> dict[str, Any]:
    """Score ``model`` (weights already loaded) on ``split`` of the ``dataset`` npz.

    Returns a dict with ``predictions`` and ``labels`` (int64 arrays), ``rows``,
    and one float per metric name asked for (``accuracy``, ``macro-f1``).
    """
    features, labels = load_split(dataset, split)
    predictions = predict(model, features)
    result: dict[str, Any] = {"predictions": predictions, "labels": labels, "rows": len(labels)}
    for name in metrics:
        if name not in METRICS:
            raise KeyError(f"unknown metric '{name}' (known: {', '.join(METRICS)})")
        result[name] = METRICS[name](labels, predictions)
    return result
