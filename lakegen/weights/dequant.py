"""A library's own quantisation read back as the values the model computes with.

bitsandbytes and optimum-quanto save a quantised tensor as several stored
tensors (codes, scales, a quantisation state). A :class:`Scheme` recognises such
groups in an open file and says, for each, which stored tensors it consumes and
what logical tensor stands for them: either int8 codes with a per-row scale
(which :func:`~lakegen.weights.quantized.logical_tensors` folds as it folds
lakegen's own ``X`` + ``X_scale``), or float32 values under a dtype label of the
format (``nf4``, ``quanto_int4``) whose effective precision
:data:`~lakegen.weights.base.DEQUANTIZED` gives. :func:`open_weights` opens a file and, when any
scheme finds a group, wraps it in a :class:`DequantizedFile`. A group whose parts
do not fit together is refused with one line, never read as codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.weights import bnb, quanto
from lakegen.weights.base import TensorInfo, WeightFile, WeightsError
from lakegen.weights.registry import open_file
from lakegen.weights.scheme import Group, Scheme

if TYPE_CHECKING:
    import numpy as np


SCHEMES: list[Scheme] = [bnb.INT8, bnb.FOUR_BIT, quanto.SCHEME]


class DequantizedFile(WeightFile):
    """A weight file whose quantised groups are shown as their logical tensors."""

    def __init__(self, inner: WeightFile, groups: list[Group], schemes: list[str]):
        super().__init__(inner.path)
        self.inner = inner
        self.format = "+".join([inner.format, *schemes])
        hidden = {name for g in groups for name in g.consumes}
        self._virtual = {g.info.name: g for g in groups}
        for name, info in inner.tensors.items():
            if name not in hidden:
                self.tensors[name] = info
        for g in groups:
            if g.info.name in self.tensors:
                raise WeightsError(
                    inner.path, f"tensor '{g.info.name}' is both stored and made by {self.format}"
                )
            self.tensors[g.info.name] = g.info

    @property
    def stored(self) -> dict[str, TensorInfo]:
        return self.inner.tensors

    def raw(self, name: str) -> np.ndarray:
        group = self._virtual.get(name)
        return group.values() if group is not None else self.inner.raw(name)

    def offset(self, name: str) -> int | None:
        return None if name in self._virtual else self.inner.offset(name)

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        if name in self._virtual:
            return super().gather(name, flat)
        return self.inner.gather(name, flat)

    def close(self) -> None:
        self.inner.close()


def dequantize(wf: WeightFile) -> WeightFile:
    """``wf`` itself, or a :class:`DequantizedFile` over it when a scheme knows some of its tensors."""
    groups: list[Group] = []
    used: list[str] = []
    try:
        for scheme in SCHEMES:
            found = scheme.groups(wf)
            if found:
                groups += found
                used.append(scheme.name)
        if not groups:
            return wf
        taken: dict[str, str] = {}
        for g in groups:
            for name in g.consumes:
                if name in taken:
                    raise WeightsError(
                        wf.path, f"tensor '{name}' belongs to both '{taken[name]}' and '{g.info.name}'"
                    )
                taken[name] = g.info.name
        return DequantizedFile(wf, groups, used)
    except BaseException:
        wf.close()
        raise


def open_weights(path: Path | str) -> WeightFile:
    """Open one weight file (its format found by the registry), its library quantisation read back."""
    return dequantize(open_file(path))
