"""PyTorch zip checkpoints: read by :mod:`lakegen.weights.torchzip` when data.pkl keeps to the
grammar ``torch.save`` writes for plain tensors and torch.ao's dynamic quantisation
(:mod:`lakegen.weights.packed`), else through ``torch.load(weights_only=True, mmap=True)`` and
nothing else."""

from __future__ import annotations

import contextlib
import math
import mmap
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.weights.base import (
    PRECISION,
    STORAGE,
    TensorInfo,
    WeightFile,
    WeightsError,
    refuse_name,
    zip_local_header,
)
from lakegen.weights.statedict import PACKED, state_dict
from lakegen.weights.torchvalues import Float16, StoredTensor, Unsupported
from lakegen.weights.torchzip import read_state, zip_members

if TYPE_CHECKING:
    import numpy as np

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


class TorchFile(WeightFile):
    """A PyTorch checkpoint loaded with ``weights_only=True`` and ``mmap=True``: nothing else."""

    format = "pytorch"

    def __init__(self, path: Path):
        super().__init__(path)
        import pickle

        import torch

        # torch.save before 1.6 (and with _use_new_zipfile_serialization=False) wrote a stream of
        # pickles that opens with this magic number; weights_only reads it too, but cannot map it
        legacy = is_legacy(path)
        if not legacy:
            zip_members(path)
        try:
            with warnings.catch_warnings():  # torch's own, when it rebuilds a quantised tensor
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=not legacy)
        except pickle.UnpicklingError as e:
            first = _first_line(e)
            raise WeightsError(
                path,
                "refused: the checkpoint needs more than torch.load(weights_only=True) allows, so it "
                f"is not unpickled ({first[:200]})",
            ) from None
        except Exception as e:
            first = _first_line(e)
            raise WeightsError(path, f"not a readable PyTorch checkpoint: {first[:200]}") from None
        state = state_dict(path, state, torch.Tensor, _unpack_dynamic)
        self._tensors: dict[str, Any] = {}
        for name, tensor in state.items():
            refuse_name(path, str(name), tuple(tensor.shape))
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype not in PRECISION and dtype not in ("int16", "int32", "int64", "bool"):
                raise WeightsError(path, f"tensor '{name}' has unsupported dtype {dtype}")
            self.tensors[name] = TensorInfo(name, dtype, tuple(tensor.shape))
            self._tensors[name] = tensor
        self._offsets = {} if legacy else _torch_file_offsets(path, self._tensors)
        if self._offsets:
            self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
            self._fd = self._file.fileno()

    def offset(self, name: str) -> int | None:
        return self._offsets.get(name)

    def raw(self, name: str) -> np.ndarray:
        import torch

        tensor = self._tensors[name].detach().contiguous()  # a saved Parameter comes back requiring grad
        dtype = self.tensors[name].dtype
        if dtype == "bfloat16":
            return tensor.view(torch.int16).numpy().view("uint16")
        if dtype.startswith("float8"):
            return tensor.view(torch.uint8).numpy()
        return tensor.numpy()

    def close(self) -> None:
        self._tensors.clear()
        if self._offsets:
            self._file.close()


LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickle of 0x1950a86a20f9469cfc6c


def is_legacy(path: Path) -> bool:
    """Whether ``path`` is in torch.save's pre-zip format (read through weights_only, never mapped)."""
    with open(path, "rb") as f:
        return f.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC


def _first_line(e: Exception) -> str:
    """An exception's first line without terminal escapes (torch bolds part of its weights_only advice)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    said = [line.strip() for line in text.splitlines() if "WeightsUnpickler error:" in line]
    return said[0] if said else text.splitlines()[0] if text else type(e).__name__


def _torch_file_offsets(path: Path, tensors: dict[str, Any]) -> dict[str, int]:
    """Where each contiguous tensor's bytes lie in a zip checkpoint loaded with ``mmap=True``.

    torch maps the whole file, so a storage's address minus its zip member's
    data offset is one constant; each tensor is checked against the bytes at its
    offset, and any doubt leaves the tensor to be read through torch.
    """
    import torch

    members = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if "/data/" not in info.filename or info.compress_type != zipfile.ZIP_STORED:
                continue
            local = zip_local_header(f, info)
            if local is None:
                return {}
            members.append(local[0])
        if not members:
            return {}
        storages = sorted({t.untyped_storage().data_ptr() for t in tensors.values() if t.numel()})
        if not storages:
            return {}
        base = storages[0] - min(members)
        known = set(members)
        if any(ptr - base not in known for ptr in storages):
            return {}
        out = {}
        for name, t in tensors.items():
            if not t.numel() or not t.is_contiguous():
                continue
            start = t.untyped_storage().data_ptr() - base + t.storage_offset() * t.element_size()
            head = t.reshape(-1)[: max(1, 16 // t.element_size())].contiguous().view(torch.uint8)
            f.seek(start)
            if f.read(head.numel()) != head.numpy().tobytes():
                return {}
            out[name] = start
        return out


def _unpack_dynamic(state: dict[Any, Any]) -> dict[Any, Any]:
    """A ``torch.ao.quantization.quantize_dynamic`` state dict with each Linear's packed
    ``(weight, bias)`` as ``X.weight`` int8 codes, ``X.weight_scale`` and ``X.bias``.

    ``torch.load(weights_only=True)`` rebuilds these packed parameters (a tuple of a
    quantised tensor and a float one) without unpickling anything else; a value is
    ``(code - zero_point) * scale``, and only symmetric int8 (zero point 0), per
    tensor or per output row, fits lakegen's int8 + row scale.
    """
    import torch

    out: dict[Any, Any] = {}
    for key, value in state.items():
        name = str(key)
        if name.endswith("._packed_params.dtype") and isinstance(value, torch.dtype):
            continue
        if not name.endswith(PACKED):
            out[key] = value
            continue
        prefix = name.removesuffix(PACKED)
        if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[0], torch.Tensor):
            return state  # not packed Linear parameters: left for the checks that refuse it
        weight, bias = value
        if weight.dtype != torch.qint8:
            raise ValueError(f"tensor '{prefix}.weight' is quantised as {weight.dtype}; lakegen reads qint8")
        if weight.qscheme() == torch.per_tensor_affine:
            scale, zero = torch.tensor([weight.q_scale()]), torch.tensor([weight.q_zero_point()])
        elif weight.qscheme() == torch.per_channel_affine and weight.q_per_channel_axis() == 0:
            scale, zero = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
        else:
            raise ValueError(f"tensor '{prefix}.weight' is quantised {weight.qscheme()}; lakegen reads rows")
        if bool(zero.ne(0).any()):
            raise ValueError(f"tensor '{prefix}.weight' has a nonzero zero point (read: symmetric int8)")
        out[prefix + ".weight"] = weight.int_repr()
        out[prefix + ".weight_scale"] = scale.float()
        if bias is not None:
            out[prefix + ".bias"] = bias.detach()
    return out


class ZipTorchFile(WeightFile):
    """A zip PyTorch checkpoint in :class:`StoredTensor` form, memory-mapped like safetensors; of a
    dynamic-quantised model (:mod:`.packed`), the int8 weights' scales (a few floats each) held as
    arrays, and float16-packed weights converted from the float32 they are saved as, exactly."""

    format = "pytorch"

    def __init__(self, path: Path, state: dict[str, StoredTensor | Float16 | np.ndarray]):
        super().__init__(path)
        self._stored = {k: v for k, v in state.items() if isinstance(v, StoredTensor)}
        self._half = {k: v.values for k, v in state.items() if isinstance(v, Float16)}
        self._held = {k: v for k, v in state.items() if not isinstance(v, StoredTensor | Float16)}
        for name, t in state.items():
            dtype = "float16" if isinstance(t, Float16) else str(t.dtype)
            self.tensors[name] = TensorInfo(name, dtype, tuple(t.shape))
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._fd = self._file.fileno()
        self.map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)

    def offset(self, name: str) -> int | None:
        t = self._stored.get(name)
        if t is None or not t.contiguous or not math.prod(t.shape):
            return None
        return t.start + t.offset * t.itemsize

    def raw(self, name: str) -> np.ndarray:
        import numpy as np

        if name in self._held:
            return self._held[name]
        if name in self._half:
            values = self._array(self._half[name])
            half = values.astype(np.float16)
            if not np.array_equal(half.astype(np.float32), values, equal_nan=True):
                raise WeightsError(
                    self.path, f"tensor '{name[:200]}' of a float16 packing holds values float16 cannot hold"
                )
            return half
        return self._array(self._stored[name])

    def _array(self, t: StoredTensor) -> np.ndarray:
        import numpy as np

        storage = np.dtype(STORAGE.get(t.dtype, t.dtype)).newbyteorder("<")
        if not math.prod(t.shape):
            return np.zeros(t.shape, dtype=storage)
        start = t.start + t.offset * t.itemsize if t.contiguous else None
        if start is not None:
            return np.frombuffer(self.map, storage, math.prod(t.shape), start).reshape(t.shape)
        base = np.frombuffer(self.map, storage, t.storage_numel - t.offset, t.start + t.offset * t.itemsize)
        strides = tuple(s * t.itemsize for s in t.stride)
        view = np.lib.stride_tricks.as_strided(base, t.shape, strides, writeable=False)
        return np.ascontiguousarray(view)

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view is still alive; the map goes with the last view
            self.map.close()
        self._file.close()


def open_zip(path: Path) -> ZipTorchFile:
    """The checkpoint as :mod:`~lakegen.weights.torchzip` reads it; :class:`Unsupported` for torch.load."""
    import numpy as np

    from lakegen.weights.packed import unpack

    state = state_dict(path, read_state(path), (StoredTensor, Float16, np.ndarray), lambda s: unpack(path, s))
    for name, t in state.items():
        refuse_name(path, name, t.shape)
    return ZipTorchFile(path, state)


class TorchReader:
    """Files named ``*.pt``, ``*.pth`` or ``*.bin``."""

    name = "pytorch"
    suffixes: tuple[str, ...] = TORCH_SUFFIXES

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes

    def open(self, path: Path) -> WeightFile:
        if is_legacy(path):
            return TorchFile(path)
        try:
            return open_zip(path)
        except Unsupported:
            return TorchFile(path)


READER = TorchReader()
