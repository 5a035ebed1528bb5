"""ONNX models as weight files (#15): the main graph's initializers, inline (``raw_data``, as
``torch.onnx.export`` writes them) or in external data files, read in place; corrupt headers get one
line. The protobuf is written by hand (tests/test_onnx_external.py), as lakegen reads it: without
the ``onnx`` package."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import run_lakegen
from test_onnx_external import _field, onnx_bytes

from lakegen.fingerprint import compute
from lakegen.weights import WeightsError, open_weights

FLOAT, FLOAT16, STRING = 1, 10, 8


def tensor(name: str, dims: tuple[int, ...], data_type: int = FLOAT, raw: bytes | None = None) -> bytes:
    return (
        b"".join(_field(1, d) for d in dims)
        + _field(2, data_type)
        + _field(8, name.encode())
        + _field(9, raw or b"")
    )


def external(name: str, dims: tuple[int, ...], location: str, offset: int, length: int) -> bytes:
    out = b"".join(_field(1, d) for d in dims) + _field(2, FLOAT) + _field(8, name.encode())
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        out += _field(13, _field(1, key.encode()) + _field(2, value.encode()))
    return out + _field(14, 1)


def test_inline_and_external_initializers_read_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 6)).astype(np.float32)
    h = rng.normal(size=(5, 4)).astype(np.float16)
    e = rng.normal(size=(3, 7)).astype(np.float32)
    (tmp_path / "model.onnx.data").write_bytes(b"\0" * 12 + e.tobytes())
    path = tmp_path / "model.onnx"
    path.write_bytes(
        onnx_bytes(
            [
                tensor("w", w.shape, FLOAT, w.tobytes()),
                tensor("h", h.shape, FLOAT16, h.tobytes()),
                external("e", e.shape, "model.onnx.data", 12, e.nbytes),
            ]
        )
    )
    with open_weights(path) as f:
        assert {n: (t.dtype, t.shape) for n, t in f.tensors.items()} == {
            "w": ("float32", (8, 6)),
            "h": ("float16", (5, 4)),
            "e": ("float32", (3, 7)),
        }
        assert (
            np.array_equal(f.raw("w"), w) and np.array_equal(f.raw("h"), h) and np.array_equal(f.raw("e"), e)
        )
        assert np.array_equal(f.gather("e", np.array([0, 5, 20])), e.reshape(-1)[[0, 5, 20]])
    fp = compute(path)
    assert fp.format == "onnx" and fp.parameters == w.size + h.size + e.size


@pytest.mark.parametrize(
    ("initializers", "message"),
    [
        ([tensor("w", (4, 4), FLOAT, b"\0" * 60)], "holds 60 bytes; its shape [4, 4] needs 64"),
        ([tensor("s", (2,), STRING, b"ab")], "unsupported ONNX data type 8"),
        ([tensor("w", (1 << 40, 1 << 40), FLOAT, b"\0" * 4)], "needs"),
        ([external("e", (4, 4), "model.onnx.data", 8, 64)], "runs past the end of model.onnx.data"),
        ([external("e", (4, 4), "model.onnx.data", 0, 32)], "holds 32 bytes"),
        ([tensor("w", (2,), FLOAT, b"\0" * 8)] * 2, "stored twice"),
        (
            [b"".join(_field(1, 2) for _ in range(1)) + _field(2, FLOAT) + _field(8, b"nodata")],
            "holds no raw_data",
        ),
    ],
    ids=["short-raw", "string", "huge-dims", "offset-past-end", "lying-length", "twice", "no-data"],
)
def test_a_lying_header_is_refused_in_one_line(
    tmp_path: Path, initializers: list[bytes], message: str
) -> None:
    (tmp_path / "model.onnx.data").write_bytes(b"\0" * 64)
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes(initializers))
    with pytest.raises(WeightsError, match=re.escape(message)):
        open_weights(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"\x0a\xff\xff\xff\x7f", "runs past its message"), (b"\x3a", "truncated")],
    ids=["empty", "length-past-end", "truncated-varint"],
)
def test_a_corrupt_onnx_file_is_one_line_from_the_cli(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match=message):
        open_weights(path)
    result = run_lakegen("fingerprint", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
