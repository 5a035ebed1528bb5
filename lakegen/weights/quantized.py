"""Logical tensors: int8 values and their per-channel scale read as one float tensor."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.artifacts.layout import model_location
from lakegen.weights.base import PRECISION, WeightFile, WeightsError, to_float32
from lakegen.weights.model import open_model

if TYPE_CHECKING:
    import numpy as np

SCALE_SUFFIX = "_scale"


@dataclass(frozen=True)
class Logical:
    """A model tensor as it means: int8 values plus their scale count as one float tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: str | None = None  # the per-channel scale tensor of an int8 tensor

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def logical_tensors(wf: WeightFile) -> list[Logical]:
    """The file's tensors with each ``X`` int8 + ``X_scale`` float pair folded into one."""
    out = []
    scales = set()
    for name, info in wf.tensors.items():
        scale = wf.tensors.get(name + SCALE_SUFFIX)
        if info.dtype in ("int8", "uint8") and scale is not None and scale.dtype in PRECISION:
            if _scale_fits(info.shape, scale.shape):
                scales.add(scale.name)
                out.append(Logical(name, info.dtype, info.shape, scale.name))
                continue
            raise WeightsError(
                wf.path,
                f"tensor '{name}' {list(info.shape)} has scale '{scale.name}' of shape "
                f"{list(scale.shape)}; expected one scale per output channel [{info.shape[0]}]",
            )
        out.append(Logical(name, info.dtype, info.shape))
    return [t for t in out if t.name not in scales]


def _scale_fits(shape: tuple[int, ...], scale: tuple[int, ...]) -> bool:
    n = math.prod(scale)
    return n == 1 or (
        len(shape) >= 1 and n == shape[0] and (len(scale) == 1 or scale[1:] == (1,) * (len(scale) - 1))
    )


def dequantized(wf: WeightFile, t: Logical) -> np.ndarray:
    """The whole logical tensor as float32 (int8 times its per-channel scale)."""
    import numpy as np

    values = to_float32(wf.raw(t.name), t.dtype)
    if t.scale is None:
        return values
    scale = to_float32(wf.raw(t.scale), wf.tensors[t.scale].dtype).reshape(-1)
    if scale.size == 1 or values.ndim == 0:
        return values * scale.reshape(())
    return values * scale.reshape((-1,) + (1,) * (values.ndim - 1)).astype(np.float32)


def iter_float32(path: Path | str) -> Iterator[tuple[str, np.ndarray]]:
    """Each logical tensor of a model artifact as a float32 array, one at a time: a weight file, or a
    sharded checkpoint's index (its shards are read)."""
    with open_model(model_location(Path(path))) as wf:
        for t in logical_tensors(wf):
            yield t.name, dequantized(wf, t)
