"""PyTorch zip checkpoints, through ``torch.load(weights_only=True, mmap=True)`` and nothing else."""

from __future__ import annotations

import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.weights.base import PRECISION, TensorInfo, WeightFile, WeightsError, refuse_count, refuse_name

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
        legacy = not zipfile.is_zipfile(path) and _starts_with(path, LEGACY_MAGIC)
        if not legacy and not zipfile.is_zipfile(path):
            raise WeightsError(
                path,
                "not a PyTorch checkpoint (neither the zip format nor torch.save's legacy format); "
                "lakegen only reads PyTorch files with torch.load(weights_only=True) — "
                "re-save it with torch.save or as safetensors",
            )
        if not legacy:
            try:
                with zipfile.ZipFile(path) as archive:
                    members = archive.infolist()
            except (zipfile.BadZipFile, OSError) as e:
                raise WeightsError(path, f"not a readable PyTorch checkpoint: {e}") from None
            # A checkpoint holds one member per tensor storage, plus data.pkl, version and a few others.
            refuse_count(path, len(members) - 8)
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
        try:
            state = _unwrap_state_dict(state)
        except ValueError as e:
            raise WeightsError(path, str(e)) from None
        if state is None:
            raise WeightsError(path, "the checkpoint is not a state dict (a mapping of names to tensors)")
        self._tensors: dict[str, Any] = {}
        refuse_count(path, len(state))
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


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


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
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return {}
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            members.append(info.header_offset + 30 + name_len + extra_len)
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


def _unwrap_state_dict(obj: Any) -> dict[str, Any] | None:
    import torch

    for _ in range(3):
        if isinstance(obj, dict) and any(str(k).endswith(PACKED) for k in obj):
            obj = _unpack_dynamic(obj)
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            if all(isinstance(k, str) for k in obj):
                return obj
            return None
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "module"):
            obj = next(iter(obj.values()))
            continue
        # a training checkpoint: the weights beside the epoch, the optimizer's state and the like,
        # under whatever name its trainer chose (model_state_dict, model_state, ...); an optimizer's
        # state is keyed by parameter index, so it is never taken for the weights
        if not isinstance(obj, dict):
            return None
        nested = [k for k, v in obj.items() if _holds_weights(v)]
        if len(nested) > 1:
            nested = [k for k in nested if k in WEIGHTS_KEYS] or nested
        if len(nested) != 1:
            if nested:
                names = ", ".join(sorted(str(k)[:40] for k in nested)[:6])
                raise ValueError(f"the checkpoint holds several state dicts ({names}); save the one to read")
            return None
        obj = obj[nested[0]]
    return None


WEIGHTS_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module")


def _holds_weights(value: Any) -> bool:
    """A mapping of parameter names to tensors (or to packed quantised parameters)."""
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, torch.Tensor) or str(k).endswith(PACKED) for k, v in value.items())
    )


PACKED = "._packed_params._packed_params"


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


class TorchReader:
    """Files named ``*.pt``, ``*.pth`` or ``*.bin``."""

    name = "pytorch"
    suffixes: tuple[str, ...] = TORCH_SUFFIXES

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes

    def open(self, path: Path) -> WeightFile:
        return TorchFile(path)


READER = TorchReader()
