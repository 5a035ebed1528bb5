"""PEFT LoRA adapter folders: ``adapter_config.json`` beside ``adapter_model.safetensors``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.artifacts.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_weights_file
from lakegen.weights.base import WeightFile, WeightsError, to_float32
from lakegen.weights.dequant import open_weights

if TYPE_CHECKING:
    import numpy as np

PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class LoraPair:
    """One LoRA module: ``delta = scaling * B @ A`` is added to the base tensor ``target``."""

    target: str
    shape: tuple[int, ...]
    a: str
    b: str
    scaling: float


@dataclass
class Adapter:
    """A PEFT LoRA adapter folder: its weights file, config and module pairs."""

    folder: Path
    weights: Path
    config: dict[str, Any]
    pairs: list[LoraPair] = field(default_factory=list)

    @property
    def base(self) -> str | None:
        value = self.config.get("base_model_name_or_path")
        return str(value) if value else None

    @property
    def revision(self) -> str | None:
        value = self.config.get("revision")
        return str(value) if value else None


def read_adapter(path: Path | str, wf: WeightFile | None = None) -> Adapter:
    """Read a LoRA adapter folder (or its weights file) and pair each ``lora_A`` with its ``lora_B``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = adapter_weights_file(folder)
    if weights is None:
        raise WeightsError(folder, f"not an adapter folder: needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS[0]}")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WeightsError(folder / ADAPTER_CONFIG, f"unreadable adapter config: {e}") from None
    if not isinstance(config, dict):
        raise WeightsError(folder / ADAPTER_CONFIG, "adapter config is not a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise WeightsError(folder / ADAPTER_CONFIG, f"unsupported adapter type {peft_type!r} (only LORA)")
    r, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise WeightsError(
            folder / ADAPTER_CONFIG, f"adapter config needs a positive int r and lora_alpha (r={r!r})"
        )
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    adapter = Adapter(folder, weights, config)
    own = wf is None
    wf = open_weights(weights) if wf is None else wf
    try:
        adapter.pairs = _lora_pairs(wf, float(scaling), config)
    finally:
        if own:
            wf.close()
    return adapter


def _lora_pairs(wf: WeightFile, scaling: float, config: dict[str, Any]) -> list[LoraPair]:
    a_names: dict[str, str] = {}
    b_names: dict[str, str] = {}
    for name in wf.tensors:
        for marker, bucket in ((".lora_A.", a_names), (".lora_B.", b_names)):
            if marker in name:
                module = name.split(marker)[0]
                module = module.removeprefix(PEFT_PREFIX)
                bucket[module] = name
    if not a_names:
        raise WeightsError(wf.path, "adapter has no lora_A/lora_B tensors")
    pairs = []
    patterns = config.get("alpha_pattern") or {}
    rank_patterns = config.get("rank_pattern") or {}
    for module in sorted(a_names):
        if module not in b_names:
            raise WeightsError(wf.path, f"adapter module '{module}' has lora_A but no lora_B")
        a, b = wf.tensors[a_names[module]], wf.tensors[b_names[module]]
        if len(a.shape) < 2 or len(b.shape) < 2 or b.shape[1] != a.shape[0]:
            raise WeightsError(
                wf.path,
                f"adapter module '{module}': lora_B {list(b.shape)} and lora_A {list(a.shape)} "
                "do not multiply",
            )
        s = scaling
        short = module.rsplit(".", 1)[-1]
        if module in patterns or short in patterns:
            rank = rank_patterns.get(module, rank_patterns.get(short, a.shape[0]))
            s = float(patterns[module] if module in patterns else patterns[short]) / float(rank)
        shape = (b.shape[0], *a.shape[1:])
        pairs.append(LoraPair(module + ".weight", shape, a.name, b.name, s))
    extra = set(b_names) - set(a_names)
    if extra:
        raise WeightsError(wf.path, f"adapter module '{sorted(extra)[0]}' has lora_B but no lora_A")
    return pairs


def lora_delta(
    wf: WeightFile, pair: LoraPair, rows: np.ndarray | None = None, cols: np.ndarray | None = None
) -> np.ndarray:
    """``scaling * B @ A`` for one module, optionally only at ``rows`` x ``cols`` (flattened inner dims)."""
    a = to_float32(wf.raw(pair.a), wf.tensors[pair.a].dtype)
    b = to_float32(wf.raw(pair.b), wf.tensors[pair.b].dtype)
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    if rows is not None:
        b = b[rows]
    if cols is not None:
        a = a[:, cols]
    return (b.astype("float64") @ a.astype("float64") * pair.scaling).astype("float32")
