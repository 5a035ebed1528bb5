"""What a library's quantisation layout is to lakegen: a :class:`Scheme` that finds each quantised
tensor of a file as a :class:`Group` (the logical tensor, the stored tensors it consumes, its values).
The schemes themselves (:mod:`.bnb`, :mod:`.quanto`) import this module, never :mod:`.dequant`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lakegen.weights.base import TensorInfo, WeightFile


@dataclass
class Group:
    """One quantised tensor as a scheme reads it."""

    info: TensorInfo  # the logical tensor shown in its place
    consumes: tuple[str, ...]  # the stored tensors it is made of (all hidden)
    values: Callable[[], np.ndarray]  # its stored values as ``info.dtype`` describes them


class Scheme(Protocol):
    """One library's quantisation layout."""

    name: str

    def groups(self, wf: WeightFile) -> list[Group]:
        """Every quantised tensor of ``wf`` in this layout; :class:`WeightsError` for a broken one."""
        ...
