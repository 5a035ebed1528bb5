"""A child's weights put back into a parent's unit order: hidden-unit symmetries undone.

Permuting a network's hidden units (an MLP's units, a transformer's FFN units,
attention heads and the dimensions within them), scaling a ReLU unit's input by
``s > 0`` and its output by ``1/s``, or flipping the sign of a query/key or
value/output dimension, leaves the function as it was and moves every coordinate
a fingerprint samples. Matching undoes it, as git re-basin's weight matching
(Ainsworth et al., 2023) and AWM (Zeng et al., ICLR 2026) do: the units of each
group are paired by linear assignment on the absolute cosine of their weights
(each tensor's slice normalised on its own, so a unit's scale drops out; the
cosine's sign gives the flip), sweeping the groups until no pairing changes,
since a unit's incoming weights are indexed by the previous group's units.

Reading both files once, the child is permuted, re-signed and re-scaled into the
parent's order and sampled where the fingerprint samples, so the aligned child
goes through the usual tests (:mod:`lakegen.attribution`). This is the exact
check behind the cheap candidate search in :mod:`lakegen.attribution.symmetry`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.fingerprint.prints import Fingerprint, TensorPrint
from lakegen.fingerprint.sampling import coordinates, gather, signature_of
from lakegen.weights import WeightsError, iter_float32

if TYPE_CHECKING:
    import numpy as np

SWEEPS = 6  # coordinate-descent sweeps over the groups; chains of a few layers settle in two or three
SCALE_TOLERANCE = 0.1  # a unit whose norms moved less than this (as fine-tuning moves them) is left as it is
MAX_UNITS = 16384  # the assignment is cubic in the units of a group; wider groups are not aligned


@dataclass(frozen=True)
class Group:
    """Tensor axes that share one order of units. A unit rescaled by ``s`` has its ``into`` slices
    (and ``into_bias``) multiplied by ``s`` and its ``out_of`` slices (and ``out_bias``) divided by it;
    biases follow the order but, one number per unit, are not matched on."""

    into: tuple[tuple[str, int], ...]
    out_of: tuple[tuple[str, int], ...]
    into_bias: tuple[str, ...] = ()
    out_bias: tuple[str, ...] = ()

    @property
    def members(self) -> tuple[tuple[str, int], ...]:
        return (*self.into, *self.out_of)

    @property
    def axes(self) -> tuple[tuple[str, int], ...]:
        return (*self.members, *((b, 0) for b in (*self.into_bias, *self.out_bias)))


_BERT = re.compile(r"^(?P<p>.*\blayer\.\d+\.)attention\.self\.query\.weight$")
_CHAIN = re.compile(r"^(?P<stem>.*?)(?P<i>\d+)\.weight$")


def unit_groups(shapes: Mapping[str, tuple[int, ...]]) -> list[Group]:
    """The unit symmetries a model's tensor names and shapes show.

    BERT-style encoders (``layer.N.attention.self.query`` ...): per layer, query/key
    dimensions (heads and the dimensions within them), value/output dimensions, and
    FFN units. Chains of numbered linear layers (``layers.0.weight``,
    ``layers.2.weight``, ...): the units between two consecutive layers.
    """
    groups: list[Group] = []
    used: set[str] = set()

    def bias(weight: str) -> tuple[str, ...]:
        name = weight[: -len("weight")] + "bias"
        return (name,) if name in shapes else ()

    for name in sorted(shapes):
        m = _BERT.match(name)
        if m is None:
            continue
        p = m["p"]
        q, k, v = (f"{p}attention.self.{x}.weight" for x in ("query", "key", "value"))
        o = f"{p}attention.output.dense.weight"
        ffn_in, ffn_out = f"{p}intermediate.dense.weight", f"{p}output.dense.weight"
        if not all(n in shapes for n in (k, v, o)):
            continue
        groups.append(Group(((q, 0),), ((k, 0),), bias(q), bias(k)))
        groups.append(Group(((v, 0),), ((o, 1),), bias(v)))
        used |= {q, k, v, o}
        if ffn_in in shapes and ffn_out in shapes and shapes[ffn_out][1:] == shapes[ffn_in][:1]:
            groups.append(Group(((ffn_in, 0),), ((ffn_out, 1),), bias(ffn_in)))
            used |= {ffn_in, ffn_out}
    chains: dict[str, list[tuple[int, str]]] = {}
    for name, shape in shapes.items():
        m = _CHAIN.match(name)
        if m is not None and len(shape) == 2 and name not in used:
            chains.setdefault(m["stem"], []).append((int(m["i"]), name))
    for layers in chains.values():
        layers.sort()
        for (_, a), (_, b) in itertools.pairwise(layers):
            if shapes[b][1] == shapes[a][0]:
                groups.append(Group(((a, 0),), ((b, 1),), bias(a)))
    return [g for g in groups if 2 <= shapes[g.into[0][0]][g.into[0][1]] <= MAX_UNITS]


@dataclass(frozen=True)
class Alignment:
    """How a child's units map onto a parent's, and what the match says."""

    permuted: int  # units not in the parent's place
    flipped: int
    rescaled: int
    units: int
    similarity: float  # mean |cosine| of matched units (1.0: the same units)
    margin: float  # mean lead of each unit's match over its runner-up; near 0 for unrelated models

    def describe(self) -> str:
        return (
            f"{self.permuted} of {self.units} hidden units permuted, {self.flipped} sign-flipped, "
            f"{self.rescaled} rescaled"
        )


def align(
    parent: Mapping[str, np.ndarray], child: Mapping[str, np.ndarray], groups: Sequence[Group]
) -> tuple[dict[str, np.ndarray], Alignment]:
    """``child``'s tensors in ``parent``'s unit order, and the alignment found."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    axis_group = {axis: g for g, group in enumerate(groups) for axis in group.axes}
    order = [np.arange(parent[g.into[0][0]].shape[g.into[0][1]]) for g in groups]
    signs = [np.ones(len(o)) for o in order]
    stats: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(groups)

    def placed(name: str, skip: int) -> np.ndarray:
        """The child's tensor with every group but ``skip`` already applied to its axes."""
        x = child[name]
        for axis in range(x.ndim):
            g = axis_group.get((name, axis))
            if g is not None and g != skip:
                shape = [1] * x.ndim
                shape[axis] = -1
                x = np.take(x, order[g], axis=axis) * signs[g].reshape(shape)
        return x

    def rows(x: np.ndarray, axis: int) -> np.ndarray:
        r = np.nan_to_num(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).astype(np.float64))
        r = r / np.maximum(np.abs(r).max(initial=0.0), 1e-30)  # no overflow in the norms below
        return r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)

    for _ in range(SWEEPS):
        changed = False
        for g, group in enumerate(groups):
            sim = sum(rows(parent[n], a) @ rows(placed(n, g), a).T for n, a in group.members)
            sim = np.asarray(sim) / len(group.members)
            _, cols = linear_sum_assignment(-np.abs(sim))
            matched = sim[np.arange(len(cols)), cols]
            if not np.array_equal(cols, order[g]):
                changed = True
            order[g], signs[g] = cols, np.where(matched < 0, -1.0, 1.0)
            runner_up = np.sort(np.abs(sim), axis=1)[:, -2] if sim.shape[1] > 1 else np.zeros(len(cols))
            stats[g] = (np.abs(matched), np.abs(matched) - np.minimum(runner_up, np.abs(matched)))
        if not changed:
            break
    out = {name: placed(name, -1) for name in child}
    rescaled = 0
    for group in groups:
        s = _unit_scale(parent, out, group)
        moved = np.abs(s - 1) > SCALE_TOLERANCE
        s = np.where(moved, s, 1.0)
        rescaled += int(moved.sum())
        for n, a in (*group.into, *((b, 0) for b in group.into_bias)):
            out[n] = _scaled(out[n], a, 1 / s)
        for n, a in (*group.out_of, *((b, 0) for b in group.out_bias)):
            out[n] = _scaled(out[n], a, s)
    units = sum(len(o) for o in order)
    sims = np.concatenate([s for s, _ in stats]) if stats else np.zeros(0)
    margins = np.concatenate([m for _, m in stats]) if stats else np.zeros(0)
    return out, Alignment(
        permuted=int(sum(int(np.count_nonzero(o != np.arange(len(o)))) for o in order)),
        flipped=int(sum(int(np.count_nonzero(s < 0)) for s in signs)),
        rescaled=rescaled,
        units=units,
        similarity=float(sims.mean()) if sims.size else 0.0,
        margin=float(margins.mean()) if margins.size else 0.0,
    )


def _unit_scale(
    parent: Mapping[str, np.ndarray], child: Mapping[str, np.ndarray], group: Group
) -> np.ndarray:
    """Per unit, the factor ``s`` the child's inputs were scaled by (and its outputs divided by)."""
    import numpy as np

    def log_norms(x: np.ndarray, axis: int) -> np.ndarray:
        r = np.nan_to_num(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).astype(np.float64))
        return np.log(np.linalg.norm(r, axis=1) + 1e-30)

    logs = [log_norms(child[n], a) - log_norms(parent[n], a) for n, a in group.into]
    logs += [log_norms(parent[n], a) - log_norms(child[n], a) for n, a in group.out_of]
    return np.exp(np.mean(logs, axis=0))


def _scaled(x: np.ndarray, axis: int, factor: np.ndarray) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x * factor.reshape(shape)).astype(x.dtype)


def load_float32(path: Path) -> dict[str, np.ndarray]:
    """Every logical tensor of a model file as float32 (int8 dequantised)."""
    return dict(iter_float32(path))


def resampled(template: Fingerprint, tensors: Mapping[str, np.ndarray]) -> Fingerprint:
    """``template`` with its samples drawn again from ``tensors`` (same names, shapes and coordinates)."""
    import numpy as np

    prints: list[TensorPrint] = []
    chunks = []
    offset = 0
    for t in template.tensors:
        rows, cols = coordinates(t.name, t.shape)
        values = gather(tensors[t.name].reshape(t.shape), rows, cols).astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        prints.append(replace(t, offset=offset, count=len(values), nonfinite=bad))
        chunks.append(values)
        offset += len(values)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return replace(template, tensors=prints, samples=samples, signature=signature_of(prints, samples))


@dataclass(frozen=True)
class Aligned:
    """A child's fingerprint in a parent's unit order, and the alignment that put it there."""

    fingerprint: Fingerprint
    alignment: Alignment


def aligned_fingerprint(
    child: Fingerprint, child_weights: Mapping[str, np.ndarray], parent_weights: Mapping[str, np.ndarray]
) -> Aligned | None:
    """The child's fingerprint after matching its units to the parent's; None when there is nothing
    to align (no unit groups, other tensors, int8 tensors whose codes a permutation would re-round)."""
    if child.kind != "model" or any(t.quantized for t in child.tensors):
        return None
    shapes = {name: tuple(x.shape) for name, x in child_weights.items()}
    if shapes != {name: tuple(x.shape) for name, x in parent_weights.items()}:
        return None
    groups = unit_groups(shapes)
    if not groups:
        return None
    tensors, alignment = align(parent_weights, child_weights, groups)
    return Aligned(resampled(child, tensors), alignment)


def realigner(
    paths: Mapping[str, Path], fingerprints: Mapping[str, Fingerprint]
) -> Callable[[str, str], Aligned | None]:
    """``realign(child, parent)`` for models known by path: each file is read once however many
    candidates it is aligned with in a row (the two models used last stay loaded)."""
    loaded: dict[str, dict[str, np.ndarray]] = {}

    def weights(model_id: str) -> dict[str, np.ndarray]:
        found = loaded.pop(model_id, None)
        if found is None:
            if len(loaded) >= 2:
                loaded.pop(next(iter(loaded)))
            found = load_float32(paths[model_id])
        loaded[model_id] = found
        return found

    def realign(child: str, parent: str) -> Aligned | None:
        if child not in paths or parent not in paths:
            return None
        try:
            c = weights(child)
            p = weights(parent)
        except (OSError, WeightsError):
            return None
        return aligned_fingerprint(fingerprints[child], c, p)

    return realign
