"""ONNX models (``torch.onnx.export``, ``onnx.save``): the main graph's initializers are its weights.

Their headers come from :func:`lakegen.artifacts.onnx.initializers` (the protobuf
walked without the ``onnx`` package); their bytes are read in place, from the model
file (``raw_data``) or from the external data file a tensor names, which must lie
in the model's folder (see :func:`lakegen.artifacts.layout.onnx_external_files`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.artifacts.layout import onnx_external_files
from lakegen.artifacts.onnx import Initializer, initializers
from lakegen.weights.base import (
    STORAGE,
    TensorInfo,
    WeightFile,
    WeightsError,
    read_runs,
    refuse_count,
    refuse_name,
)

if TYPE_CHECKING:
    import numpy as np

# onnx.TensorProto.DataType -> our dtype name
DATA_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
    17: "float8_e4m3fn",
    19: "float8_e5m2",
}


class OnnxFile(WeightFile):
    """An ONNX model's initializers, each read where it lies."""

    format = "onnx"

    def __init__(self, path: Path):
        import numpy as np

        super().__init__(path)
        found = initializers(path)
        refuse_count(path, len(found))
        external = set(onnx_external_files(path))  # each checked to lie in the model's folder
        self._where: dict[str, tuple[Path, int]] = {}
        for t in found:
            refuse_name(path, t.name, t.dims)
            dtype = DATA_TYPES.get(t.data_type)
            if dtype is None:
                raise WeightsError(
                    path, f"tensor '{t.name[:80]}' has unsupported ONNX data type {t.data_type}"
                )
            if t.packed and dtype not in ("float32", "float64"):
                raise WeightsError(path, f"tensor '{t.name[:80]}' holds {dtype} values in a typed field")
            if t.name in self.tensors:
                raise WeightsError(path, f"tensor '{t.name[:80]}' is stored twice")
            need = math.prod(t.dims) * np.dtype(STORAGE.get(dtype, dtype)).itemsize
            file = path if t.location is None else _external(path, t, external)
            length = t.length if t.length is not None else file.stat().st_size - t.offset
            if length != need:
                raise WeightsError(
                    path,
                    f"tensor '{t.name[:80]}' holds {length:,} bytes; its shape {list(t.dims)} needs {need:,}",
                )
            if t.offset + need > file.stat().st_size:
                raise WeightsError(path, f"tensor '{t.name[:80]}' runs past the end of {file.name}")
            self.tensors[t.name] = TensorInfo(t.name, dtype, t.dims)
            self._where[t.name] = (file, t.offset)
        self._fds: dict[Path, int] = {}
        try:
            for file in {f for f, _ in self._where.values()}:
                self._fds[file] = os.open(file, os.O_RDONLY)
        except OSError:
            self.close()
            raise
        self._fd = self._fds.get(path)

    def offset(self, name: str) -> int | None:
        file, offset = self._where[name]
        return offset if file == self.path else None

    def raw(self, name: str) -> np.ndarray:
        import numpy as np

        file, offset = self._where[name]
        info = self.tensors[name]
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        data = os.pread(self._fds[file], info.numel * storage.itemsize, offset)
        return np.frombuffer(data, dtype=storage).reshape(info.shape)

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        import numpy as np

        file, offset = self._where[name]
        if file == self.path:
            return super().gather(name, flat)
        info = self.tensors[name]
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        offsets = offset + np.asarray(flat, dtype=np.int64) * storage.itemsize
        return read_runs(self._fds[file], offsets, storage.itemsize).view(storage)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        self._fd = None


def _external(path: Path, t: Initializer, files: set[Path]) -> Path:
    file = path.parent / str(t.location)
    if file not in files:
        raise WeightsError(
            path, f"tensor '{t.name[:80]}' names external data '{t.location}' lakegen cannot read"
        )
    return file


class OnnxReader:
    """Files named ``*.onnx``."""

    name = "onnx"
    suffixes: tuple[str, ...] = (".onnx",)

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes

    def open(self, path: Path) -> WeightFile:
        return OnnxFile(path)


READER = OnnxReader()
