"""An ONNX model whose tensors live in external data files: those files are pinned beside it.

The default tests write the protobuf bytes themselves (the few fields of onnx.proto a tensor
with external data uses); where the ``onnx`` package is installed, a model it saves with
``save_as_external_data`` is read too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_lakegen, write_tree
from test_attribution import manifest

from lakegen.artifacts.layout import model_layout
from lakegen.artifacts.onnx import external_data_locations
from lakegen.catalog.loader import load_catalog
from lakegen.scaffold import locate_artifact
from lakegen.weights import WeightsError


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: str, location: str | None, dims: tuple[int, ...] = (4, 4)) -> bytes:
    out = b"".join(_field(1, d) for d in dims) + _field(2, 1) + _field(8, name.encode())
    if location is None:
        return out + _field(9, np.zeros(dims, np.float32).tobytes())  # raw_data, inline
    entries = [("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))]
    for key, value in entries:
        out += _field(13, _field(1, key.encode()) + _field(2, value.encode()))
    return out + _field(14, 1)


def onnx_bytes(initializers: list[bytes], constant: bytes | None = None) -> bytes:
    """A ModelProto: ir_version, a graph with these initializers (and a Constant node's tensor)."""
    graph = _field(2, b"g") + b"".join(_field(5, t) for t in initializers)
    if constant is not None:
        attribute = _field(1, b"value") + _field(5, constant)
        graph += _field(1, _field(4, b"Constant") + _field(5, attribute))
    return _field(1, 8) + _field(7, graph)


def _model(folder: Path, locations: list[str], inline: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = [_tensor(f"w{i}", loc) for i, loc in enumerate(locations)]
    tensors += [_tensor(f"inline{i}", None) for i in range(inline)]
    path = folder / "model.onnx"
    path.write_bytes(onnx_bytes(tensors, constant=_tensor("c", "const.data")))
    for location in {*locations, "const.data"}:
        (folder / location).parent.mkdir(parents=True, exist_ok=True)
        (folder / location).write_bytes(np.arange(16, dtype=np.float32).tobytes())
    return path


def test_the_layout_names_every_external_data_file_once(tmp_path: Path) -> None:
    path = _model(tmp_path / "m", ["model.onnx.data", "model.onnx.data", "weights/extra.bin"])
    assert external_data_locations(path) == ["model.onnx.data", "weights/extra.bin", "const.data"]
    layout = model_layout(path)
    assert layout.files == [path]
    assert layout.companions == sorted(
        path.parent / n for n in ("const.data", "model.onnx.data", "weights/extra.bin")
    )


def test_an_onnx_model_without_external_data_has_no_companions(tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    path.write_bytes(onnx_bytes([_tensor("w", None)]))
    assert model_layout(path).companions == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../outside.data", "lies outside the model's folder"),
        ("/etc/passwd", "lies outside the model's folder"),
        ("C:/x.data", "lies outside the model's folder"),
        ("gone.data", "external data file 'gone.data' named by the model is missing"),
    ],
)
def test_a_location_outside_the_folder_or_missing_is_refused(
    tmp_path: Path, location: str, message: str
) -> None:
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(onnx_bytes([_tensor("w", location)]))
    (tmp_path / "outside.data").write_bytes(b"x")
    with pytest.raises(WeightsError, match=message):
        model_layout(path)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "secret").write_bytes(b"x")
    (tmp_path / "m" / "link.data").symlink_to(tmp_path / "secret")
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(onnx_bytes([_tensor("w", "link.data")]))
    with pytest.raises(WeightsError, match="resolves outside the model's folder"):
        model_layout(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (_field(7, b"\x0a\xff\xff\xff\xff\x0f"), "runs past its message"),
        (b"\x3b\x00", "wire type 3"),
        (b"\x80" * 20, "truncated or overlong varint"),
        (_field(1, 8) + _field(7, _field(5, _field(14, 1))), "names no location"),
    ],
)
def test_a_corrupt_onnx_file_gets_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match=message) as info:
        model_layout(path)
    assert "\n" not in str(info.value)


def test_subgraphs_nested_without_end_are_refused(tmp_path: Path) -> None:
    graph = _field(5, _tensor("w", "x.data"))
    for _ in range(40):  # an If node's then_branch holding an If node ...
        graph = _field(1, _field(5, _field(1, b"then_branch") + _field(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(_field(7, graph))
    with pytest.raises(WeightsError, match="nested over 16 deep"):
        model_layout(path)


def _lake(tmp_path: Path, pin: bool) -> Path:
    root = tmp_path / "lake"
    folder = root / "catalog" / "artifacts" / "net"
    path = _model(folder, ["model.onnx.data"])
    text = manifest("net", "../artifacts/net/model.onnx", path.read_bytes(), "2026-01-01", [])
    text = text.replace("format: safetensors}", "format: onnx, files: [FILES]}")
    pinned = ["model.onnx.data", "const.data"] if pin else ["const.data"]
    files = ", ".join(
        f"{{path: {n}, sha256: {hashlib.sha256((folder / n).read_bytes()).hexdigest()}, size: {(folder / n).stat().st_size}}}"
        for n in pinned
    )
    write_tree(root, {"catalog/models/net.yaml": text.replace("FILES", files)})
    return root


def test_validate_checks_the_external_data_and_fails_when_it_is_corrupted(tmp_path: Path) -> None:
    root = _lake(tmp_path, pin=True)
    catalog = load_catalog(root)
    assert not catalog.problems and catalog.artifacts[("net", "1.0.0")] == "verified"
    assert run_lakegen("--root", str(root), "validate").returncode == 0
    data = root / "catalog/artifacts/net/model.onnx.data"
    corrupted = bytearray(data.read_bytes())
    corrupted[3] ^= 0x01
    data.write_bytes(bytes(corrupted))
    result = run_lakegen("--root", str(root), "validate")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "versions[0].artifact.files[0].sha256: sha256 mismatch" in result.stdout + result.stderr


def test_validate_requires_the_external_data_to_be_pinned(tmp_path: Path) -> None:
    root = _lake(tmp_path, pin=False)
    catalog = load_catalog(root)
    assert catalog.artifacts[("net", "1.0.0")] == "contradicted"
    (problem,) = catalog.problems
    assert problem.field == "versions[0].artifact.files"
    assert problem.message == "the model names external data not pinned here: model.onnx.data"


def test_lakegen_new_pins_the_external_data(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    path = _model(root / "catalog" / "artifacts" / "net", ["model.onnx.data"])
    main, companions, fmt, uri = locate_artifact(root, root / "catalog/models/net.yaml", path)
    assert (main, fmt, uri) == (path, "onnx", "../artifacts/net/model.onnx")
    assert [c.name for c in companions] == ["const.data", "model.onnx.data"]


def test_a_model_the_onnx_package_saves_with_external_data(tmp_path: Path) -> None:
    onnx = pytest.importorskip(
        "onnx", reason="onnx is not a dependency; the protobuf is also written by hand above"
    )
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    path = tmp_path / "real.onnx"
    onnx.save_model(
        helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        location="real.onnx.data",
        size_threshold=0,
    )
    assert model_layout(path).companions == [tmp_path / "real.onnx.data"]
