"""The demo lake's one architecture: a plain multilayer perceptron.

``build_mlp(in_features, hidden, out_features)`` returns an ``MLP`` whose
layers live in an ``nn.Sequential`` named ``layers``; linear layers and ReLUs
alternate, so the state-dict keys are plain and stable::

    build_mlp(64, [256, 128], 10)  ->  layers.0.weight  [256, 64]
                                       layers.0.bias    [256]
                                       layers.2.weight  [128, 256]
                                       layers.2.bias    [128]
                                       layers.4.weight  [10, 128]
                                       layers.4.bias    [10]

Those keys are the tensor names in every full-weight ``.safetensors`` artifact
of the demo lake, and the module names LoRA adapters target.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn


class MLP(nn.Module):
    """Linear → ReLU → … → Linear; returns logits (no softmax)."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int):
        super().__init__()
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        modules: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(pairwise(sizes)):
            modules.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                modules.append(nn.ReLU())
        self.layers = nn.Sequential(*modules)
        self.in_features, self.hidden, self.out_features = sizes[0], sizes[1:-1], sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_mlp(in_features: int, hidden: Sequence[int] | int, out_features: int) -> MLP:
    """Build an MLP with freshly initialised weights (seed ``torch`` first for reproducibility).

    ``hidden`` is the list of hidden-layer widths (a single int means one hidden
    layer). This is the ``build_model`` entry point of the ``lakedemo-train``
    code entry; a model manifest's ``architecture.config`` holds its keyword
    arguments, e.g. ``{in_features: 64, hidden: [256, 128], out_features: 10}``.
    """
    if isinstance(hidden, int):
        hidden = [hidden]
    return MLP(in_features, list(hidden), out_features)


def linear_layers(model: nn.Module) -> list[str]:
    """Names (such as ``layers.0``) of the model's ``nn.Linear`` modules, in order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
