"""Recover lineage from fingerprints: typed, directed parent -> child edges with a confidence.

Everything here runs on :class:`~lakegen.fingerprint.Fingerprint` objects; no
weight file is opened. The steps, for any set of models:

1. **Related or not.** Two models of one architecture (sharing at least half
   their matrix parameters by name and shape) are compared on their samples.
   Independent trainings give near-zero correlation (relative distance ~√2);
   models that share an ancestor stay far closer. A pair is related when the
   mean per-matrix correlation clears ``RELATED`` and sits many standard errors
   above zero, so unrelated models of one architecture stay apart.
2. **Copies** are detected structurally in the child: an int8 child whose
   values are exactly ``round(parent / scale)``, a float16/bfloat16 child that
   equals the parent cast to its dtype (relation ``quantized``), a sparser child
   that equals the parent wherever it is non-zero and zeroed the parent's small
   entries (``pruned``).
3. **Merges**: a model that is a non-negative combination (summing to ~1) of two
   or more others, to within a small fraction of its distance to any single one,
   is their merge; the least-squares weights are reported.
4. **Fine-tunes**: within each family the rest form a minimum spanning
   arborescence on relative distance. The root is the model closest to all its
   relatives (distance-to-others), unless order hints (release dates, versions)
   forbid it; a later model is never made the parent of an earlier one.
5. **Adapters** carry only a weight delta, so the weights can confirm which
   models they fit (every targeted tensor by name and shape) but not which of
   those they were trained on: the adapter config's base names it, and the edge
   is kept only when that model fits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lakegen.fingerprint import GRID, Fingerprint, TensorPrint
from lakegen.weights import PRECISION

if TYPE_CHECKING:
    import numpy as np

RELATED = 0.3  # minimum mean correlation of related models
RELATED_Z = 8.0  # ... and at least this many standard errors above zero
SHARED = 0.5  # share of the smaller model's matrix parameters two models must have in common
MATCH = 0.97  # share of samples a copy must reproduce exactly
MERGE_RESIDUAL = 0.1  # merge residual / distance to the nearest single model
MERGE_MIN_WEIGHT = 0.03
MERGE_POOL = 12  # candidates a merge's parents are sought among
COPY_DISTANCE = 0.02  # a lossy copy in an unknown format stays this close (relative distance)


@dataclass(frozen=True)
class Edge:
    """One recovered derivation: ``child`` was made from ``parent``."""

    parent: str
    child: str
    relation: str
    confidence: float
    weight: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "parent": self.parent,
            "child": self.child,
            "relation": self.relation,
            "confidence": round(self.confidence, 3),
        }
        if self.weight is not None:
            out["weight"] = round(self.weight, 4)
        return out


@dataclass
class Lineage:
    """Models, the edges between them, and the models with no parent."""

    models: list[str]
    edges: list[Edge]
    roots: list[str]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "edges": [e.to_json() for e in self.edges],
            "roots": self.roots,
        }

    def parents(self, child: str) -> list[Edge]:
        return [e for e in self.edges if e.child == child]


# ------------------------------------------------------------------------------ views


class View:
    """A fingerprint's matrices laid out for comparison (float64, finite-masked)."""

    def __init__(self, fp: Fingerprint):
        import numpy as np

        self.fp = fp
        self.mats: list[TensorPrint] = [t for t in fp.tensors if t.is_matrix and t.count >= 4]
        self.keys = tuple(t.key for t in self.mats)
        self.index = {t.key: i for i, t in enumerate(self.mats)}
        parts = [fp.values(t).astype(np.float64) for t in self.mats]
        self.x = np.concatenate(parts) if parts else np.zeros(0)
        self.starts = np.cumsum([0] + [t.count for t in self.mats[:-1]]).astype(np.int64)
        self.finite = bool(np.isfinite(self.x).all())
        self.params = sum(math.prod(t.shape) for t in self.mats)
        self.precision = min((_precision(t) for t in self.mats), default=99)
        self.zeros = float(np.mean(self.x == 0)) if self.x.size else 0.0

        self._grids: dict[Any, Any] = {}

    def segment(self, key: tuple[str, tuple[int, ...]]) -> np.ndarray:
        t = self.mats[self.index[key]]
        start = int(self.starts[self.index[key]])
        return self.x[start : start + t.count]

    def grid(self, key: tuple[str, tuple[int, ...]]) -> np.ndarray | None:
        """The sampled sub-matrix of a matrix (rows x columns)."""
        t = self.mats[self.index[key]]
        rows = min(t.shape[0], GRID)
        if t.count % rows:
            return None
        return self.segment(key).reshape(rows, -1)

    def _spectrum(self, key: tuple[str, tuple[int, ...]]) -> Any:
        import numpy as np

        if key not in self._grids:
            g = self.grid(key)
            try:
                finite = g is not None and bool(np.isfinite(g).all())
                self._grids[key] = np.linalg.svd(g, compute_uv=False) if g is not None and finite else None
            except np.linalg.LinAlgError:
                self._grids[key] = None
        return self._grids[key]

    def schatten(self, key: tuple[str, tuple[int, ...]]) -> float:
        import numpy as np

        s = self._spectrum(key)
        return 0.0 if s is None else float(np.sum(s**P_SCHATTEN))

    def noise_floor(self, key: tuple[str, tuple[int, ...]]) -> float:
        """Largest singular value rounding noise of this tensor's format would put in a difference."""
        import numpy as np

        t = self.mats[self.index[key]]
        g = self.grid(key)
        if g is None:
            return 0.0
        if t.quantized and t.scale_offset >= 0:
            sigma = float(np.sqrt(np.mean(self.fp.row_scales(t).astype(np.float64) ** 2))) / math.sqrt(12)
        else:
            bits = _precision(t)
            if bits >= 24:
                return 0.0
            sigma = float(np.sqrt(np.mean(g * g))) * 2.0 ** (1 - bits) / math.sqrt(12)
        return sigma * (math.sqrt(g.shape[0]) + math.sqrt(g.shape[1]))

    @property
    def maturity(self) -> float:
        """Mean spectral entropy (effective rank / size) of the sampled matrices; fine-tuning raises it."""
        import numpy as np

        values = []
        for t in self.mats:
            s = self._spectrum(t.key)
            if s is None or not s.any():
                continue
            p = s**2 / np.sum(s**2)
            values.append(float(np.exp(-np.sum(p * np.log(p + 1e-300)))) / len(s))
        return float(np.mean(values)) if values else 0.0


def _precision(t: TensorPrint) -> int:
    return PRECISION.get(t.dtype, 24 if t.dtype.startswith("int") else 99)


@dataclass(frozen=True)
class Pair:
    """How two models compare on the matrices they share."""

    corr: float  # mean per-matrix correlation of the centred samples
    distance: float  # relative distance: sqrt(mean |a-b|^2 / mean(|a|^2, |b|^2)); ~√2 when unrelated
    samples: int
    shared: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def z(self) -> float:
        return self.corr * math.sqrt(max(self.samples, 1))

    @property
    def related(self) -> bool:
        return self.corr >= RELATED and self.z >= RELATED_Z


def shared_keys(a: View, b: View) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """The matrices two models share, or None when they do not share enough to compare."""
    if a.keys == b.keys:
        return a.keys if a.keys else None
    common = tuple(k for k in a.keys if k in b.index)
    params = sum(math.prod(k[1]) for k in common)
    if not common or params < SHARED * min(a.params, b.params):
        return None
    return common


def compare(a: View, b: View) -> Pair | None:
    """Correlation and relative distance of two models, or None when they do not compare."""
    import numpy as np

    keys = shared_keys(a, b)
    if keys is None:
        return None
    if keys == a.keys and keys == b.keys:
        xa, xb, starts = a.x, b.x, a.starts
    else:
        xa = np.concatenate([a.segment(k) for k in keys])
        xb = np.concatenate([b.segment(k) for k in keys])
        starts = np.cumsum([0] + [len(a.segment(k)) for k in keys[:-1]]).astype(np.int64)
    return _pair_stats(xa, xb, starts, keys)


def _pair_stats(xa: np.ndarray, xb: np.ndarray, starts: np.ndarray, keys: Any) -> Pair | None:
    import numpy as np

    ok = np.isfinite(xa) & np.isfinite(xb)
    if not ok.all():
        xa, xb = np.where(ok, xa, 0.0), np.where(ok, xb, 0.0)
    n = np.add.reduceat(ok.astype(np.float64), starts)
    sa, sb = np.add.reduceat(xa, starts), np.add.reduceat(xb, starts)
    saa, sbb = np.add.reduceat(xa * xa, starts), np.add.reduceat(xb * xb, starts)
    sab = np.add.reduceat(xa * xb, starts)
    return _combine(n, sa, sb, saa, sbb, sab, keys)


def _combine(n: Any, sa: Any, sb: Any, saa: Any, sbb: Any, sab: Any, keys: Any) -> Pair | None:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        va = saa - sa * sa / np.maximum(n, 1)
        vb = sbb - sb * sb / np.maximum(n, 1)
        cov = sab - sa * sb / np.maximum(n, 1)
        corr = cov / np.sqrt(va * vb)
        rel = (saa + sbb - 2 * sab) / ((saa + sbb) / 2)
    good = (n >= 4) & (va > 0) & (vb > 0) & np.isfinite(corr)
    if not good.any():
        return None
    w = n[good]
    mean_corr = float((corr[good] * w).sum() / w.sum())
    dist_ok = (n >= 4) & ((saa + sbb) > 0)
    distance = float(np.sqrt(max((rel[dist_ok] * n[dist_ok]).sum() / n[dist_ok].sum(), 0.0)))
    return Pair(mean_corr, distance, int(w.sum()), tuple(keys))


def pairwise(views: Sequence[View]) -> dict[tuple[int, int], Pair]:
    """Every comparable pair (i < j); models with one tensor layout are compared in bulk."""
    import numpy as np

    out: dict[tuple[int, int], Pair] = {}
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, v in enumerate(views):
        if v.keys and v.finite:
            groups.setdefault(v.keys, []).append(i)
    bulk = set()
    for keys, members in groups.items():
        if len(members) < 2:
            continue
        x = np.stack([views[i].x for i in members])
        starts = views[members[0]].starts
        ends = [*starts[1:].tolist(), x.shape[1]]
        shape = (len(members), len(members), len(starts))
        n, sa, sb, saa, sbb, sab = (np.zeros(shape) for _ in range(6))
        for s, (lo, hi) in enumerate(zip(starts.tolist(), ends, strict=True)):
            seg = x[:, lo:hi]
            sums, sq, gram = seg.sum(1), (seg * seg).sum(1), seg @ seg.T
            n[:, :, s] = hi - lo
            sa[:, :, s], sb[:, :, s] = sums[:, None], sums[None, :]
            saa[:, :, s], sbb[:, :, s] = sq[:, None], sq[None, :]
            sab[:, :, s] = gram
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pair = _combine(n[a, b], sa[a, b], sb[a, b], saa[a, b], sbb[a, b], sab[a, b], keys)
                if pair is not None:
                    out[(members[a], members[b])] = pair
                bulk.add((members[a], members[b]))
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            if (i, j) in bulk:
                continue
            pair = compare(views[i], views[j])
            if pair is not None:
                out[(i, j)] = pair
    return out


# ----------------------------------------------------------------------- copy tests


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


@dataclass(frozen=True)
class Copy:
    """A structural derivation test that passed: child is a ``relation`` copy of parent."""

    relation: str
    match: float
    exact: bool  # an exact test (rounding, cast, support) rather than closeness alone


def same_weights(a: Fingerprint, b: Fingerprint) -> bool:
    """The same weights saved again: the same tensors (names, shapes, dtypes) and every sampled value
    equal. A re-upload, a re-sharded checkpoint, a safetensors copy of a PyTorch file.

    Such twins are one model: each later one is a lossless ``quantized`` copy of the
    original (see :func:`_original`), a change of file format, sharding or encoding that
    lost nothing, as the Hugging Face model tree files format conversions. Left in, a
    twin would explain its twin exactly: a merge would lose its parents to it.
    """
    import numpy as np

    return (
        np.array_equal(a.signature, b.signature, equal_nan=True)  # a sketch of the samples: cheap, first
        and a.tensors == b.tensors
        and np.array_equal(a.samples, b.samples, equal_nan=True)
        and np.array_equal(a.scales, b.scales, equal_nan=True)
    )


def copy_test(parent: View, child: View, pair: Pair) -> Copy | None:
    """Is ``child`` an int8/float cast (``quantized``) or a magnitude-pruned copy of ``parent``?"""
    import numpy as np

    if parent.fp.kind != "model" or child.fp.kind != "model":
        return None
    quant_hits = quant_total = cast_hits = cast_total = 0
    lossy = False
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
        elif _precision(tc) < _precision(tp):
            lossy = True
            cast = _cast(p.astype(np.float32), tc.dtype)
            if cast is not None:
                cast_hits += int(np.count_nonzero((cast == c.astype(np.float32)) & ok))
                cast_total += int(ok.sum())
        elif _precision(tc) == _precision(tp) and tc.quantized == tp.quantized:
            same = int(np.count_nonzero((c == p) & ok))
            cast_hits += same
            quant_hits += same
            cast_total += int(ok.sum())
            quant_total += int(ok.sum())
    if lossy:
        total = max(quant_total, cast_total)
        hits = quant_hits if quant_total >= cast_total else cast_hits
        if total and hits / total >= MATCH:
            return Copy("quantized", hits / total, True)
        if not total and pair.distance <= COPY_DISTANCE and pair.corr >= 0.999:
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
    dtype = min((child.mats[child.index[k]] for k in pair.shared), key=_precision).dtype
    expected = _cast(p[kept].astype(np.float32), dtype)
    same = c[kept] == (expected if expected is not None else p[kept])
    if same.mean() < MATCH:
        return None
    dropped = zero_c & ~zero_p
    if dropped.any():
        # magnitude pruning drops the small entries: few dropped entries beat the median kept one
        big = np.abs(p[dropped]) > np.median(np.abs(p[kept]))
        if big.mean() > 0.1:
            return None
    return Copy("pruned", float(same.mean()), True)


# ----------------------------------------------------------------------------- merges


def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson): argmin |a x - b| with x >= 0."""
    import numpy as np

    m = a.shape[1]
    x = np.zeros(m)
    passive = np.zeros(m, dtype=bool)
    for _ in range(min(iterations, 3 * m)):
        w = a.T @ (b - a @ x)
        candidates = ~passive & (w > 1e-12 * max(1.0, float(np.abs(w).max(initial=0))))
        if not candidates.any():
            break
        passive[int(np.argmax(np.where(candidates, w, -np.inf)))] = True
        while True:
            s = np.zeros(m)
            s[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (s[passive] > 0).all():
                x = s
                break
            bad = passive & (s <= 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                alpha = np.min(np.where(bad, x / (x - s), np.inf))
            x = x + alpha * (s - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
    return x


@dataclass(frozen=True)
class Merge:
    parents: tuple[int, ...]
    weights: tuple[float, ...]
    residual: float  # relative to the distance to the nearest single model


def merge_test(target: int, views: Sequence[View], pool: Sequence[int]) -> Merge | None:
    """Is ``views[target]`` a non-negative mix (summing to ~1) of two or more models of ``pool``?"""
    import numpy as np

    t = views[target]
    pool = [i for i in pool if i != target and views[i].keys and shared_keys(t, views[i]) == t.keys]
    if len(pool) < 2 or not t.keys or not t.finite:
        return None
    if len(pool) > MERGE_POOL:  # a merge's parents are among its nearest relatives
        near = [(float(np.linalg.norm(np.nan_to_num(views[i].x - t.x))), i) for i in pool]
        pool = [i for _, i in sorted(near)[:MERGE_POOL]]
    weights = []
    for k in t.keys:  # each matrix counts the same, whatever its size
        seg = t.segment(k)
        weights.append(np.full(len(seg), 1.0 / max(float(np.sqrt(np.mean(seg * seg))), 1e-12)))
    scale = np.concatenate(weights) / math.sqrt(len(t.keys))
    b = t.x * scale
    cols = []
    for i in pool:
        v = views[i]
        x = v.x if v.keys == t.keys else np.concatenate([v.segment(k) for k in t.keys])
        cols.append(np.where(np.isfinite(x), x, 0.0) * scale)
    a = np.stack(cols, axis=1)
    nearest = float(np.min(np.linalg.norm(a - b[:, None], axis=0)))
    if nearest == 0:
        return None
    x = nnls(a, b)
    used = x >= MERGE_MIN_WEIGHT
    if used.sum() < 2:
        return None
    refit = nnls(a[:, used], b)
    residual = float(np.linalg.norm(a[:, used] @ refit - b)) / nearest
    total = float(refit.sum())
    if residual > MERGE_RESIDUAL or not 0.9 <= total <= 1.1 or (refit < MERGE_MIN_WEIGHT).any():
        return None
    parents = tuple(pool[i] for i in np.flatnonzero(used))
    return Merge(parents, tuple(float(w) for w in refit), residual)


# ------------------------------------------------------------------------------- main


# Past this many models, lineage is recovered family by family (see :func:`families_by_signature`).
PARTITION_FROM = 300
NEIGHBOURS = 16


def attribute(
    fingerprints: Mapping[str, Fingerprint],
    *,
    order: Mapping[str, Any] | None = None,
    adapter_base: Callable[[str, Fingerprint], str | None] | None = None,
) -> Lineage:
    """Recover typed, directed lineage among ``fingerprints`` (model id -> fingerprint).

    ``order`` (optional) maps a model to a sortable value, such as its release
    date: a model is never made the fine-tuned child of one that sorts after it.
    ``adapter_base`` maps an adapter to the id its config names (default: the
    config's ``base_model_name_or_path`` matched against the ids).

    Comparing every pair is quadratic; a large lake is first split into families
    of related models, and each family is attributed on its own.
    """
    if len(fingerprints) < PARTITION_FROM:
        return _attribute(fingerprints, order=order, adapter_base=adapter_base)
    resolve = adapter_base or _default_adapter_base(sorted(fingerprints))
    lineages = [
        _attribute({i: fingerprints[i] for i in group}, order=order, adapter_base=resolve)
        for group in families_by_signature(fingerprints, resolve)
    ]
    ids = sorted(fingerprints)
    edges = sorted((e for lin in lineages for e in lin.edges), key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    notes = [n for lin in lineages for n in lin.notes]
    return Lineage(ids, edges, [m for m in ids if m not in children], notes)


def families_by_signature(
    fingerprints: Mapping[str, Fingerprint], adapter_base: Callable[[str, Fingerprint], str | None]
) -> list[list[str]]:
    """Groups of possibly related models, from each model's nearest signatures only.

    Each model is compared exactly with its :data:`NEIGHBOURS` nearest models by
    signature (one matrix product per block), never with all others; related
    pairs are joined into families. An adapter joins the family of its base.
    """
    import numpy as np

    ids = sorted(i for i, fp in fingerprints.items() if fp.kind == "model")
    views = {i: View(fingerprints[i]) for i in ids}
    sig = np.stack([fingerprints[i].signature.astype(np.float32) for i in ids]) if ids else np.zeros((0, 1))
    sig /= np.maximum(np.linalg.norm(sig, axis=1, keepdims=True), 1e-12)
    parent = list(range(len(ids)))

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    k = min(NEIGHBOURS, len(ids) - 1)
    for lo in range(0, len(ids), 1024):
        scores = sig[lo : lo + 1024] @ sig.T
        for row, a in enumerate(range(lo, min(lo + 1024, len(ids)))):
            scores[row, a] = -np.inf
            for b in np.argpartition(-scores[row], k - 1)[:k] if k > 0 else []:
                if find(a) == find(int(b)):
                    continue
                pair = compare(views[ids[a]], views[ids[int(b)]])
                if pair is not None and pair.related:
                    parent[find(a)] = find(int(b))
    groups: dict[int, list[str]] = {}
    for n, model_id in enumerate(ids):
        groups.setdefault(find(n), []).append(model_id)
    family_of = {m: members for members in groups.values() for m in members}
    out = list(groups.values())
    for adapter_id, fp in sorted(fingerprints.items()):
        if fp.kind != "model":
            base = adapter_base(adapter_id, fp)
            if base in family_of:
                family_of[base].append(adapter_id)
            else:
                out.append([adapter_id])
    return [sorted(g) for g in out]


def _attribute(
    fingerprints: Mapping[str, Fingerprint],
    *,
    order: Mapping[str, Any] | None = None,
    adapter_base: Callable[[str, Fingerprint], str | None] | None = None,
) -> Lineage:
    ids = sorted(fingerprints)
    views = [View(fingerprints[i]) for i in ids]
    models = [i for i, v in enumerate(views) if v.fp.kind == "model"]
    model_views = [views[i] for i in models]
    pairs_local = pairwise(model_views)
    pairs = {(models[a], models[b]): p for (a, b), p in pairs_local.items()}
    edges: list[Edge] = []
    notes: list[str] = []

    def pair(i: int, j: int) -> Pair | None:
        return pairs.get((i, j)) if i < j else pairs.get((j, i))

    related = {k: p for k, p in pairs.items() if p.related}
    families = _components(models, related)

    # 2. copies: first the same weights saved again (twins), then lossy and sparse copies
    copy_parent: dict[int, tuple[int, Copy]] = {}
    twin_of: dict[int, int] = {}  # model -> the original of its twins
    twin_links = [k for k in related if same_weights(views[k[0]].fp, views[k[1]].fp)]
    for group in _components(sorted({n for k in twin_links for n in k}), twin_links):
        original = _original(group, ids, order)
        for n in group:
            twin_of[n] = original
            if n != original:
                copy_parent[n] = (original, Copy("quantized", 1.0, True))
                notes.append(
                    f"{ids[n]} has the same weights as {ids[original]} (every tensor equal): "
                    "a lossless copy, reported as quantized"
                )
    for child in models:
        if child in copy_parent:
            continue
        found = []
        for parent in models:
            p = pair(parent, child)
            if parent == child or p is None or not p.related or twin_of.get(parent, parent) != parent:
                continue  # a twin's copies are the original's
            test = copy_test(views[parent], views[child], p)
            if test is not None:
                found.append((parent, test, p))
        if found:
            copy_parent[child] = _best_copy_parent(child, found, views)
    for child, (parent, test) in copy_parent.items():
        edges.append(Edge(ids[parent], ids[child], test.relation, copy_confidence(test)))

    # 3. merges, among the models that are not copies
    core = [i for i in models if i not in copy_parent]
    merged: dict[int, Merge] = {}
    for family in families:
        pool = [i for i in family if i in core]
        for target in pool:
            mix = merge_test(target, views, pool)
            if mix is not None:
                merged[target] = mix
    for target, m in merged.items():
        for parent, w in zip(m.parents, m.weights, strict=True):
            edges.append(Edge(ids[parent], ids[target], "merge", max(0.5, 0.99 - m.residual), w))

    # 4. adapters
    resolve = adapter_base or _default_adapter_base(ids)
    for i, v in enumerate(views):
        if v.fp.kind != "adapter":
            continue
        edge, note = _adapter_edge(ids[i], v, resolve, fingerprints)
        if edge is not None:
            edges.append(edge)
        if note:
            notes.append(note)

    # 5. fine-tunes
    tree = [i for i in core if i not in merged]
    index = {name: i for i, name in enumerate(ids)}
    attached: dict[int, int] = {}
    for e in edges:
        attached[index[e.parent]] = attached.get(index[e.parent], 0) + 1
    ft_edges = _finetune_forest(tree, families, pair, views, ids, order, merged, attached)
    ft_edges = _attach_to_merges(ft_edges, merged, pair, views, ids, edges)
    edges.extend(ft_edges)

    edges.sort(key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    return Lineage(ids, edges, [m for m in ids if m not in children], notes)


def _components(nodes: Sequence[int], links: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The groups of ``nodes`` that ``links`` (pairs of nodes) connect."""
    parent = {n: n for n in nodes}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in links:
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)
    return list(groups.values())


def _best_copy_parent(
    child: int, found: list[tuple[int, Copy, Pair]], views: Sequence[View]
) -> tuple[int, Copy]:
    """Among the parents a child copies, the original: exact tests first, then the most precise."""
    candidates = {parent for parent, _, _ in found}

    def rank(item: tuple[int, Copy, Pair]) -> tuple[Any, ...]:
        parent, test, p = item
        v = views[parent]
        return (not test.exact, -v.precision, v.zeros, -test.match, p.distance, parent)

    best = sorted(found, key=rank)
    # a candidate that is itself a copy of another candidate is not the original
    for parent, test, _ in best:
        others = candidates - {parent}
        if not any(_is_copy_of(views[parent], views[o]) for o in others):
            return parent, test
    return best[0][0], best[0][1]


def _is_copy_of(child: View, parent: View) -> bool:
    p = compare(parent, child)
    return p is not None and p.related and copy_test(parent, child, p) is not None


def _original(twins: Sequence[int], ids: Sequence[str], order: Mapping[str, Any] | None) -> int:
    """Among models with the same weights, the original: the earliest release when every one has a
    date, else the smallest id."""
    if order is not None and all(order.get(ids[n]) is not None for n in twins):
        try:
            return min(twins, key=lambda n: (order[ids[n]], n))
        except TypeError:
            pass
    return min(twins)


def _finetune_forest(
    tree: Sequence[int],
    families: Sequence[Sequence[int]],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None,
    merged: Mapping[int, Merge],
    attached: Mapping[int, int],
) -> list[Edge]:
    """Fine-tune edges per family: by release order when it is complete, else a spanning tree on
    lineage distance, rooted by tree-level evidence."""
    members = set(tree)
    edges: list[Edge] = []
    for family in families:
        nodes = sorted(n for n in family if n in members)
        if len(nodes) < 2:
            continue
        edges.extend(_family_tree(nodes, pair, views, ids, order, merged, attached))
    return edges


def _family_tree(
    nodes: list[int],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None,
    merged: Mapping[int, Merge],
    attached: Mapping[int, int],
) -> list[Edge]:
    import networkx as nx

    if order is not None and _strictly_ordered(nodes, ids, order):
        return _under_nearest_earlier(nodes, views, ids, order, pair, merged)
    best_precision = max(views[n].precision for n in nodes)
    high = [n for n in nodes if views[n].precision == best_precision]
    low = [n for n in nodes if views[n].precision != best_precision]
    dist: dict[tuple[int, int], float] = {}

    def d(a: int, b: int) -> float:
        key = (a, b) if a < b else (b, a)
        if key not in dist:
            p = pair(a, b)
            dist[key] = lineage_distance(views[a], views[b], p.shared) if p is not None else math.inf
        return dist[key]

    # near-ties between a parent and its barely-changed child are broken towards the less
    # mature model (lower spectral entropy), as the directed tree below would orient them
    maturity = {n: views[n].maturity for n in high}
    ordered = sorted(high, key=lambda n: maturity[n])
    rank = {n: i / max(1, len(high) - 1) for i, n in enumerate(ordered)}

    def weight(a: int, b: int) -> float | None:
        p = pair(a, b)
        return d(a, b) * (1 + TIE_PENALTY * rank[a]) if p is not None and p.related else None

    arborescence = _sibling_arborescence(high, weight, _sibling_groups(high, merged))
    tree = nx.Graph()
    tree.add_nodes_from(high)
    tree.add_edges_from((a, b, {"weight": d(a, b)}) for b, a in arborescence.items())
    # lower-precision fine-tunes (say, saved in bfloat16) carry rounding noise in every
    # direction: they join as leaves, each next to its nearest model once that noise is removed
    for n in low:
        options = [(d(n, m), m) for m in nodes if m != n and (p := pair(n, m)) is not None and p.related]
        if options:
            tree.add_edge(min(options)[1], n, weight=min(options)[0])
    if tree.number_of_nodes() < 2:
        return []
    edges = []
    for component in nx.connected_components(tree):
        sub = tree.subgraph(component)
        if sub.number_of_nodes() < 2:
            continue
        low_rank = {
            frozenset(e) for e in sub.edges() if _exactly_low_rank(views[e[0]], views[e[1]], pair(*e))
        }
        root, scores = _choose_root(sub, views, ids, order, merged, attached, low, low_rank)
        for a, b in nx.bfs_edges(sub, root):
            confidence = _edge_confidence(sub, a, b, scores, d)
            edges.append(Edge(ids[a], ids[b], "finetune", confidence))
    return edges


# making a merge's parents siblings may add this share of their own edges' weight to the tree
SIBLING_TOLERANCE = 0.25


def _sibling_groups(nodes: Sequence[int], merged: Mapping[int, Merge]) -> list[list[int]]:
    """The merge parents among ``nodes``, grouped: parents of one merge, or of merges sharing a parent."""
    members = set(nodes)
    sets = [[q for q in m.parents if q in members] for m in merged.values()]
    sets = [ms for ms in sets if len(ms) >= 2]
    pooled = sorted({q for ms in sets for q in ms})
    return [sorted(g) for g in _components(pooled, [(ms[0], q) for ms in sets for q in ms[1:]])]


def _sibling_arborescence(
    nodes: Sequence[int], weight: Callable[[int, int], float | None], groups: Sequence[Sequence[int]]
) -> dict[int, int]:
    """A minimum spanning arborescence (child -> parent) in which merge parents are siblings
    where that costs the tree little.

    People merge fine-tunes of one base (model soups), so a merge's parents are
    siblings. Where a barely changed fine-tune sits almost on its parent, its
    siblings can hang under it at almost no cost; the merge says they do not.
    Each group of merge parents is tried in turn as one unit whose members share
    a parent, and kept when that adds at most ``SIBLING_TOLERANCE`` of the
    members' own edges to the tree. A merge of a model with its own fine-tune
    (WiSE-FT) costs far more than that, or has no common parent at all, and
    keeps the unconstrained tree.
    """
    best = _arborescence(nodes, weight, [])
    assert best is not None  # without groups, every node can be a root
    accepted: list[Sequence[int]] = []
    for group in groups:
        trial = _arborescence(nodes, weight, [*accepted, group])
        if trial is None:
            continue
        extra = _tree_cost(trial, weight) - _tree_cost(best, weight)
        own = sum(weight(trial[m], m) or 0.0 for m in group)
        if extra <= SIBLING_TOLERANCE * own:
            accepted.append(group)
            best = trial
    return best


def _tree_cost(parent: Mapping[int, int], weight: Callable[[int, int], float | None]) -> float:
    return sum(weight(p, c) or 0.0 for c, p in parent.items())


def _arborescence(
    nodes: Sequence[int], weight: Callable[[int, int], float | None], groups: Sequence[Sequence[int]]
) -> dict[int, int] | None:
    """Minimum spanning arborescence over ``nodes`` (child -> parent; roots are absent) in which the
    members of each group share one parent; None when a group can only be roots.

    Each group is contracted into one unit: reaching it from ``x`` costs the sum of
    ``x``'s edges to its members, and leaving it costs its best member's edge. A
    virtual root reaches every single model at a cost above any tree, so each
    connected part gets one root, and a group only at twice that; a fixed huge
    cost (1e9) would swamp the weights' last digits in Edmonds' cycle arithmetic.
    """
    import networkx as nx

    unit_of = {m: -(k + 2) for k, g in enumerate(groups) for m in g}
    units: dict[int, list[int]] = {}
    for n in nodes:
        units.setdefault(unit_of.get(n, n), []).append(n)
    graph = nx.DiGraph()
    graph.add_nodes_from(units)
    source: dict[tuple[int, int], int] = {}  # (unit, unit) -> the member of the first that is the parent
    for u, us in units.items():
        for v, vs in units.items():
            if u == v:
                continue
            options = []
            for x in us:
                costs = [weight(x, m) for m in vs]
                if all(c is not None for c in costs):
                    options.append((sum(costs), x))  # type: ignore[arg-type]
            if options:
                cost, x = min(options)
                graph.add_edge(u, v, weight=cost)
                source[(u, v)] = x
    top = max((w for _, _, w in graph.edges(data="weight")), default=1.0)
    virtual = (top + 1e-300) * (len(units) + 1)
    for u, us in units.items():
        graph.add_edge(-1, u, weight=virtual * (2 if len(us) > 1 else 1))
    parent = {}
    for u, v in nx.minimum_spanning_arborescence(graph).edges():
        if u == -1:
            if len(units[v]) > 1:
                return None
            continue
        for m in units[v]:
            parent[m] = source[(u, v)]
    return parent


def _strictly_ordered(nodes: Sequence[int], ids: Sequence[str], order: Mapping[str, Any]) -> bool:
    """True when every model of the family has an order value (a release date) and no two share one."""
    values = [order.get(ids[n]) for n in nodes]
    if any(v is None for v in values):
        return False
    try:
        ranked: list[Any] = sorted(values)
    except TypeError:
        return False
    return all(a < b for a, b in itertools.pairwise(ranked))


def _under_nearest_earlier(
    nodes: Sequence[int],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any],
    pair: Callable[[int, int], Pair | None],
    merged: Mapping[int, Merge],
) -> list[Edge]:
    """Fine-tune edges when release order is known: each model under its nearest earlier relative.

    With the order given, direction is settled, and what is left is placement, where
    the bulk distance is right far more often than any spanning tree (see
    :func:`lineage_distance`). A merge's parents are siblings (see
    :func:`_sibling_arborescence`): a later one goes under the parent of the first
    when that is at most ``SIBLING_TOLERANCE`` further than its nearest. Confidence
    is the placement margin over the runner-up.
    """
    ranked = sorted(nodes, key=lambda n: order[ids[n]])
    group_of = {m: k for k, g in enumerate(_sibling_groups(nodes, merged)) for m in g}
    group_parent: dict[int, int] = {}
    edges = []
    for i, child in enumerate(ranked):
        options = sorted(
            (bulk_distance(views[m], views[child], p.shared), m)
            for m in ranked[:i]
            if (p := pair(m, child)) is not None and p.related
        )
        if not options:
            continue
        group = group_of.get(child)
        shared = group_parent.get(group) if group is not None else None
        at = next((b for b, m in options if m == shared), None)
        if shared is not None and at is not None and at - options[0][0] <= SIBLING_TOLERANCE * at:
            options = [(at, shared), *(o for o in options if o[1] != shared)]
        best, parent = options[0]
        if group is not None:
            group_parent.setdefault(group, parent)
        confidence = placement_confidence(best, options[1][0] if len(options) > 1 else None)
        edges.append(Edge(ids[parent], ids[child], "finetune", confidence))
    return edges


def placement_confidence(best: float, runner_up: float | None) -> float:
    """A fine-tune edge's confidence once direction is settled: 0.5 + 10 × the relative margin by which
    the parent is nearer the child (bulk distance) than the next candidate, within [0.5, 0.95]; 0.95
    when there is no other candidate. :func:`closest` gives a new file the same number."""
    if runner_up is None or math.isinf(runner_up):
        return 0.95
    return max(0.5, min(0.95, 0.5 + 10 * (runner_up - best) / max(best, 1e-300)))


def copy_confidence(test: Copy) -> float:
    """A copy's confidence: about 0.99 for an exact test (how much of the sample it reproduces
    beyond ``MATCH``), 0.6 for closeness alone."""
    return 0.5 + 0.49 * min(1.0, (test.match - MATCH) / (1 - MATCH) + 0.5) if test.exact else 0.6


def _later(order: Mapping[str, Any], a: str, b: str) -> bool:
    if a not in order or b not in order:
        return False
    try:
        return bool(order[a] > order[b])
    except TypeError:
        return False


TIE_PENALTY = 0.04  # breaks near-ties in distance towards the less mature parent
# root choice, per family: -mean hops to relatives + these times the evidence (tuned on seeds 5001-5014)
MATURITY_WEIGHT = 0.5  # per tree edge whose spectral entropy rises from parent to child
POPULARITY_WEIGHT = 0.1  # per copy, adapter or merge made from the candidate
MERGE_SIBLINGS_WEIGHT = 2.0  # per pair of merge parents the orientation makes ancestor and descendant
ORDER_WEIGHT = 10.0  # per edge whose parent was released after its child
P_SCHATTEN = 0.1  # p of the Schatten quasi-norm: near 0 it counts independent directions of change


def _difference_spectra(
    a: View, b: View, keys: Sequence[tuple[str, tuple[int, ...]]]
) -> Iterator[tuple[np.ndarray, float, float, float]]:
    """Per shared matrix: the singular values of the sampled difference ``a - b``, the
    pair's rounding-noise floor, the mean Schatten-p sum of the two models, and their
    mean squared norm."""
    import numpy as np

    for key in keys:
        ga, gb = a.grid(key), b.grid(key)
        if ga is None or gb is None:
            continue
        diff = ga - gb
        if not np.isfinite(diff).all():
            diff = np.where(np.isfinite(diff), diff, 0.0)
        try:
            s = np.linalg.svd(diff, compute_uv=False)
        except np.linalg.LinAlgError:
            continue
        tau = max(a.noise_floor(key), b.noise_floor(key))
        energy = (float(np.sum(np.nan_to_num(ga) ** 2)) + float(np.sum(np.nan_to_num(gb) ** 2))) / 2
        yield s, tau, (a.schatten(key) + b.schatten(key)) / 2, energy


def _schatten_term(s: np.ndarray, tau: float, ref: float) -> float | None:
    import numpy as np

    if ref <= 0:
        return None
    if tau > 0:
        s = np.where(s > tau, s, 0.0)
    return (float(np.sum(s**P_SCHATTEN)) / ref) ** (1 / P_SCHATTEN)


def spectral_distance(a: View, b: View, keys: Sequence[tuple[str, tuple[int, ...]]]) -> float:
    """How many independent directions separate two models, on their sampled sub-matrices.

    Each matrix's difference is summarised by its Schatten quasi-norm with small
    ``p`` (close to the geometric mean of its singular values), relative to the
    models' own. A fine-tune moves the weights along a few directions; two
    siblings differ by both their updates, so they sit further apart than
    parent and child even when their updates point the same way and their
    Euclidean distance says otherwise. Singular values under the pair's
    rounding-noise floor (bfloat16, int8) are dropped.
    """
    import numpy as np

    out = [
        t
        for s, tau, ref, _ in _difference_spectra(a, b, keys)
        if (t := _schatten_term(s, tau, ref)) is not None
    ]
    return float(np.mean(out)) if out else math.inf


BULK_SKIP = 16  # leading singular values of a difference that carry a fine-tune's (low-rank) task signal
BULK_WEIGHT = 0.25  # share of the bulk distance in the lineage distance (the rest: the spectral distance)


def lineage_distance(a: View, b: View, keys: Sequence[tuple[str, tuple[int, ...]]]) -> float:
    """The distance fine-tune trees are built on: spectral distance, weighted with the bulk of the difference.

    A fine-tune's update is a low-rank task signal (what it learned: directions its
    siblings, trained on similar data, largely share, and that a grandchild trained
    back towards the parent's task partly undoes) plus a full-rank bulk from its own
    run, which every descendant inherits and no sibling shares. The bulk is read
    from the singular values of the difference past its leading ones: the geometric
    mean of the lower half, times the root energy past the first ``BULK_SKIP``. On
    its own it places a model under its true parent far more often than the
    spectral distance (98 % against 82-84 % of fine-tunes on the development
    trees). In the spanning tree the weight hardly matters (0.25 to 1.0 all score
    0.977-0.980 on the development trees); keeping most of the spectral distance
    keeps its rounding-noise floor for bfloat16 and int8 models, which the bulk
    lacks. See docs/attribution.md.
    """
    spectral, bulk = _spectral_and_bulk(a, b, keys)
    return spectral if bulk is None else spectral ** (1 - BULK_WEIGHT) * bulk**BULK_WEIGHT


def bulk_distance(a: View, b: View, keys: Sequence[tuple[str, tuple[int, ...]]]) -> float:
    """The bulk part of :func:`lineage_distance` alone (the spectral distance where there is none)."""
    spectral, bulk = _spectral_and_bulk(a, b, keys)
    return spectral if bulk is None else bulk


def _spectral_and_bulk(
    a: View, b: View, keys: Sequence[tuple[str, tuple[int, ...]]]
) -> tuple[float, float | None]:
    """The spectral distance and the bulk distance (None without matrices to read it from), one SVD each.

    The bulk: geometric mean of the lower half of the singular values, times the
    root energy past ``BULK_SKIP``, over the matrices the spectral distance reads.
    """
    import numpy as np

    terms, logs, tails = [], [], []
    for s, tau, ref, energy in _difference_spectra(a, b, keys):
        t = _schatten_term(s, tau, ref)
        if t is None:
            continue
        terms.append(t)
        if len(s) >= 4 and energy > 0:
            logs.append(float(np.mean(np.log(s[len(s) // 2 :] + 1e-30))))
            tails.append(float(np.sum(s[BULK_SKIP:] ** 2)) / energy)
    spectral = float(np.mean(terms)) if terms else math.inf
    if not logs:
        return spectral, None
    return spectral, math.exp(float(np.mean(logs))) * math.sqrt(float(np.mean(tails)) + 1e-30)


def _choose_root(
    tree: Any,
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None,
    merged: Mapping[int, Merge],
    attached: Mapping[int, int],
    low: Sequence[int],
    low_rank: set[frozenset[int]],
) -> tuple[int, dict[int, float]]:
    """The family's root: the orientation that best fits the tree-level evidence.

    Hard evidence first: order hints (a model released later is never a parent)
    and merges of siblings (a merge's parents are not each other's ancestors).
    Then: the root is central (closest, in hops, to its relatives), fine-tuning
    adds directions to the weights' spectrum (entropy rises from parent to
    child) except a LoRA merged into the weights (an exactly low-rank change,
    taken to be the leaf of its edge), and derived copies, adapters and merges
    gather around the models people build on.
    """
    import networkx as nx
    import numpy as np

    n = tree.number_of_nodes()
    nodes = list(tree.nodes)
    maturity = {v: views[v].maturity for v in nodes}
    merge_sets = [[q for q in m.parents if q in tree] for m in merged.values()]
    merge_sets = [ms for ms in merge_sets if len(ms) >= 2]
    scores: dict[int, float] = {}
    for r in nodes:
        if r in low and len(low) < n:
            scores[r] = -math.inf
            continue
        hops = nx.single_source_shortest_path_length(tree, r)
        oriented = list(nx.bfs_edges(tree, r))
        parent_of = {b: a for a, b in oriented}
        score = -sum(hops.values()) / n
        for a, b in oriented:
            if frozenset((a, b)) not in low_rank:
                score += MATURITY_WEIGHT * float(np.tanh((maturity[b] - maturity[a]) / 1e-3))
            elif (tree.degree(a) == 1) != (tree.degree(b) == 1):
                # a LoRA merged into the weights lowers the entropy; it is the leaf of its edge
                score += MATURITY_WEIGHT * (1.0 if tree.degree(b) == 1 else -1.0)
        score += POPULARITY_WEIGHT * attached.get(r, 0)
        for ms in merge_sets:
            for q in ms:
                for other in ms:
                    if other != q and _is_ancestor(q, other, parent_of):
                        score -= MERGE_SIBLINGS_WEIGHT
        if order is not None:
            score -= ORDER_WEIGHT * sum(1 for a, b in oriented if _later(order, ids[a], ids[b]))
        scores[r] = score
    root = max(nodes, key=lambda v: (scores[v], -v))
    return root, scores


LOW_RANK_GAP = 1e-4  # singular values below this share of the largest are rounding noise


def _exactly_low_rank(a: View, b: View, pair: Pair | None) -> bool:
    """True when every matrix of ``a - b`` has exactly low rank, as a LoRA merged into the weights gives."""
    import numpy as np

    if pair is None:
        return False
    clear = False
    for key in pair.shared:
        ga, gb = a.grid(key), b.grid(key)
        if ga is None or gb is None or min(ga.shape) < 4:
            continue
        try:
            s = np.linalg.svd(np.nan_to_num(ga - gb), compute_uv=False)
        except np.linalg.LinAlgError:
            return False
        if s[0] == 0:
            continue
        rank = int(np.sum(s > LOW_RANK_GAP * s[0]))
        if rank >= min(ga.shape):
            return False
        clear = clear or (min(ga.shape) >= 16 and rank <= min(ga.shape) // 2)
    return clear


def _is_ancestor(a: int, b: int, parent_of: Mapping[int, int]) -> bool:
    while b in parent_of:
        b = parent_of[b]
        if b == a:
            return True
    return False


def _edge_confidence(
    tree: Any, parent: int, child: int, scores: Mapping[int, float], d: Callable[[int, int], float]
) -> float:
    """How sure the edge is: placement (nearest relative by a margin) times direction (root margin)."""
    import networkx as nx

    here = d(parent, child)
    others = [d(child, m) for m in tree.nodes if m not in (parent, child)]
    placement = 0.9 if not others else max(0.5, min(0.95, 0.5 + 10 * (min(others) - here) / max(here, 1e-12)))
    # the best root on the child's side would flip this edge
    cut = tree.copy()
    cut.remove_edge(parent, child)
    side = nx.node_connected_component(cut, child)
    best = max(scores.values())
    flip = max((scores[v] for v in side), default=-math.inf)
    direction = 0.95 if not math.isfinite(flip) else 0.5 + 0.45 * math.tanh(max(best - flip, 0.0))
    return max(0.5, min(placement, direction))


def _attach_to_merges(
    ft_edges: list[Edge],
    merged: Mapping[int, Merge],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    fixed: Sequence[Edge],
) -> list[Edge]:
    """A model fine-tuned from a merge: move it under the merge when that is clearly nearer.

    Nearness is the spectral distance the fine-tune tree uses: a fine-tune of one
    of the merge's parents differs from the merge by its own update *and* the
    other parents' share, so it stays with its parent.
    """
    if not merged:
        return ft_edges
    import networkx as nx

    index = {name: i for i, name in enumerate(ids)}
    out = list(ft_edges)
    for k, e in enumerate(out):
        child, parent = index[e.child], index[e.parent]
        current = pair(parent, child)
        if current is None:
            continue
        here = spectral_distance(views[parent], views[child], current.shared)
        best = None
        for m in merged:
            p = pair(m, child)
            if p is None or not p.related:
                continue
            there = spectral_distance(views[m], views[child], p.shared)
            if there < here * 0.9 and (best is None or there < best[1]):
                best = (m, there)
        if best is None:
            continue
        graph = nx.DiGraph([(x.parent, x.child) for x in [*fixed, *out] if x is not e])
        graph.add_edge(ids[best[0]], e.child)
        if nx.is_directed_acyclic_graph(graph):
            out[k] = Edge(ids[best[0]], e.child, "finetune", e.confidence)
    return out


def _default_adapter_base(ids: Sequence[str]) -> Callable[[str, Fingerprint], str | None]:
    known = set(ids)

    def resolve(adapter_id: str, fp: Fingerprint) -> str | None:
        meta = fp.adapter or {}
        base, revision = meta.get("base"), meta.get("revision")
        if not base:
            return None
        names = [base, base.rstrip("/").rsplit("/", 1)[-1]]
        for name in names:
            for candidate in ([f"{name}-{revision}", f"{name}@{revision}"] if revision else []) + [name]:
                if candidate in known and candidate != adapter_id:
                    return candidate
        return None

    return resolve


def _adapter_edge(
    adapter_id: str,
    view: View,
    resolve: Callable[[str, Fingerprint], str | None],
    fingerprints: Mapping[str, Fingerprint],
) -> tuple[Edge | None, str]:
    fp = view.fp
    base = resolve(adapter_id, fp)
    named = (fp.adapter or {}).get("base")
    if base is None:
        if named:
            return None, f"{adapter_id}: adapter base '{named}' is not among the models compared"
        return None, f"{adapter_id}: adapter config names no base model"
    target = fingerprints[base]
    if target.kind != "model":
        return None, f"{adapter_id}: adapter base '{base}' is not a full model"
    have = {t.key for t in target.tensors}
    missing = [t.name for t in fp.tensors if t.key not in have]
    if missing or not fp.tensors:
        return None, (
            f"{adapter_id}: adapter does not fit '{base}': no tensor {missing[0]} of that shape"
            if missing
            else f"{adapter_id}: adapter has no tensors to check"
        )
    return Edge(base, adapter_id, "adapter", 0.8), ""


# -------------------------------------------------------------------------- one vs many


@dataclass(frozen=True)
class Match:
    """How one model relates to a known one."""

    id: str
    corr: float
    distance: float
    relation: str  # how the new model derives from this one ("finetune", ...), or "derived-from-new"
    confidence: float
    weight: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "similarity": round(self.corr, 4),
            "distance": round(self.distance, 4),
            "relation": self.relation,
            "confidence": round(self.confidence, 3),
        }
        if self.weight is not None:
            out["weight"] = round(self.weight, 4)
        return out


def rank_signatures(new: Fingerprint, signatures: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` rows of ``signatures`` most similar to ``new`` (cosine)."""
    import numpy as np

    s = new.signature.astype(np.float32)
    norms = np.linalg.norm(signatures, axis=1) * max(float(np.linalg.norm(s)), 1e-12)
    scores = (signatures @ s) / np.maximum(norms, 1e-12)
    k = min(top, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best])]


def closest(new: Fingerprint, known: Mapping[str, Fingerprint], top: int = 32) -> list[Match]:
    """Known models ranked by closeness to ``new``, each with how ``new`` relates to it.

    Candidates are first ranked by signature (one matrix product over all of
    ``known``), then the best ``top`` are compared exactly.
    """
    import numpy as np

    ids = list(known)
    if not ids:
        return []
    if new.kind == "adapter":
        return _adapter_matches(new, known)
    read = getattr(known, "signatures", None)  # a lazily loaded mapping reads signatures alone
    sigs = read(ids) if read is not None else np.stack([known[i].signature for i in ids]).astype(np.float32)
    chosen = [ids[k] for k in rank_signatures(new, sigs, top)]
    nv = View(new)
    matches = []
    views = {i: View(known[i]) for i in chosen}
    shared: dict[str, Any] = {}  # fine-tune candidates -> the matrices they share with the new model
    for i in chosen:
        v = views[i]
        if v.fp.kind != "model":
            continue
        p = compare(v, nv)
        if p is None:
            continue
        relation, confidence = "unrelated", 0.9
        if v.fp.sha256 == new.sha256:
            relation, confidence = "identical", 1.0
        elif same_weights(v.fp, new):
            relation, confidence = "same-weights", 1.0
        elif p.related:
            test = copy_test(v, nv, p)
            back = copy_test(nv, v, p) if test is None else None
            if test is not None:
                relation, confidence = test.relation, copy_confidence(test)
            elif back is not None:
                relation, confidence = f"parent-of-{back.relation}", copy_confidence(back)
            else:
                relation, confidence, shared[i] = "finetune", 0.95, p.shared
        matches.append(Match(i, p.corr, p.distance, relation, confidence))
    if len(shared) > 1:  # the new file is the latest: each candidate's margin, as attribute() places it
        bulk = {i: bulk_distance(views[i], nv, keys) for i, keys in shared.items()}
        runner_up = {i: min(b for j, b in bulk.items() if j != i) for i in bulk}
        matches = [
            replace(m, confidence=placement_confidence(bulk[m.id], runner_up[m.id])) if m.id in bulk else m
            for m in matches
        ]
    related = [m for m in matches if m.relation not in ("unrelated",)]
    if len(related) >= 2 and not any(m.relation in (*EXACT, "quantized", "pruned") for m in related):
        pool_ids = [m.id for m in related if m.relation == "finetune"]
        allv = [nv, *(views[i] for i in pool_ids)]
        found = merge_test(0, allv, list(range(len(allv))))
        if found is not None:
            weights = {pool_ids[k - 1]: w for k, w in zip(found.parents, found.weights, strict=True)}
            matches = [
                Match(m.id, m.corr, m.distance, "merge", max(0.5, 0.99 - found.residual), weights[m.id])
                if m.id in weights
                else m
                for m in matches
            ]
    matches.sort(
        key=lambda m: (m.relation == "unrelated", m.distance, EXACT.get(m.relation, len(EXACT)), m.id)
    )
    return matches


# the new file is a known one (the same bytes), or the same weights in another file: ranked in this order
EXACT = {"identical": 0, "same-weights": 1}


def _adapter_matches(new: Fingerprint, known: Mapping[str, Fingerprint]) -> list[Match]:
    wanted = {t.key for t in new.tensors}
    out = []
    base = (new.adapter or {}).get("base")
    for i, fp in known.items():
        if fp.kind != "model" or not wanted:
            continue
        have = {t.key for t in fp.tensors}
        if wanted <= have:
            named = base is not None and (i == base or i.split("@")[0] == base)
            out.append(Match(i, 0.0, 0.0, "adapter", 0.8 if named else 0.3))
    out.sort(key=lambda m: -m.confidence)
    return out
