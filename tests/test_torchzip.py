"""Zip PyTorch checkpoints read without torch (data.pkl disassembled, never unpickled): the same
tensors, offsets and fingerprints as torch.load(weights_only=True, mmap=True), the fallback to it
for anything outside torch.save's plain-tensor grammar, and hostile files as one clear line."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lakegen.fingerprint.sampling import sample_model
from lakegen.weights import TorchFile, WeightsError, iter_float32
from lakegen.weights.pytorch import ZipTorchFile
from lakegen.weights.registry import open_file
from lakegen.weights.torchzip import Unsupported, read_state


def _same_as_torch_load(path: Path) -> ZipTorchFile:
    """Opens ``path`` both ways and checks every tensor, offset and fingerprint sample agrees."""
    ours = open_file(path)
    assert isinstance(ours, ZipTorchFile)
    theirs = TorchFile(path)
    assert ours.tensors == theirs.tensors
    assert list(ours.tensors) == list(theirs.tensors)
    for name in ours.tensors:
        a, b = ours.raw(name), theirs.raw(name)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), name
        if theirs.offset(name) is not None:
            assert ours.offset(name) == theirs.offset(name), name
        flat = np.arange(0, a.size, 3)
        assert ours.gather(name, flat).tobytes() == theirs.gather(name, flat).tobytes(), name
    prints_a, samples_a, scales_a, _, skipped_a = sample_model(ours)
    prints_b, samples_b, scales_b, _, skipped_b = sample_model(theirs)
    assert prints_a == prints_b and skipped_a == skipped_b
    assert samples_a.tobytes() == samples_b.tobytes() and scales_a.tobytes() == scales_b.tobytes()
    theirs.close()
    return ours


class TinyLM(torch.nn.Module):
    """A decoder-shaped model: embeddings tied to the output head, attention, norms, a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, 2)
        self.gru = torch.nn.GRU(16, 8)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight


def _cnn() -> torch.nn.Module:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    model(torch.randn(4, 3, 3, 3))  # BatchNorm's running statistics and num_batches_tracked move
    return model


@pytest.mark.parametrize("make", [TinyLM, _cnn])
def test_real_modules_read_the_same_as_torch_load(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = make()
    path = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), path)
    ours = _same_as_torch_load(path)
    assert set(ours.tensors) == set(model.state_dict())
    if make is TinyLM:  # the tied head is one storage under two names
        assert ours.offset("head.weight") == ours.offset("embed.weight") is not None
    ours.close()


def test_dtypes_views_and_shared_storages(tmp_path: Path) -> None:
    torch.manual_seed(1)
    base = torch.randn(6, 8)
    state = {
        "fp16": base.half(),
        "bf16": base.bfloat16(),
        "int8": (base * 20).to(torch.int8),
        "uint8": (base * 20).abs().to(torch.uint8),
        "int64": torch.arange(5),
        "f8": base.to(torch.float8_e4m3fn),
        "bool": base > 0,
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "all": base,
        "rows": base[2:4],  # one storage, three views
        "transposed": base.t(),
        "column": base[:, 3],
        "param": torch.nn.Parameter(torch.randn(3)),
    }
    path = tmp_path / "views.pt"
    torch.save(state, path)
    ours = _same_as_torch_load(path)
    assert ours.offset("rows") == ours.offset("all") + 2 * 8 * 4
    assert ours.offset("transposed") is None and ours.offset("column") is None
    assert np.array_equal(ours.raw("transposed"), base.t().numpy())
    with zipfile.ZipFile(path) as archive:
        storages = [n for n in archive.namelist() if "/data/" in n]
    assert len(storages) == len(state) - 3
    ours.close()


def test_a_training_checkpoint_is_unwrapped_without_torch_load(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = _cnn()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 3, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "epoch": 3,
            "loss": 0.25,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "note": None,
        },
        path,
    )
    ours = _same_as_torch_load(path)
    assert set(ours.tensors) == set(model.state_dict())
    ours.close()


def fingerprinted_without_torch(path: Path, what: str) -> tuple[str, str]:
    """``path`` fingerprinted in a fresh interpreter: ``what`` (an expression of ``fp``) printed,
    and the torch modules that imported."""
    code = (
        "import sys; from lakegen.fingerprint.reading import compute; "
        f"fp = compute({str(path)!r}); print({what}); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    value, modules = result.stdout.strip().splitlines()
    return value, modules


def test_fingerprinting_a_bin_never_imports_torch(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save(TinyLM().state_dict(), path)
    count, modules = fingerprinted_without_torch(path, "len(fp.tensors)")
    assert int(count) > 10 and modules == "[]"


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_quantize_dynamic_linear_reads_as_through_torch_load(tmp_path: Path, per_channel: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    config = (
        torch.ao.quantization.per_channel_dynamic_qconfig
        if per_channel
        else torch.ao.quantization.default_dynamic_qconfig
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: config})
    path = tmp_path / "dynamic.pt"
    torch.save(quantized.state_dict(), path)
    wf = _same_as_torch_load(
        path
    )  # the reading torch.load(weights_only=True) gave before: no new fingerprint
    assert wf.tensors["0.weight"].dtype == "int8" and wf.tensors["0.weight_scale"].shape == (
        (4,) if per_channel else (1,)
    )
    wf.close()
    nested = tmp_path / "checkpoint.pt"  # and unwrapped from a training checkpoint on that path too
    torch.save({"epoch": 1, "model_state_dict": quantized.state_dict(), "lr": 0.1}, nested)
    with open_file(nested) as wf:
        assert isinstance(wf, ZipTorchFile) and "2.weight_scale" in wf.tensors


# Hand-written data.pkl: tensors described by whatever a hostile file claims.


class _Storage:
    def __init__(self, cls: type, key: str, numel: int):
        self.cls, self.key, self.numel = cls, key, numel


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.args = (storage, offset, shape, stride, False, collections.OrderedDict())

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        if isinstance(obj, _Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def _pickled(obj: object) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def _checkpoint(
    path: Path, pkl: bytes, data: dict[str, bytes], compress: bool = False, order: str = "little"
) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", order)
        for key, raw in data.items():
            archive.writestr(
                f"archive/data/{key}", raw, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            )
        archive.writestr("archive/version", "3\n")
    return path


FLOATS = np.arange(16, dtype=np.float32).tobytes()  # a 16-element float32 storage


def test_a_hand_written_checkpoint_reads_like_torch_save(tmp_path: Path) -> None:
    s = _Storage(torch.FloatStorage, "0", 16)
    state = {"w": _Tensor(s, 4, (2, 3), (3, 1)), "t": _Tensor(s, 0, (4, 4), (1, 4))}
    path = _checkpoint(tmp_path / "hand.pt", _pickled(state), {"0": FLOATS})
    wf = _same_as_torch_load(path)
    assert wf.raw("w").tolist() == [[4, 5, 6], [7, 8, 9]]
    wf.close()


def refused(path: Path) -> str:
    with pytest.raises(WeightsError) as info:
        for _name, values in iter_float32(path):
            values.sum()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


LIES = {
    "offset past the storage": (
        {"w": ("0", 16, 14, (4,), (1,))},
        "reaches element 17 of a 16-element storage",
    ),
    "strides past the storage": ({"w": ("0", 16, 0, (4, 4), (5, 1))}, "reaches element 18 of a 16-element"),
    "numel past the member": ({"w": ("0", 17, 0, (17,), (1,))}, "needs 68 bytes, its member holds 64"),
    "a wider dtype than stored": (
        {"w": ("0", 16, 0, (16,), (1,), torch.DoubleStorage)},
        "storage '0' of 16 × 8 bytes needs 128 bytes",
    ),
    "a missing member": ({"w": ("7", 16, 0, (16,), (1,))}, "names storage '7', which the zip lacks"),
    "a huge count": ({"w": ("0", 10**30, 0, (10**15, 10**15), (10**15, 1))}, "needs 4,000,000,000,000,000"),
    "a negative size": ({"w": ("0", 16, 0, (-4,), (1,))}, "has a negative offset, size or stride"),
    "one storage as two dtypes": (
        {"w": ("0", 16, 0, (16,), (1,)), "v": ("0", 8, 0, (8,), (1,), torch.DoubleStorage)},
        "storage '0' is declared two ways",
    ),
}


@pytest.mark.parametrize("case", list(LIES))
def test_a_data_pkl_that_lies_gets_one_line(tmp_path: Path, case: str) -> None:
    entries, expected = LIES[case]
    state = {}
    for name, (key, numel, offset, shape, stride, *cls) in entries.items():
        state[name] = _Tensor(
            _Storage(cls[0] if cls else torch.FloatStorage, key, numel), offset, shape, stride
        )
    path = _checkpoint(tmp_path / "lies.pt", _pickled(state), {"0": FLOATS})
    assert expected in refused(path)


def test_a_compressed_storage_and_a_truncated_zip_get_one_line(tmp_path: Path) -> None:
    state = {"w": _Tensor(_Storage(torch.FloatStorage, "0", 16), 0, (16,), (1,))}
    path = _checkpoint(tmp_path / "deflated.pt", _pickled(state), {"0": FLOATS}, compress=True)
    assert "storage '0' is compressed or encrypted" in refused(path)
    real = tmp_path / "real.pt"
    torch.save({"w": torch.randn(64, 64)}, real)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(real.read_bytes()[: os.path.getsize(real) // 2])
    assert refused(cut) == f"{cut}: truncated or corrupt zip checkpoint: no central directory"


def _raw_pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"]" * 200_000 + b"a" * 199_999, "the checkpoint is not a state dict"),  # lists nested 200,000 deep
        (b"}" + b")" + b"\x85" * 1_000_000 + b"K\x01s", "refused: data.pkl nests 1,000,002 deep"),
        (b"X\xff\xff\xff\x7fabc", "corrupt data.pkl"),  # a 2 GiB string in a 3-byte pickle
        (b"}h\x05", "corrupt data.pkl"),  # a memo entry never stored
    ],
    ids=["deep-lists", "deep-tuple-key", "huge-string", "bad-memo"],
)
def test_hostile_opcodes_get_one_line_and_no_crash(tmp_path: Path, body: bytes, expected: str) -> None:
    path = _checkpoint(tmp_path / "odd.pt", _raw_pickle(body), {})
    assert expected in refused(path)


class _System:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_a_pickle_calling_os_system_is_never_run(tmp_path: Path) -> None:
    global MARKER
    MARKER = str(tmp_path / "PWNED")
    s = _Storage(torch.FloatStorage, "0", 16)
    path = _checkpoint(
        tmp_path / "evil.pt", _pickled({"w": _Tensor(s, 0, (16,), (1,)), "x": _System()}), {"0": FLOATS}
    )
    with pytest.raises(Unsupported, match=r"GLOBAL (posix|os)\.system"):
        read_state(path)
    assert "refused" in refused(path)
    assert not Path(MARKER).exists()


def test_a_reduce_outside_the_grammar_goes_to_torch_load(tmp_path: Path) -> None:
    # OrderedDict built from its items (not torch.save's way) is weights_only-safe; torch.load reads it.
    s = _Storage(torch.FloatStorage, "0", 16)

    class Filled(collections.OrderedDict):
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (collections.OrderedDict, (list(self.items()),))

    path = _checkpoint(tmp_path / "filled.pt", _pickled(Filled(w=_Tensor(s, 0, (16,), (1,)))), {"0": FLOATS})
    with pytest.raises(Unsupported, match="OrderedDict with arguments"):
        read_state(path)
    with open_file(path) as wf:
        assert isinstance(wf, TorchFile)
        assert wf.raw("w").tolist() == list(range(16))


def test_a_big_endian_checkpoint_goes_to_torch_load(tmp_path: Path) -> None:
    s = _Storage(torch.FloatStorage, "0", 16)
    pkl = _pickled({"w": _Tensor(s, 0, (16,), (1,))})
    path = _checkpoint(tmp_path / "big.pt", pkl, {"0": np.arange(16, dtype=">f4").tobytes()}, order="big")
    with pytest.raises(Unsupported, match="little-endian"):
        read_state(path)
    assert dict(iter_float32(path))["w"].tolist() == list(range(16))


def test_opcodes_the_weights_only_unpickler_lacks_are_left_to_it(tmp_path: Path) -> None:
    # pickle protocol 4 frames its opcodes: torch.load(weights_only=True) refuses it, and so does lakegen
    path = tmp_path / "protocol4.pt"
    torch.save({"w": torch.ones(3)}, path, pickle_protocol=4)
    with pytest.raises(Unsupported, match="opcode FRAME"):
        read_state(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own note on the protocol
        assert "refused: the checkpoint needs more than torch.load(weights_only=True) allows" in refused(path)


def test_a_zip_directory_that_lies_about_a_member_gets_one_line(tmp_path: Path) -> None:
    state = {"w": _Tensor(_Storage(torch.FloatStorage, "0", 16), 0, (16,), (1,))}
    good = _checkpoint(tmp_path / "good.pt", _pickled(state), {"0": FLOATS}).read_bytes()
    central = good.rindex(b"PK\x01\x02", 0, good.rindex(b"archive/data/0"))  # the member's central entry
    longer = good[: central + 20] + struct.pack("<II", 10**6, 10**6) + good[central + 28 :]
    path = tmp_path / "longer.pt"
    path.write_bytes(longer)
    assert "truncated zip checkpoint: storage '0' ends past the file" in refused(path)
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes(good.replace(b"archive/data/0", b"archive/data/9", 1))  # the local header only
    assert "local header of 'archive/data/0' disagrees" in refused(renamed)
