"""``torch.ao.quantization.quantize_dynamic`` state dicts, as :mod:`~lakegen.weights.torchzip` reads
them, under the float model's names.

A dynamic-quantised Linear saves ``X._packed_params._packed_params``, a tuple (weight, bias) of a
qint8 tensor and a float one, beside ``X._packed_params.dtype`` (``LinearPackedParams.
_save_to_state_dict`` in torch/ao/nn/quantized/modules/linear.py) and the output ``X.scale`` and
``X.zero_point`` every quantised Linear keeps (kept here, as ``torch.load`` shows them). A dynamic
LSTM or GRU saves one ``torch.ScriptObject`` per layer and direction, ``X._all_weight_values.N.param``
with N = layer × directions + direction (``PackedParameter`` in .../dynamic/modules/rnn.py), whose
state is ``("quantized_dynamic", [b_ih, b_hh], [], [reduce_range], [packed w_ih, packed w_hh])``,
each packed weight a ``LinearPackedParamsBase`` with state ``(weight, bias)``; rnn.py's
``_weight_bias`` names them ``weight_ih_l{layer}`` (``_reverse`` for the second direction) and so on.

A qint8 weight comes out as its int8 codes ``W`` and a ``W_scale`` (one float, or one per output
row), the pair :func:`~lakegen.weights.quantized.logical_tensors` folds into ``code × scale``:
torch's own dequantisation when the zero point is 0, as the symmetric observers of
quantize_dynamic write it. Any other zero point, or channels along another axis, is refused in one
line. A float16 one (``dtype=torch.float16``: state ``("quantized_fp16", [], [], [], [w_ih, w_hh])``,
the biases in the packed pairs) is saved as float32 and comes out as the float16 it was packed as
(:class:`~lakegen.weights.torchvalues.Float16`). Dynamic cells (``LSTMCell``, ``GRUCell``,
``RNNCell``) save their two packed pairs as ``X._packed_weight_ih`` / ``_hh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lakegen.weights.base import WeightsError
from lakegen.weights.statedict import CELL, CELL_SIDE, PACKED
from lakegen.weights.torchvalues import (
    CELL_CLASS,
    LINEAR_CLASS,
    Float16,
    QTensor,
    QuantDtype,
    ScriptObject,
    StoredTensor,
    Unsupported,
)

GATES = (3, 4)  # gate rows per hidden unit: GRU, LSTM


def unpack(path: Path, state: dict[Any, Any]) -> dict[Any, Any]:
    """``state`` with each packed Linear, LSTM/GRU and cell as named :class:`StoredTensor` codes and
    biases plus float32 scales (numpy arrays); :class:`Unsupported` for a layout outside the grammar."""
    cells: dict[str, dict[int, Any]] = {}
    for key, value in state.items():
        found = CELL.search(str(key))
        if found:
            cells.setdefault(str(key)[: found.start()], {})[int(found.group(1))] = value
    out: dict[Any, Any] = {}

    def put(tensors: dict[Any, Any]) -> None:
        for name, value in tensors.items():
            if name in out:
                raise WeightsError(
                    path, f"tensor '{str(name)[:200]}' is named twice once packed parameters are unpacked"
                )
            out[name] = value

    for key, value in state.items():
        name = str(key)
        found = CELL.search(name)
        side = CELL_SIDE.search(name)
        if found:
            prefix = name[: found.start()]
            if prefix in cells:
                put(_rnn(path, prefix, cells.pop(prefix)))
        elif side:
            put(_linear(path, name[: side.start()], _packed_linear(value), side[1]))
        elif name == PACKED[1:] or name.endswith(PACKED):
            dtype = state.get(name.removesuffix("_packed_params") + "dtype", QuantDtype("qint8"))
            if isinstance(value, tuple) and value and _kind(value[0]) != dtype:
                said = dtype.name if isinstance(dtype, QuantDtype) else type(dtype).__name__
                raise WeightsError(
                    path,
                    f"packed Linear '{name[:200]}' holds {_kind(value[0]).name} weights; dtype {said}",
                )
            put(_linear(path, name.removesuffix(PACKED[1:]).removesuffix("."), value))
        elif name.endswith("_packed_params.dtype") and name.removesuffix("dtype") + "_packed_params" in state:
            if value not in (QuantDtype("qint8"), QuantDtype("float16")):
                raise Unsupported("a packed Linear of a dtype other than qint8 or float16")
        else:
            put({key: value})
    return out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _linear(path: Path, prefix: str, value: Any, side: str = "") -> dict[str, Any]:
    """A Linear's packed ``(weight, bias)`` as ``weight`` and ``bias`` (a cell's ``weight_ih`` ...)."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise Unsupported("packed Linear parameters that are not a (weight, bias) pair")
    weight, bias = value
    suffix = f"_{side}" if side else ""
    out = _codes(path, _join(prefix, "weight" + suffix), weight)
    if bias is not None:
        name = _join(prefix, "bias" + suffix)
        out[name] = _bias(path, name, bias, _rows(weight))
    return out


def _packed_linear(value: Any) -> Any:
    """The state of a ``LinearPackedParamsBase`` ScriptObject."""
    if not isinstance(value, ScriptObject) or value.kind != LINEAR_CLASS:
        raise Unsupported("packed weights that are not packed Linear parameters")
    return value.state


def _kind(weight: Any) -> QuantDtype:
    """How a packed weight was packed: a qint8 tensor, or float16 (given back as float32)."""
    if isinstance(weight, QTensor):
        return QuantDtype("qint8")
    if isinstance(weight, StoredTensor) and weight.dtype == "float32":
        return QuantDtype("float16")
    raise Unsupported("a packed weight that is neither a qint8 nor a float32 tensor")


def _codes(path: Path, name: str, weight: Any) -> dict[str, Any]:
    """A packed weight under ``name``: int8 codes with their scale under ``name_scale``, or the
    float16 values of a float16 packing."""
    _kind(weight)
    shape = _shape(weight)
    if len(shape) != 2:
        raise WeightsError(path, f"packed weight '{name}' is {len(shape)}-d; a Linear's is 2-d")
    if isinstance(weight, QTensor):
        return {name: weight.codes, name + "_scale": _scale(path, name, weight)}
    return {name: Float16(weight)}


def _shape(weight: Any) -> tuple[int, ...]:
    return tuple(weight.codes.shape if isinstance(weight, QTensor) else weight.shape)


def _rows(weight: Any) -> int:
    return _shape(weight)[0]


def _bias(path: Path, name: str, bias: Any, rows: int) -> StoredTensor:
    if not isinstance(bias, StoredTensor):
        raise Unsupported("a packed bias that is not a tensor")
    if bias.dtype != "float32" or bias.shape != (rows,):
        raise WeightsError(
            path,
            f"bias '{name}' is {bias.dtype}{list(bias.shape)}; float32 [{rows:,}] expected beside its weight",
        )
    return bias


def _scale(path: Path, name: str, q: QTensor) -> np.ndarray:
    """The float32 scale of ``q`` (one, or one per row), its zero points checked to be 0."""
    if q.axis is None:
        if q.zero_point != 0:
            raise WeightsError(path, f"tensor '{name}' has a nonzero zero point (read: symmetric int8)")
        return _frozen(np.array([q.scale], dtype=np.float32))
    if q.axis != 0:
        raise WeightsError(
            path, f"tensor '{name}' is quantised per channel along axis {q.axis}; lakegen reads rows"
        )
    rows = q.codes.shape[0]
    scales, zeros = q.scale, q.zero_point
    assert isinstance(scales, StoredTensor) and isinstance(zeros, StoredTensor)
    if (scales.dtype, scales.shape, zeros.dtype, zeros.shape) not in (
        ("float64", (rows,), "int64", (rows,)),
        ("float32", (rows,), "int64", (rows,)),
    ):
        raise WeightsError(
            path,
            f"tensor '{name}' of {rows:,} rows has per-channel scales {scales.dtype}{list(scales.shape)} "
            f"and zero points {zeros.dtype}{list(zeros.shape)}; expected a float and an int64 per row",
        )
    if np.any(_vector(path, zeros)):
        raise WeightsError(path, f"tensor '{name}' has a nonzero zero point (read: symmetric int8)")
    return _frozen(_vector(path, scales).astype(np.float32))


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False  # served as is by every raw() call
    return values


def _vector(path: Path, t: StoredTensor) -> np.ndarray:
    """A 1-d tensor's values, reading only the bytes it spans (torchzip checked they lie in the file)."""
    n, stride = t.shape[0], t.stride[0]
    span = (n - 1) * stride + 1 if n else 0
    with open(path, "rb") as f:
        f.seek(t.start + t.offset * t.itemsize)
        data = f.read(span * t.itemsize)
    if len(data) != span * t.itemsize:
        raise WeightsError(path, f"truncated zip checkpoint: storage '{t.key[:80]}' ends past the file")
    base = np.frombuffer(data, np.dtype(t.dtype).newbyteorder("<"), span)
    return np.lib.stride_tricks.as_strided(base, (n,), (stride * t.itemsize,), writeable=False).copy()


def _cell(path: Path, value: Any) -> tuple[tuple[Any, Any], tuple[Any, Any], list[Any]]:
    """A packed cell's ``(w_ih, bias)``, ``(w_hh, bias)`` and its own ``[b_ih, b_hh]``: for
    ``quantized_dynamic`` the state ``(kind, [b_ih, b_hh], [], [reduce_range], [w_ih, w_hh])``,
    for ``quantized_fp16`` ``(kind, [], [], [], [w_ih, w_hh])`` with the biases in the packed ones."""
    if not isinstance(value, ScriptObject) or value.kind != CELL_CLASS:
        raise Unsupported("an _all_weight_values entry that is not a packed RNN cell")
    state = value.state
    if (
        not isinstance(state, tuple)
        or len(state) != 5
        or state[0] not in ("quantized_dynamic", "quantized_fp16")
    ):
        raise Unsupported("a packed RNN cell other than 'quantized_dynamic' or 'quantized_fp16'")
    kind, biases, doubles, ints, packed = state
    half = kind == "quantized_fp16"
    if (
        not isinstance(biases, list)
        or len(biases) != (0 if half else 2)
        or not all(isinstance(b, StoredTensor) for b in biases)
        or doubles != []
        or not isinstance(ints, list)
        or ints not in (([],) if half else ([], [0], [1]))
        or not all(type(i) is int for i in ints)
        or not isinstance(packed, list)
        or len(packed) != 2
    ):
        raise Unsupported(f"a packed RNN cell whose state does not fit torch's {kind}")
    pairs = []
    for p in packed:
        state = _packed_linear(p)
        if not isinstance(state, tuple) or len(state) != 2:
            raise Unsupported("packed Linear parameters that are not a (weight, bias) pair")
        if _kind(state[0]) != QuantDtype("float16" if half else "qint8"):
            raise WeightsError(path, f"a {kind} cell holds a {_kind(state[0]).name} weight")
        pairs.append(state)
    return pairs[0], pairs[1], biases if biases else [pairs[0][1], pairs[1][1]]


def _rnn(path: Path, prefix: str, cells: dict[int, Any]) -> dict[str, Any]:
    """A dynamic LSTM's or GRU's cells as ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ..."""
    where = f"'{_join(prefix, '_all_weight_values')[:200]}'"
    if sorted(cells) != list(range(len(cells))):
        raise WeightsError(path, f"{where} holds cells {sorted(cells)[:8]}; expected 0 to {len(cells) - 1}")
    read = []
    for i in range(len(cells)):
        ih, hh, biases = _cell(path, cells[i])
        for (_, bias), own in zip((ih, hh), biases, strict=True):
            if bias is not None and bias != own:
                raise WeightsError(path, f"{where} cell {i}: its packed biases are not the cell's own")
        read.append((_shape(ih[0]), _shape(hh[0]), ih, hh, biases))
    gate_rows, hidden = read[0][1] if len(read[0][1]) == 2 else (0, 0)
    inputs = [ih_shape[1] if len(ih_shape) == 2 else -1 for ih_shape, *_ in read]
    if (
        not hidden
        or gate_rows % hidden
        or gate_rows // hidden not in GATES
        or any(
            hh_shape != (gate_rows, hidden) or ih_shape[:1] != (gate_rows,) for ih_shape, hh_shape, *_ in read
        )
    ):
        shapes = ", ".join(f"{list(a)}/{list(b)}" for a, b, *_ in read[:4])
        raise WeightsError(
            path, f"{where}: cell weights {shapes} are not those of an LSTM or GRU layer stack"
        )
    one = all(n == hidden for n in inputs[1:])
    two = len(read) % 2 == 0 and inputs[1] == inputs[0] and all(n == 2 * hidden for n in inputs[2:])
    if one == two:
        said = f"{where}: {len(read)} cells of inputs {inputs[:8]} and hidden size {hidden}"
        raise WeightsError(
            path,
            f"{said} fit both stacked and bidirectional layers, and the state dict does not say which"
            if one
            else f"{said} fit neither stacked nor bidirectional layers",
        )
    out: dict[str, Any] = {}
    for i, (_, _, ih, hh, (b_ih, b_hh)) in enumerate(read):
        layer, direction = divmod(i, 1 if one else 2)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        out.update(_codes(path, _join(prefix, "weight_ih" + suffix), ih[0]))
        out.update(_codes(path, _join(prefix, "weight_hh" + suffix), hh[0]))
        out[_join(prefix, "bias_ih" + suffix)] = _bias(
            path, _join(prefix, "bias_ih" + suffix), b_ih, gate_rows
        )
        out[_join(prefix, "bias_hh" + suffix)] = _bias(
            path, _join(prefix, "bias_hh" + suffix), b_hh, gate_rows
        )
    return out
