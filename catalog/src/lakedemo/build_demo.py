"""Rebuild the demo lake: every model artifact and every manifest, from fixed seeds.

Run from the repository root::

    .venv/bin/python catalog/src/lakedemo/build_demo.py                     # models + manifests
    .venv/bin/python catalog/src/lakedemo/build_demo.py --export-datasets   # also re-export the .npz

What it does, in order:

1. (only with ``--export-datasets``, which needs scikit-learn) export digits,
   digits-noisy and wine to ``catalog/artifacts/datasets/*.npz`` — these files
   are committed, so normally this step is skipped and the committed files used;
2. train or derive each model version listed in ``MODELS`` below and write its
   weights under ``catalog/artifacts/models/`` (safetensors; the LoRA adapter
   is a folder in PEFT layout; int8 models carry ``*.weight_scale`` tensors);
3. evaluate every model version with :mod:`lakedemo.evaluate`, loading the
   artifact exactly as a benchmark runner would (int8 dequantised, the adapter
   merged into its base as ``W + (lora_alpha / r) * B @ A``);
4. write every manifest under ``catalog/models/``, ``catalog/datasets/`` and
   ``catalog/code/`` with the real sha256 and size of each artifact and the
   measured numbers (rounded to 4 decimals, tolerance 0.005).

Every step is seeded (``torch.manual_seed``), runs on one thread with
``torch.use_deterministic_algorithms(True)``, and writes files without
timestamps, so a re-run on the same machine and library versions reproduces
the same bytes. (Another CPU or torch version may round differently; the
re-run then changes hashes but not the story.) The whole build takes a few
seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `import lakedemo` work
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import yaml

from lakedemo import evaluate as ev
from lakedemo import train as tr
from lakedemo.nets import build_mlp

REPO_ROOT = Path(__file__).resolve().parents[3]
CODE_PATH = "catalog/src"
DATASET_DIR = "catalog/artifacts/datasets"
MODEL_DIR = "catalog/artifacts/models"
TOLERANCE = 0.005
D = dt.date

# ----------------------------------------------------------------------------- datasets

UCI_DIGITS = "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits"
UCI_WINE = "https://archive.ics.uci.edu/dataset/109/wine"
SPLIT_NOTE = "Split 75/25 into train and test, stratified by label, with `random_state=0`."

DATASETS: dict[str, dict[str, Any]] = {
    "digits": {
        "name": "UCI handwritten digits (8×8)",
        "description": (
            "1,797 grey-scale images of handwritten digits, 8×8 pixels, ten classes (0–9), as\n"
            "shipped by scikit-learn (`sklearn.datasets.load_digits`).\n\n"
            "scikit-learn's copy is the test part of the UCI *Optical Recognition of\n"
            "Handwritten Digits* data: 32×32 bitmaps from 43 writers, reduced to 8×8 blocks\n"
            "whose values count the inked pixels (0–16).\n\n"
            "**Preparation** (`lakedemo/export_datasets.py`):\n\n"
            "- pixel counts divided by 16, stored as float32 in [0, 1], flattened row-major;\n"
            f"- {SPLIT_NOTE}\n"
            "- labels stored as int64.\n\n"
            "Arrays in the `.npz`: `x_train` [1347, 64], `y_train` [1347], `x_test` [450, 64],\n"
            "`y_test` [450].\n"
        ),
        "owners": ["acme/data", "@ada"],
        "tags": ["demo", "digits", "images", "uci", "scikit-learn"],
        "links": [
            {"title": "UCI Machine Learning Repository", "url": UCI_DIGITS},
            {
                "title": "scikit-learn load_digits",
                "url": "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
            },
        ],
        "task": "image-classification",
        "source": {
            "name": "UCI Optical Recognition of Handwritten Digits, via scikit-learn load_digits",
            "url": UCI_DIGITS,
            "citation": (
                "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits [Dataset].\n"
                "UCI Machine Learning Repository. https://doi.org/10.24432/C50P49\n"
            ),
        },
        "released": D(2026, 9, 1),
        "changelog": "First export from scikit-learn 1.9.",
        "features": [
            {
                "name": "pixels",
                "dtype": "float32",
                "shape": [64],
                "description": "The 8×8 image, row-major; ink count 0–16 divided by 16, in [0, 1].",
            },
            {"name": "label", "dtype": "int64", "shape": [], "description": "The digit, 0–9."},
        ],
        "derived_from": [],
    },
    "digits-noisy": {
        "name": "UCI handwritten digits with Gaussian pixel noise",
        "description": (
            "The `digits` dataset with Gaussian noise added to every pixel: the same rows,\n"
            "labels and train/test split, but each pixel becomes `clip(x + N(0, 0.2²), 0, 1)`\n"
            "(numpy `default_rng(0)`, train split first, then test).\n\n"
            "It exists to fine-tune and evaluate models for robustness to sensor noise, and to\n"
            "show `derived_from` lineage between datasets.\n\n"
            "Arrays in the `.npz`: `x_train` [1347, 64], `y_train` [1347], `x_test` [450, 64],\n"
            "`y_test` [450].\n"
        ),
        "owners": ["acme/data", "@ada"],
        "tags": ["demo", "digits", "images", "noise", "derived"],
        "links": [{"title": "UCI Machine Learning Repository (original data)", "url": UCI_DIGITS}],
        "task": "image-classification",
        "source": {
            "name": "Derived from this lake's digits (UCI Optical Recognition of Handwritten Digits)",
            "url": UCI_DIGITS,
            "citation": (
                "Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits [Dataset].\n"
                "UCI Machine Learning Repository. https://doi.org/10.24432/C50P49\n"
            ),
        },
        "released": D(2026, 9, 1),
        "changelog": "First export: σ = 0.2 Gaussian noise, seed 0.",
        "features": [
            {
                "name": "pixels",
                "dtype": "float32",
                "shape": [64],
                "description": "The noisy 8×8 image, row-major, in [0, 1].",
            },
            {"name": "label", "dtype": "int64", "shape": [], "description": "The digit, 0–9."},
        ],
        "derived_from": [
            {"id": "digits", "note": "Same rows and split; Gaussian noise σ = 0.2 added, clipped to [0, 1]."}
        ],
    },
    "wine": {
        "name": "UCI wine recognition",
        "description": (
            "178 Italian wines from three cultivars, each described by 13 results of chemical\n"
            "analysis (alcohol, malic acid, ash, alcalinity of ash, magnesium, total phenols,\n"
            "flavanoids, nonflavanoid phenols, proanthocyanins, colour intensity, hue,\n"
            "OD280/OD315 of diluted wines, proline), as shipped by scikit-learn\n"
            "(`sklearn.datasets.load_wine`).\n\n"
            "**Preparation** (`lakedemo/export_datasets.py`):\n\n"
            f"- {SPLIT_NOTE}\n"
            "- every feature standardised with the mean and standard deviation of the *train*\n"
            "  split (so no test statistics leak), stored as float32;\n"
            "- labels (cultivar 0, 1, 2) stored as int64.\n\n"
            "Arrays in the `.npz`: `x_train` [133, 13], `y_train` [133], `x_test` [45, 13],\n"
            "`y_test` [45].\n"
        ),
        "owners": ["acme/data", "@grace"],
        "tags": ["demo", "wine", "tabular", "uci", "scikit-learn"],
        "links": [
            {"title": "UCI Machine Learning Repository", "url": UCI_WINE},
            {
                "title": "scikit-learn load_wine",
                "url": "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_wine.html",
            },
        ],
        "task": "tabular-classification",
        "source": {
            "name": "UCI Wine, via scikit-learn load_wine",
            "url": UCI_WINE,
            "citation": (
                "Aeberhard, S. & Forina, M. (1992). Wine [Dataset]. UCI Machine Learning Repository.\n"
                "https://doi.org/10.24432/C5PC7R\n"
            ),
        },
        "released": D(2026, 9, 1),
        "changelog": "First export from scikit-learn 1.9.",
        "features": [
            {
                "name": "measurements",
                "dtype": "float32",
                "shape": [13],
                "description": "The 13 chemical measurements, standardised with train-split statistics.",
            },
            {"name": "label", "dtype": "int64", "shape": [], "description": "The cultivar, 0–2."},
        ],
        "derived_from": [],
    },
}

# ------------------------------------------------------------------------------- models

FAMILIES: dict[str, dict[str, Any]] = {
    "digits-mlp": {
        "config": {"in_features": 64, "hidden": [256, 128], "out_features": 10},
        "task": "image-classification",
        "owners": ["acme/vision", "@ada"],
        "tags": ["demo", "mlp", "digits"],
        "intended_use": (
            "Demonstrating lakegen: lineage, attribution, benchmarking and governance on a\n"
            "model small enough to train in seconds. Classifying 8×8 digit images prepared\n"
            "exactly like the `digits` dataset.\n"
        ),
        "limitations": (
            "Trained on 1,347 low-resolution images from 43 writers of the 1990s; not suitable\n"
            "for real handwriting recognition, other image sizes or other preprocessing. The\n"
            "test split has only 450 images, so accuracies differ by ±1–2 points by chance.\n"
        ),
    },
    "wine-mlp": {
        "config": {"in_features": 13, "hidden": [64], "out_features": 3},
        "task": "tabular-classification",
        "owners": ["acme/tabular", "@grace"],
        "tags": ["demo", "mlp", "wine"],
        "intended_use": (
            "Demonstrating lakegen on a tabular model. Predicting the cultivar of a wine from\n"
            "the 13 measurements of the `wine` dataset, standardised with its train statistics.\n"
        ),
        "limitations": (
            "Trained on 133 wines from one Italian region; the 45-row test split makes every\n"
            "misclassified wine worth 2.2 points of accuracy. Not a tool for judging wine.\n"
        ),
    },
}


def v(version: str, released: dt.date, changelog: str, recipe: dict[str, Any]) -> dict[str, Any]:
    return {"version": version, "released": released, "changelog": changelog, "recipe": recipe}


def train_recipe(dataset: str, seed: int, epochs: int, lr: float, **extra: Any) -> dict[str, Any]:
    return {"kind": "train", "dataset": dataset, "seed": seed, "epochs": epochs, "lr": lr, **extra}


def ft_recipe(init: str, dataset: str, seed: int, epochs: int, lr: float, **extra: Any) -> dict[str, Any]:
    model_id, version = init.split("@")
    return {
        "kind": "finetune",
        "init": (model_id, version),
        "dataset": dataset,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        **extra,
    }


BASE = ("digits-mlp-base", "1.0.0")
WINE_BASE = ("wine-mlp-base", "1.0.0")

# Each model: manifest text, its lineage (base_models), and one recipe per version.
# Recipes run in list order, so a model comes after everything it derives from.
MODELS: list[dict[str, Any]] = [
    {
        "id": "digits-mlp-base",
        "family": "digits-mlp",
        "name": "Digits MLP (base)",
        "summary": "The root of the digits family: an MLP trained from scratch on the `digits` train split.",
        "tags": ["root"],
        "bases": [],
        "versions": [
            v("1.0.0", D(2026, 9, 14), "First training run.", train_recipe("digits", 0, 30, 1e-3)),
        ],
        "evaluations": [("digits", "accuracy"), ("digits", "macro-f1"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "digits-mlp-alt",
        "family": "digits-mlp",
        "name": "Digits MLP (independent run, seed 1)",
        "summary": (
            "A second root of the digits family, unrelated to `digits-mlp-base`: same architecture\n"
            "and data, but initialised and shuffled with seed 1. Version 1.1.0 continues training\n"
            "1.0.0 for more epochs; attribution tools should find no parent for either."
        ),
        "tags": ["root"],
        "bases": [],
        "versions": [
            v("1.0.0", D(2026, 9, 21), "Short first run (5 epochs).", train_recipe("digits", 1, 5, 1e-3)),
            v(
                "1.1.0",
                D(2026, 10, 5),
                "Continues training 1.0.0 for 15 more epochs at half the learning rate.",
                ft_recipe("digits-mlp-alt@1.0.0", "digits", 11, 15, 5e-4, role="train"),
            ),
        ],
        "evaluations": [("digits", "accuracy")],
    },
    {
        "id": "digits-mlp-ft-noisy",
        "family": "digits-mlp",
        "name": "Digits MLP fine-tuned on noisy digits",
        "summary": "`digits-mlp-base` fine-tuned on `digits-noisy`, for robustness to pixel noise.",
        "tags": ["finetune", "noise-robust"],
        "bases": [{"id": BASE[0], "version": BASE[1], "relation": "finetune"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 12),
                "Fine-tuned from digits-mlp-base 1.0.0.",
                ft_recipe("digits-mlp-base@1.0.0", "digits-noisy", 2, 10, 3e-4),
            ),
        ],
        "evaluations": [("digits", "accuracy"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "digits-mlp-ft-small",
        "family": "digits-mlp",
        "name": "Digits MLP fine-tuned on a 30% subset (SGD)",
        "summary": (
            "`digits-mlp-base` fine-tuned with different hyper-parameters: SGD with momentum and\n"
            "weight decay on a stratified 30% subset of the `digits` train split."
        ),
        "tags": ["finetune"],
        "bases": [{"id": BASE[0], "version": BASE[1], "relation": "finetune"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 12),
                "Fine-tuned from digits-mlp-base 1.0.0.",
                ft_recipe(
                    "digits-mlp-base@1.0.0",
                    "digits",
                    3,
                    20,
                    1e-2,
                    optimizer="sgd",
                    weight_decay=1e-4,
                    subset=0.3,
                    batch_size=32,
                ),
            ),
        ],
        "evaluations": [("digits", "accuracy")],
    },
    {
        "id": "digits-mlp-lora",
        "family": "digits-mlp",
        "name": "Digits MLP LoRA adapter for noisy digits",
        "summary": (
            "A rank-4 LoRA adapter (lora_alpha 8) on all three linear layers of `digits-mlp-base`,\n"
            "trained on `digits-noisy` with the base frozen. The artifact holds only the adapter\n"
            "(PEFT layout: `adapter_model.safetensors` and `adapter_config.json` in one folder);\n"
            "load the base weights and add `(lora_alpha / r) · B · A` to each targeted weight."
        ),
        "tags": ["adapter", "lora", "noise-robust"],
        "bases": [{"id": BASE[0], "version": BASE[1], "relation": "adapter"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 19),
                "First adapter.",
                {
                    "kind": "lora",
                    "base": BASE,
                    "dataset": "digits-noisy",
                    "seed": 4,
                    "epochs": 10,
                    "lr": 1e-3,
                    "rank": 4,
                    "alpha": 8,
                    "target_modules": ["layers.0", "layers.2", "layers.4"],
                },
            ),
        ],
        "evaluations": [("digits", "accuracy"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "digits-mlp-int8",
        "family": "digits-mlp",
        "name": "Digits MLP, int8 weights",
        "summary": (
            "`digits-mlp-base` with every weight matrix quantised to int8: symmetric, one float32\n"
            "scale per output channel in `<layer>.weight_scale`; biases stay float32. Dequantise\n"
            "with `weight * weight_scale[:, None]`."
        ),
        "tags": ["quantized", "int8"],
        "bases": [{"id": BASE[0], "version": BASE[1], "relation": "quantized"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 19),
                "Quantised from digits-mlp-base 1.0.0.",
                {"kind": "quantize", "base": BASE},
            ),
        ],
        "evaluations": [("digits", "accuracy")],
    },
    {
        "id": "digits-mlp-pruned",
        "family": "digits-mlp",
        "name": "Digits MLP, 50% magnitude-pruned",
        "summary": (
            "`digits-mlp-base` with the 50% smallest-magnitude entries of each weight matrix set to\n"
            "zero (one-shot, unstructured, no retraining). Surviving weights and all biases are\n"
            "exactly the base model's."
        ),
        "tags": ["pruned", "sparse"],
        "bases": [{"id": BASE[0], "version": BASE[1], "relation": "pruned"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 19),
                "Pruned from digits-mlp-base 1.0.0.",
                {"kind": "prune", "base": BASE, "amount": 0.5},
            ),
        ],
        "evaluations": [("digits", "accuracy")],
    },
    {
        "id": "digits-mlp-merge",
        "family": "digits-mlp",
        "name": "Digits MLP merge of two fine-tunes",
        "summary": (
            "The uniform weight average (0.5 / 0.5, every tensor) of `digits-mlp-ft-noisy` and\n"
            '`digits-mlp-ft-small`, two fine-tunes of the same base (a "model soup").'
        ),
        "tags": ["merge", "model-soup"],
        "bases": [
            {"id": "digits-mlp-ft-noisy", "version": "1.0.0", "relation": "merge", "weight": 0.5},
            {"id": "digits-mlp-ft-small", "version": "1.0.0", "relation": "merge", "weight": 0.5},
        ],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 26),
                "Merged from digits-mlp-ft-noisy 1.0.0 and digits-mlp-ft-small 1.0.0.",
                {
                    "kind": "merge",
                    "bases": [("digits-mlp-ft-noisy", "1.0.0"), ("digits-mlp-ft-small", "1.0.0")],
                    "weights": [0.5, 0.5],
                },
            ),
            v(
                "1.1.0",
                D(2026, 11, 2),
                "Re-published as a sharded checkpoint (two safetensors files and their index, "
                "as Hugging Face stores large models); the tensors are those of 1.0.0.",
                {"kind": "reshard", "base": ("digits-mlp-merge", "1.0.0"), "shards": 2},
            ),
        ],
        "evaluations": [("digits", "accuracy"), ("digits", "macro-f1"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "digits-mlp-ft-noisy-int8",
        "family": "digits-mlp",
        "name": "Digits MLP fine-tuned on noisy digits, int8 weights",
        "summary": (
            "`digits-mlp-ft-noisy` quantised to int8 like `digits-mlp-int8` (symmetric,\n"
            "per-output-channel scales): a grandchild of `digits-mlp-base`."
        ),
        "tags": ["quantized", "int8", "noise-robust"],
        "bases": [{"id": "digits-mlp-ft-noisy", "version": "1.0.0", "relation": "quantized"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 26),
                "Quantised from digits-mlp-ft-noisy 1.0.0.",
                {"kind": "quantize", "base": ("digits-mlp-ft-noisy", "1.0.0")},
            ),
        ],
        "evaluations": [("digits", "accuracy"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "digits-mlp-alt-ft",
        "family": "digits-mlp",
        "name": "Digits MLP (seed 1) fine-tuned on noisy digits",
        "summary": "`digits-mlp-alt` 1.1.0 fine-tuned on `digits-noisy`: a descendant of the second root.",
        "tags": ["finetune", "noise-robust"],
        "bases": [{"id": "digits-mlp-alt", "version": "1.1.0", "relation": "finetune"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 11, 2),
                "Fine-tuned from digits-mlp-alt 1.1.0.",
                ft_recipe("digits-mlp-alt@1.1.0", "digits-noisy", 5, 10, 3e-4),
            ),
        ],
        "evaluations": [("digits", "accuracy"), ("digits-noisy", "accuracy")],
    },
    {
        "id": "wine-mlp-base",
        "family": "wine-mlp",
        "name": "Wine MLP (base)",
        "summary": "The root of the wine family: a one-hidden-layer MLP trained from scratch on `wine`.",
        "tags": ["root"],
        "bases": [],
        "versions": [
            v(
                "1.0.0",
                D(2026, 9, 14),
                "First training run.",
                train_recipe("wine", 0, 40, 1e-3, batch_size=16),
            ),
        ],
        "evaluations": [("wine", "accuracy"), ("wine", "macro-f1")],
    },
    {
        "id": "wine-mlp-ft",
        "family": "wine-mlp",
        "name": "Wine MLP fine-tuned with weight decay",
        "summary": (
            "`wine-mlp-base` fine-tuned on the `wine` train split with SGD, momentum and strong\n"
            "weight decay, which shrinks the weights towards a smoother decision boundary."
        ),
        "tags": ["finetune"],
        "bases": [{"id": WINE_BASE[0], "version": WINE_BASE[1], "relation": "finetune"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 12),
                "Fine-tuned from wine-mlp-base 1.0.0.",
                ft_recipe(
                    "wine-mlp-base@1.0.0",
                    "wine",
                    6,
                    30,
                    1e-2,
                    optimizer="sgd",
                    weight_decay=1e-2,
                    batch_size=16,
                ),
            ),
        ],
        "evaluations": [("wine", "accuracy"), ("wine", "macro-f1")],
    },
    {
        "id": "wine-mlp-int8",
        "family": "wine-mlp",
        "name": "Wine MLP, int8 weights",
        "summary": "`wine-mlp-base` with int8 weight matrices (symmetric per-output-channel float32 scales).",
        "tags": ["quantized", "int8"],
        "bases": [{"id": WINE_BASE[0], "version": WINE_BASE[1], "relation": "quantized"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 19),
                "Quantised from wine-mlp-base 1.0.0.",
                {"kind": "quantize", "base": WINE_BASE},
            ),
        ],
        "evaluations": [("wine", "accuracy")],
    },
    {
        "id": "wine-mlp-pruned",
        "family": "wine-mlp",
        "name": "Wine MLP, 50% magnitude-pruned",
        "summary": "`wine-mlp-base` with half of each weight matrix (the smallest magnitudes) set to zero.",
        "tags": ["pruned", "sparse"],
        "bases": [{"id": WINE_BASE[0], "version": WINE_BASE[1], "relation": "pruned"}],
        "versions": [
            v(
                "1.0.0",
                D(2026, 10, 19),
                "Pruned from wine-mlp-base 1.0.0.",
                {"kind": "prune", "base": WINE_BASE, "amount": 0.5},
            ),
        ],
        "evaluations": [("wine", "accuracy")],
    },
]

CODE: dict[str, dict[str, Any]] = {
    "lakedemo-train": {
        "name": "lakedemo: networks, training and the demo-lake build",
        "description": (
            "The code that builds and trains every model of the demo lake, in this repository\n"
            "under `catalog/src/lakedemo/`.\n\n"
            "- `nets.build_mlp(in_features, hidden, out_features)` builds the MLP; its state-dict\n"
            "  keys are `layers.<i>.weight` / `layers.<i>.bias`;\n"
            "- `train` trains a network (`python -m lakedemo.train --help`, with\n"
            "  `PYTHONPATH=catalog/src`) and holds the LoRA, int8, pruning and merging helpers;\n"
            "- `export_datasets` exports the scikit-learn datasets to `.npz` (run once);\n"
            "- `build_demo` regenerates every demo artifact and manifest:\n"
            "  `.venv/bin/python catalog/src/lakedemo/build_demo.py`.\n"
        ),
        "owners": ["acme/ml-platform", "@ada"],
        "tags": ["demo", "pytorch", "training"],
        "entrypoints": {
            "build_model": "lakedemo.nets:build_mlp",
            "train": "lakedemo.train:main",
            "export_datasets": "lakedemo.export_datasets:main",
            "build_demo": "lakedemo.build_demo:main",
        },
    },
    "lakedemo-eval": {
        "name": "lakedemo: evaluation",
        "description": (
            "Loads any demo-lake artifact into a network and scores it on a dataset split, in\n"
            "this repository under `catalog/src/lakedemo/evaluate.py`.\n\n"
            "- `load_weights(model, artifact, base=None)` loads full, int8 (dequantised) or LoRA\n"
            "  adapter weights (merged into `base`) into a network built by `build_mlp`;\n"
            "- `evaluate(model, dataset_npz, split)` returns the predictions, `accuracy` and\n"
            "  `macro-f1`.\n\n"
            "Every evaluation claimed in the demo manifests was measured with this code.\n"
        ),
        "owners": ["acme/ml-platform", "@grace"],
        "tags": ["demo", "pytorch", "evaluation"],
        "entrypoints": {
            "evaluate": "lakedemo.evaluate:evaluate",
            "load_weights": "lakedemo.evaluate:load_weights",
            "build_model": "lakedemo.nets:build_mlp",
        },
    },
}

# -------------------------------------------------------------------------------- build


def model_artifact(root: Path, model_id: str, version: str, kind: str, shards: int = 1) -> Path:
    """Where a model version's artifact lives (an adapter's and a sharded checkpoint's index are files
    inside a folder)."""
    if kind == "lora":
        return root / MODEL_DIR / f"{model_id}-{version}" / "adapter_model.safetensors"
    if shards > 1:
        return root / MODEL_DIR / f"{model_id}-{version}" / tr.SHARD_INDEX
    return root / MODEL_DIR / f"{model_id}-{version}.safetensors"


def dataset_artifact(root: Path, dataset_id: str, version: str = "1.0.0") -> Path:
    return root / DATASET_DIR / f"{dataset_id}-{version}.npz"


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of a class-stratified random subset."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        picked.append(rng.permutation(rows)[: max(1, round(fraction * len(rows)))])
    return np.sort(np.concatenate(picked))


class Builder:
    """Runs recipes in order, keeping each version's float weights for its descendants."""

    def __init__(self, root: Path):
        self.root = root
        self.weights: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self.paths: dict[tuple[str, str], Path] = {}
        self.kinds: dict[tuple[str, str], str] = {}

    def data(self, dataset: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        return ev.load_split(dataset_artifact(self.root, dataset), split)

    def build(self, spec: dict[str, Any], version: dict[str, Any]) -> Path:
        model_id, number, recipe = spec["id"], version["version"], version["recipe"]
        config = FAMILIES[spec["family"]]["config"]
        kind = recipe["kind"]
        tr.set_determinism(recipe.get("seed", 0))
        path = model_artifact(self.root, model_id, number, kind, recipe.get("shards", 1))
        if kind in ("train", "finetune"):
            model = build_mlp(**config)
            if kind == "finetune":
                model.load_state_dict(self.weights[recipe["init"]], strict=True)
            x, y = self.data(recipe["dataset"])
            if "subset" in recipe:
                rows = stratified_subset(y, recipe["subset"], recipe["seed"])
                x, y = x[rows], y[rows]
            tr.fit(
                model,
                x,
                y,
                epochs=recipe["epochs"],
                lr=recipe["lr"],
                seed=recipe["seed"],
                batch_size=recipe.get("batch_size", 64),
                optimizer=recipe.get("optimizer", "adam"),
                weight_decay=recipe.get("weight_decay", 0.0),
            )
            state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            tr.save_weights(state, path)
        elif kind == "lora":
            base_state = self.weights[recipe["base"]]
            model = build_mlp(**config)
            model.load_state_dict(base_state, strict=True)
            x, y = self.data(recipe["dataset"])
            adapter = tr.fit_lora(
                model,
                x,
                y,
                rank=recipe["rank"],
                alpha=recipe["alpha"],
                epochs=recipe["epochs"],
                lr=recipe["lr"],
                seed=recipe["seed"],
                target_modules=recipe["target_modules"],
            )
            if path.parent.exists():
                shutil.rmtree(path.parent)
            tr.save_weights(adapter, path)
            adapter_config = {
                "peft_type": "LORA",
                "base_model_name_or_path": recipe["base"][0],
                "r": recipe["rank"],
                "lora_alpha": recipe["alpha"],
                "target_modules": recipe["target_modules"],
                "lora_dropout": 0.0,
                "bias": "none",
                "fan_in_fan_out": False,
                "inference_mode": True,
                "revision": recipe["base"][1],
            }
            (path.parent / ev.ADAPTER_CONFIG).write_text(
                json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8"
            )
            state = ev.apply_lora(base_state, path)
        elif kind == "quantize":
            quantized = tr.quantize_int8(self.weights[recipe["base"]])
            tr.save_weights(quantized, path)
            state = ev.dequantize(quantized)
        elif kind == "prune":
            state = tr.prune_magnitude(self.weights[recipe["base"]], recipe["amount"])
            tr.save_weights(state, path)
        elif kind == "merge":
            state = tr.merge_weights([self.weights[b] for b in recipe["bases"]], recipe["weights"])
            tr.save_weights(state, path)
        elif kind == "reshard":
            state = self.weights[recipe["base"]]
            tr.save_sharded(state, path.parent, recipe["shards"])
        else:
            raise ValueError(f"{model_id}: unknown recipe kind {kind!r}")
        self.weights[(model_id, number)] = state
        self.paths[(model_id, number)] = path
        self.kinds[(model_id, number)] = kind
        return path

    def measure(self, spec: dict[str, Any], number: str, dataset: str, metric: str) -> float:
        """Evaluate the artifact as written on disk, the way a benchmark runner would."""
        key = (spec["id"], number)
        model = build_mlp(**FAMILIES[spec["family"]]["config"])
        base = None
        if self.kinds[key] == "lora":
            recipe = next(x["recipe"] for x in spec["versions"] if x["version"] == number)
            base = self.paths[recipe["base"]]
        ev.load_weights(model, self.paths[key], base=base)
        result = ev.evaluate(model, dataset_artifact(self.root, dataset), "test", metrics=[metric])
        return round(result[metric], 4)


# ---------------------------------------------------------------------------- manifests


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # lakegen refuses anchors and aliases
        return True


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump_manifest(path: Path, kind: str, data: dict[str, Any]) -> Path:
    header = f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json\n"
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def artifact_entry(manifest: Path, artifact: Path, fmt: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uri": Path(os.path.relpath(artifact, manifest.parent)).as_posix(),
        "sha256": sha256_file(artifact),
        "size": artifact.stat().st_size,
        "format": fmt,
    }
    if artifact.name == tr.SHARD_INDEX:
        # a sharded checkpoint is pinned by its index, and every shard the index names beside it
        shards = sorted(set(json.loads(artifact.read_text(encoding="utf-8"))["weight_map"].values()))
        entry["files"] = [
            {
                "path": name,
                "sha256": sha256_file(artifact.parent / name),
                "size": (artifact.parent / name).stat().st_size,
            }
            for name in shards
        ]
    config = artifact.with_name("adapter_config.json")
    if artifact.name == "adapter_model.safetensors" and config.is_file():
        # The adapter's rank, alpha and targets decide what its weights mean: pin them too.
        entry["files"] = [{"path": config.name, "sha256": sha256_file(config), "size": config.stat().st_size}]
    return entry


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _recipe_lines(recipe: dict[str, Any]) -> list[str]:
    kind = recipe["kind"]
    if kind in ("train", "finetune"):
        what = (
            "trained from a random initialisation"
            if kind == "train"
            else "initialised from `{}` {}".format(*recipe["init"])
        )
        data = f"`{recipe['dataset']}` train split"
        if "subset" in recipe:
            data = f"a stratified {recipe['subset']:.0%} subset (seed {recipe['seed']}) of the " + data
        else:
            data = "the " + data
        optimizer = recipe.get("optimizer", "adam")
        opt = "Adam" if optimizer == "adam" else "SGD, momentum 0.9"
        if recipe.get("weight_decay"):
            opt += f", weight decay {recipe['weight_decay']:g}"
        return [
            f"{what}, on {data};",
            f"{recipe['epochs']} epochs, batch size {recipe.get('batch_size', 64)}, {opt}, "
            f"learning rate {recipe['lr']:g}, seed {recipe['seed']}.",
        ]
    if kind == "lora":
        return [
            "LoRA rank {rank}, lora_alpha {alpha} on {targets} of `{b}` {bv} (frozen);".format(
                rank=recipe["rank"],
                alpha=recipe["alpha"],
                targets=", ".join(f"`{t}`" for t in recipe["target_modules"]),
                b=recipe["base"][0],
                bv=recipe["base"][1],
            ),
            f"trained on the `{recipe['dataset']}` train split: {recipe['epochs']} epochs, batch size 64, "
            f"Adam, learning rate {recipe['lr']:g}, seed {recipe['seed']}.",
        ]
    if kind == "quantize":
        return [
            "symmetric per-output-channel int8 quantisation of `{}` {} (no calibration data).".format(
                *recipe["base"]
            )
        ]
    if kind == "prune":
        return [
            "one-shot magnitude pruning of `{}` {}: {:.0%} of each weight matrix zeroed.".format(
                *recipe["base"], recipe["amount"]
            )
        ]
    if kind == "merge":
        parts = [f"{w:g} × `{b}` {bv}" for (b, bv), w in zip(recipe["bases"], recipe["weights"], strict=True)]
        return ["weighted average of every tensor: " + " + ".join(parts) + "."]
    if kind == "reshard":
        return [
            "the tensors of `{}` {}, unchanged, saved as a sharded checkpoint: ".format(*recipe["base"])
            + f"{recipe['shards']} safetensors files and `{tr.SHARD_INDEX}`, which names each tensor's file."
        ]
    raise ValueError(kind)


def model_description(spec: dict[str, Any], claims: list[dict[str, Any]]) -> str:
    config = FAMILIES[spec["family"]]["config"]
    lines = [spec["summary"].rstrip(), ""]
    lines.append(
        f"Architecture `{spec['family']}`: `build_mlp(in_features={config['in_features']}, "
        f"hidden={config['hidden']}, out_features={config['out_features']})`."
    )
    lines += ["", "**How it was made** (`catalog/src/lakedemo/build_demo.py`):", ""]
    for version in spec["versions"]:
        recipe_lines = _recipe_lines(version["recipe"])
        lines.append(f"- {version['version']}: {recipe_lines[0]}")
        lines += [f"  {line}" for line in recipe_lines[1:]]
    lines += [
        "",
        "**Measured** on the test splits:",
        "",
        "| version | dataset | metric | value |",
        "|---|---|---|---|",
    ]
    for claim in claims:
        lines.append(
            f"| {claim['version']} | {claim['dataset']} | {claim['metric']} | {claim['value']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def model_manifest(root: Path, builder: Builder, spec: dict[str, Any]) -> dict[str, Any]:
    family = FAMILIES[spec["family"]]
    manifest_path = root / "catalog" / "models" / f"{spec['id']}.yaml"
    multi = len(spec["versions"]) > 1
    claims: list[dict[str, Any]] = []
    for version in spec["versions"]:
        for dataset, metric in spec["evaluations"]:
            value = builder.measure(spec, version["version"], dataset, metric)
            claims.append(
                {"dataset": dataset, "metric": metric, "value": value, "version": version["version"]}
            )

    datasets: list[dict[str, Any]] = []

    def use(dataset: str, role: str) -> None:
        if not any(d["id"] == dataset and d["role"] == role for d in datasets):
            datasets.append({"id": dataset, "version": "1.0.0", "role": role})

    kinds = {version["recipe"]["kind"] for version in spec["versions"]}
    for version in spec["versions"]:
        recipe = version["recipe"]
        if recipe["kind"] in ("train", "finetune", "lora"):
            role = recipe.get("role", "train" if recipe["kind"] == "train" else "finetune")
            use(recipe["dataset"], role)
    for dataset, _ in spec["evaluations"]:
        use(dataset, "eval")
    trains = bool(kinds & {"train", "finetune", "lora"})
    code = [
        {"id": "lakedemo-train", "role": "train" if trains else "build"},
        {"id": "lakedemo-eval", "role": "eval"},
    ]

    versions = []
    for version in spec["versions"]:
        key = (spec["id"], version["version"])
        versions.append(
            {
                "version": version["version"],
                "released": version["released"],
                "changelog": version["changelog"],
                "artifact": artifact_entry(manifest_path, builder.paths[key], "safetensors"),
            }
        )
    evaluations = []
    for claim in claims:
        item = {
            "dataset": claim["dataset"],
            "split": "test",
            "metric": claim["metric"],
            "value": claim["value"],
        }
        item["tolerance"] = TOLERANCE
        if multi:
            item["version"] = claim["version"]
        evaluations.append(item)

    intended, limits = family["intended_use"], family["limitations"]
    if "lora" in kinds:
        limits += "The artifact is only an adapter: it is useless without the base model's weights.\n"
    if "quantize" in kinds:
        limits += "Stored as int8 with scales: dequantise before loading into a float network.\n"
    if "prune" in kinds:
        limits += "Pruned without retraining; zeros are stored densely, so the file is not smaller.\n"
    data = {
        "kind": "model",
        "id": spec["id"],
        "name": spec["name"],
        "description": model_description(spec, claims),
        "owners": list(family["owners"]),
        "license": "Apache-2.0",
        "tags": [*family["tags"], *spec["tags"]],
        "task": family["task"],
        "framework": "pytorch",
        "architecture": {
            "family": spec["family"],
            "code": "lakedemo-train",
            "entrypoint": "lakedemo.nets:build_mlp",
            "config": json.loads(json.dumps(family["config"])),
        },
        "versions": versions,
        "base_models": [dict(b) for b in spec["bases"]],
        "datasets": datasets,
        "code": code,
        "evaluations": evaluations,
        "intended_use": intended,
        "limitations": limits,
        "risk": "minimal",
    }
    dump_manifest(manifest_path, "model", data)
    return data


def dataset_manifest(root: Path, dataset_id: str) -> dict[str, Any]:
    spec = DATASETS[dataset_id]
    manifest_path = root / "catalog" / "datasets" / f"{dataset_id}.yaml"
    artifact = dataset_artifact(root, dataset_id)
    with np.load(artifact, allow_pickle=False) as arrays:
        splits = [{"name": s, "rows": int(arrays[f"y_{s}"].shape[0])} for s in ("train", "test")]
    data = {
        "kind": "dataset",
        "id": dataset_id,
        "name": spec["name"],
        "description": spec["description"],
        "owners": list(spec["owners"]),
        "license": "CC-BY-4.0",
        "tags": list(spec["tags"]),
        "links": [dict(link) for link in spec["links"]],
        "task": spec["task"],
        "source": dict(spec["source"]),
        "personal_data": False,
        "versions": [
            {
                "version": "1.0.0",
                "released": spec["released"],
                "changelog": spec["changelog"],
                "artifact": artifact_entry(manifest_path, artifact, "npz"),
            }
        ],
        "splits": splits,
        "features": [dict(f) for f in spec["features"]],
        "derived_from": [dict(d) for d in spec["derived_from"]],
    }
    dump_manifest(manifest_path, "dataset", data)
    return data


def code_manifest(root: Path, code_id: str) -> dict[str, Any]:
    spec = CODE[code_id]
    data = {
        "kind": "code",
        "id": code_id,
        "name": spec["name"],
        "description": spec["description"],
        "owners": list(spec["owners"]),
        "license": "Apache-2.0",
        "tags": list(spec["tags"]),
        "path": CODE_PATH,
        "language": "python",
        "entrypoints": dict(spec["entrypoints"]),
    }
    dump_manifest(root / "catalog" / "code" / f"{code_id}.yaml", "code", data)
    return data


def build(root: Path, export: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Regenerate the demo lake under ``root``; returns the model manifests' data by id."""
    say = (lambda *a: None) if quiet else print
    start = time.perf_counter()
    if export:
        from lakedemo.export_datasets import export as export_datasets

        for path in export_datasets(root / DATASET_DIR):
            say(f"exported {path.relative_to(root)}")
    for dataset_id in DATASETS:
        dataset_manifest(root, dataset_id)
    for code_id in CODE:
        code_manifest(root, code_id)
    builder = Builder(root)
    out = {}
    for spec in MODELS:
        for version in spec["versions"]:
            builder.build(spec, version)
        out[spec["id"]] = model_manifest(root, builder, spec)
        claims = ", ".join(
            f"{e['dataset']}/{e['metric']}={e['value']:.4f}" + (f"@{e['version']}" if "version" in e else "")
            for e in out[spec["id"]]["evaluations"]
        )
        say(f"{spec['id']:<26} {claims}")
    say(f"built {len(MODELS)} models in {time.perf_counter() - start:.1f}s")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild every demo-lake model artifact and manifest (the ``build_demo`` entry point)."""
    parser = argparse.ArgumentParser(prog="build_demo.py", description=main.__doc__)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this one)")
    parser.add_argument(
        "--export-datasets",
        action="store_true",
        help="re-export the datasets from scikit-learn first (the .npz files are committed)",
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    build(args.root, export=args.export_datasets, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
