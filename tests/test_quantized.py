"""Libraries' own quantisation (bitsandbytes int8/nf4/fp4, optimum-quanto int8/int4/int2), read back.

tests/fixtures/quantized/ holds files the libraries wrote (see make.py there) beside each
library's own dequantisation of them; the readers must reproduce it. Broken variants are built
from those files: each gets one line, never a crash, never codes read as values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_lakegen
from safetensors.numpy import load_file, save_file

from lakegen.fingerprint import compute
from lakegen.weights import PRECISION, WeightsError, iter_float32, logical_tensors, open_weights

FIXTURES = Path(__file__).parent / "fixtures" / "quantized"
CASES = sorted(p.name.removesuffix(".expected.safetensors") for p in FIXTURES.glob("*.expected.safetensors"))


def test_the_fixtures_are_there() -> None:
    assert set(CASES) == {
        "bnb-int8",
        "bnb-nf4",
        "bnb-nf4-nested",
        "bnb-fp4-nested",
        "quanto-int8",
        "quanto-int4",
        "quanto-int2",
    }


@pytest.mark.parametrize("case", CASES)
def test_each_weight_reads_as_its_library_dequantises_it(case: str) -> None:
    expected = load_file(str(FIXTURES / f"{case}.expected.safetensors"))
    got = dict(iter_float32(FIXTURES / f"{case}.safetensors"))
    assert set(expected) <= set(got)
    for name, values in expected.items():
        assert got[name].shape == values.shape, name
        np.testing.assert_allclose(got[name], values, rtol=1e-6, atol=0, err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_the_fingerprint_sees_the_values_not_the_codes(case: str, tmp_path: Path) -> None:
    dense = tmp_path / "dense.safetensors"
    save_file(load_file(str(FIXTURES / f"{case}.expected.safetensors")), str(dense))
    quantized, plain = compute(FIXTURES / f"{case}.safetensors"), compute(dense)
    assert quantized.format.startswith("safetensors+")
    weight = next(t for t in quantized.tensors if t.name.endswith("weight"))
    twin = plain.tensor(weight.name)
    assert twin is not None and weight.shape == twin.shape
    np.testing.assert_allclose(quantized.values(weight), plain.values(twin), rtol=1e-6)
    assert PRECISION[weight.dtype] < PRECISION["float16"]


def test_int8_layouts_fold_into_lakegen_s_own_int8_with_a_row_scale() -> None:
    for case in ("bnb-int8", "quanto-int8"):
        with open_weights(FIXTURES / f"{case}.safetensors") as wf:
            (weight,) = [t for t in logical_tensors(wf) if t.name.endswith("weight")]
            assert (weight.dtype, weight.scale) == ("int8", weight.name + "_scale")
            assert not any(n.endswith(("SCB", "._data", "._scale")) for n in wf.tensors)
            assert any(n.endswith(("SCB", "._data")) for n in wf.stored)


def _rewrite(tmp_path: Path, case: str, change) -> Path:  # type: ignore[no-untyped-def]
    tensors = load_file(str(FIXTURES / f"{case}.safetensors"))
    change(tensors)
    out = tmp_path / f"{case}-broken.safetensors"
    save_file(tensors, str(out))
    return out


def _state(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).copy()


def _nested_state(**change: object) -> str:
    state = json.loads(
        load_file(str(FIXTURES / "bnb-nf4-nested.safetensors"))[
            "weight.quant_state.bitsandbytes__nf4"
        ].tobytes()
    )
    return json.dumps({**state, **change})


KEY = "weight.quant_state.bitsandbytes__nf4"
BROKEN = {
    "a quant_state lying about the shape": (
        "bnb-nf4-nested",
        lambda t: t.update({KEY: _state(_nested_state(shape=[64, 64]))}),
        "does not hold the 4,096 codes",
    ),
    "an unknown quant type": (
        "bnb-nf4-nested",
        lambda t: t.update({"weight.quant_state.bitsandbytes__nf5": t.pop(KEY)}),
        "unknown quant type 'nf5'",
    ),
    "a quant_state that is not JSON": (
        "bnb-nf4-nested",
        lambda t: t.update({KEY: _state('{"quant_type": "nf4", ')}),
        "quant_state is not JSON",
    ),
    "a huge quant_state": (
        "bnb-nf4-nested",
        lambda t: t.update({KEY: np.zeros(1 << 20, np.uint8)}),
        "quant_state must be at most 65,536 uint8 bytes",
    ),
    "an impossible blocksize": (
        "bnb-nf4-nested",
        lambda t: t.update({KEY: _state(_nested_state(blocksize=3))}),
        "quant_state has blocksize 3",
    ),
    "a non-finite nested offset": (
        "bnb-nf4-nested",
        lambda t: t.update({KEY: _state(_nested_state(nested_offset="nan"))}),
        "nested_offset 'nan'",
    ),
    "absmax of the wrong length": (
        "bnb-nf4",
        lambda t: t.update({"weight.absmax": t["weight.absmax"][:-1].copy()}),
        "expected 32 float32 values",
    ),
    "a missing quant_map": (
        "bnb-nf4",
        lambda t: t.pop("weight.quant_map"),
        "has no 'weight.quant_map'",
    ),
    "a GPU tile layout of int8": (
        "bnb-int8",
        lambda t: t.update({"weight_format": np.array(1, np.uint8)}),
        "GPU tile layout",
    ),
    "an SCB that is not one per row": (
        "bnb-int8",
        lambda t: t.update({"SCB": t["SCB"][:5].copy()}),
        "is not one float per row",
    ),
    "quanto codes that fit no bit width": (
        "quanto-int4",
        lambda t: t.update({"0.weight._data._data": t["0.weight._data._data"][:3].copy()}),
        "fit neither 4 nor 2 bits",
    ),
    "a quanto scale per nothing": (
        "quanto-int8",
        lambda t: t.update({"0.weight._scale": t["0.weight._scale"][:2].copy()}),
        "is not one scale per row",
    ),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_a_broken_quantised_group_gets_one_line(tmp_path: Path, what: str) -> None:
    case, change, message = BROKEN[what]
    path = _rewrite(tmp_path, case, change)
    with pytest.raises(WeightsError) as info:
        for _name, values in iter_float32(path):
            values.sum()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_a_broken_group_in_one_line(tmp_path: Path) -> None:
    path = _rewrite(tmp_path, "bnb-nf4-nested", BROKEN["a quant_state lying about the shape"][1])
    result = run_lakegen("fingerprint", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "does not hold the 4,096 codes" in result.stderr


def test_a_truncated_quantised_file_gets_one_line(tmp_path: Path) -> None:
    data = (FIXTURES / "bnb-nf4-nested.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        open_weights(path)


def _dynamic(per_channel: bool) -> tuple[object, object]:
    import warnings

    import torch

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    config = (
        torch.ao.quantization.per_channel_dynamic_qconfig
        if per_channel
        else torch.ao.quantization.default_dynamic_qconfig
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, and still what people saved
        return model, torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: config})


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_quantize_dynamic_checkpoint_loads_weights_only_and_reads_as_torch_dequantises(
    tmp_path: Path, per_channel: bool
) -> None:
    import torch

    _model, quantized = _dynamic(per_channel)
    path = tmp_path / "dynamic.pt"
    torch.save(quantized.state_dict(), path)
    got = dict(iter_float32(path))
    for i in (0, 2):
        assert torch.equal(torch.from_numpy(got[f"{i}.weight"]), quantized[i].weight().dequantize())
        assert torch.equal(torch.from_numpy(got[f"{i}.bias"]), quantized[i].bias().detach())
    fp = compute(path)
    assert [t.name for t in fp.tensors if t.quantized] == ["0.weight", "2.weight"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t, w: t.quantize_per_tensor(w, 0.01, 3, t.qint8), "has a nonzero zero point"),
        (lambda t, w: t.quantize_per_tensor(w, 0.01, 0, t.quint8), "is quantised as torch.quint8"),
    ],
)
def test_a_quantised_weight_lakegen_cannot_represent_gets_one_line(
    tmp_path: Path, make, message: str
) -> None:  # type: ignore[no-untyped-def]
    import torch

    weight = torch.randn(4, 8)
    path = tmp_path / "odd.pt"
    torch.save({"0._packed_params._packed_params": (make(torch, weight), torch.zeros(4))}, path)
    with pytest.raises(WeightsError, match=message):
        open_weights(path)


@pytest.mark.parametrize("case", ["bnb-nf4-nested", "quanto-int4", "bnb-int8"])
def test_a_quantised_copy_is_audited_on_its_values(tmp_path: Path, case: str) -> None:
    from lakegen.lineage.audit import audit_edge

    expected = load_file(str(FIXTURES / f"{case}.expected.safetensors"))
    parent, stranger = tmp_path / "parent.safetensors", tmp_path / "stranger.safetensors"
    rng = np.random.default_rng(4)
    save_file(
        {k: (v + rng.normal(size=v.shape).astype(np.float32) * 1e-3 * v.std()) for k, v in expected.items()},
        str(parent),
    )
    save_file(
        {k: rng.normal(size=v.shape).astype(np.float32) * v.std() for k, v in expected.items()}, str(stranger)
    )
    child = FIXTURES / f"{case}.safetensors"
    sha = compute(child).sha256
    honest, forged = (
        audit_edge(child, sha, [(parent, 1.0)], "quantized"),
        audit_edge(child, sha, [(stranger, 1.0)], "quantized"),
    )
    assert (honest.status, forged.status) == ("verified", "contradicted"), (
        honest.statement(),
        forged.statement(),
    )
