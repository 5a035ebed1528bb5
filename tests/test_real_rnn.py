"""A recurrent network from the real ecosystem (#15): Resemblyzer's GE2E speaker encoder as its wheel
ships it (``resemblyzer/pretrained.pt``, installed by ``make install``: a 3-layer LSTM and a Linear,
in torch.save's legacy format, the state dict nested under ``model_state`` beside the optimizer's
state), and derivatives made from it with torch: fine-tunes, a bfloat16 release whose child was
trained from its float32 master, L1 pruning of the LSTM, a float16 cast, a training checkpoint."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lakegen.attribution import attribute, undirected
from lakegen.fingerprint import compute
from lakegen.weights import WeightsError, open_weights
from tests.helpers import run_lakegen

pytestmark = pytest.mark.slow  # torch training steps and lakegen processes: seconds each


def shipped() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Resemblyzer is not installed (make install installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


class Encoder(nn.Module):
    """Resemblyzer's ``VoiceEncoder`` network, with its parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        return torch.relu(self.linear(hidden[-1]))


def master_state() -> dict[str, torch.Tensor]:
    return torch.load(shipped(), map_location="cpu", weights_only=True)["model_state"]


def fine_tune(state: dict[str, torch.Tensor], seed: int, steps: int = 5) -> dict[str, torch.Tensor]:
    """A few Adam steps pulling two synthetic speakers' embeddings apart (mel-like frames)."""
    torch.manual_seed(seed)
    model = Encoder()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    voices = torch.rand(2, 1, 1, 40) + 0.2
    for _ in range(steps):
        mels = voices * (0.5 + torch.rand(2, 3, 16, 1)) + 0.1 * torch.rand(2, 3, 16, 40)
        e = nn.functional.normalize(model(mels.view(6, 16, 40)), dim=1).view(2, 3, -1)
        loss = -(e[0] @ e[0].T).mean() - (e[1] @ e[1].T).mean() + 2 * (e[0] @ e[1].T).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def saved(folder: Path, models: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Each state dict saved as ``NAME.safetensors`` in ``folder``, and its fingerprint."""
    for name, state in models.items():
        save_file(state, str(folder / f"{name}.safetensors"))
    return {name: compute(folder / f"{name}.safetensors") for name in models}


def assert_tree(
    folder: Path, models: dict[str, dict[str, torch.Tensor]], expected: set[tuple[str, str]]
) -> None:
    """The (parent, child) edges of ``models`` saved in ``folder`` are ``expected``, without dates
    and in the order ``models`` lists them."""
    fps = saved(folder, models)
    assert {(e.parent, e.child) for e in attribute(fps).edges} == expected
    dated = attribute(fps, order={name: i for i, name in enumerate(models)})
    assert {(e.parent, e.child) for e in dated.edges} == expected


def test_the_shipped_legacy_checkpoint_reads_as_its_nested_state_dict(tmp_path: Path) -> None:
    with open_weights(shipped()) as wf:
        assert len(wf.tensors) == 16
        assert wf.tensors["lstm.weight_hh_l2"].shape == (1024, 256)
        assert wf.tensors["linear.weight"].dtype == "float32"
    save_file(master_state(), str(tmp_path / "voice.safetensors"))
    lineage = attribute({"shipped": compute(shipped()), "resaved": compute(tmp_path / "voice.safetensors")})
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [("resaved", "shipped", "quantized")]
    assert lineage.edges[0].confidence <= 0.5  # nothing says which file came first
    result = run_lakegen("fingerprint", str(shipped()), "--json")
    assert result.returncode == 0, result.stderr


def test_a_child_of_the_fp32_master_of_a_bf16_release_goes_under_the_release(tmp_path: Path) -> None:
    """The release (a fine-tune saved in bfloat16) has none of its values on the child's grid,
    yet lies between its parent and its child: not a leaf under the child (was: child -> release
    at confidence 0.91)."""
    base = master_state()
    release_fp32 = fine_tune(base, 1)
    models = {
        "voice": base,
        "sibling": fine_tune(base, 2),
        "release": {k: v.bfloat16() for k, v in release_fp32.items()},
        "child": fine_tune(release_fp32, 3),
    }
    assert_tree(tmp_path, models, {("voice", "sibling"), ("voice", "release"), ("release", "child")})


def test_a_fine_tune_of_a_child_saved_in_bf16_stays_beyond_the_child(tmp_path: Path) -> None:
    """The mirror of the release above: a bf16-saved fine-tune of the child carries all of the
    child's update, so it is the child's leaf, not a release between the child and its parent."""
    base = master_state()
    child = fine_tune(base, 1, steps=8)
    models = {
        "voice": base,
        "sibling": fine_tune(base, 2),
        "child": child,
        "leaf": {k: v.bfloat16() for k, v in fine_tune(child, 3, steps=2).items()},
    }
    assert_tree(tmp_path, models, {("voice", "sibling"), ("voice", "child"), ("child", "leaf")})


def test_lstm_copies_pruned_cast_and_checkpointed_are_found_with_their_relation(tmp_path: Path) -> None:
    from torch.nn.utils import prune

    base = master_state()
    model = Encoder()
    model.load_state_dict(base)
    for name in [f"weight_{kind}_l{i}" for i in range(3) for kind in ("ih", "hh")]:
        prune.l1_unstructured(model.lstm, name, amount=0.4)
        prune.remove(model.lstm, name)
    tuned = fine_tune(base, 4)
    torch.save({k: v.detach() for k, v in model.state_dict().items()}, tmp_path / "pruned.pt")
    torch.save({k: v.half() for k, v in tuned.items()}, tmp_path / "tuned-fp16.pt")
    opt = torch.optim.Adam(model.parameters())
    torch.save(
        {"epoch": 3, "model_state_dict": tuned, "optimizer_state_dict": opt.state_dict()},
        tmp_path / "tuned.pth",
    )
    shutil.copy(shipped(), tmp_path / "voice.pt")
    fps = {p.stem: compute(p) for p in sorted(tmp_path.iterdir())}
    edges = {(e.parent, e.child): e for e in attribute(fps).edges}
    assert {k: e.relation for k, e in edges.items() if "tuned" not in k or "voice" not in k} == {
        ("voice", "pruned"): "pruned",
        ("tuned", "tuned-fp16"): "quantized",
    }
    # a parent and its one fine-tune: the weights cannot order them, and the confidence says so
    # (0.5 once spectral entropy adds nothing to it; never the 0.6 of a confident verdict)
    (lone,) = [e for k, e in edges.items() if set(k) == {"voice", "tuned"}]
    assert lone.relation == "finetune"
    assert undirected(lone), lone


def test_a_from_scratch_run_is_the_child_of_its_default_init_whatever_the_names(tmp_path: Path) -> None:
    # PyTorch's default initialiser draws every LSTM and Linear weight uniformly from ±1/√fan;
    # training leaves no tensor a flat uniform, so the init is the earlier model even where the
    # names (the first one is the root when nothing decides) and the spectrum say otherwise
    torch.manual_seed(11)
    init = {k: v.detach().clone() for k, v in Encoder().state_dict().items()}
    trained = fine_tune(init, 12, steps=30)
    save_file(init, str(tmp_path / "b-init.safetensors"))
    save_file(trained, str(tmp_path / "a-trained.safetensors"))
    fps = {p.stem: compute(p) for p in sorted(tmp_path.iterdir())}
    (edge,) = attribute(fps).edges
    assert (edge.parent, edge.child, edge.relation) == ("b-init", "a-trained", "finetune"), edge
    assert not undirected(edge), edge


class Touch:
    """Unpickling this would create the file ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


def refused(path: Path) -> str:
    with pytest.raises(WeightsError) as info:
        open_weights(path).close()
    result = run_lakegen("fingerprint", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr
    return str(info.value)


def test_bad_legacy_checkpoints_get_one_line(tmp_path: Path) -> None:
    data = shipped().read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    assert "not a readable PyTorch checkpoint" in refused(tmp_path / "truncated.pt")
    (tmp_path / "magic-only.pt").write_bytes(data[:14])
    assert "not a readable PyTorch checkpoint" in refused(tmp_path / "magic-only.pt")
    (tmp_path / "not-torch.pt").write_bytes(b"\x80\x02" + b"\0" * 64)
    assert "neither the zip format nor torch.save's legacy format" in refused(tmp_path / "not-torch.pt")
    marker = tmp_path / "pwned"
    torch.save(
        {"w": torch.ones(2), "x": Touch(marker)}, tmp_path / "evil.pt", _use_new_zipfile_serialization=False
    )
    assert "refused" in refused(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_checkpoint_with_two_state_dicts_and_no_known_name_is_refused(tmp_path: Path) -> None:
    weights = {"w": torch.ones(3, 3)}
    torch.save({"student": weights, "teacher": weights, "step": 4}, tmp_path / "distill.pt")
    assert "several state dicts (student, teacher)" in refused(tmp_path / "distill.pt")
    # a trainer's EMA copy beside the weights under a known name: the known name is read
    torch.save({"model_state": weights, "ema": {"w": torch.zeros(3, 3)}}, tmp_path / "ema.pt")
    with open_weights(tmp_path / "ema.pt") as wf:
        assert list(wf.tensors) == ["w"]


def test_a_bf16_release_is_not_put_above_a_sibling_that_does_not_carry_its_change(tmp_path: Path) -> None:
    """A small update saved in bfloat16 sits nearer a larger sibling, once its rounding is removed
    towards it, than the master does (dev voice seed 2, and here before: release -> sibling, master ->
    child); only a model that carries the release's update is its child. The updates are random,
    full-rank, on the real master's matrices."""
    base = master_state()
    g = torch.Generator().manual_seed(5)

    def moved(state: dict[str, torch.Tensor], size: float) -> dict[str, torch.Tensor]:
        return {
            k: v + size * v.std() * torch.randn(v.shape, generator=g) if v.ndim == 2 else v.clone()
            for k, v in state.items()
        }

    release_fp32 = moved(base, 0.005)
    models = {
        "voice": base,
        "sibling": moved(base, 0.02),
        "release": {k: v.bfloat16() for k, v in release_fp32.items()},
        "child": moved(release_fp32, 0.03),
    }
    assert_tree(tmp_path, models, {("voice", "sibling"), ("voice", "release"), ("release", "child")})
