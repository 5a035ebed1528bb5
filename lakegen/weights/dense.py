"""Dense float32 state dicts, for the bench runner's ``load_state_dict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakegen.artifacts.layout import is_adapter
from lakegen.weights.adapters import lora_delta, read_adapter
from lakegen.weights.base import WeightsError
from lakegen.weights.dequant import open_weights
from lakegen.weights.quantized import iter_float32


def dense_state_dict(path: Path | str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A weight file as a float32 torch state dict, ready for ``load_state_dict``.

    Int8 tensors are dequantised. When ``path`` is a LoRA adapter, ``base`` is
    its base model's dense state dict, and the result is that state dict with
    ``(lora_alpha / r) · B · A`` added to each targeted weight.
    """
    import numpy as np
    import torch

    if not is_adapter(Path(path)):
        return {name: torch.from_numpy(np.array(values)) for name, values in iter_float32(path)}
    if base is None:
        raise WeightsError(path, "a LoRA adapter needs its base model's weights")
    state = dict(base)
    adapter = read_adapter(path)
    with open_weights(adapter.weights) as wf:
        for pair in adapter.pairs:
            if pair.target not in state:
                raise WeightsError(path, f"the adapter targets '{pair.target}', which its base does not have")
            target = state[pair.target]
            delta = torch.from_numpy(lora_delta(wf, pair)).reshape(target.shape)
            state[pair.target] = target.float() + delta
    return state
