"""GGUF (llama.cpp), versions 2 and 3: the header parsed here, strictly, and the tensors memory-mapped.

Layout (little-endian): ``GGUF``, version u32, tensor count u64, metadata count
u64; each metadata entry a key string (u64 length + UTF-8), a value type u32 and
its value (arrays: element type u32, count u64, elements); each tensor a name,
``n_dims`` u32, ``n_dims`` u64 dimensions (innermost first), a GGML type u32
and an offset u64 from the data section, which starts at the next multiple of
``general.alignment`` (default 32) after the header. Every count, length and
offset is checked against caps and the file's size before anything is read.

Float and integer tensors are read as they are (shape: the dimensions
reversed); block-quantised ones (Q8_0 ... Q6_K, see :mod:`.gguf_quants`) are
dequantised to float32 under their type's label, sampling only the blocks that
hold the samples. For llama and BERT files, llama.cpp's names
(``blk.0.attn_q.weight``) are read back as the Hugging Face names they were
converted from, and llama's permuted query and key rows in their original order
(:mod:`.gguf_names`); other architectures keep llama.cpp's names.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.weights.base import (
    MAX_NDIM,
    MAX_TENSORS,
    STORAGE,
    TensorInfo,
    WeightFile,
    WeightsError,
    read_runs,
    refuse_count,
    refuse_name,
)
from lakegen.weights.gguf_names import hf_name, rotary_rows
from lakegen.weights.gguf_quants import BLOCK_TYPES, OTHER_TYPES, PLAIN_TYPES

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_KV = 65_536  # metadata entries; real models hold a few dozen
MAX_STRING = 1 << 20  # bytes in one string (a chat template is a few KiB)
MAX_ARRAY = 1 << 24  # elements in one array (a tokenizer's vocabulary: about 260,000)
MAX_DEPTH = 3  # arrays of arrays
DEFAULT_ALIGNMENT = 32
# value type -> struct format of fixed-size values (8: string, 9: array)
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


class _Header:
    """A cursor over the file's bytes; every read past the end is a clean refusal."""

    def __init__(self, path: Path, data: Any):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WeightsError(self.path, f"truncated GGUF header: {n:,} bytes wanted at offset {self.pos:,}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(out)

    def scalar(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self, what: str, limit: int = MAX_STRING) -> str:
        n = self.scalar("Q")
        if n > limit:
            raise WeightsError(self.path, f"corrupt GGUF header: {what} of {n:,} bytes (at most {limit:,})")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise WeightsError(self.path, f"corrupt GGUF header: {what} is not UTF-8") from None

    def value(self, kind: int, key: str, depth: int = 0) -> Any:
        if kind in SCALARS:
            return self.scalar(SCALARS[kind])
        if kind == STRING:
            self.skip_string(key)
            return None
        if kind == ARRAY and depth < MAX_DEPTH:
            inner, count = self.scalar("I"), self.scalar("Q")
            if count > MAX_ARRAY:
                raise WeightsError(
                    self.path,
                    f"refused: metadata '{key[:80]}' is an array of {count:,} (at most {MAX_ARRAY:,})",
                )
            if inner in SCALARS:  # skipped whole: its size is known
                self.take(count * struct.calcsize(SCALARS[inner]))
            else:
                for _ in range(count):
                    self.value(inner, key, depth + 1)
            return None
        raise WeightsError(self.path, f"corrupt GGUF header: metadata '{key[:80]}' has value type {kind}")

    def skip_string(self, what: str) -> None:
        n = self.scalar("Q")
        if n > MAX_STRING:
            raise WeightsError(self.path, f"corrupt GGUF header: a string of {n:,} bytes in '{what[:80]}'")
        self.take(n)


class GgufFile(WeightFile):
    """A GGUF file, memory-mapped."""

    format = "gguf"

    def __init__(self, path: Path):
        super().__init__(path)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            if self.size < 24:
                raise WeightsError(path, "not a GGUF file: shorter than its 24-byte header")
            self.map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._types: dict[str, int] = {}
            self._starts: dict[str, int] = {}
            self._rows: dict[str, np.ndarray] = {}  # Hugging Face row -> the file's (llama's q, k)
            self._read_header()
            self._fd = self._file.fileno()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> None:
        h = _Header(self.path, self.map)
        if h.take(4) != MAGIC:
            raise WeightsError(self.path, "not a GGUF file: no GGUF magic")
        version = h.scalar("I")
        if version not in VERSIONS:
            big = " (a big-endian file?)" if version > 0xFFFF else ""
            raise WeightsError(self.path, f"GGUF version {version}{big}; lakegen reads versions 2 and 3")
        n_tensors, n_kv = h.scalar("Q"), h.scalar("Q")
        refuse_count(self.path, n_tensors, MAX_TENSORS)
        if n_kv > MAX_KV:
            raise WeightsError(self.path, f"refused: {n_kv:,} metadata entries (at most {MAX_KV:,})")
        alignment = DEFAULT_ALIGNMENT
        arch, counts = "", {}
        for _ in range(n_kv):
            key = h.string("a metadata key", 65_535)
            kind = h.scalar("I")
            if key == "general.architecture" and kind == STRING:
                arch = h.string(key)
                continue
            value = h.value(kind, key)
            if key.endswith((".attention.head_count", ".attention.head_count_kv")) and kind in (4, 10):
                counts[key] = value
            if key == "general.alignment":
                if kind != 4 or not value or value & (value - 1) or value > 1 << 20:
                    raise WeightsError(self.path, f"corrupt GGUF header: general.alignment {value!r}")
                alignment = value
        entries = [self._tensor_entry(h) for _ in range(n_tensors)]
        data_start = -(-h.pos // alignment) * alignment
        spans = []
        for name, dims, kind, offset in entries:
            nbytes = self._nbytes(name, dims, kind)
            if offset % alignment or data_start + offset + nbytes > self.size:
                raise WeightsError(
                    self.path,
                    f"truncated or corrupt GGUF file: tensor '{name[:200]}' lies at {offset:,} "
                    f"(+{nbytes:,} bytes) past the {self.size - data_start:,}-byte data section "
                    f"or off its {alignment}-byte alignment",
                )
            self.tensors[name] = TensorInfo(name, self._label(kind), tuple(reversed(dims)))
            self._types[name] = kind
            self._starts[name] = data_start + offset
            spans.append((data_start + offset, data_start + offset + nbytes, name))
        for (_a0, a1, a), (b0, _b1, b) in itertools.pairwise(sorted(spans)):
            if b0 < a1:
                raise WeightsError(
                    self.path, f"corrupt GGUF file: tensors '{a[:200]}' and '{b[:200]}' overlap"
                )
        heads = {
            "heads": counts.get(f"{arch}.attention.head_count", 0),
            "kv_heads": counts.get(f"{arch}.attention.head_count_kv", 0),
        }
        self._rename(arch, heads)

    def _rename(self, arch: str, heads: dict[str, int]) -> None:
        """Tensors under the Hugging Face names llama.cpp converted them from (see :mod:`.gguf_names`),
        where each name maps to one tensor that no tensor of the file already holds."""
        renamed = {}
        for name, info in self.tensors.items():
            found = hf_name(arch, name)
            if found is None:
                continue
            rows = rotary_rows(arch, found[1], info.shape[0] if info.shape else 0, heads)
            if rows is None or rows.size:
                renamed[name] = (found[0], rows)
        targets = [hf for hf, _ in renamed.values()]
        if len(set(targets)) != len(targets) or set(targets) & (set(self.tensors) - set(renamed)):
            return
        for name, (hf, rows) in renamed.items():
            info = self.tensors.pop(name)
            self.tensors[hf] = TensorInfo(hf, info.dtype, info.shape)
            self._types[hf], self._starts[hf] = self._types.pop(name), self._starts.pop(name)
            if rows is not None:
                self._rows[hf] = rows

    def _tensor_entry(self, h: _Header) -> tuple[str, list[int], int, int]:
        name = h.string("a tensor name", 65_535)
        refuse_name(self.path, name)
        if name in self.tensors or name in self._types:
            raise WeightsError(self.path, f"corrupt GGUF header: duplicate tensor name '{name[:200]}'")
        n_dims = h.scalar("I")
        if n_dims > MAX_NDIM:
            raise WeightsError(
                self.path, f"tensor '{name[:80]}' has {n_dims} dimensions (at most {MAX_NDIM})"
            )
        dims = [h.scalar("Q") for _ in range(n_dims)]
        kind, offset = h.scalar("I"), h.scalar("Q")
        if kind not in PLAIN_TYPES and kind not in BLOCK_TYPES and kind not in OTHER_TYPES:
            raise WeightsError(self.path, f"tensor '{name[:200]}' has unknown GGML type {kind}")
        self._types[name] = kind
        return name, dims, kind, offset

    def _nbytes(self, name: str, dims: list[int], kind: int) -> int:
        numel = math.prod(dims)
        if numel > self.size * 8:  # no type stores more than 8 elements a byte
            raise WeightsError(
                self.path, f"corrupt GGUF header: tensor '{name[:200]}' of shape {dims} cannot fit"
            )
        if kind in PLAIN_TYPES:
            import numpy as np

            return (
                numel * np.dtype(PLAIN_TYPES[kind]).itemsize if PLAIN_TYPES[kind] != "bfloat16" else numel * 2
            )
        _label, block, size = BLOCK_TYPES[kind][:3] if kind in BLOCK_TYPES else OTHER_TYPES[kind]
        if not dims or dims[0] % block:
            raise WeightsError(
                self.path,
                f"corrupt GGUF header: tensor '{name[:200]}' rows of {dims[:1]} are not whole {block}-blocks",
            )
        return numel // block * size

    @staticmethod
    def _label(kind: int) -> str:
        if kind in PLAIN_TYPES:
            return PLAIN_TYPES[kind]
        return BLOCK_TYPES[kind][0] if kind in BLOCK_TYPES else "gguf_" + OTHER_TYPES[kind][0]

    def _blocks(self, name: str) -> tuple[int, int, Any]:
        kind = self._types[name]
        if kind not in BLOCK_TYPES:
            what = OTHER_TYPES[kind][0].upper() if kind in OTHER_TYPES else str(kind)
            raise WeightsError(
                self.path, f"tensor '{name[:200]}': lakegen does not dequantise GGUF {what} tensors"
            )
        _label, block, size, dequantise = BLOCK_TYPES[kind]
        return block, size, dequantise

    def raw(self, name: str) -> np.ndarray:
        import numpy as np

        info = self.tensors[name]
        start = self._starts[name]
        if self._types[name] in PLAIN_TYPES:
            storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
            out = np.frombuffer(self.map, dtype=storage, count=info.numel, offset=start).reshape(info.shape)
        else:
            block, size, dequantise = self._blocks(name)
            count = info.numel // block
            blocks = np.frombuffer(self.map, dtype=np.uint8, count=count * size, offset=start)
            with np.errstate(invalid="ignore", over="ignore"):  # a hostile scale may be NaN; values say so
                out = dequantise(blocks.reshape(count, size)).reshape(info.shape)
        return out[self._rows[name]] if name in self._rows else out

    def offset(self, name: str) -> int | None:
        return self._starts[name]

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        """Plain tensors as the base class reads them; quantised ones block by block: only the
        blocks that hold a sample are read (``pread``) and dequantised."""
        import numpy as np

        flat = np.asarray(flat, dtype=np.int64)
        if name in self._rows:  # the file's element of each Hugging Face one
            inner = self.tensors[name].numel // self.tensors[name].shape[0]
            flat = self._rows[name][flat // inner] * inner + flat % inner
        if self._types[name] in PLAIN_TYPES:
            order = np.argsort(flat, kind="stable")
            out = super().gather(name, flat[order])
            back = np.empty_like(out)
            back[order] = out
            return back
        block, size, dequantise = self._blocks(name)
        wanted, where = np.unique(flat // block, return_inverse=True)
        assert self._fd is not None
        data = read_runs(self._fd, self._starts[name] + wanted * size, size).reshape(-1, size)
        with np.errstate(invalid="ignore", over="ignore"):
            return dequantise(data)[where, flat % block]

    def close(self) -> None:
        if getattr(self, "map", None) is not None:
            with contextlib.suppress(BufferError):  # a view is still alive; it goes with the last view
                self.map.close()
        self._file.close()


class GgufReader:
    """Files named ``*.gguf``, or starting with the GGUF magic."""

    name = "gguf"
    suffixes: tuple[str, ...] = (".gguf",)

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes or head.startswith(MAGIC)

    def open(self, path: Path) -> WeightFile:
        return GgufFile(path)


READER = GgufReader()
