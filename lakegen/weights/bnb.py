"""bitsandbytes' layouts, as ``save_pretrained`` of a ``load_in_8bit`` / ``load_in_4bit`` model writes them.

int8 (``Linear8bitLt``): ``X.weight`` int8 codes, ``X.SCB`` float32 absmax per
row, ``X.weight_format`` (0: row-major); a value is ``code * SCB / 127``
(``int8_vectorwise_dequant``). The pair is shown as ``X.weight`` + a per-row
scale ``X.weight_scale`` = ``SCB / 127``, like lakegen's own int8.

4-bit (``Linear4bit``, nf4 or fp4): ``X.weight`` packed uint8 (two codes a
byte, the first in the high nibble), ``X.weight.absmax`` (one per ``blocksize``
values; with double quantisation itself uint8 codes under
``X.weight.nested_absmax`` / ``nested_quant_map`` plus ``nested_offset``),
``X.weight.quant_map`` (the 16 code values) and
``X.weight.quant_state.bitsandbytes__nf4``: uint8 bytes of a JSON object with
``quant_type``, ``blocksize``, ``dtype``, ``shape``. A value is
``quant_map[code] * absmax[block]``, cast to ``dtype`` (``dequantize_4bit``).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from lakegen.weights.base import MAX_NDIM, TensorInfo, WeightFile, WeightsError, to_float32

if TYPE_CHECKING:
    import numpy as np

    from lakegen.weights.scheme import Group

STATE = ".quant_state.bitsandbytes__"
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
MAX_STATE = 64 * 1024  # bytes of quant_state JSON; bitsandbytes writes under 200
MAX_FORMAT = 0  # weight_format 0 is row-major; the others are GPU tile layouts (col32, col_turing, ...)


def _bad(wf: WeightFile, name: str, why: str) -> WeightsError:
    return WeightsError(wf.path, f"bitsandbytes tensor '{name[:200]}': {why}")


class Int8:
    """``Linear8bitLt`` weights: int8 codes + ``SCB``."""

    name = "bnb-int8"

    def groups(self, wf: WeightFile) -> list[Group]:
        from lakegen.weights.scheme import Group

        out = []
        for scb_name, scb in wf.tensors.items():
            if not scb_name.endswith("SCB") or scb_name[:-3][-1:] not in ("", "."):
                continue
            prefix = scb_name[:-3]
            weight = wf.tensors.get(prefix + "weight")
            if weight is None:
                continue
            if weight.dtype != "int8" or len(weight.shape) != 2:
                raise _bad(
                    wf,
                    prefix + "weight",
                    f"needs 2-d int8 codes beside SCB, has {weight.dtype}{list(weight.shape)}",
                )
            if scb.dtype not in ("float32", "float16", "bfloat16") or scb.shape != weight.shape[:1]:
                raise _bad(
                    wf,
                    scb_name,
                    f"SCB {scb.dtype}{list(scb.shape)} is not one float per row of {list(weight.shape)}",
                )
            fmt_name = prefix + "weight_format"
            consumes = [scb_name]
            if fmt_name in wf.tensors:
                fmt = wf.raw(fmt_name).reshape(-1)
                if fmt.size != 1 or int(fmt[0]) > MAX_FORMAT:
                    raise _bad(
                        wf,
                        fmt_name,
                        f"weight_format {fmt.tolist()[:4]} is a GPU tile layout; only 0 (row) is read",
                    )
                consumes.append(fmt_name)
            scale = prefix + "weight_scale"
            out.append(Group(TensorInfo(scale, "float32", scb.shape), tuple(consumes), _scale(wf, scb_name)))
        return out


def _scale(wf: WeightFile, scb: str) -> Any:
    def values() -> np.ndarray:
        import numpy as np

        return to_float32(wf.raw(scb), wf.tensors[scb].dtype) * np.float32(1 / 127)

    return values


class FourBit:
    """``Linear4bit`` weights: packed nf4/fp4 codes, blockwise absmax, a quant_state."""

    name = "bnb-4bit"

    def groups(self, wf: WeightFile) -> list[Group]:
        from lakegen.weights.scheme import Group

        out = []
        for name in list(wf.tensors):
            if STATE not in name:
                continue
            base, kind = name.split(STATE, 1)
            if kind not in ("nf4", "fp4"):
                raise _bad(wf, name, f"unknown quant type {kind[:40]!r} (nf4, fp4)")
            state = self._state(wf, name, kind)
            parts = [base, base + ".absmax", base + ".quant_map"]
            nested = "nested_blocksize" in state
            if nested:
                parts += [base + ".nested_absmax", base + ".nested_quant_map"]
            missing = [p for p in parts if p not in wf.tensors]
            if missing:
                raise _bad(wf, base, f"its quant_state has no '{missing[0][:200]}'")
            shape = tuple(state["shape"])
            self._check(wf, base, state, shape, nested)
            label = kind
            out.append(
                Group(TensorInfo(base, label, shape), (*parts, name), _four_bit(wf, base, state, nested))
            )
        return out

    @staticmethod
    def _state(wf: WeightFile, name: str, kind: str) -> dict[str, Any]:
        info = wf.tensors[name]
        if info.dtype != "uint8" or info.numel > MAX_STATE:
            raise _bad(
                wf,
                name,
                f"quant_state must be at most {MAX_STATE:,} uint8 bytes, is {info.dtype}{list(info.shape)}",
            )
        try:
            state = json.loads(wf.raw(name).tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _bad(wf, name, f"quant_state is not JSON: {e}") from None
        if not isinstance(state, dict):
            raise _bad(wf, name, "quant_state is not a JSON object")
        shape = state.get("shape")
        checks = [
            (
                state.get("quant_type") == kind,
                f"quant_type {state.get('quant_type')!r} differs from its key's {kind!r}",
            ),
            (
                state.get("blocksize") in BLOCKSIZES,
                f"blocksize {state.get('blocksize')!r} (one of {BLOCKSIZES})",
            ),
            (state.get("dtype") in COMPUTE_DTYPES, f"dtype {state.get('dtype')!r} (one of {COMPUTE_DTYPES})"),
            (
                isinstance(shape, list)
                and len(shape) <= MAX_NDIM
                and all(type(d) is int and d >= 0 for d in shape),
                f"shape {str(shape)[:80]}",
            ),
        ]
        if "nested_blocksize" in state or "nested_offset" in state:
            offset = state.get("nested_offset")
            checks += [
                (
                    state.get("nested_blocksize") in BLOCKSIZES,
                    f"nested_blocksize {state.get('nested_blocksize')!r}",
                ),
                (
                    isinstance(offset, int | float)
                    and not isinstance(offset, bool)
                    and math.isfinite(offset),
                    f"nested_offset {offset!r}",
                ),
            ]
        for ok, what in checks:
            if not ok:
                raise _bad(wf, name, f"quant_state has {what}")
        return state

    @staticmethod
    def _check(
        wf: WeightFile, base: str, state: dict[str, Any], shape: tuple[int, ...], nested: bool
    ) -> None:
        n = math.prod(shape)
        packed, absmax, qmap = (wf.tensors[base + s] for s in ("", ".absmax", ".quant_map"))
        blocks = -(-n // state["blocksize"])
        if packed.dtype != "uint8" or packed.numel != -(-n // 2):
            raise _bad(
                wf,
                base,
                f"{packed.dtype}{list(packed.shape)} does not hold the {n:,} codes of shape {list(shape)}",
            )
        if absmax.numel != blocks or absmax.dtype != ("uint8" if nested else "float32"):
            want = "uint8" if nested else "float32"
            raise _bad(
                wf, base + ".absmax", f"{absmax.dtype}{list(absmax.shape)}; expected {blocks:,} {want} values"
            )
        if qmap.dtype != "float32" or qmap.numel != 16:
            raise _bad(wf, base + ".quant_map", f"{qmap.dtype}{list(qmap.shape)}; expected 16 float32 values")
        if nested:
            n_abs, n_map = wf.tensors[base + ".nested_absmax"], wf.tensors[base + ".nested_quant_map"]
            if n_abs.dtype != "float32" or n_abs.numel != -(-blocks // state["nested_blocksize"]):
                raise _bad(
                    wf,
                    base + ".nested_absmax",
                    f"{n_abs.dtype}{list(n_abs.shape)} does not fit {blocks:,} blocks",
                )
            if n_map.dtype != "float32" or n_map.numel != 256:
                raise _bad(
                    wf, base + ".nested_quant_map", f"{n_map.dtype}{list(n_map.shape)}; expected 256 float32"
                )


def _four_bit(wf: WeightFile, base: str, state: dict[str, Any], nested: bool) -> Any:
    def values() -> np.ndarray:
        import numpy as np

        shape = tuple(state["shape"])
        n = math.prod(shape)
        absmax = wf.raw(base + ".absmax").reshape(-1)
        if nested:
            codes = wf.raw(base + ".nested_quant_map").reshape(-1).astype(np.float32)[absmax]
            scale = _blockwise(codes, wf.raw(base + ".nested_absmax").reshape(-1), state["nested_blocksize"])
            absmax = scale + np.float32(state["nested_offset"])
        packed = wf.raw(base).reshape(-1)
        nibbles = np.empty(packed.size * 2, dtype=np.uint8)
        nibbles[0::2] = packed >> 4
        nibbles[1::2] = packed & 0x0F
        table = wf.raw(base + ".quant_map").reshape(-1).astype(np.float32)
        out = _blockwise(table[nibbles[:n]], absmax.astype(np.float32), state["blocksize"])
        return _cast(out, state["dtype"]).reshape(shape)

    return values


def _blockwise(values: np.ndarray, absmax: np.ndarray, blocksize: int) -> np.ndarray:
    """Each run of ``blocksize`` values times its block's absmax (the last run may be short)."""
    import numpy as np

    return values * np.repeat(absmax, blocksize)[: values.size]


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values as bitsandbytes returns them in ``dtype``, back in float32."""
    import numpy as np

    if dtype == "float16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
        return to_float32((rounded >> 16).astype(np.uint16), "bfloat16")
    return values.astype(np.float32)


INT8 = Int8()
FOUR_BIT = FourBit()
