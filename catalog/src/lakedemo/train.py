"""Train demo-lake networks, and derive variants from trained weights.

Library functions used by ``build_demo.py``:

- :func:`fit` — minibatch cross-entropy training (Adam or SGD), deterministic
  for a given seed;
- :func:`fit_lora` — train a rank-``r`` LoRA adapter on a frozen network and
  return it in PEFT's tensor naming;
- :func:`quantize_int8`, :func:`prune_magnitude`, :func:`merge_weights` —
  post-training transforms of a state dict;
- :func:`save_weights` — write tensors to safetensors, byte-for-byte
  reproducibly.

``main`` (the ``train`` entry point) is a small command line for training one
network on a dataset ``.npz``::

    python -m lakedemo.train --dataset catalog/artifacts/datasets/digits-1.0.0.npz \\
        --hidden 256 128 --epochs 30 --seed 0 --out /tmp/digits-mlp.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from lakedemo.evaluate import ADAPTER_PREFIX, SCALE_SUFFIX, load_split, load_state_dict
from lakedemo.nets import build_mlp, linear_layers

StateDict = dict[str, torch.Tensor]


def set_determinism(seed: int) -> None:
    """Seed torch, force deterministic kernels and one thread (bit-reproducible on one machine)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def fit(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    parameters: Sequence[nn.Parameter] | None = None,
) -> nn.Module:
    """Train ``model`` in place on (features, labels) with cross-entropy; returns it.

    Batches are reshuffled each epoch by a generator seeded with ``seed``.
    ``parameters`` restricts what is trained (default: every parameter).
    """
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    params = list(parameters) if parameters is not None else list(model.parameters())
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r} (adam or sgd)")
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
    return model.eval()


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) * B @ A``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scaling = alpha / rank
        # PEFT's initialisation: A Kaiming-uniform, B zero, so training starts at the base model.
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)


def fit_lora(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    rank: int,
    alpha: float,
    epochs: int,
    lr: float,
    seed: int,
    target_modules: Sequence[str] | None = None,
    batch_size: int = 64,
) -> StateDict:
    """Train a LoRA adapter on a frozen copy of ``model``; returns PEFT-named adapter tensors.

    The returned dict maps ``base_model.model.<module>.lora_A.weight`` (``[r, in]``)
    and ``...lora_B.weight`` (``[out, r]``) for each targeted ``nn.Linear``;
    ``model`` itself is left unchanged.
    """
    import copy

    work = copy.deepcopy(model)
    for p in work.parameters():
        p.requires_grad_(False)
    targets = list(target_modules) if target_modules is not None else linear_layers(work)
    wrapped: dict[str, LoRALinear] = {}
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = work.get_submodule(parent_name) if parent_name else work
        lora = LoRALinear(getattr(parent, child), rank, alpha)
        setattr(parent, child, lora)
        wrapped[name] = lora
    trainable = [p for lora in wrapped.values() for p in (lora.lora_A, lora.lora_B)]
    fit(work, features, labels, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, parameters=trainable)
    out: StateDict = {}
    for name, lora in wrapped.items():
        out[f"{ADAPTER_PREFIX}{name}.lora_A.weight"] = lora.lora_A.detach().clone()
        out[f"{ADAPTER_PREFIX}{name}.lora_B.weight"] = lora.lora_B.detach().clone()
    return out


def quantize_int8(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Symmetric per-output-channel int8 quantisation of every weight matrix.

    ``X.weight`` (float, ``[out, in]``) becomes int8 ``round(W / s)`` clipped to
    [-127, 127], with ``s = max|W[row]| / 127`` stored as float32 ``X.weight_scale``
    (shape ``[out]``; a zero row gets scale 1). Other tensors (biases) stay float32.
    """
    out: StateDict = {}
    for name, tensor in state.items():
        if name.endswith(".weight") and tensor.dim() == 2:
            w = tensor.detach().to(torch.float32)
            scale = w.abs().amax(dim=1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
            out[name] = q
            out[name + SCALE_SUFFIX] = scale.to(torch.float32)
        else:
            out[name] = tensor.detach().to(torch.float32).clone()
    return out


def prune_magnitude(state: Mapping[str, torch.Tensor], amount: float = 0.5) -> StateDict:
    """Zero the ``amount`` fraction of smallest-magnitude entries of each weight matrix.

    One-shot, unstructured, per matrix (``floor(amount * numel)`` entries each;
    ties broken by position). Biases are kept; surviving weights are unchanged.
    """
    out: StateDict = {}
    for name, tensor in state.items():
        t = tensor.detach().to(torch.float32).clone()
        if name.endswith(".weight") and t.dim() == 2:
            k = int(amount * t.numel())
            order = torch.argsort(t.abs().flatten(), stable=True)
            flat = t.flatten()
            flat[order[:k]] = 0.0
            t = flat.reshape(t.shape)
        out[name] = t
    return out


def merge_weights(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> StateDict:
    """Weighted average ``sum(w_i * state_i)`` of same-architecture state dicts (weights sum to 1)."""
    if len(states) != len(weights) or not states:
        raise ValueError("give one weight per state dict")
    if not math.isclose(sum(weights), 1.0):
        raise ValueError(f"merge weights sum to {sum(weights)}, not 1")
    keys = list(states[0])
    for other in states[1:]:
        if list(other) != keys:
            raise ValueError("state dicts to merge have different tensor names")
    return {k: sum(w * s[k].to(torch.float32) for w, s in zip(weights, states, strict=True)) for k in keys}


def save_weights(tensors: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write tensors to a safetensors file (contiguous copies, one fixed metadata key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path), {"format": "pt"})
    return path


SHARD_INDEX = "model.safetensors.index.json"


def save_sharded(tensors: Mapping[str, torch.Tensor], folder: str | Path, shards: int) -> Path:
    """Write tensors as a Hugging Face sharded checkpoint: ``shards`` safetensors files, the tensors
    split in name order, and ``model.safetensors.index.json`` naming each tensor's file. Returns the
    index's path."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    names = sorted(tensors)
    size = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for k in range(shards):
        part = names[k * size : (k + 1) * size]
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_weights({name: tensors[name] for name in part}, folder / file)
        weight_map.update(dict.fromkeys(part, file))
        total += sum(tensors[name].numel() * tensors[name].element_size() for name in part)
    index = folder / SHARD_INDEX
    index.write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
    )
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """Train one MLP on a dataset ``.npz`` and save its weights (the ``train`` entry point)."""
    parser = argparse.ArgumentParser(prog="python -m lakedemo.train", description=main.__doc__)
    parser.add_argument("--dataset", required=True, help="an .npz with x_train and y_train")
    parser.add_argument("--split", default="train")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="start from these weights (fine-tuning) instead of random")
    parser.add_argument("--out", required=True, help="where to write the .safetensors")
    args = parser.parse_args(argv)

    set_determinism(args.seed)
    x, y = load_split(args.dataset, args.split)
    model = build_mlp(x.shape[1], args.hidden, int(y.max()) + 1)
    if args.init:
        model.load_state_dict(load_state_dict(args.init), strict=True)
    fit(
        model,
        x,
        y,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
    )
    print(save_weights(model.state_dict(), args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
