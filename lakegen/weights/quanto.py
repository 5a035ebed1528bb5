"""optimum-quanto's layout, as its ``freeze``-d modules write their state dict.

``qint8`` (``WeightQBytesTensor``): ``X._data`` int8 codes and ``X._scale``, one
float per output row (shape ``[rows, 1]``); a value is ``code * scale``. The pair
is shown as int8 ``X`` + ``X_scale``, like lakegen's own int8.

``qint4`` / ``qint2`` (``WeightQBitsTensor``): ``X._data._data``, a uint8
``PackedTensor`` (code ``i`` of a column lies in row ``r`` of the packed tensor
at bit ``bits * (i // rows)``: ``pack_weights``), ``X._scale`` and ``X._shift``,
one per group; a value is ``scale * code - shift`` (a float shift) or
``scale * (code - shift)`` (an integer one). Weights are grouped along the input
dimension (``group``: reshaped to ``[groups, group_size]``), and the state dict
keeps only the grouped shape: the logical ``[rows, columns]`` is taken from the
module's bias when it has one, else the grouped shape is shown.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lakegen.weights.base import PRECISION, TensorInfo, WeightFile, WeightsError, to_float32

if TYPE_CHECKING:
    import numpy as np

    from lakegen.weights.scheme import Group

DATA, SCALE, SHIFT, PACKED = "._data", "._scale", "._shift", "._data._data"


def _bad(wf: WeightFile, name: str, why: str) -> WeightsError:
    return WeightsError(wf.path, f"optimum-quanto tensor '{name[:200]}': {why}")


class Quanto:
    """optimum-quanto's frozen weights."""

    name = "quanto"

    def groups(self, wf: WeightFile) -> list[Group]:
        out = []
        for name in list(wf.tensors):
            if name.endswith(PACKED):
                out.append(self._bits(wf, name[: -len(PACKED)]))
            elif name.endswith(DATA) and name[: -len(DATA)] + SCALE in wf.tensors:
                out += self._bytes(wf, name[: -len(DATA)])
        return out

    @staticmethod
    def _scale_of(wf: WeightFile, base: str, rows: int) -> TensorInfo:
        scale = wf.tensors.get(base + SCALE)
        if scale is None:
            raise _bad(wf, base, f"has codes but no '{base[:200]}{SCALE}'")
        if scale.dtype not in PRECISION or not scale.dtype.startswith(("float", "bfloat")):
            raise _bad(wf, base + SCALE, f"scale of dtype {scale.dtype}")
        if scale.numel != rows or (len(scale.shape) > 1 and math.prod(scale.shape[1:]) != 1):
            raise _bad(wf, base + SCALE, f"{list(scale.shape)} is not one scale per row of {rows:,}")
        return scale

    def _bytes(self, wf: WeightFile, base: str) -> list[Group]:
        from lakegen.weights.scheme import Group

        data = wf.tensors[base + DATA]
        if data.dtype != "int8" or len(data.shape) < 1:
            raise _bad(
                wf, base + DATA, f"codes of {data.dtype}{list(data.shape)} (int8 is read; float8 is not yet)"
            )
        self._scale_of(wf, base, data.shape[0])
        # the codes stay as stored under the logical name; the scale beside them as X_scale
        codes = Group(TensorInfo(base, "int8", data.shape), (base + DATA,), lambda: wf.raw(base + DATA))
        scale = Group(
            TensorInfo(base + "_scale", "float32", (data.shape[0],)),
            (base + SCALE,),
            lambda: to_float32(wf.raw(base + SCALE), wf.tensors[base + SCALE].dtype).reshape(-1),
        )
        return [codes, scale]

    def _bits(self, wf: WeightFile, base: str) -> Group:
        from lakegen.weights.scheme import Group

        packed = wf.tensors[base + PACKED]
        if packed.dtype != "uint8" or len(packed.shape) != 2:
            raise _bad(wf, base + PACKED, f"packed codes of {packed.dtype}{list(packed.shape)}")
        scale = wf.tensors.get(base + SCALE)
        shift = wf.tensors.get(base + SHIFT)
        if scale is None or shift is None:
            raise _bad(wf, base, f"packed codes need '{SCALE[1:]}' and '{SHIFT[1:]}' beside them")
        groups = scale.numel
        bits = [b for b in (4, 2) if -(-groups // (8 // b)) == packed.shape[0]]
        if len(bits) != 1:
            why = "fit both 4 and 2 bits" if bits else "fit neither 4 nor 2 bits"
            raise _bad(wf, base + PACKED, f"{list(packed.shape)} packed rows for {groups:,} groups {why}")
        self._scale_of(wf, base, groups)
        if shift.numel != groups or not (
            shift.dtype in ("uint8", "int8") or shift.dtype.startswith(("float", "bfloat"))
        ):
            raise _bad(wf, base + SHIFT, f"{shift.dtype}{list(shift.shape)} is not one shift per group")
        grouped = (groups, packed.shape[1])
        bias = wf.tensors.get(base.removesuffix("weight") + "bias") if base.endswith("weight") else None
        shape: tuple[int, ...] = grouped
        if (
            bias is not None
            and len(bias.shape) == 1
            and bias.shape[0]
            and math.prod(grouped) % bias.shape[0] == 0
        ):
            shape = (bias.shape[0], math.prod(grouped) // bias.shape[0])
        label = f"quanto_int{bits[0]}"
        parts = (base + PACKED, base + SCALE, base + SHIFT)
        return Group(TensorInfo(base, label, shape), parts, _unpacked(wf, base, bits[0], grouped, shape))


def _unpacked(wf: WeightFile, base: str, bits: int, grouped: tuple[int, int], shape: tuple[int, ...]) -> Any:
    def values() -> np.ndarray:
        import numpy as np

        packed = wf.raw(base + PACKED)
        per = 8 // bits
        mask = np.uint8((1 << bits) - 1)
        codes = np.concatenate([(packed >> np.uint8(bits * i)) & mask for i in range(per)])[: grouped[0]]
        scale = to_float32(wf.raw(base + SCALE), wf.tensors[base + SCALE].dtype).reshape(-1, 1)
        shift_info = wf.tensors[base + SHIFT]
        raw_shift = wf.raw(base + SHIFT).reshape(-1, 1)
        if shift_info.dtype in ("uint8", "int8"):
            out = scale * (codes.astype(np.int16) - raw_shift.astype(np.int16)).astype(np.float32)
        else:
            out = scale * codes.astype(np.float32) - to_float32(raw_shift, shift_info.dtype)
        return out.astype(np.float32).reshape(shape)

    return values


SCHEME = Quanto()
