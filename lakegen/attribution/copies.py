"""Structural copy tests: the same weights saved again, lossy casts and int8 quantisation, pruning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakegen.attribution.views import Pair, View, compare, precision_bits, spacing
from lakegen.fingerprint import Fingerprint, TensorPrint

if TYPE_CHECKING:
    import numpy as np

MATCH = 0.97  # share of samples an int8 copy must reproduce exactly (scales are recomputed in float32)
CAST_MATCH = 0.999  # ... and a float cast, which is exact: a fine-tune saved in bfloat16 reproduces less
COPY_DISTANCE = 0.02  # a lossy copy in an unknown format stays this close (relative distance) ...
# ... or, for a b-bit block format (GGUF Q4_0, K-quants: no per-row scale to test), this times 2^-b:
# absmax blocks of b-bit codes leave about 0.7 x 2^-b (Q8_0 0.0056, Q4_0 0.087 on SmolLM2)
BLOCK_NOISE = 1.0
# A cast leaves each value within half a step of its grid, spread evenly (mean |residual| a quarter
# step); a precise model trained from the coarse one by updates under half a step sits far nearer
# (CREPE: 0.25 against 0.002 of a step). Under this mean, the precise model is the child.
CAST_RESIDUAL = 0.125


def _round_bf16(x: np.ndarray) -> np.ndarray:
    import numpy as np

    u = x.astype(np.float32).view(np.uint32)
    rounded = (u + (((u >> 16) & 1) + 0x7FFF)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def _cast(x: np.ndarray, dtype: str) -> np.ndarray | None:
    import numpy as np

    if dtype == "float16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return _round_bf16(x)
    if dtype == "float32":
        return x.astype(np.float32)
    return None


def on_grid(v: View, dtype: str) -> float:
    """The share of ``v``'s non-zero samples a cast to ``dtype`` leaves unchanged: 2^-16 by chance
    for bfloat16, far more for a float32 model trained from a bfloat16 one (the weights its
    training left alone, such as the embeddings of tokens it never saw)."""
    import numpy as np

    x = v.x[np.isfinite(v.x) & (v.x != 0)].astype(np.float32)
    cast = _cast(x, dtype)
    return float(np.mean(cast == x)) if cast is not None and x.size else 0.0


def rounds_to(v: View, low: View, shared: Sequence[tuple[str, tuple[int, ...]]], dtype: str) -> float:
    """The share of ``v``'s samples (in the matrices ``shared`` with ``low``) that a cast to
    ``dtype`` turns into ``low``'s. A model trained from ``low`` keeps its values where training
    left them alone and stays within half a rounding step of them where its update is smaller
    than that step: rounded back, it lands on ``low``'s values more often than on any other model
    of that grid, even one its larger updates happen to be nearer."""
    import numpy as np

    if not shared:
        return 0.0
    x = np.concatenate([v.segment(k) for k in shared]).astype(np.float32)
    y = np.concatenate([low.segment(k) for k in shared])
    cast = _cast(x, dtype)
    ok = np.isfinite(y)
    return float(np.mean(cast[ok] == y[ok])) if cast is not None and ok.any() else 0.0


def kept_values(
    v: View, a: View, b: View, shared: Sequence[tuple[str, tuple[int, ...]]], dtype: str
) -> tuple[int, int]:
    """Of ``v``'s samples that sit exactly on the ``dtype`` grid where the two models ``a`` and ``b``
    of that grid differ, how many equal ``a``'s and how many ``b``'s. A model trained from ``a``
    keeps ``a``'s values exactly where training left them alone; a value of ``b`` that ``a`` does
    not share lands on such a model's grid values only by chance."""
    import numpy as np

    if not shared:
        return 0, 0
    x = np.concatenate([v.segment(k) for k in shared]).astype(np.float32)
    ya = np.concatenate([a.segment(k) for k in shared])
    yb = np.concatenate([b.segment(k) for k in shared])
    cast = _cast(x, dtype)
    if cast is None or not len(x) == len(ya) == len(yb):
        return 0, 0
    with np.errstate(invalid="ignore"):
        at = np.isfinite(x) & (x != 0) & (cast == x) & np.isfinite(ya) & np.isfinite(yb) & (ya != yb)
    return int(np.sum(x[at] == ya[at])), int(np.sum(x[at] == yb[at]))


@dataclass(frozen=True)
class Copy:
    """A structural derivation test that passed: child is a ``relation`` copy of parent."""

    relation: str
    match: float
    exact: bool  # an exact test (rounding, cast, support) rather than closeness alone
    directed: bool = True  # False: the weights cannot tell which of the two is the copy


UNDIRECTED = Copy("quantized", 1.0, True, directed=False)  # a twin whose original nothing dates


def same_weights(a: Fingerprint, b: Fingerprint) -> bool:
    """The same weights saved again: the same tensors (names, shapes, dtypes) and every sampled value
    equal. A re-upload, a re-sharded checkpoint, a safetensors copy of a PyTorch file.

    Integer buffers that only one file holds are not weights: transformers stopped
    saving ``embeddings.position_ids``, so a re-save by a newer version drops it.

    Such twins are one model: each later one is a lossless ``quantized`` copy of the
    original (see :func:`original_of`), a change of file format, sharding or encoding that
    lost nothing, as the Hugging Face model tree files format conversions. Left in, a
    twin would explain its twin exactly: a merge would lose its parents to it.
    """
    import numpy as np

    if not np.array_equal(a.signature, b.signature, equal_nan=True):  # a sketch of the samples: cheap
        return False
    if a.tensors == b.tensors:
        return np.array_equal(a.samples, b.samples, equal_nan=True) and np.array_equal(
            a.scales, b.scales, equal_nan=True
        )
    ta, tb = _weights(a, b), _weights(b, a)
    if [(*t.key, t.dtype, t.quantized) for t in ta] != [(*t.key, t.dtype, t.quantized) for t in tb]:
        return False
    return all(
        np.array_equal(a.values(x), b.values(y), equal_nan=True)
        and (not x.quantized or np.array_equal(a.row_scales(x), b.row_scales(y), equal_nan=True))
        for x, y in zip(ta, tb, strict=True)
    )


def _weights(fp: Fingerprint, other: Fingerprint) -> list[TensorPrint]:
    """``fp``'s tensors less the integer buffers (not quantised weights) that ``other`` lacks."""
    return [
        t
        for t in fp.tensors
        if other.tensor(t.name) is not None or t.quantized or not t.dtype.startswith(("int", "uint"))
    ]


def copy_test(parent: View, child: View, pair: Pair) -> Copy | None:
    """Is ``child`` an int8/float cast (``quantized``) or a magnitude-pruned copy of ``parent``?"""
    import numpy as np

    if parent.fp.kind != "model" or child.fp.kind != "model":
        return None
    quant_hits = quant_total = cast_hits = cast_total = 0
    residual, moved = 0.0, 0  # the parent's distance from the child's grid, in steps, where it moved
    lossy = False
    bits = 24
    for key in pair.shared:
        tc = child.mats[child.index[key]]
        tp = parent.mats[parent.index[key]]
        c, p = child.segment(key), parent.segment(key)
        ok = np.isfinite(c) & np.isfinite(p)
        if tc.quantized and tc.scale_offset >= 0 and not tp.quantized:
            lossy = True
            scales = np.repeat(
                child.fp.row_scales(tc).astype(np.float64), len(c) // len(child.fp.row_scales(tc))
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.round(c / scales)
                predicted = np.clip(np.round((p / scales).astype(np.float32)), -127, 127)
            quant_hits += int(np.count_nonzero((q == predicted) & ok))
            quant_total += int(ok.sum())
        elif precision_bits(tc) < precision_bits(tp):
            lossy = True
            bits = min(bits, precision_bits(tc))
            cast = _cast(p.astype(np.float32), tc.dtype)
            if cast is not None:
                hit = (cast == c.astype(np.float32)) & ok
                cast_hits += int(np.count_nonzero(hit))
                cast_total += int(ok.sum())
                off = hit & (p != c) & (c != 0)
                step = spacing(c[off], tc.dtype)
                if step is not None and off.any():
                    residual += float(np.sum(np.abs(p[off] - c[off]) / step))
                    moved += int(np.count_nonzero(off))
        else:
            # as precise as the parent, or more: a copy holds the parent's values themselves (a
            # float child of an int8 parent that is not its dequantized copy was trained)
            same = int(np.count_nonzero((c == p) & ok))
            cast_hits += same
            quant_hits += same
            cast_total += int(ok.sum())
            quant_total += int(ok.sum())
    if lossy:
        total = max(quant_total, cast_total)
        hits = quant_hits if quant_total >= cast_total else cast_hits
        if total and hits / total >= (MATCH if quant_total >= cast_total else CAST_MATCH):
            if quant_total < cast_total and moved and residual / moved < CAST_RESIDUAL:
                return None  # the parent was trained from the child, not cast to it
            return Copy("quantized", hits / total, True)
        near = max(COPY_DISTANCE, BLOCK_NOISE * 2.0**-bits)
        if not total and pair.distance <= near and pair.corr >= min(0.999, 1 - near * near / 2):
            return Copy("quantized", pair.corr, False)
        return None
    return _pruned_test(parent, child, pair)


def _pruned_test(parent: View, child: View, pair: Pair) -> Copy | None:
    import numpy as np

    c = np.concatenate([child.segment(k) for k in pair.shared])
    p = np.concatenate([parent.segment(k) for k in pair.shared])
    ok = np.isfinite(c) & np.isfinite(p)
    c, p = c[ok], p[ok]
    zero_c, zero_p = c == 0, p == 0
    if zero_c.mean() - zero_p.mean() < 0.05 or not (~zero_c).any():
        return None
    kept = ~zero_c
    # compared at the lower precision of the two: a copy pruned from the float32 master of a
    # bfloat16 release equals that release once cast to it
    mats = [
        *(child.mats[child.index[k]] for k in pair.shared),
        *(parent.mats[parent.index[k]] for k in pair.shared),
    ]
    dtype = min(mats, key=precision_bits).dtype
    expected, got = _cast(p[kept].astype(np.float32), dtype), _cast(c[kept].astype(np.float32), dtype)
    same = (got if got is not None else c[kept]) == (expected if expected is not None else p[kept])
    if same.mean() < MATCH:
        return None
    dropped = zero_c & ~zero_p
    if dropped.any():
        # magnitude pruning drops the small entries: few dropped entries beat the median kept one
        big = np.abs(p[dropped]) > np.median(np.abs(p[kept]))
        if big.mean() > 0.1:
            return None
    return Copy("pruned", float(same.mean()), True)


def best_copy_parent(
    child_index: int, found: list[tuple[int, Copy, Pair]], views: Sequence[View]
) -> tuple[int, Copy]:
    """Among the parents a child copies, the original: exact tests first, then the most precise;
    between models with the same matrices (a batch-norm recalibration and its parent), the one
    whose other tensors (normalisation statistics, biases) the copy holds.

    A copy matched by closeness alone (a 4-bit GGUF block format, which cannot be re-derived
    exactly) is as close to its original as to a barely changed relative or a merge of it: its
    rounding dwarfs their differences (held-out SmolLM2 seed 6203: correlations equal to 4e-8,
    the merge's the highest). The vectors it keeps exactly (GGUF stores norms and biases in
    float32) decide first there."""
    candidates = {parent for parent, _, _ in found}

    def rank(item: tuple[int, Copy, Pair]) -> tuple[Any, ...]:
        parent, test, p = item
        v = views[parent]
        kept = vectors_kept(v, child)
        return (
            not test.exact,
            -v.precision,
            v.zeros,
            0.0 if test.exact else -kept,
            -test.match,
            p.distance,
            -kept,
            parent,
        )

    child = views[child_index]
    best = sorted(found, key=rank)
    # a candidate that is itself a copy of another candidate is not the original
    for parent, test, _ in best:
        others = candidates - {parent}
        if not any(is_copy_of(views[parent], views[o]) for o in others):
            return parent, test
    return best[0][0], best[0][1]


def vectors_kept(parent: View, child: View) -> float:
    """The share of ``child``'s sampled non-matrix float values that equal ``parent``'s, cast to
    the child's dtype (the vectors a copy carries over; the matrices are compared elsewhere)."""
    import numpy as np

    hits = total = 0
    for t in child.fp.tensors:
        q = parent.fp.tensor(t.name)
        if t.is_matrix or q is None or q.shape != t.shape or t.quantized or q.quantized:
            continue
        c = child.fp.values(t).astype(np.float32)
        cast = _cast(parent.fp.values(q).astype(np.float32), t.dtype)
        if cast is None:
            continue
        ok = np.isfinite(c) & np.isfinite(cast)
        hits += int(np.count_nonzero((cast == c) & ok))
        total += int(ok.sum())
    return hits / total if total else 0.0


def is_copy_of(child: View, parent: View) -> bool:
    p = compare(parent, child)
    return p is not None and p.related and copy_test(parent, child, p) is not None


def original_of(
    twins: Sequence[int], ids: Sequence[str], order: Mapping[str, Any] | None
) -> tuple[int, bool]:
    """Among models with the same weights, the original, and whether anything but names decided it:
    the earliest release when every one has a date and that date is theirs alone, else the smallest
    id (the weights cannot tell a copy from its original)."""
    if order is not None and all(order.get(ids[n]) is not None for n in twins):
        try:
            first = min(twins, key=lambda n: (order[ids[n]], n))
            return first, sum(1 for n in twins if order[ids[n]] == order[ids[first]]) == 1
        except TypeError:
            pass
    return min(twins), False


def copy_confidence(test: Copy) -> float:
    """A copy's confidence: about 0.99 for an exact test (how much of the sample it reproduces
    beyond ``MATCH``), 0.6 for closeness alone, 0.5 when its direction is a guess."""
    if not test.directed:
        return 0.5
    return 0.5 + 0.49 * min(1.0, (test.match - MATCH) / (1 - MATCH) + 0.5) if test.exact else 0.6
