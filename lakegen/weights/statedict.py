"""Where the weights are in a loaded checkpoint object: the state dict itself, or the one a wrapper or
a training checkpoint nests, with torch.ao dynamic quantisation's packed parameters unpacked."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakegen.weights.base import WeightsError, refuse_count
from lakegen.weights.torchvalues import QTensor, ScriptObject, Unsupported

PACKED = "._packed_params._packed_params"  # torch.ao dynamic quantisation's (weight, bias) of a Linear
# a dynamic-quantised LSTM's or GRU's packed cell (one per layer and direction)
CELL = re.compile(r"(?:^|\.)_all_weight_values\.(\d{1,6})\.param$")
# a dynamic-quantised LSTMCell's, GRUCell's or RNNCell's packed (weight, bias) of each side
CELL_SIDE = re.compile(r"(?:^|\.)_packed_weight_(ih|hh)$")
WEIGHTS_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module")


def is_packed(key: object) -> bool:
    """Whether a state dict key names torch.ao dynamic quantisation's packed parameters."""
    name = str(key)
    return name.endswith(PACKED) or CELL.search(name) is not None or CELL_SIDE.search(name) is not None


def state_dict(
    path: Path,
    obj: Any,
    tensor: type | tuple[type, ...],
    unpack: Callable[[dict[Any, Any]], dict[Any, Any]] | None = None,
) -> dict[str, Any]:
    """The mapping of names to tensors in ``obj``: itself, or what a wrapper or a training
    checkpoint (weights beside the epoch, the optimizer's state and the like) nests, under
    whatever name its trainer chose (``model_state_dict``, Resemblyzer's ``model_state``, ...).
    An optimizer's state is keyed by parameter index, so it is never taken for the weights;
    several state dicts, none under a known name, are refused. ``unpack`` reads torch's
    dynamic-quantisation packed parameters; without it they are ``torchzip.Unsupported``."""
    for _ in range(3):
        if isinstance(obj, dict) and any(is_packed(k) for k in obj):
            if unpack is None:
                raise Unsupported("dynamic-quantisation packed parameters")
            try:
                obj = unpack(obj)
            except ValueError as e:
                raise WeightsError(path, str(e)) from None
        if isinstance(obj, dict) and any(isinstance(v, QTensor | ScriptObject) for v in obj.values()):
            raise Unsupported("a quantised tensor or a ScriptObject outside packed parameters")
        if isinstance(obj, dict) and obj and all(isinstance(v, tensor) for v in obj.values()):
            if all(isinstance(k, str) for k in obj):
                refuse_count(path, len(obj))
                return obj
            break
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "module"):
            obj = next(iter(obj.values()))
            continue
        if not isinstance(obj, dict):
            break
        nested = [k for k, v in obj.items() if _holds_weights(v, tensor)]
        if len(nested) > 1:
            nested = [k for k in nested if k in WEIGHTS_KEYS] or nested
        if len(nested) != 1:
            if nested:
                names = ", ".join(sorted(str(k)[:40] for k in nested)[:6])
                raise WeightsError(
                    path, f"the checkpoint holds several state dicts ({names}); save the one to read"
                )
            break
        obj = obj[nested[0]]
    raise WeightsError(path, "the checkpoint is not a state dict (a mapping of names to tensors)")


def _holds_weights(value: Any, tensor: type | tuple[type, ...]) -> bool:
    """A mapping of parameter names to tensors (or to packed quantised parameters)."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, tensor) or is_packed(k) for k, v in value.items())
    )
