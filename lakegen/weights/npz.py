"""numpy ``.npz`` archives: ``allow_pickle`` stays off, object arrays and zip bombs are refused."""

from __future__ import annotations

import math
import os
import sys
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lakegen.weights.base import (
    TensorInfo,
    WeightFile,
    WeightsError,
    refuse_count,
    refuse_name,
    zip_local_header,
)

if TYPE_CHECKING:
    import numpy as np

NPZ_ARRAY_LIMIT = 1 << 30  # .npz members are inflated whole


class NpzFile(WeightFile):
    """A numpy ``.npz`` archive read with ``allow_pickle=False``; one member in memory at a time."""

    format = "npz"

    def __init__(self, path: Path):
        import numpy as np

        super().__init__(path)
        self._offsets: dict[str, int] = {}
        try:
            with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
                size = os.fstat(raw.fileno()).st_size
                _refuse_zip_bomb(path, archive.infolist())
                refuse_count(path, len(archive.infolist()))
                for member in archive.infolist():
                    if not member.filename.endswith(".npy"):
                        continue
                    name = member.filename[:-4]
                    refuse_name(path, name)
                    with archive.open(member) as f:
                        version = np.lib.format.read_magic(f)
                        read = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shape, fortran, dtype = read(f)
                        header = f.tell()
                    if dtype.hasobject:
                        raise WeightsError(
                            path, f"array '{name}' holds Python objects; refusing it (allow_pickle stays off)"
                        )
                    need = math.prod(shape) * dtype.itemsize
                    if need > NPZ_ARRAY_LIMIT:
                        raise WeightsError(
                            path,
                            f"array '{name}' would inflate to {need / (1 << 30):.1f} GiB; .npz arrays are "
                            f"loaded whole, so lakegen refuses those over {NPZ_ARRAY_LIMIT >> 30} GiB "
                            "(store large weights as safetensors)",
                        )
                    refuse_name(path, name, shape)
                    self.tensors[name] = TensorInfo(name, _numpy_dtype_name(path, name, dtype), tuple(shape))
                    if not fortran and dtype.byteorder in "<|=" and sys.byteorder == "little":
                        stored = _stored_data(raw, size, member)
                        if stored is not None:
                            self._offsets[name] = stored + header
        except WeightsError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise WeightsError(path, f"not a readable .npz archive: {e}") from None
        self._npz = np.load(path, allow_pickle=False)
        if self._offsets:  # samples read where they lie, not the member inflated (and CRC'd) whole
            self._fd = os.open(path, os.O_RDONLY)

    def offset(self, name: str) -> int | None:
        info = self.tensors.get(name)
        return self._offsets.get(name) if info is not None and info.numel else None

    def raw(self, name: str) -> np.ndarray:
        try:
            return self._npz[name]
        except ValueError as e:
            raise WeightsError(self.path, f"array '{name}': {e}") from None

    def close(self) -> None:
        self._npz.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _stored_data(raw: IO[bytes], size: int, member: zipfile.ZipInfo) -> int | None:
    """Where an uncompressed, unencrypted member's bytes start in the archive open as ``raw``
    (``size`` bytes long), when all of them lie inside it."""
    if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
        return None
    local = zip_local_header(raw, member)
    return local[0] if local is not None and local[0] + member.file_size <= size else None


# Float weights barely compress (pruned ones a few times); past this ratio an archive is a bomb.
NPZ_MAX_RATIO = 100
NPZ_RATIO_FROM = 64 * 1024 * 1024


def _refuse_zip_bomb(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse, from the zip directory alone, archives that would inflate far beyond their size."""
    inflated = sum(m.file_size for m in members)
    stored = sum(m.compress_size for m in members) or 1
    if inflated > NPZ_RATIO_FROM and inflated > NPZ_MAX_RATIO * stored:
        raise WeightsError(
            path,
            f"refused: {stored:,} bytes would inflate to {inflated:,} "
            f"({inflated // stored:,}:1); this looks like a decompression bomb",
        )


def _numpy_dtype_name(path: Path, name: str, dtype: Any) -> str:
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub" or dtype.itemsize > 8 or (dtype.kind == "f" and dtype.itemsize < 2):
        raise WeightsError(path, f"array '{name}' has unsupported dtype {dtype}")
    return str(dtype.newbyteorder("="))


class NpzReader:
    """Files named ``*.npz``."""

    name = "npz"
    suffixes: tuple[str, ...] = (".npz",)

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes

    def open(self, path: Path) -> WeightFile:
        return NpzFile(path)


READER = NpzReader()
