"""The external data files an ONNX model names, read from its protobuf without the ``onnx`` package.

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
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1


class _Corrupt(Exception):
    pass


def external_data_locations(model: Path) -> list[str]:
    """Each distinct ``location`` of the model's external tensors, in the order first named."""
    try:
        with open(model, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise WeightsError(model, "not an ONNX model: the file is empty")
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise WeightsError(model, f"cannot read: {e.strerror or e}") from None
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
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _Corrupt("a fixed-size field runs past its message")
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Corrupt(f"a field of {length:,} bytes runs past its message")
            yield number, wire, buf[pos : pos + length]
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
