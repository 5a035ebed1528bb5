"""A declared edge checked at coordinates nobody could know before the child file existed.

A fingerprint samples the same public coordinates of every model (they follow a
tensor's name and shape), so a contributor who knows them can copy the claimed
parent's values into exactly those entries and train the rest freely: the
fingerprints then agree while the weights do not. The audit closes that hole.
Its coordinates are drawn from the child's own sha256, so they are fixed only
once the file is, and changing any byte of the file to aim at them draws new
ones. At ``SAMPLES`` such entries of every matrix the child shares with its
parent (or, for a merge, with the declared mix of its parents), it counts the
entries within ``TOLERANCE`` of the parent's (relative to the parent's own
scale in that matrix; for a pruned copy a zero counts too). From that count a
Chernoff bound gives the share of *all* the matrix's entries that lie within
tolerance, with probability at least ``1 - FAILURE`` over the whole model. The
edge stays verified only when that share is at least ``MIN_SHARE`` in every
matrix, and the audited matrices hold at least ``MIN_COVERAGE`` of the child's
parameters: the bulk of the weights must come from the parent.

A child whose hidden units were permuted, sign-flipped or rescaled, or whose
attention heads were rotated (the same function, other coordinates), fails that
test as it stands; so when it fails, the child is aligned to the parent
(:func:`lakegen.fingerprint.align.match`, the alignment discovery uses, on the
full weights: each file read once) and audited again at the same coordinates.
The matching must stand out (:data:`~lakegen.attribution.symmetry.ALIGN_MARGIN`),
and the verdict says it was applied. It cannot buy a verdict: the coordinates
still follow the child's sha256, which the attacker cannot aim at, and the
matching only moves whole units (or turns a head's few dimensions), which brings
an unrelated model's entries no nearer than its units' best partners are
(docs/security.md gives the figures).

An informed attacker can still copy the parent into more than half of each
matrix's entries and train the rest; the statement says exactly that much.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lakegen.atomicfile import write_atomic
from lakegen.catalog.parsecache import to_keep
from lakegen.weights import (
    DEQUANTIZED,
    PRECISION,
    Logical,
    WeightFile,
    WeightsError,
    logical_tensors,
    open_model,
    to_float32,
)

if TYPE_CHECKING:
    import numpy as np

SAMPLES = 1024  # entries drawn from every shared matrix
TOLERANCE = 0.5  # |child - parent| within this share of the parent's rms in that matrix
MIN_SHARE = 0.5  # the share of every matrix's entries that must lie within tolerance
FAILURE = 1e-9  # chance, over the whole model, that a share stated is in fact lower
MIN_ENTRIES = 64  # smaller matrices (biases folded into matrices, tiny heads) are not audited
# The audited matrices must hold at least this share of the child's parameters: weights stored in
# shapes the parent does not share (reshaped, packed) would otherwise go unexamined.
MIN_COVERAGE = 0.9
VERSION = 3  # 3: a child that fails is audited again with its units matched to the parent's
AUDITED = ("finetune", "quantized", "pruned", "merge")
FILE = "audits.json"  # in the cache folder
FORMAT = 1

Status = Literal["verified", "contradicted", "inconclusive"]


@dataclass(frozen=True)
class Audit:
    """What the audit of one declared edge found."""

    status: Status
    share: float  # lower bound on the share of entries within tolerance, in the worst matrix
    observed: float  # the share observed at the sampled entries of that matrix
    worst: str  # that matrix
    matrices: int
    samples: int
    reason: str = ""
    parents: int = 1
    coverage: float = 0.0  # share of the child's parameters in the audited matrices
    alignment: str = ""  # how the child's units were matched to the parent's first, when they were

    @property
    def statement(self) -> str:
        """What a verified verdict proves, in one sentence."""
        if self.status == "inconclusive":
            return f"audit inconclusive: {self.reason}"
        of = "the parents' mix" if self.parents > 1 else "the parent"
        matched = f"once the child's units are matched to the parent's ({self.alignment})"
        aligned = f", {matched}," if self.alignment else ""
        return (
            f"audit{aligned}: in each of {self.matrices} matrices ({self.coverage:.0%} of the parameters) "
            f"at least {self.share:.0%} of the entries lie within {TOLERANCE:g}× its scale of {of} "
            f"(probability ≥ 1 − {FAILURE:.0e}; {self.samples:,} entries drawn from the file's sha256)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "share": round(self.share, 4),
            "observed": round(self.observed, 4),
            "worst": self.worst,
            "matrices": self.matrices,
            "samples": self.samples,
            "reason": self.reason,
            "parents": self.parents,
            "coverage": round(self.coverage, 4),
            "alignment": self.alignment,
            "statement": self.statement,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audit:
        fields = ("status", "share", "observed", "worst", "matrices", "samples", "reason", "parents")
        return cls(**{k: data[k] for k in fields}, coverage=data["coverage"], alignment=data["alignment"])


class AuditCache:
    """Audits beside the fingerprints, keyed by everything they depend on, in one file
    (``audits.json``) read once and written once a compile (:meth:`save`): a file per audit cost a
    cold build at 10,000 models about 3 s of creating files, and a PR check as long reading them."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / FILE
        self.old: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_bytes())
            audits = data.get("audits") if isinstance(data, dict) and data.get("format") == FORMAT else None
            if isinstance(audits, dict):
                self.old = audits
        except (OSError, ValueError):
            pass  # none yet, or unreadable: every audit runs again
        self.used: dict[str, Any] = {}

    def get(self, child_sha: str, parents: Sequence[tuple[str, float]], relation: str) -> Audit | None:
        key = cache_key(child_sha, parents, relation)
        data = self.used.get(key, self.old.get(key))
        if not isinstance(data, dict):
            return None
        try:
            audit = Audit.from_json(data)
        except (KeyError, TypeError):
            return None
        self.used[key] = data
        return audit

    def put(self, child_sha: str, parents: Sequence[tuple[str, float]], relation: str, audit: Audit) -> None:
        self.used[cache_key(child_sha, parents, relation)] = audit.to_json()

    def save(self) -> None:
        """Write what this run added, atomically (kept to about the lake's size, see
        :func:`lakegen.catalog.parsecache.to_keep`); a read-only cache only costs speed."""
        kept = to_keep(self.old, self.used)
        if kept is not None:
            with contextlib.suppress(OSError):
                write_atomic(self.path, json.dumps({"format": FORMAT, "audits": kept}, separators=(",", ":")))


def cache_key(child_sha: str, parents: Sequence[tuple[str, float]], relation: str) -> str:
    """The audit's inputs, as one key: it is a pure function of them."""
    text = f"audit{VERSION}|{SAMPLES}|{TOLERANCE}|{MIN_SHARE}|{FAILURE}|{relation}|{child_sha}|" + "|".join(
        f"{sha}:{weight:.6f}" for sha, weight in parents
    )
    return hashlib.sha256(text.encode()).hexdigest()


def coordinates(child_sha: str, name: str, numel: int) -> np.ndarray:
    """Sorted flat indices of the entries audited in tensor ``name``: fixed by the child's bytes."""
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"{child_sha}|{name}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    if numel <= SAMPLES:
        return np.arange(numel, dtype=np.int64)
    return np.sort(rng.choice(numel, size=SAMPLES, replace=False)).astype(np.int64)


def audit_edge(child: Path, child_sha: str, parents: Sequence[tuple[Path, float]], relation: str) -> Audit:
    """Audit ``child`` against ``parents`` (weight files, with their mixing weights; one for a copy).

    A child that fails against one parent is audited again with its hidden units matched to the
    parent's; the better of the two verdicts stands, and says whether the matching was applied.
    """
    files: list[WeightFile] = []
    try:
        for path in (child, *(p for p, _ in parents)):
            files.append(open_model(path))
        mats = _shared_matrices(files)
        if not mats:
            return Audit("inconclusive", 0.0, 0.0, "", 0, 0, "child and parent share no matrix to audit")
        params = sum(t.numel for t in logical_tensors(files[0]))
        coverage = sum(numel for _, _, numel in mats) / max(params, 1)
        if coverage < MIN_COVERAGE:
            why = (
                f"the matrices child and parent share hold {coverage:.0%} of the child's parameters "
                f"(at least {MIN_COVERAGE:.0%} needed); the rest is stored in shapes the parent lacks"
            )
            return Audit("inconclusive", 0.0, 0.0, "", len(mats), 0, why, coverage=coverage)
        scales = {name: names for name, names, _ in mats}
        found = _judge(
            mats,
            child_sha,
            [w for _, w in parents],
            relation,
            lambda i, name, flat: _values(files[i], name, scales[name][i], flat),
            coverage,
        )
    except WeightsError as e:
        return Audit("inconclusive", 0.0, 0.0, "", 0, 0, f"cannot read {e.path}: {e.reason}")
    finally:
        for wf in files:
            wf.close()
    if found.status != "contradicted" or len(parents) != 1:
        return found
    again = _aligned_audit(child, parents[0][0], child_sha, mats, relation, coverage)
    return again if again is not None and again.share >= found.share else found


def _judge(
    mats: Sequence[tuple[str, list[str | None], int]],
    child_sha: str,
    weights: Sequence[float],
    relation: str,
    read: Callable[[int, str, np.ndarray], np.ndarray],
    coverage: float,
    alignment: str = "",
) -> Audit:
    """The verdict from the entries ``read(file, matrix, flat indices)`` gives (file 0: the child)."""
    import numpy as np

    # Bonferroni over the matrices: the bound holds for all of them at once.
    alpha = FAILURE / len(mats)
    worst = (2.0, 2.0, "")
    total = 0
    for name, _, numel in mats:
        flat = coordinates(child_sha, name, numel)
        c = read(0, name, flat)
        ref = sum((w * read(i + 1, name, flat) for i, w in enumerate(weights)), np.zeros_like(c))
        ok = np.isfinite(c) & np.isfinite(ref)
        rms = float(np.sqrt(np.mean(ref[ok] ** 2))) if ok.any() else 0.0
        close = ok & (np.abs(c - ref) <= TOLERANCE * rms)
        if relation == "pruned":
            close |= ok & (c == 0)
        hits, n = int(close.sum()), len(flat)
        total += n
        share = hits / n if n == numel else lower_bound(hits, n, alpha)
        if (share, hits / n) < worst[:2]:
            worst = (share, hits / n, name)
    status: Status = "verified" if worst[0] >= MIN_SHARE else "contradicted"
    return Audit(
        status,
        worst[0],
        worst[1],
        worst[2],
        len(mats),
        total,
        parents=len(weights),
        coverage=coverage,
        alignment=alignment,
    )


def _aligned_audit(
    child: Path,
    parent: Path,
    child_sha: str,
    mats: Sequence[tuple[str, list[str | None], int]],
    relation: str,
    coverage: float,
) -> Audit | None:
    """The audit of ``child`` with its hidden units matched to ``parent``'s (both files read whole,
    once); None when the model shows no unit groups or the matching does not stand out."""
    import numpy as np

    from lakegen.attribution.symmetry import ALIGN_MARGIN
    from lakegen.fingerprint.align import load_float32, match, unit_groups

    try:
        c = load_float32(child)
        p = load_float32(parent)
    except (OSError, WeightsError):
        return None
    groups = [
        g
        for g in unit_groups({name: x.shape for name, x in c.items()})
        if all(name in p and p[name].shape == c[name].shape for name, _ in g.axes)
    ]
    if not groups:
        return None
    tensors, alignment = match(p, c, groups)
    if alignment.margin < ALIGN_MARGIN:
        return None
    files = (tensors, p)
    return _judge(
        mats,
        child_sha,
        [1.0],
        relation,
        lambda i, name, flat: files[i][name].reshape(-1)[flat].astype(np.float64),
        coverage,
        alignment.describe(),
    )


def _shared_matrices(files: Sequence[WeightFile]) -> list[tuple[str, list[str | None], int]]:
    """Matrices (name, each file's scale tensor, entries) present with one shape in every file."""
    logical = [{t.name: t for t in logical_tensors(wf)} for wf in files]
    out = []
    for name, t in sorted(logical[0].items()):
        if len(t.shape) < 2 or t.numel < MIN_ENTRIES or not _valued(t):
            continue
        others = [lt.get(name) for lt in logical[1:]]
        if any(o is None or o.shape != t.shape or not _valued(o) for o in others):
            continue
        out.append((name, [t.scale, *(o.scale for o in others if o is not None)], t.numel))
    return out


def _valued(t: Logical) -> bool:
    """Whether lakegen knows the tensor's values: floats, or integers with their scale. Integers
    without one (a format's own quantisation, such as bitsandbytes' ``SCB``) are codes, not values."""
    if t.dtype in DEQUANTIZED:  # a format's codes that lakegen reads back as values (nf4, q4_0, ...)
        return True
    return t.scale is not None or (t.dtype in PRECISION and t.dtype.startswith(("float", "bfloat")))


def _values(wf: WeightFile, name: str, scale: str | None, flat: np.ndarray) -> np.ndarray:
    import numpy as np

    info = wf.tensors[name]
    values = to_float32(wf.gather(name, flat), info.dtype).astype(np.float64)
    if scale is None:
        return values
    s = to_float32(wf.raw(scale), wf.tensors[scale].dtype).reshape(-1).astype(np.float64)
    if s.size == 1:
        return values * s[0]
    inner = info.numel // info.shape[0]
    return values * s[flat // inner]


def lower_bound(hits: int, n: int, alpha: float) -> float:
    """The smallest share ``p`` of entries within tolerance consistent with ``hits`` of ``n`` samples.

    Chernoff: for ``p < hits / n``, P(Binomial(n, p) ≥ hits) ≤ exp(-n · KL(hits/n ‖ p)); the bound is
    the ``p`` where that equals ``alpha``. Sampling without replacement only tightens it.
    """
    q = hits / n
    if q == 0:
        return 0.0
    target = math.log(1 / alpha) / n
    lo, hi = 0.0, q
    for _ in range(60):
        mid = (lo + hi) / 2
        if _kl(q, mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def _kl(q: float, p: float) -> float:
    if p <= 0:
        return math.inf
    if p >= 1:
        return 0.0 if q >= 1 else math.inf
    out = q * math.log(q / p) if q > 0 else 0.0
    return out + ((1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0)
