"""The ``voice`` family of ``real_attribution.py``: a recurrent network and its derivatives.

The master is Resemblyzer's GE2E speaker encoder as its wheel ships it
(``resemblyzer/pretrained.pt``: a 3-layer LSTM 40→256 and a Linear 256→256, in
the legacy ``torch.save`` format, its state dict nested under ``model_state``
beside the step and the optimizer's state). The package itself is not
imported (it pulls in librosa and webrtcvad): :class:`SpeakerEncoder` is its
module, with the same parameter names.

Children are trained on generated mel-like frame sequences of synthetic
speakers (a spectral envelope per speaker, utterances that vary it in time):
GE2E's softmax loss, a triplet loss, or a speaker classifier, with a recipe
drawn per child; they are saved the ways speech code saves them (a state dict,
a training checkpoint with optimizer state, safetensors). Silero VAD's weights
(a conv encoder and an LSTM cell, ``silero_vad_16k.safetensors``) are an
unrelated model of another architecture with a copy of its own, and a
from-scratch run from a random init (the init is its parent) and another random
init are unrelated LSTMs of the master's shape.

``torch.ao.quantization.quantize_dynamic`` of the LSTM pickles its packed weights as
``torch.ScriptObject``s, which ``torch.load(weights_only=True)`` refuses: lakegen says so in one
line and the edge is counted missed. No ONNX export is made: lakegen reads no weights from ONNX.
"""

from __future__ import annotations

import random
import shutil
from typing import Any

import torch
from real_attribution import Recipe, Zoo, package_dir, recipe, run_training
from torch import nn

N_MELS, HIDDEN, LAYERS, EMBED = 40, 256, 3, 256


class SpeakerEncoder(nn.Module):
    """Resemblyzer's ``VoiceEncoder`` network (and GE2E's two similarity scalars it was trained with)."""

    def __init__(self, embed: int = EMBED, speakers: int = 0):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, embed)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))
        self.classifier = nn.Linear(embed, speakers) if speakers else None

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / (raw.norm(dim=1, keepdim=True) + 1e-5)


def speakers(py: random.Random, n: int) -> list[torch.Tensor]:
    """Spectral envelopes of ``n`` synthetic speakers (a smooth random curve over the mel bins)."""
    g = torch.Generator().manual_seed(py.randrange(1 << 30))
    out = []
    for _ in range(n):
        knots = torch.rand(6, generator=g)
        env = torch.nn.functional.interpolate(knots.view(1, 1, -1), N_MELS, mode="linear").view(-1)
        out.append(0.2 + env)
    return out


def utterances(envelope: torch.Tensor, m: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """``m`` utterances of one speaker: its envelope, a slow syllable rhythm and noise, as power mels."""
    t = torch.arange(frames).float()
    rate = 0.15 + 0.2 * torch.rand(m, 1, generator=g)
    phase = 6.3 * torch.rand(m, 1, generator=g)
    loud = (0.6 + 0.4 * torch.sin(rate * t + phase)).clamp(min=0.05).unsqueeze(-1)
    noise = 0.15 * torch.rand(m, frames, N_MELS, generator=g)
    return loud * envelope + noise


class SpeakerData:
    """A draw of speakers and the batch shape a child trains on."""

    def __init__(self, py: random.Random):
        self.voices = speakers(py, py.choice([8, 12, 20]))
        self.per_batch = py.choice([3, 4])
        self.utts = py.choice([3, 4])
        self.frames = py.choice([24, 32, 40])

    def batch(self, py: random.Random) -> tuple[torch.Tensor, list[int]]:
        g = torch.Generator().manual_seed(py.randrange(1 << 30))
        who = py.sample(range(len(self.voices)), self.per_batch)
        mels = torch.cat([utterances(self.voices[s], self.utts, self.frames, g) for s in who])
        return mels, [s for s in who for _ in range(self.utts)]


def ge2e_loss(model: SpeakerEncoder, data: SpeakerData) -> Any:
    """GE2E's softmax loss: each utterance against every speaker's centroid, scaled by w and b."""

    def loss(py: random.Random) -> torch.Tensor:
        mels, _ = data.batch(py)
        e = model(mels).view(data.per_batch, data.utts, -1)
        centroids = e.mean(1)
        sim = torch.einsum("nmd,kd->nmk", e, centroids / centroids.norm(dim=1, keepdim=True))
        logits = (model.similarity_weight * sim + model.similarity_bias).view(-1, data.per_batch)
        target = torch.arange(data.per_batch).repeat_interleave(data.utts)
        return nn.functional.cross_entropy(logits, target)

    return loss


def triplet_loss(model: SpeakerEncoder, data: SpeakerData) -> Any:
    def loss(py: random.Random) -> torch.Tensor:
        mels, _ = data.batch(py)
        e = model(mels).view(data.per_batch, data.utts, -1)
        anchor, positive = e[:, 0], e[:, 1]
        negative = positive.roll(1, dims=0)
        return nn.functional.triplet_margin_loss(anchor, positive, negative, margin=0.3)

    return loss


def classifier_loss(model: SpeakerEncoder, data: SpeakerData) -> Any:
    assert model.classifier is not None

    def loss(py: random.Random) -> torch.Tensor:
        mels, who = data.batch(py)
        return nn.functional.cross_entropy(model.classifier(model(mels)), torch.tensor(who))

    return loss


def optimizer_state(model: nn.Module, r: Recipe) -> dict[str, Any]:
    """An optimizer's state as a training checkpoint carries it (one step taken, so it is not empty)."""
    opt = torch.optim.Adam(model.parameters(), lr=r.lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return opt.state_dict()


def make_voice(zoo: Zoo, py: random.Random, seed: int) -> None:
    src = package_dir("resemblyzer")
    if src is None or not (src / "pretrained.pt").is_file():
        zoo.skipped.append("voice family: Resemblyzer is not installed (pip install --no-deps Resemblyzer)")
        return
    fam = "voice"
    lrs = (1e-4, 3e-4, 1e-3)
    fp32: dict[str, dict[str, torch.Tensor]] = {}  # weights before a low-precision save

    def state(model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    def load(model_id: str, speakers_: int = 0) -> SpeakerEncoder:
        model = SpeakerEncoder(speakers=speakers_)
        weights = fp32.get(model_id) or read(model_id)
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
        return model

    def read(model_id: str) -> dict[str, torch.Tensor]:
        (path,) = sorted(p for p in zoo.folder(model_id).iterdir())
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
        return obj.get("model_state") or obj.get("model_state_dict") or obj

    def write(model_id: str, weights: dict[str, torch.Tensor], how: str, extra: Any = None) -> None:
        folder = zoo.folder(model_id)
        folder.mkdir()
        if how == "safetensors":
            from safetensors.torch import save_file

            save_file(weights, str(folder / f"{model_id}.safetensors"))
        elif how == "checkpoint":  # Resemblyzer's own trainer writes this
            torch.save(
                {"step": extra[0], "model_state": weights, "optimizer_state": extra[1]}, folder / "model.pt"
            )
        elif how == "lightning-like":
            torch.save(
                {"epoch": extra[0], "model_state_dict": weights, "optimizer_state_dict": extra[1]},
                folder / "checkpoint.pth",
            )
        else:
            torch.save(weights, folder / f"{model_id}.pt")

    def train(model: SpeakerEncoder, objective: str, r: Recipe) -> None:
        data = SpeakerData(py)
        make = {"ge2e": ge2e_loss, "triplet": triplet_loss, "classifier": classifier_loss}[objective]
        run_training(model, make(model, data), r)

    def finetune(
        parent: str,
        name: str,
        derivation: str = "finetune",
        objective: str | None = None,
        dtype: torch.dtype | None = None,
        how: str | None = None,
    ) -> str:
        model = load(parent)
        objective = objective or py.choice(["ge2e", "triplet"])
        r = recipe(py, (15, 25, 35), lrs)
        train(model, objective, r)
        weights = state(model)
        if dtype is not None:
            fp32[name] = weights
            weights = {k: v.to(dtype) for k, v in weights.items()}
        how = how or py.choice(["state_dict", "checkpoint", "safetensors"])
        write(name, weights, how, (r.steps, optimizer_state(model, r)))
        return zoo.add(
            name, fam, [(parent, derivation)], f"{objective} fine-tune, {r.describe()}, saved as {how}"
        )

    # the release exactly as the wheel ships it
    zoo.folder("voice").mkdir()
    shutil.copy(src / "pretrained.pt", zoo.folder("voice") / "pretrained.pt")
    zoo.add(
        "voice", fam, [], "Resemblyzer's GE2E speaker encoder, pretrained.pt as shipped (legacy torch.save)"
    )

    a = finetune("voice", "voice-ft-a", objective="ge2e")
    b = finetune("voice", "voice-ft-b", objective="triplet")
    finetune(a, "voice-ft-a-grandchild", "grandchild")
    c = finetune("voice", "voice-ft-c-bf16", "finetune-bf16-save", dtype=torch.bfloat16)
    finetune(c, "voice-ft-from-bf16", "finetune-from-fp32-master")  # load() reads c's fp32 weights

    # task heads: a speaker classifier on top, and the projection replaced by a smaller one
    model = load(b, speakers_=20)
    r = recipe(py, (25, 35), lrs)
    train(model, "classifier", r)
    write("voice-speaker-id", state(model), py.choice(["state_dict", "safetensors"]))
    zoo.add("voice-speaker-id", fam, [(b, "task-head")], f"speaker classifier head, {r.describe()}")
    embed = py.choice([64, 128])
    model = SpeakerEncoder(embed=embed)
    model.load_state_dict({k: v for k, v in state(load(a)).items() if k.startswith("lstm.")}, strict=False)
    r = recipe(py, (25, 35), lrs)
    train(model, "ge2e", r)
    write("voice-proj-small", state(model), "state_dict")
    zoo.add(
        "voice-proj-small", fam, [(a, "task-head")], f"projection replaced (256 -> {embed}), {r.describe()}"
    )

    # deployment copies
    weights = state(load(a))
    write("voice-fp16", {k: v.half() for k, v in weights.items()}, "state_dict")
    zoo.add("voice-fp16", fam, [(a, "cast-fp16")], "float16 cast of a fine-tune")
    write("voice-bf16", {k: v.bfloat16() for k, v in state(load(b)).items()}, "safetensors")
    zoo.add("voice-bf16", fam, [(b, "cast-bf16")], "bf16 cast of a fine-tune")

    from torch.nn.utils import prune

    amount = py.choice([0.3, 0.5])
    parent = py.choice(["voice", a])
    model = load(parent)
    names = [f"weight_{kind}_l{i}" for i in range(LAYERS) for kind in ("ih", "hh")]
    for w in names:
        prune.l1_unstructured(model.lstm, w, amount=amount)
        prune.remove(model.lstm, w)
    prune.l1_unstructured(model.linear, "weight", amount=amount)
    prune.remove(model.linear, "weight")
    model.lstm.flatten_parameters()
    write("voice-pruned", state(model), "state_dict")
    zoo.add(
        "voice-pruned",
        fam,
        [(parent, "pruned-l1")],
        f"L1 pruning {amount:.0%} of the LSTM and Linear weights",
    )

    def dynamic() -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(load(b), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
        zoo.folder("voice-dynamic-int8").mkdir()
        torch.save(q.state_dict(), zoo.folder("voice-dynamic-int8") / "model.pt")
        zoo.add("voice-dynamic-int8", fam, [(b, "dynamic-int8")], "quantize_dynamic qint8 of LSTM + Linear")

    zoo.attempt("torch dynamic quantization (voice)", dynamic)

    def quanto() -> None:
        from optimum.quanto import freeze, qint8, quantize
        from safetensors.torch import save_file

        model = load("voice")
        quantize(model, weights=qint8)  # quanto quantizes the Linear; the LSTM stays float
        freeze(model)
        zoo.folder("voice-quanto-int8").mkdir()
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(zoo.folder("voice-quanto-int8") / "model.safetensors"))
        zoo.add("voice-quanto-int8", fam, [("voice", "quanto-int8")], "optimum-quanto qint8 (its Linear)")

    zoo.attempt("optimum-quanto int8 (voice)", quanto)

    write("voice-safetensors", state(load("voice")), "safetensors")
    zoo.add(
        "voice-safetensors", fam, [("voice", "resave-safetensors")], "the release re-saved as safetensors"
    )
    r = recipe(py, (1,), lrs)
    write(f"{b}-ckpt", state(load(b)), "lightning-like", (py.randrange(1, 50), optimizer_state(load(b), r)))
    zoo.add(
        f"{b}-ckpt", fam, [(b, "resave-checkpoint")], "re-saved as a training checkpoint with optimizer state"
    )

    w = round(py.uniform(0.3, 0.7), 3)
    sa, sb = state(load(a)), state(load(b))
    write("voice-average", {k: w * sa[k] + (1 - w) * sb[k] for k in sa}, "state_dict")
    zoo.add(
        "voice-average",
        fam,
        [(a, "average"), (b, "average")],
        f"weighted average {w}/{1 - w:.3f}",
        [w, 1 - w],
    )

    # unrelated LSTMs of the same shape: a from-scratch run with its init, and another init
    torch.manual_seed(seed * 1000 + 11)
    init = SpeakerEncoder()
    write("lstm-init", state(init), "state_dict")
    zoo.add("lstm-init", "lstm-scratch", [], "SpeakerEncoder(), a fresh random init")
    model = load("lstm-init")
    r = recipe(py, (60, 80), (1e-3, 2e-3))
    train(model, "ge2e", r)
    write(
        "lstm-scratch",
        state(model),
        py.choice(["checkpoint", "safetensors"]),
        (r.steps, optimizer_state(model, r)),
    )
    zoo.add(
        "lstm-scratch", "lstm-scratch", [("lstm-init", "from-scratch")], f"GE2E from scratch, {r.describe()}"
    )
    torch.manual_seed(seed * 1000 + 12)
    write("lstm-random-init", state(SpeakerEncoder()), "safetensors")
    zoo.add("lstm-random-init", "lstm-random-init", [], "SpeakerEncoder(), another random init")

    silero = package_dir("silero_vad")
    if silero is None or not (silero / "data" / "silero_vad_16k.safetensors").is_file():
        zoo.skipped.append("silero: silero-vad is not installed (pip install --no-deps silero-vad)")
        return
    from safetensors.torch import load_file

    zoo.folder("silero-vad").mkdir()
    shutil.copy(
        silero / "data" / "silero_vad_16k.safetensors",
        zoo.folder("silero-vad") / "silero_vad_16k.safetensors",
    )
    zoo.add("silero-vad", "silero", [], "Silero VAD 16 kHz as its wheel ships it (conv encoder + LSTM cell)")
    vad = load_file(str(silero / "data" / "silero_vad_16k.safetensors"))
    write("silero-vad-fp16", {k: v.half() for k, v in vad.items()}, "state_dict")
    zoo.add("silero-vad-fp16", "silero", [("silero-vad", "cast-fp16")], "float16 cast")
