"""``torch.ao.quantization.quantize_dynamic`` checkpoints (#15, class 5) read without torch.load: an
LSTM's, GRU's or cell's packed weights (``torch.ScriptObject``) and a Linear's packed parameters under
the float model's names, int8 codes with their scale dequantised as torch itself dequantises them
(float16 packings as float16); a dynamic copy attributed to its float parent as ``quantized``;
broken files refused in one line."""

from __future__ import annotations

import io
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lakegen.attribution import attribute
from lakegen.fingerprint import compute
from lakegen.weights import iter_float32
from lakegen.weights.pytorch import ZipTorchFile
from lakegen.weights.registry import open_file
from tests.helpers import run_lakegen
from tests.test_torchzip import fingerprinted_without_torch, refused


class Encoder(nn.Module):
    """A small speaker-encoder shape: stacked (or bidirectional) LSTM layers and a Linear."""

    def __init__(self, layers: int = 2, bidirectional: bool = False, inputs: int = 12, hidden: int = 16):
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, layers, bidirectional=bidirectional)
        self.linear = nn.Linear(hidden * (2 if bidirectional else 1), 8)


def dynamic(model: nn.Module, per_channel: bool = False, dtype: torch.dtype = torch.qint8) -> nn.Module:
    config = (
        torch.ao.quantization.per_channel_dynamic_qconfig
        if per_channel
        else torch.ao.quantization.float16_dynamic_qconfig
        if dtype == torch.float16
        else torch.ao.quantization.default_dynamic_qconfig
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, and still what people saved
        return torch.ao.quantization.quantize_dynamic(model, {nn.LSTM: config, nn.Linear: config})


def saved(path: Path, module: nn.Module) -> Path:
    torch.save(module.state_dict(), path)
    return path


def torch_dequantised(path: Path, make: nn.Module) -> dict[str, torch.Tensor]:
    """The file's weights as torch reads them (weights_only=False: this test wrote the file) into
    a quantised module and dequantises them, under the float names (rnn.py's ``_weight_bias``)."""
    module = dynamic(make)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own, rebuilding a quantised tensor
        module.load_state_dict(torch.load(path, weights_only=False))
    out = {}
    for kind, tensors in module.lstm._weight_bias().items():
        for name, t in tensors.items():
            out[f"lstm.{name}"] = t.dequantize() if kind == "weight" else t.detach()
    out["linear.weight"] = module.linear.weight().dequantize()
    out["linear.bias"] = module.linear.bias().detach()
    return out


@pytest.mark.parametrize(
    ("layers", "bidirectional", "per_channel"),
    [(3, False, False), (2, True, False), (2, False, True), (1, True, True)],
)
def test_a_dynamic_lstm_reads_under_the_float_names_as_torch_dequantises_it(
    tmp_path: Path, layers: int, bidirectional: bool, per_channel: bool
) -> None:
    torch.manual_seed(layers)
    model = Encoder(layers, bidirectional)
    path = saved(tmp_path / "dynamic.pt", dynamic(model, per_channel))
    wf = open_file(path)
    assert isinstance(wf, ZipTorchFile)  # torchzip's reader: torch.load(weights_only=True) refuses it
    rows = 4 * 16
    assert wf.tensors["lstm.weight_hh_l0"].dtype == "int8"
    assert wf.tensors["lstm.weight_hh_l0_scale"].shape == ((rows,) if per_channel else (1,))
    wf.close()
    got = dict(iter_float32(path))
    floats = model.state_dict()
    # linear.scale and linear.zero_point: the output quantisation nnq.Linear saves, as torch.load shows it
    assert set(got) == {*floats, "linear.scale", "linear.zero_point"}
    for name, t in torch_dequantised(path, Encoder(layers, bidirectional)).items():
        assert np.array_equal(got[name], t.numpy()), name
        step = np.abs(floats[name].numpy()).max() / 127 if name.split(".")[1].startswith("weight") else 0
        assert np.abs(got[name] - floats[name].numpy()).max() <= step * 0.51 + 1e-7, name  # int8 rounding
    fp = compute(path)
    assert sorted(t.name for t in fp.tensors if t.quantized) == sorted(n for n in floats if ".weight" in n)


class Cells(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(6, 5)
        self.gru = nn.GRU(5, 4, 2)
        self.cell = nn.GRUCell(4, 3)
        self.rnn = nn.RNNCell(3, 2)


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
def test_dynamic_grus_and_cells_read_under_the_float_names(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = Cells()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model, {nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell}, dtype=dtype
        )
    path = saved(tmp_path / "cells.pt", quantized)
    with open_file(path) as wf:
        assert wf.tensors["gru.weight_hh_l1"].dtype == ("int8" if dtype == torch.qint8 else "float16")
    got = dict(iter_float32(path))
    assert set(got) == set(model.state_dict())
    for name in ("lstm", "gru", "cell", "rnn"):
        for tensors in getattr(quantized, name)._weight_bias().values():
            for key, t in tensors.items():
                want = t.dequantize() if t.is_quantized else t.detach()
                assert np.array_equal(got[f"{name}.{key}"], want.numpy()), (name, key)


def test_fingerprinting_a_dynamic_checkpoint_never_imports_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = saved(tmp_path / "dynamic.pt", dynamic(Encoder()))
    quantized = fingerprinted_without_torch(path, "sum(t.quantized for t in fp.tensors)")
    assert quantized == ("5", "[]")  # 4 LSTM weights and the Linear's, torch never loaded


def test_a_quantised_tensor_outside_packed_parameters_goes_to_torch_load(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates making quantised tensors by hand
        torch.save({"w": torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 0, torch.qint8)}, path)
    assert "tensor 'w' has unsupported dtype qint8" in refused(path)  # torch.load's reading, as before


def test_a_name_both_stored_and_unpacked_gets_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = dynamic(Encoder()).state_dict()
    state["lstm.weight_hh_l1"] = torch.zeros(64, 16)
    assert "tensor 'lstm.weight_hh_l1' is named twice" in refused(saved_state(tmp_path / "twice.pt", state))


def saved_state(path: Path, state: dict[str, object]) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.slow  # lakegen's CLI in a subprocess
def test_a_dynamic_copy_is_attributed_to_its_float_parent_as_quantized(tmp_path: Path) -> None:
    torch.manual_seed(0)
    parent, stranger = Encoder(inputs=40, hidden=64), Encoder(inputs=40, hidden=64)
    save_file(parent.state_dict(), str(tmp_path / "float.safetensors"))
    save_file(stranger.state_dict(), str(tmp_path / "stranger.safetensors"))
    saved(tmp_path / "dyn.pt", dynamic(parent))
    fps = {p.stem: compute(p) for p in sorted(tmp_path.iterdir())}
    lineage = attribute(fps)
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [("float", "dyn", "quantized")]
    assert lineage.edges[0].confidence >= 0.6  # the codes lie on the float model's int8 grid: directed
    result = run_lakegen("attribute", str(tmp_path / "dyn.pt"), str(tmp_path / "float.safetensors"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"float\s.*->\s*dyn\s.*quantized", result.stdout), result.stdout


def test_a_float16_dynamic_model_reads_as_the_float16_it_packed(tmp_path: Path) -> None:
    """``dtype=torch.float16`` packs each weight as float16 and saves it back as float32: read as
    float16, it equals the float parent cast to float16, and is attributed to it as ``quantized``."""
    torch.manual_seed(0)
    parent, stranger = (
        Encoder(bidirectional=True, inputs=40, hidden=64),
        Encoder(bidirectional=True, inputs=40, hidden=64),
    )
    quantized = dynamic(parent, dtype=torch.float16)
    path = saved(tmp_path / "fp16.pt", quantized)
    with open_file(path) as wf:
        assert wf.tensors["lstm.weight_hh_l0_reverse"].dtype == "float16"
        assert wf.tensors["lstm.bias_hh_l0_reverse"].dtype == "float32"  # biases stay float32
    got = dict(iter_float32(path))
    assert set(got) == {*parent.state_dict(), "linear.scale", "linear.zero_point"}
    theirs = {f"lstm.{k}": v for part in quantized.lstm._weight_bias().values() for k, v in part.items()}
    theirs["linear.weight"], theirs["linear.bias"] = quantized.linear._weight_bias()
    for name, t in parent.state_dict().items():
        assert np.array_equal(got[name], theirs[name].detach().numpy()), name
        want = t.half().float() if ".weight" in name else t
        assert np.array_equal(got[name], want.detach().numpy()), name
    save_file(parent.state_dict(), str(tmp_path / "float.safetensors"))
    save_file(stranger.state_dict(), str(tmp_path / "stranger.safetensors"))
    fps = {p.stem: compute(p) for p in sorted(tmp_path.iterdir())}
    assert [(e.parent, e.child, e.relation) for e in attribute(fps).edges] == [("float", "fp16", "quantized")]


def test_a_float16_packing_of_values_float16_cannot_hold_gets_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    real = saved(tmp_path / "fp16.pt", dynamic(Encoder(), dtype=torch.float16))
    noise = np.random.default_rng(0).normal(size=1 << 16).astype(np.float32).tobytes()
    path = rewritten(real, tmp_path / "noise.pt", change=lambda data: noise[: len(data)])
    assert "of a float16 packing holds values float16 cannot hold" in refused(path)


def test_stacked_or_bidirectional_undecidable_from_shapes_is_refused(tmp_path: Path) -> None:
    """One bidirectional layer and two stacked ones of input size = hidden size save the same
    shapes, and the state dict says neither: the names would be a guess."""
    path = saved(tmp_path / "either.pt", dynamic(Encoder(2, inputs=16)))
    assert "fit both stacked and bidirectional layers" in refused(path)


# Broken files: a real quantize_dynamic checkpoint with one part of it rewritten.


def rewritten(
    source: Path,
    path: Path,
    pkl: bytes | None = None,
    cut: str | None = None,
    change: Callable[[bytes], bytes] | None = None,
) -> Path:
    """``source`` with data.pkl replaced by ``pkl``, storage member ``cut`` halved, and every storage
    member's bytes passed through ``change``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith("/data.pkl") and pkl is not None:
                data = pkl
            if cut is not None and info.filename.endswith(f"/data/{cut}"):
                data = data[: len(data) // 2]
            if change is not None and "/data/" in info.filename:
                data = change(data)
            new.writestr(info.filename, data, zipfile.ZIP_STORED)
    return path


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def qint8_storages(pkl: bytes) -> list[str]:
    """The storage keys data.pkl loads as ``torch.QInt8Storage``."""
    memo: dict[int, str] = {}
    last_global, keys, pending = "", [], False
    for op, arg, _ in pickletools.genops(io.BytesIO(pkl)):
        if op.name == "GLOBAL":
            last_global = arg
        elif op.name == "BINPUT" and last_global:
            memo[arg], last_global = last_global, ""
        elif op.name == "BINGET":
            pending = memo.get(arg) == "torch QInt8Storage"
            continue
        if op.name == "BINUNICODE" and (pending or last_global == "torch QInt8Storage"):
            keys.append(arg)
        pending = False
    return keys


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return saved(tmp_path_factory.mktemp("dyn") / "dynamic.pt", dynamic(Encoder()))


SCALE = re.compile(rb"G(.{8})K\x00\x87", re.DOTALL)  # a per-tensor (scale, zero point 0) of a qint8 weight
LIES = {
    # not torch's grammar: left to torch.load(weights_only=True), which refuses the ScriptObject
    "a scale that is a string": (
        lambda p: SCALE.sub(b"X\x03\x00\x00\x00one" + b"K\x00\x87", p, 1),
        "refused:",
    ),
    "a zero point that is a float": (
        lambda p: SCALE.sub(lambda m: b"G" + m[1] + b"G" + struct.pack(">d", 0.0) + b"\x87", p, 1),
        "refused:",
    ),
    "an unknown kind of packed cell": (
        lambda p: p.replace(b"quantized_dynamic", b"quantized_dynamix"),
        "refused:",
    ),
    "a TorchScript class of its own": (
        lambda p: p.replace(b"torch.classes.rnn.CellParamsBase", b"torch.classes.rnn.CellParamsEvil"),
        "refused:",
    ),
    # the grammar, with parts that do not fit together: lakegen's own line
    "cells not numbered from 0": (
        lambda p: p.replace(b"_all_weight_values.1.param", b"_all_weight_values.7.param"),
        "holds cells [0, 7]; expected 0 to 1",
    ),
    "a nonzero zero point": (
        lambda p: SCALE.sub(lambda m: b"G" + m[1] + b"K\x03\x87", p, 1),
        "has a nonzero zero point",
    ),
    "a cell of the wrong shape": (
        lambda p: p.replace(b"K@K\x10\x86", b"K@K\x08\x86", 1),  # the first weight_hh, 64x16, as 64x8
        "are not those of an LSTM or GRU layer stack",
    ),
}


@pytest.mark.parametrize("case", list(LIES))
def test_a_dynamic_checkpoint_that_lies_gets_one_line(real: Path, tmp_path: Path, case: str) -> None:
    edit, expected = LIES[case]
    pkl = data_pkl(real)
    lying = edit(pkl)
    assert lying != pkl, "the edit found nothing to change"
    assert expected in refused(rewritten(real, tmp_path / "lies.pt", lying))


def test_a_truncated_qint8_storage_gets_one_line(real: Path, tmp_path: Path) -> None:
    (key, *_) = qint8_storages(data_pkl(real))
    message = refused(rewritten(real, tmp_path / "cut.pt", cut=key))
    assert f"storage '{key}' of " in message and "its member holds" in message


def test_a_per_channel_weight_lakegen_cannot_represent_gets_one_line(tmp_path: Path) -> None:
    weight = torch.randn(4, 8)
    for zeros, axis, expected in [
        (torch.tensor([0, 1, 0, 0]), 0, "has a nonzero zero point"),
        (torch.zeros(8, dtype=torch.long), 1, "per channel along axis 1"),
    ]:
        scales = torch.full((weight.shape[axis],), 0.02, dtype=torch.double)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates making quantised tensors by hand
            q = torch.quantize_per_channel(weight, scales, zeros, axis, torch.qint8)
        path = tmp_path / f"axis{axis}.pt"
        torch.save({"0._packed_params._packed_params": (q, torch.zeros(4))}, path)
        assert expected in refused(path)
