"""The values :mod:`lakegen.weights.torchzip` builds from a data.pkl it disassembles: tensors as
views of storage members, torch.ao's quantised tensors and the ScriptObjects of its packed
parameters, and the exception that leaves a file to ``torch.load(weights_only=True)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Unsupported(Exception):
    """data.pkl steps outside the grammar read here: ``torch.load(weights_only=True)`` decides."""


@dataclass(frozen=True)
class QuantDtype:
    """``torch.qint8`` or ``torch.float16`` as a dynamic-quantised Linear's ``_packed_params.dtype``
    entry names it."""

    name: str


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as data.pkl describes it: a strided view (in elements) of one storage member."""

    key: str
    dtype: str
    itemsize: int
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    start: int  # the file offset of the storage's first byte
    storage_numel: int

    @property
    def contiguous(self) -> bool:
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


@dataclass(frozen=True)
class QTensor:
    """A ``_rebuild_qtensor`` tensor: int8 ``codes``, a value being ``(code - zero_point) * scale``,
    one scale and zero point (``axis`` None) or a tensor of each along ``axis``."""

    codes: StoredTensor
    scale: float | StoredTensor
    zero_point: int | StoredTensor
    axis: int | None


class ScriptObject:
    """A ``torch.ScriptObject`` as NEWOBJ makes it, given by BUILD the value of its TorchScript
    class's ``__getstate__`` (``state``) and that class's name (``kind``)."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.state: Any = None

    def build(self, state: Any) -> None:
        if self.kind is not None or not isinstance(state, tuple) or len(state) != 2:
            raise Unsupported("BUILD of a ScriptObject outside the grammar")
        if state[1] not in SCRIPT_CLASSES:
            raise Unsupported("a ScriptObject of a TorchScript class other than a packed cell or Linear")
        self.state, self.kind = state


CELL_CLASS = "__torch__.torch.classes.rnn.CellParamsBase"
LINEAR_CLASS = "__torch__.torch.classes.quantized.LinearPackedParamsBase"
SCRIPT_CLASSES = (CELL_CLASS, LINEAR_CLASS)


@dataclass(frozen=True)
class Float16:
    """A float32 tensor of float16 values, read as float16: the weight ``torch.ops.quantized.
    linear_prepack_fp16`` packs as float16 and its ``__getstate__`` gives back as float32."""

    values: StoredTensor

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape
