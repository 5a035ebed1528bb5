"""The external data files an ONNX model names, and its initializers, read from its protobuf
without the ``onnx`` package.

An ONNX model over 2 GB keeps its tensors in other files (``model.onnx.data``
and the like): each ``TensorProto`` with ``data_location = EXTERNAL`` names its
file in an ``external_data`` entry keyed ``location``. Those files are part of
the model, so they are pinned beside it. Only the messages that can hold such a
tensor are walked (the graph's initializers and sparse initializers, and the
tensors and subgraphs in node attributes); every other field is skipped by its
length, so the cost stays proportional to the header, not to inline weights.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lakegen.errors import WeightsError

MAX_DEPTH = 16  # nested subgraphs (If/Loop bodies) lakegen follows
MAX_LOCATIONS = 65_536  # tensors with external data per model
MAX_LOCATION = 4096  # bytes in one location

# field numbers of onnx.proto
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
ATTRIBUTE_T, ATTRIBUTE_G, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME = 1, 2, 8
TENSOR_FLOAT_DATA, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA = 4, 9, 10
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1


class _Corrupt(Exception):
    pass


@dataclass(frozen=True)
class Initializer:
    """One weight of an ONNX graph, as its ``TensorProto`` header says: where its bytes lie (in the
    model file, or at ``offset`` of the external file ``location``) and how many there are."""

    name: str
    dims: tuple[int, ...]
    data_type: int  # onnx.TensorProto.DataType
    location: str | None  # the external data file; None when the bytes are inline
    offset: int
    length: int | None  # None: an external tensor running to the end of its file
    packed: bool = False  # inline in a typed field (float_data, double_data) rather than raw_data


def _mapped(model: Path) -> mmap.mmap:
    """The model file mapped read-only; :class:`WeightsError` for an empty or unreadable one."""
    try:
        with open(model, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise WeightsError(model, "not an ONNX model: the file is empty")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise WeightsError(model, f"cannot read: {e.strerror or e}") from None


def initializers(model: Path) -> list[Initializer]:
    """The main graph's initializers (its weights), read from the protobuf without the ``onnx``
    package; :class:`WeightsError` for a file that is not a sound ONNX model."""
    data = _mapped(model)
    out: list[Initializer] = []
    try:
        for n, _w, graph, at in _fields_at(memoryview(data), 0):
            if n != MODEL_GRAPH or not isinstance(graph, memoryview):
                continue
            for g, _w2, tensor, start in _fields_at(graph, at):
                if g == GRAPH_INITIALIZER and isinstance(tensor, memoryview):
                    out.append(_initializer(tensor, start))
                    if len(out) > MAX_LOCATIONS:
                        raise WeightsError(model, f"refused: over {MAX_LOCATIONS:,} initializers")
    except _Corrupt as e:
        raise WeightsError(model, f"not a readable ONNX model: {e}") from None
    finally:
        with contextlib.suppress(BufferError):
            data.close()
    return out


def _initializer(buf: memoryview, base: int) -> Initializer:
    dims: list[int] = []
    name, data_type, external = "", 0, False
    inline: tuple[int, int, bool] | None = None
    entries: dict[bytes, bytes] = {}
    for n, _wire, value, at in _fields_at(buf, base):
        if n == TENSOR_DIMS:
            if isinstance(value, int):
                dims.append(value)
            else:  # packed
                pos = 0
                while pos < len(value):
                    d, pos = _varint(value, pos)
                    dims.append(d)
        elif n == TENSOR_DATA_TYPE and isinstance(value, int):
            data_type = value
        elif n == TENSOR_NAME and isinstance(value, memoryview):
            if len(value) > MAX_LOCATION:
                raise _Corrupt(f"a tensor name of {len(value):,} bytes")
            name = bytes(value).decode("utf-8", "replace")
        elif n in (TENSOR_RAW_DATA, TENSOR_FLOAT_DATA, TENSOR_DOUBLE_DATA) and isinstance(value, memoryview):
            inline = (at, len(value), n != TENSOR_RAW_DATA)
        elif n == TENSOR_DATA_LOCATION and isinstance(value, int):
            external = value == EXTERNAL
        elif n == TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entry = {k: v for k, _w, v in _fields(value) if isinstance(v, memoryview)}
            key, text = entry.get(ENTRY_KEY), entry.get(ENTRY_VALUE)
            if key is not None and text is not None and len(text) <= MAX_LOCATION:
                entries[bytes(key)] = bytes(text)
    if any(d >= 1 << 62 for d in dims):
        raise _Corrupt(f"tensor '{name[:80]}' has a negative or huge dimension")
    if external:
        try:
            location = entries[b"location"].decode("utf-8")
            offset = int(entries.get(b"offset", b"0"))
            length = int(entries[b"length"]) if b"length" in entries else None
        except (KeyError, UnicodeDecodeError, ValueError):
            raise _Corrupt(f"tensor '{name[:80]}' stored externally without a sound location") from None
        if offset < 0 or (length is not None and length < 0):
            raise _Corrupt(f"tensor '{name[:80]}' has a negative external offset or length")
        return Initializer(name, tuple(dims), data_type, location, offset, length)
    if inline is None:
        raise _Corrupt(f"tensor '{name[:80]}' holds no raw_data (its values in fields lakegen does not read)")
    return Initializer(name, tuple(dims), data_type, None, inline[0], inline[1], inline[2])


def external_data_locations(model: Path) -> list[str]:
    """Each distinct ``location`` of the model's external tensors, in the order first named."""
    data = _mapped(model)
    found: dict[str, None] = {}
    try:
        for location in _model(memoryview(data)):
            found[location] = None
            if len(found) > MAX_LOCATIONS:
                raise WeightsError(model, f"refused: over {MAX_LOCATIONS:,} external data files")
    except _Corrupt as e:
        raise WeightsError(model, f"not a readable ONNX model: {e}") from None
    finally:
        with contextlib.suppress(BufferError):  # a traceback still holds a view; the map goes with it
            data.close()
    return list(found)


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of each field: bytes for length-delimited ones."""
    for number, wire, value, _ in _fields_at(buf, 0):
        yield number, wire, value


def _fields_at(buf: memoryview, base: int) -> Iterator[tuple[int, int, memoryview | int, int]]:
    """As :func:`_fields`, with where each value starts, for ``buf`` starting at ``base``."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt("field number 0")
        if wire == 0:
            start = pos
            value, pos = _varint(buf, pos)
            yield number, wire, value, base + start
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _Corrupt("a fixed-size field runs past its message")
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Corrupt(f"a field of {length:,} bytes runs past its message")
            yield number, wire, buf[pos : pos + length], base + pos
            pos += length
        else:
            raise _Corrupt(f"wire type {wire} (groups are not used by ONNX)")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("a truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    for n, wire, value in _fields(buf):
        if n == number and isinstance(value, memoryview):
            yield value
        elif n == number and wire != 2:
            raise _Corrupt(f"field {number} is not a message")


def _model(buf: memoryview) -> Iterator[str]:
    for graph in _messages(buf, MODEL_GRAPH):
        yield from _graph(graph, 0)


def _graph(buf: memoryview, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise _Corrupt(f"subgraphs nested over {MAX_DEPTH} deep")
    for n, _wire, value in _fields(buf):
        if not isinstance(value, memoryview):
            continue
        if n == GRAPH_INITIALIZER:
            yield from _tensor(value)
        elif n == GRAPH_SPARSE_INITIALIZER:
            yield from _sparse(value)
        elif n == GRAPH_NODE:
            for attribute in _messages(value, NODE_ATTRIBUTE):
                yield from _attribute(attribute, depth)


def _attribute(buf: memoryview, depth: int) -> Iterator[str]:
    for n, _wire, value in _fields(buf):
        if not isinstance(value, memoryview):
            continue
        if n in (ATTRIBUTE_T, ATTRIBUTE_TENSORS):
            yield from _tensor(value)
        elif n in (ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS):
            yield from _sparse(value)
        elif n in (ATTRIBUTE_G, ATTRIBUTE_GRAPHS):
            yield from _graph(value, depth + 1)


def _sparse(buf: memoryview) -> Iterator[str]:
    for n, _wire, value in _fields(buf):
        if n in (SPARSE_VALUES, SPARSE_INDICES) and isinstance(value, memoryview):
            yield from _tensor(value)


def _tensor(buf: memoryview) -> Iterator[str]:
    external = False
    location = None
    for n, _wire, value in _fields(buf):
        if n == TENSOR_DATA_LOCATION and isinstance(value, int):
            external = value == EXTERNAL
        elif n == TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entry = {k: v for k, _w, v in _fields(value) if isinstance(v, memoryview)}
            key, text = entry.get(ENTRY_KEY), entry.get(ENTRY_VALUE)
            if key is not None and bytes(key) == b"location" and text is not None:
                if len(text) > MAX_LOCATION:
                    raise _Corrupt(f"an external data location of {len(text):,} bytes")
                try:
                    location = bytes(text).decode("utf-8")
                except UnicodeDecodeError:
                    raise _Corrupt("an external data location that is not UTF-8") from None
    if external:
        if not location:
            raise _Corrupt("a tensor stored externally names no location")
        yield location
