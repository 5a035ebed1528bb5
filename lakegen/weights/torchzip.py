"""Zip-format PyTorch checkpoints read without torch: ``data.pkl`` disassembled, never unpickled.

``torch.save`` writes a zip whose ``<archive>/data/<key>`` members hold the raw bytes of each
storage, stored uncompressed, and whose ``<archive>/data.pkl`` says which tensor views which
storage. That pickle is walked with :func:`pickletools.genops` (a disassembler: it runs nothing)
and interpreted for one grammar only, the one ``torch.save`` writes for (nested) dicts of plain
tensors: the GLOBALs in :data:`GLOBALS`, storage tuples loaded by BINPERSID, plain containers
and scalars. Every tensor becomes a :class:`StoredTensor`, which ``pytorch.ZipTorchFile`` reads
from a memory map like a safetensors tensor, without importing torch (a second of a fingerprint).
``torch.ao`` dynamic quantisation adds qint8 tensors (``_rebuild_qtensor``, a :class:`QTensor`) and
the ``torch.ScriptObject`` of a packed LSTM cell or Linear (NEWOBJ, then BUILD with its state, a
:class:`ScriptObject`), which :mod:`lakegen.weights.packed` names as the float model would.

Anything else raises :class:`Unsupported` and the file goes to ``torch.load(weights_only=True,
mmap=True)`` (``pytorch.TorchFile``), which decides as before. No pickle is ever executed here: the
one thing read that weights_only refuses, a ScriptObject, is read as the data its state holds,
and no TorchScript class is ever looked up or run.
"""

from __future__ import annotations

import math
import os
import pickletools
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakegen.weights.base import WeightsError, refuse_count, zip_local_header
from lakegen.weights.torchvalues import QTensor, QuantDtype, ScriptObject, StoredTensor, Unsupported

# data.pkl of a real state dict takes ~150 bytes and ~25 opcodes per tensor; past these, the file
# is left to torch.load, as it was before this reader.
MAX_PICKLE = 64 << 20
MAX_OPS = 8_000_000
MAX_NESTING = 1000  # real checkpoints nest a dozen deep


@dataclass(frozen=True)
class _Storage:
    """A ``torch.*Storage`` class named by a GLOBAL; ``dtype`` None for ``UntypedStorage`` (bytes)."""

    dtype: str | None
    itemsize: int


@dataclass(frozen=True)
class _Dtype:
    name: str
    itemsize: int


@dataclass(frozen=True)
class _Call:
    name: str


@dataclass(frozen=True)
class _QScheme:
    name: str


@dataclass(frozen=True)
class _StorageRef:
    """What BINPERSID loads: storage ``key``, ``numel`` elements of ``dtype``."""

    key: str
    dtype: str | None
    itemsize: int
    numel: int


# The storage classes torch.save names for the dtypes lakegen reads (torch.storage's
# _dtype_to_storage_type_map); float8 goes as UntypedStorage plus a dtype (_rebuild_tensor_v3).
_STORAGES = {
    "DoubleStorage": ("float64", 8),
    "FloatStorage": ("float32", 4),
    "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
}
_DTYPES = {"float8_e4m3fn": 1, "float8_e5m2": 1}
GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): _Call("OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"): _Call("v2"),
    ("torch._utils", "_rebuild_tensor_v3"): _Call("v3"),
    ("torch._utils", "_rebuild_parameter"): _Call("parameter"),
    ("torch", "UntypedStorage"): _Storage(None, 1),
    ("torch.storage", "UntypedStorage"): _Storage(None, 1),
    ("torch._utils", "_rebuild_qtensor"): _Call("qtensor"),
    ("torch", "ScriptObject"): _Call("ScriptObject"),
    ("torch", "QInt8Storage"): _Storage("qint8", 1),
    ("torch", "per_tensor_affine"): _QScheme("per_tensor_affine"),
    ("torch", "per_channel_affine"): _QScheme("per_channel_affine"),
    ("torch", "qint8"): QuantDtype("qint8"),
    ("torch", "float16"): QuantDtype("float16"),
    **{("torch", k): _Storage(*v) for k, v in _STORAGES.items()},
    **{("torch", k): _Dtype(k, v) for k, v in _DTYPES.items()},
}
_SCALARS = (str, int, float, bool, type(None))


def zip_members(path: Path) -> list[zipfile.ZipInfo]:
    """The members of a zip checkpoint, or one clear error for a file that is not one."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        raise WeightsError(
            path,
            "truncated or corrupt zip checkpoint: no central directory"
            if zipped
            else "not a PyTorch checkpoint (neither the zip format nor torch.save's legacy format); "
            "lakegen only reads PyTorch files with torch.load(weights_only=True) — "
            "re-save it with torch.save or as safetensors",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise WeightsError(path, f"not a readable PyTorch checkpoint: {e}") from None
    # A checkpoint holds one member per tensor storage, plus data.pkl, version and a few others.
    refuse_count(path, len(members) - 8)
    return members


def read_state(path: Path) -> Any:
    """data.pkl's object tree, tensors as :class:`StoredTensor`; :class:`Unsupported` outside the grammar."""
    members = zip_members(path)
    prefix = members[0].filename.split("/")[0] + "/" if members and "/" in members[0].filename else ""
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in members:
        if info.filename in by_name:
            raise WeightsError(path, f"corrupt zip checkpoint: member '{info.filename[:200]}' appears twice")
        by_name[info.filename] = info
    pkl = by_name.get(prefix + "data.pkl")
    if not prefix or pkl is None or not {prefix + "version", prefix + ".data/version"} & by_name.keys():
        raise Unsupported("no data.pkl and version record under one archive folder")
    order = by_name.get(prefix + "byteorder")
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        try:
            if order is not None and (order.file_size > 8 or archive.read(order) != b"little"):
                raise Unsupported("not a little-endian checkpoint")
            if pkl.file_size > MAX_PICKLE:
                raise Unsupported("a data.pkl of over 64 MiB")
            data = archive.read(pkl)
            storages = _Storages(path, f, os.fstat(f.fileno()).st_size, prefix + "data/", by_name)
            return _interpret(path, data, storages)
        except Unsupported:
            # torch's unpickler hashes a dict key of tuples nested a million deep until the C stack
            # overflows (a segfault, not an error): such a file is refused before it gets there.
            with archive.open(pkl) as stream:
                deepest = nesting(stream)
            if deepest > MAX_NESTING:
                raise WeightsError(
                    path, f"refused: data.pkl nests {deepest:,} deep (at most {MAX_NESTING:,}); not unpickled"
                ) from None
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise WeightsError(path, f"corrupt zip checkpoint: {str(e)[:200]}") from None


def nesting(stream: Any) -> int:
    """How deep a pickle's values nest, at most: each opcode that pops values and pushes one counts
    one level above the deepest it popped (memo and stack shuffles count none). Nothing is built."""
    depths: list[int] = []
    marks: list[int] = []
    memo: dict[Any, int] = {}
    deepest = 0
    try:
        for op, arg, _ in pickletools.genops(stream):
            popped = [0]
            for item in reversed(op.stack_before):
                if item is pickletools.stackslice:
                    at = marks.pop()
                    popped += depths[at:]
                    del depths[at:]
                elif item is not pickletools.markobject:
                    popped.append(depths.pop())
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if arg is None else arg] = popped[-1]
                depths.append(popped[-1])
                continue
            if op.name in ("GET", "BINGET", "LONG_BINGET"):
                depths.append(memo.get(arg, 0))
                continue
            level = max(popped) + (len(popped) > 1)
            deepest = max(deepest, level)
            for item in op.stack_after:
                if item is pickletools.markobject:
                    marks.append(len(depths))
                else:
                    depths.append(level)
    except (IndexError, ValueError, zipfile.BadZipFile, OSError, EOFError):
        pass  # a broken pickle: torch.load refuses it with its own message
    return deepest


class _Storages:
    """Storage members as BINPERSID names them: where each one's bytes start, checked once."""

    def __init__(self, path: Path, f: Any, size: int, folder: str, members: dict[str, zipfile.ZipInfo]):
        self.path, self.f, self.size, self.folder, self.members = path, f, size, folder, members
        self.seen: dict[str, tuple[_StorageRef, int]] = {}

    def start(self, ref: _StorageRef) -> int:
        path, key = self.path, ref.key
        if key in self.seen:
            if self.seen[key][0] != ref:
                raise WeightsError(path, f"corrupt data.pkl: storage '{key[:80]}' is declared two ways")
            return self.seen[key][1]
        info = self.members.get(self.folder + key)
        if info is None:
            raise WeightsError(path, f"corrupt data.pkl: it names storage '{key[:80]}', which the zip lacks")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
            raise WeightsError(
                path, f"storage '{key[:80]}' is compressed or encrypted; torch.save stores it raw"
            )
        local = zip_local_header(self.f, info)
        if local is None:
            raise WeightsError(path, f"corrupt zip checkpoint: no local header for '{info.filename[:200]}'")
        start, name = local
        if name != info.filename.encode():
            raise WeightsError(
                path, f"corrupt zip checkpoint: local header of '{info.filename[:200]}' disagrees"
            )
        if start + info.file_size > self.size:
            raise WeightsError(path, f"truncated zip checkpoint: storage '{key[:80]}' ends past the file")
        needed = ref.numel * ref.itemsize
        if needed > info.file_size:
            raise WeightsError(
                path,
                f"corrupt data.pkl: storage '{key[:80]}' of {ref.numel:,} × {ref.itemsize} bytes "
                f"needs {needed:,} bytes, its member holds {info.file_size:,}",
            )
        self.seen[key] = ref, start
        return start


def _interpret(path: Path, data: bytes, storages: _Storages) -> Any:
    """Run data.pkl's opcodes over plain values: containers, scalars and :data:`GLOBALS` only."""
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def set_items(target: Any, items: list[Any]) -> None:
        if not isinstance(target, dict) or len(items) % 2:
            raise Unsupported("SETITEMS outside a dict")
        for k, v in zip(items[::2], items[1::2], strict=True):
            if not isinstance(k, _SCALARS):  # hashing a nested key could recurse without bound
                raise Unsupported("a dict key that is not a scalar")
            target[k] = v

    try:
        arg: Any
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count > MAX_OPS:
                raise Unsupported("a data.pkl of too many opcodes")
            name = op.name
            if name == "PROTO":
                continue
            if name == "STOP":
                return stack.pop()
            if name == "MARK":
                marks.append(len(stack))
            elif name in _VALUES:
                stack.append(arg)
            elif name in _EMPTY:
                stack.append(_EMPTY[name]())
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise IndexError(name)
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name == "LIST":
                stack.append(pop_mark())
            elif name == "DICT":
                out: dict[Any, Any] = {}
                set_items(out, pop_mark())
                stack.append(out)
            elif name == "SETITEM":
                v, k = stack.pop(), stack.pop()
                set_items(stack[-1], [k, v])
            elif name == "SETITEMS":
                items = pop_mark()
                set_items(stack[-1], items)
            elif name in ("APPEND", "APPENDS"):
                items = pop_mark() if name == "APPENDS" else [stack.pop()]
                if not isinstance(stack[-1], list):
                    raise Unsupported("APPEND outside a list")
                stack[-1].extend(items)
            elif name == "GLOBAL":
                module, attr = arg.split(" ", 1)
                if (module, attr) not in GLOBALS:
                    raise Unsupported(f"GLOBAL {module}.{attr}")
                stack.append(GLOBALS[module, attr])
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                stack.append(_reduce(func, args, storages))
            elif name == "BINPERSID":
                stack.append(_storage_ref(stack.pop()))
            elif name == "NEWOBJ":
                args, cls = stack.pop(), stack.pop()
                if cls != _Call("ScriptObject") or args != ():
                    raise Unsupported("NEWOBJ of something other than a ScriptObject")
                stack.append(ScriptObject())
            elif name == "BUILD":
                # An OrderedDict state dict carries its ``_metadata`` (module versions) this way.
                state = stack.pop()
                if isinstance(stack[-1], ScriptObject):
                    stack[-1].build(state)
                elif type(stack[-1]) is not OrderedDict or not isinstance(state, dict):
                    raise Unsupported("BUILD of something other than a state dict")
            else:
                raise Unsupported(f"opcode {name}")
    except (IndexError, KeyError) as e:
        raise WeightsError(path, f"corrupt data.pkl: {type(e).__name__} (stack or memo)") from None
    except ValueError as e:
        raise WeightsError(path, f"corrupt data.pkl: {str(e)[:200]}") from None
    raise WeightsError(path, "truncated data.pkl: no STOP opcode")


# Opcodes whose argument, as genops decodes it, is the value pushed. Only opcodes torch's weights-only
# unpickler also knows are read (not LONG4, SHORT_BINUNICODE, MEMOIZE, FRAME or STACK_GLOBAL).
_VALUES = {"BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE"}
_EMPTY: dict[str, Callable[[], Any]] = {
    "EMPTY_DICT": dict,
    "EMPTY_LIST": list,
    "EMPTY_TUPLE": tuple,
    "NONE": lambda: None,
    "NEWTRUE": lambda: True,
    "NEWFALSE": lambda: False,
}


def _storage_ref(pid: Any) -> _StorageRef:
    if (
        not isinstance(pid, tuple)
        or len(pid) != 5
        or pid[0] != "storage"
        or not isinstance(pid[1], _Storage)
        or not isinstance(pid[2], str)
        or not isinstance(pid[3], str)
        or type(pid[4]) is not int
        or pid[4] < 0
    ):
        raise Unsupported("a persistent id other than a storage")
    return _StorageRef(pid[2], pid[1].dtype, pid[1].itemsize, pid[4])


def _reduce(func: Any, args: Any, storages: _Storages) -> Any:
    if not isinstance(func, _Call) or not isinstance(args, tuple):
        raise Unsupported("REDUCE of something outside the grammar")
    if func.name == "OrderedDict":
        if args:
            raise Unsupported("OrderedDict with arguments")
        return OrderedDict()
    if func.name == "parameter":
        if len(args) != 3 or not isinstance(args[0], StoredTensor) or not _no_hooks(args[1:]):
            raise Unsupported("a parameter outside the grammar")
        return args[0]
    if func.name == "qtensor":
        return _qtensor(args, storages)
    if func.name not in ("v2", "v3"):
        raise Unsupported(f"REDUCE of {func.name}")
    # v2: (storage, offset, size, stride, requires_grad, hooks[, metadata]);
    # v3: the same, dtype after hooks, on an untyped (byte) storage
    extra = 1 if func.name == "v3" else 0
    if len(args) not in (6 + extra, 7 + extra) or args[6 + extra :] not in ((), ({},)):
        raise Unsupported("a tensor with metadata (conjugate or negative bits)")
    ref, offset, shape, stride = args[:4]
    if not isinstance(ref, _StorageRef) or not _no_hooks(args[4:6]):
        raise Unsupported("a tensor outside the grammar")
    if extra:
        dtype = args[6]
        if ref.dtype is not None or not isinstance(dtype, _Dtype):
            raise Unsupported("_rebuild_tensor_v3 of a typed storage")
        name, itemsize, numel = dtype.name, dtype.itemsize, ref.numel // dtype.itemsize
    elif ref.dtype is None or ref.dtype == "qint8":
        raise Unsupported("_rebuild_tensor_v2 of an untyped or a quantised storage")
    else:
        name, itemsize, numel = ref.dtype, ref.itemsize, ref.numel
    if (
        type(offset) is not int
        or not isinstance(shape, tuple)
        or not isinstance(stride, tuple)
        or len(shape) != len(stride)
        or not all(type(d) is int for d in (*shape, *stride))
    ):
        raise Unsupported("a tensor whose offset, size or stride are not integers")
    tensor = StoredTensor(ref.key, name, itemsize, offset, shape, stride, storages.start(ref), numel)
    _check_bounds(storages.path, tensor)
    return tensor


def _qtensor(args: tuple[Any, ...], storages: _Storages) -> QTensor:
    """torch's ``Tensor.__reduce_ex__`` of a quantised tensor: (storage, offset, size, stride,
    quantizer params, requires_grad, hooks), the params ``(per_tensor_affine, scale, zero_point)``
    or ``(per_channel_affine, scales, zero_points, axis)``."""
    if len(args) != 7 or not isinstance(args[0], _StorageRef) or args[0].dtype != "qint8":
        raise Unsupported("a quantised tensor outside the grammar")
    params = args[4]
    if not isinstance(params, tuple) or not params or not isinstance(params[0], _QScheme):
        raise Unsupported("a quantised tensor whose quantizer is not affine per tensor or per channel")
    if params[0].name == "per_tensor_affine":
        if len(params) != 3 or type(params[1]) is not float or type(params[2]) is not int:
            raise Unsupported("a per-tensor scale or zero point that is not a float and an integer")
        scale, zero, axis = params[1], params[2], None
    elif (
        len(params) != 4
        or not isinstance(params[1], StoredTensor)
        or not isinstance(params[2], StoredTensor)
        or type(params[3]) is not int
    ):
        raise Unsupported("per-channel scales and zero points that are not two tensors and an axis")
    else:
        scale, zero, axis = params[1:]
    ref = _StorageRef(args[0].key, "int8", 1, args[0].numel)
    codes = _reduce(_Call("v2"), (ref, *args[1:4], *args[5:]), storages)
    return QTensor(codes, scale, zero, axis)


def _no_hooks(args: tuple[Any, ...]) -> bool:
    """``(requires_grad, backward_hooks)``: a bool and an empty dict, as torch.save writes them."""
    return type(args[0]) is bool and isinstance(args[1], dict) and not args[1]


def _check_bounds(path: Path, t: StoredTensor) -> None:
    where = f"a {t.dtype}{list(t.shape)} tensor on storage '{t.key[:80]}'"
    if t.offset < 0 or any(d < 0 for d in t.shape) or any(s < 0 for s in t.stride):
        raise WeightsError(path, f"corrupt data.pkl: {where} has a negative offset, size or stride")
    if math.prod(t.shape) == 0:
        return
    last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride, strict=True))
    if last >= t.storage_numel:
        raise WeightsError(
            path,
            f"corrupt data.pkl: {where} at element {t.offset:,} with strides {list(t.stride)} reaches "
            f"element {last:,} of a {t.storage_numel:,}-element storage",
        )
