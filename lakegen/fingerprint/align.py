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

import contextlib
import hashlib
import itertools
import json
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.atomicfile import write_atomic
from lakegen.fingerprint.cache import Cache
from lakegen.fingerprint.heads import attention_layer, rotate_heads
from lakegen.fingerprint.prints import Fingerprint, TensorPrint
from lakegen.fingerprint.sampling import coordinates, gather, signature_of
from lakegen.weights import WeightsError, iter_float32

if TYPE_CHECKING:
    import numpy as np

SWEEPS = 6  # coordinate-descent sweeps over the groups; chains of a few layers settle in two or three
SCALE_ROUNDS = 12  # rounds of scale estimates; each cuts a neighbour's leftover scale by about half
SCALE_TOLERANCE = 0.1  # |log s| of a unit whose norms moved as far as fine-tuning moves them
RESCALED = 0.1  # share of a group's units past SCALE_TOLERANCE that says the group was rescaled
DEAD = 1e-6  # a slice this small next to its tensor's largest entry belongs to a dead unit
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
        layer = attention_layer(name)
        if layer is None:
            continue
        q, k, v, o = (f"{n}.weight" for n in layer)
        p = name[: -len("attention.self.query.weight")]
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
    rotated: int = 0  # attention heads whose dimensions were rotated back first (see rotate_heads)

    def describe(self) -> str:
        rotated = f"{self.rotated} attention heads rotated, " if self.rotated else ""
        return (
            f"{rotated}{self.permuted} of {self.units} hidden units permuted, {self.flipped} sign-flipped, "
            f"{self.rescaled} rescaled"
        )


def align(
    parent: Mapping[str, np.ndarray], child: Mapping[str, np.ndarray], groups: Sequence[Group]
) -> tuple[dict[str, np.ndarray], Alignment]:
    """``child``'s tensors in ``parent``'s unit order, and the alignment found."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    axis_group = {axis: g for g, group in enumerate(groups) for axis in group.axes}
    # (tensor, axis) -> how a unit's scale s enters it: -1 for its inputs, +1 for its outputs
    power: dict[tuple[str, int], float] = {}
    for group in groups:
        power |= {axis: -1.0 for axis in (*group.into, *((b, 0) for b in group.into_bias))}
        power |= {axis: 1.0 for axis in (*group.out_of, *((b, 0) for b in group.out_bias))}
    order = [np.arange(parent[g.into[0][0]].shape[g.into[0][1]]) for g in groups]
    signs = [np.ones(len(o)) for o in order]
    scales = [np.ones(len(o)) for o in order]
    stats: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(groups)

    def placed(name: str, skip: int, scales: Sequence[np.ndarray] = scales) -> np.ndarray:
        """The child's tensor with every group but ``skip`` applied to its axes (order, sign, scale)."""
        x = child[name]
        for axis in range(x.ndim):
            g = axis_group.get((name, axis))
            if g is not None and g != skip:
                factor = signs[g] * scales[g] ** power[(name, axis)]
                x = _scaled(np.take(x, order[g], axis=axis), axis, factor)
        return x

    def rows(x: np.ndarray, axis: int) -> np.ndarray:
        """The slices along ``axis``, each of unit norm (float32: the matching needs no more)."""
        r = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).astype(np.float32)
        if not np.isfinite(r).all():
            r = np.nan_to_num(r)
        r = r / np.maximum(np.abs(r).max(initial=0.0), 1e-30)  # no overflow in the norms below
        norms = np.sqrt(np.einsum("ij,ij->i", r, r, dtype=np.float64))[:, None]
        # a dead unit (no weights to speak of) matches nothing: its slice is left at zero
        return np.where(norms > DEAD, r / np.maximum(norms, DEAD), 0.0).astype(np.float32)

    parent_rows = {axis: rows(parent[axis[0]], axis[1]) for group in groups for axis in group.members}
    parent_norms = {axis: _log_norms(parent[axis[0]], axis[1]) for group in groups for axis in group.members}
    # an MLP's layers share units (a matrix is indexed by two groups); a transformer's groups touch
    # only the residual stream, which no group permutes, and need one pass each
    coupled = any(sum((n, a) in axis_group for a in range(x.ndim)) > 1 for n, x in child.items())

    def known(name: str, axis: int, done: set[int]) -> bool:
        """True when the tensor's other axes are in no group, or in one already matched."""
        others = (axis_group.get((name, other)) for other in range(child[name].ndim) if other != axis)
        return all(g is None or g in done for g in others)

    def match(done: set[int]) -> None:
        for _ in range(SWEEPS if coupled else 1):
            changed = False
            for g, group in enumerate(groups):
                # the first sweep matches on what is already in place (an MLP's inputs, then each
                # layer's matched predecessor): slices indexed by unmatched units only add noise
                members = [(n, a) for n, a in group.members if known(n, a, done)] or list(group.members)
                sim = sum(parent_rows[(n, a)] @ rows(placed(n, g), a).T for n, a in members)
                sim = np.asarray(sim) / len(members)
                done.add(g)
                _, cols = linear_sum_assignment(-np.abs(sim))
                matched = sim[np.arange(len(cols)), cols]
                if not np.array_equal(cols, order[g]):
                    changed = True
                order[g], signs[g] = cols, np.where(matched < 0, -1.0, 1.0)
                runner_up = np.sort(np.abs(sim), axis=1)[:, -2] if sim.shape[1] > 1 else np.zeros(len(cols))
                stats[g] = (np.abs(matched), np.abs(matched) - np.minimum(runner_up, np.abs(matched)))
            if not changed:
                return

    def rescale() -> None:
        """A unit's norms carry its neighbours' scales too (a column of the next layer is scaled by
        that layer's units): estimate every group's scales in turn, several rounds."""
        for g in range(len(groups)):
            scales[g] = np.ones(len(order[g]))
        for _ in range(SCALE_ROUNDS if coupled else 1):
            for g, group in enumerate(groups):
                # log of s: how much larger the unit's inputs are, and how much smaller its outputs
                into = [_log_norms(placed(n, g), a)[order[g]] - parent_norms[(n, a)] for n, a in group.into]
                out = [parent_norms[(n, a)] - _log_norms(placed(n, g), a)[order[g]] for n, a in group.out_of]
                scales[g] = np.exp(np.mean([*into, *out], axis=0))

    match(set())
    rescale()
    if coupled:  # again, now that the neighbours' scales no longer blur the slices
        match(set(range(len(groups))))
        rescale()
    # fine-tuning moves units' norms a little; a group counts as rescaled when many units moved more
    kept = [s if np.mean(np.abs(np.log(s)) > SCALE_TOLERANCE) > RESCALED else np.ones(len(s)) for s in scales]
    out = {name: placed(name, -1, kept) for name in child}
    rescaled = sum(int(np.count_nonzero(np.abs(np.log(s)) > SCALE_TOLERANCE)) for s in kept)
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


# mean lead of a head's partner over its runner-up (Procrustes similarity): a fine-tune of MiniLM with
# its heads rotated 0.66, a random model of its shapes 0.002
ROTATED_FROM = 0.2


def match(
    parent: Mapping[str, np.ndarray], child: Mapping[str, np.ndarray], groups: Sequence[Group]
) -> tuple[dict[str, np.ndarray], Alignment]:
    """:func:`align`, after :func:`rotate_heads` where the child's attention heads are rotations of
    the parent's (each head's partner standing out by :data:`ROTATED_FROM`)."""
    rotated = rotate_heads(parent, child)
    if rotated is None or rotated[2] < ROTATED_FROM:
        return align(parent, child, groups)
    heads, count, _ = rotated
    tensors, found = align(parent, heads, groups)
    return tensors, replace(found, rotated=count)


def _log_norms(x: np.ndarray, axis: int) -> np.ndarray:
    import numpy as np

    r = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    if not np.isfinite(r).all():
        r = np.nan_to_num(r.astype(np.float64))
    return np.log(np.sqrt(np.einsum("ij,ij->i", r, r, dtype=np.float64)) + 1e-30)


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
    tensors, alignment = match(parent_weights, child_weights, groups)
    return Aligned(resampled(child, tensors), alignment)


def nothing_to_align(fp: Fingerprint) -> bool:
    """Whether :func:`aligned_fingerprint` finds nothing to align in the model ``fp`` is the
    fingerprint of, whatever it is aligned with, known without reading its file: it is no plain
    model, or its tensors (all in the fingerprint when none was skipped) show no unit group."""
    if fp.kind != "model" or any(t.quantized for t in fp.tensors):
        return True
    return not fp.skipped and not unit_groups({t.name: t.shape for t in fp.tensors})


# bump when a change to alignment can change what it finds: cached ones are then stale (2: heads rotated)
ALIGN_VERSION = 2


def realigner(
    paths: Mapping[str, Path], fingerprints: Mapping[str, Fingerprint], cache: Cache | None = None
) -> Callable[[str, str], Aligned | None]:
    """``realign(child, parent)`` for models known by path: each file is read once however many
    candidates it is aligned with in a row (the two models used last stay loaded), and with a
    ``cache`` each pair's answer is kept by the two files' sha256s, so a warm run reads no file."""
    loaded: dict[str, dict[str, np.ndarray]] = {}

    def weights(model_id: str) -> dict[str, np.ndarray]:
        found = loaded.pop(model_id, None)
        if found is None:
            if len(loaded) >= 2:
                loaded.pop(next(iter(loaded)))
            found = load_float32(paths[model_id])
        loaded[model_id] = found
        return found

    def compute(child: str, parent: str) -> Aligned | None:
        try:
            c = weights(child)
            p = weights(parent)
        except (OSError, WeightsError):
            return None
        return aligned_fingerprint(fingerprints[child], c, p)

    def realign(child: str, parent: str) -> Aligned | None:
        if child not in paths or parent not in paths or nothing_to_align(fingerprints[child]):
            return None
        if cache is None:
            return compute(child, parent)
        key = hashlib.sha256(
            f"{ALIGN_VERSION}\0{fingerprints[child].sha256}\0{fingerprints[parent].sha256}".encode()
        ).hexdigest()
        where = cache.folder / "alignments" / key[:2] / key
        try:
            found = json.loads(where.with_suffix(".json").read_text())
            if found is None:
                return None
            fp = Fingerprint.from_bytes(where.with_suffix(".lgfp").read_bytes())
            return Aligned(fp, Alignment(**found))
        except (OSError, ValueError, TypeError, KeyError, struct.error):
            pass
        answer = compute(child, parent)
        with contextlib.suppress(OSError):  # a read-only cache only costs time
            if answer is not None:
                write_atomic(where.with_suffix(".lgfp"), answer.fingerprint.to_bytes())
            write_atomic(where.with_suffix(".json"), json.dumps(answer and asdict(answer.alignment)))
        return answer

    return realign
