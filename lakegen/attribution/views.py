"""Fingerprints laid out for comparison, and how two of them compare (correlation, distance)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakegen.fingerprint import GRID, Fingerprint, TensorPrint
from lakegen.weights import PRECISION

if TYPE_CHECKING:
    import numpy as np

RELATED = 0.2  # minimum mean correlation of related models (unrelated: <= 0.081; see docs)
RELATED_Z = 8.0  # ... and at least this many standard errors above zero
SHARED = 0.5  # share of the smaller model's matrix parameters two models must have in common
P_SCHATTEN = 0.1  # p of the Schatten quasi-norm: near 0 it counts independent directions of change
WRAPPER_DEPTH = 3  # leading name parts a wrapper may add: PEFT's base_model.model. and a task model's bert.

Key = tuple[str, tuple[int, ...]]


def aliased(keys: Sequence[Key]) -> dict[Key, int]:
    """Each tensor (name, shape) -> its position, also under its name without up to
    ``WRAPPER_DEPTH`` leading parts.

    The same network is saved under several prefixes: a task model puts the base
    model under ``bert.`` or ``model.`` next to its head, a PEFT adapter under
    ``base_model.model.``. A name shortened so is an alias only where it names one
    tensor and is not already a real name; at least two parts are kept.
    """
    index = {k: i for i, k in enumerate(keys)}
    extra: dict[Key, int] = {}
    ambiguous = set()
    for i, key in enumerate(keys):
        for alias in shortened(key):
            if alias in index:
                continue
            if extra.setdefault(alias, i) != i:
                ambiguous.add(alias)
    return {**{k: i for k, i in extra.items() if k not in ambiguous}, **index}


def shortened(key: Key) -> list[Key]:
    """``key`` without 1 .. ``WRAPPER_DEPTH`` leading parts of its name, keeping two parts at least."""
    parts = key[0].split(".")
    return [(".".join(parts[cut:]), key[1]) for cut in range(1, min(WRAPPER_DEPTH, len(parts) - 2) + 1)]


@dataclass(frozen=True)
class Initialised:
    """A model's float tensors by what an initialiser left of them: a constant, a flat uniform
    draw (by name, with where their samples lie), or neither."""

    constant: frozenset[str]
    uniform: dict[str, TensorPrint]
    varied: dict[str, TensorPrint]

    @property
    def names(self) -> frozenset[str]:
        return self.constant | self.uniform.keys() | self.varied.keys()


class View:
    """A fingerprint's matrices laid out for comparison (float64, finite-masked)."""

    def __init__(self, fp: Fingerprint):
        import numpy as np

        self.fp = fp
        self.mats: list[TensorPrint] = [t for t in fp.tensors if t.is_matrix and t.count >= 4]
        self.keys = tuple(t.key for t in self.mats)
        self.index = aliased(self.keys)
        parts = [fp.values(t).astype(np.float64) for t in self.mats]
        self.x = np.concatenate(parts) if parts else np.zeros(0)
        self.starts = np.cumsum([0] + [t.count for t in self.mats[:-1]]).astype(np.int64)
        self.finite = bool(np.isfinite(self.x).all())
        self.params = sum(math.prod(t.shape) for t in self.mats)
        self.precision = min((precision_bits(t) for t in self.mats), default=99)
        self.zeros = float(np.mean(self.x == 0)) if self.x.size else 0.0
        self.rounded = True  # the values carry their format's rounding (see rounding_removed)

        self._grids: dict[Any, Any] = {}
        # per matrix: what every distance to another model reads of this one (35,000 pairs at
        # 10,000 models, most of a spectral distance's cost besides the SVD of the difference)
        self._energies: dict[Any, float] = {}
        self._floors: dict[Any, float] = {}
        self._initialised: Initialised | None = None

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

    def energy(self, key: tuple[str, tuple[int, ...]]) -> float:
        """The squared norm of the sampled sub-matrix (of a matrix that has one), non-finite values
        taken as zero."""
        import numpy as np

        if key not in self._energies:
            g = self.grid(key)
            assert g is not None
            self._energies[key] = float(np.sum(np.nan_to_num(g) ** 2))
        return self._energies[key]

    def noise_floor(self, key: tuple[str, tuple[int, ...]]) -> float:
        """Largest singular value rounding noise of this tensor's format would put in a difference."""
        if key not in self._floors:
            self._floors[key] = self._noise_floor(key)
        return self._floors[key]

    def _noise_floor(self, key: tuple[str, tuple[int, ...]]) -> float:
        import numpy as np

        t = self.mats[self.index[key]]
        g = self.grid(key)
        if g is None or not self.rounded:
            return 0.0
        if t.quantized and t.scale_offset >= 0:
            sigma = float(np.sqrt(np.mean(self.fp.row_scales(t).astype(np.float64) ** 2))) / math.sqrt(12)
        else:
            bits = precision_bits(t)
            if bits >= 24:
                return 0.0
            sigma = float(np.sqrt(np.mean(g * g))) * 2.0 ** (1 - bits) / math.sqrt(12)
        return sigma * (math.sqrt(g.shape[0]) + math.sqrt(g.shape[1]))

    @property
    def initialised(self) -> Initialised:
        """The float tensors (two values or more) by what an initialiser left of them.

        Initialisers set normalisation weights to one, its biases and running statistics to
        zero and one, and PyTorch's default for Linear, convolution and recurrent layers draws
        every weight and bias uniformly from ±1/√fan (see :func:`uniform_drawn`); training
        moves them, and nothing trains towards a constant or a flat uniform again. A tensor
        untouched in one model that grew into its relative's marks the first as earlier
        (see :func:`grew_from`)."""
        import numpy as np

        if self._initialised is None:
            constant: set[str] = set()
            uniform: dict[str, TensorPrint] = {}
            varied: dict[str, TensorPrint] = {}
            for t in self.fp.tensors:
                if t.count < 2 or t.quantized or not t.dtype.startswith(("float", "bfloat")):
                    continue
                x = self.fp.values(t)
                x = x[np.isfinite(x)]
                if x.size < 2:
                    continue
                if np.all(x == x[0]):
                    constant.add(t.name)
                else:
                    (uniform if uniform_drawn(x) else varied)[t.name] = t
            self._initialised = Initialised(frozenset(constant), uniform, varied)
        return self._initialised

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


def resolve(v: View, key: Key) -> Key | None:
    """The name ``key`` has in ``v``: itself, or an alias without its leading parts (see :func:`aliased`)."""
    return next((k for k in (key, *shortened(key)) if k in v.index), None)


def inherits_what_it_lacks(parent: View, child: View, relatives: Sequence[View]) -> bool:
    """Whether ``child`` holds a matrix that ``parent`` lacks (no name or alias of it) and a relative
    holds too, with correlated values: inherited, so not through ``parent`` (a model whose task head
    was replaced lacks its parent's classifier, which the parent's other children keep)."""
    import numpy as np

    for key in child.keys:
        if resolve(parent, key) is not None:
            continue
        c = child.segment(key)
        for other in relatives:
            if (k := resolve(other, key)) is None or other is child:
                continue
            o = other.segment(k)
            ok = np.isfinite(c) & np.isfinite(o)
            if ok.sum() >= 8 and np.corrcoef(c[ok], o[ok])[0, 1] >= RELATED:
                return True
    return False


UNIFORM_SAMPLES = 256  # fewer samples cannot tell a uniform draw from a trained tensor
# A uniform draw of n values spans 2√3 (1 − 2/(n+1)) standard deviations and has kurtosis 1.8; a
# trained tensor's tails are longer (real Resemblyzer LSTM: span 5.2–30, kurtosis 2.7–184; a
# from-scratch run of it: span 4.0–5.8, kurtosis 1.99–2.31; its fresh init: 3.42–3.52, 1.78–1.85).
UNIFORM_SPAN = (3.3, 3.6)
UNIFORM_KURTOSIS = (1.7, 1.95)


def uniform_drawn(x: np.ndarray) -> bool:
    """Whether samples ``x`` look drawn from a zero-centred uniform, as PyTorch's default
    initialisers draw: untouched by training."""
    import numpy as np

    if x.size < UNIFORM_SAMPLES:
        return False
    x = x.astype(np.float64)
    lo, hi, sd = float(x.min()), float(x.max()), float(x.std())
    if sd == 0 or abs(hi + lo) > 0.05 * (hi - lo):
        return False
    kurtosis = float(np.mean(((x - x.mean()) / sd) ** 4))
    return (
        UNIFORM_SPAN[0] <= (hi - lo) / sd <= UNIFORM_SPAN[1]
        and UNIFORM_KURTOSIS[0] <= kurtosis <= UNIFORM_KURTOSIS[1]
    )


EARLIER_SHARE = 0.25  # of the float tensors two models share, untouched in one and grown in the other
# A run keeps its init's values (from-scratch CREPE and Resemblyzer LSTM tensors: 0.73-1.0). A fresh
# draw mixed with a victim's tensor to correlate 0.5 with it takes a quarter of its variance from the
# victim, and its kurtosis is then 2.25 or more: no longer a uniform draw (see UNIFORM_KURTOSIS).
GREW = 0.5


def earlier_by_initialiser(a: View, b: View) -> int:
    """1 when ``b`` grew from an initialiser ``a`` still holds (see :func:`grew_from`) and not the
    reverse (``a`` is the untrained one); -1 for the reverse, 0 when that says nothing."""
    return int(grew_from(a, b)) - int(grew_from(b, a))


def grew_from(a: View, b: View) -> bool:
    """Whether ``b``'s tensors grew from the initialiser ``a`` holds: ``b`` varies where ``a``
    is untouched (see :attr:`View.initialised`) on at least ``EARLIER_SHARE`` of the float
    tensors they share, and some of those are uniform draws ``b``'s values still correlate with.

    Anyone can put an initialiser into a copy of another's model (a bias drawn afresh, a norm
    reset to ones), and the copy would pass for its source's untrained parent. A fresh draw
    beside a trained tensor correlates with it at ~0; a run keeps its init's values. A constant
    has no correlation to measure, and how far ``b``'s counterpart lies from it tells a reset from
    an init no better (see docs/attribution.md): constants only add to evidence a correlation
    gave, and alone leave the direction open.
    """
    mine, theirs = a.initialised, b.initialised
    grown = sum(
        1 for name, t in mine.uniform.items() if name in theirs.varied and _grew(a, t, b, theirs.varied[name])
    )
    constant = len(mine.constant & theirs.varied.keys())
    # broad evidence only: a head re-initialised at its old shape is one or two untouched tensors
    # in a later model; an initialiser leaves most of them so
    return grown > 0 and grown + constant >= max(1, EARLIER_SHARE * len(mine.names & theirs.names))


def _grew(a: View, t: TensorPrint, b: View, u: TensorPrint) -> bool:
    """Whether ``b``'s tensor ``u`` correlates with ``a``'s ``t`` as a run with its init (the same
    sampled coordinates: same name and shape)."""
    import numpy as np

    if t.shape != u.shape:
        return False
    x, y = a.fp.values(t).astype(np.float64), b.fp.values(u).astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return False
    corr = float(np.corrcoef(x, y)[0, 1])
    return corr >= GREW and corr * math.sqrt(x.size) >= RELATED_Z


def spacing(x: np.ndarray, dtype: str) -> np.ndarray | None:
    """The distance between neighbouring values of a float ``dtype`` (bfloat16, float16) at ``x``,
    or None for other dtypes."""
    import numpy as np

    if dtype not in ("bfloat16", "float16"):
        return None
    _, exponent = np.frexp(x)
    step = np.ldexp(1.0, exponent - PRECISION[dtype])
    return np.where(x == 0, 0.0, step)


def rounding_removed(low: View, toward: View) -> View:
    """``low`` (a model saved in bfloat16 or float16) with each sampled value moved, within the
    interval that rounds to it, as close as it gets to ``toward``'s: the model before its
    rounding, as far as ``toward`` can have been it.

    A fine-tune saved in bfloat16 is its float32 weights rounded; next to the float32
    parent it was trained from, the difference is its update plus that rounding, which
    for a short run is larger than the update. With the rounding taken out, what is left
    is the update alone, and a bfloat16 release of the parent, nearer before, is not.
    """
    import copy

    import numpy as np

    out = copy.copy(low)
    x = low.x.copy()
    for key in low.keys:
        if key not in toward.index:
            continue
        t = low.mats[low.index[key]]
        seg = low.segment(key)
        step = spacing(seg, t.dtype)
        target = toward.segment(key)
        if step is None or len(target) != len(seg):
            continue
        start = int(low.starts[low.index[key]])
        with np.errstate(invalid="ignore"):
            moved = np.clip(target, seg - step / 2, seg + step / 2)
        x[start : start + t.count] = np.where(np.isfinite(moved), moved, seg)
    out.x = x
    out._grids, out._energies, out._floors = {}, {}, {}
    out.rounded = False
    return out


def precision_bits(t: TensorPrint) -> int:
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


def shared_keys(a: View, b: View) -> tuple[Key, ...] | None:
    """The matrices two models share, or None when they do not share enough to compare. A key names
    its tensor in both views, directly or through an alias (see :func:`aliased`): in ``a``'s names
    where they reach ``b``, else in ``b``'s."""
    if a.keys == b.keys:
        return a.keys if a.keys else None
    common = max(_common(a, b), _common(b, a), key=lambda keys: sum(math.prod(k[1]) for k in keys))
    params = sum(math.prod(k[1]) for k in common)
    if not common or params < SHARED * min(a.params, b.params):
        return None
    return common


def _common(a: View, b: View) -> tuple[Key, ...]:
    """``a``'s matrices that ``b`` holds, each matched to a different tensor of ``b``."""
    taken: set[int] = set()
    out = []
    for k in a.keys:
        j = b.index.get(k)
        if j is not None and j not in taken:
            taken.add(j)
            out.append(k)
    return tuple(out)


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
    return combine(n, sa, sb, saa, sbb, sab, keys)


def combine(n: Any, sa: Any, sb: Any, saa: Any, sbb: Any, sab: Any, keys: Any) -> Pair | None:
    """The pair from per-matrix sums: counts, sums and sums of squares of each side, sums of products."""
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
                pair = combine(n[a, b], sa[a, b], sb[a, b], saa[a, b], sbb[a, b], sab[a, b], keys)
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
