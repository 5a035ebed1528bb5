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

One module per step: :mod:`~lakegen.attribution.views` (pairwise statistics),
:mod:`~lakegen.attribution.copies`, :mod:`~lakegen.attribution.merges`,
:mod:`~lakegen.attribution.families`, :mod:`~lakegen.attribution.trees`,
:mod:`~lakegen.attribution.distances`, :mod:`~lakegen.attribution.roots` (root choice,
edge confidence), :mod:`~lakegen.attribution.adapters`, and
:mod:`~lakegen.attribution.nearest` (one new model against many);
:mod:`~lakegen.attribution.recover` runs them in order.
"""

from lakegen.attribution.copies import Copy, copy_confidence, copy_test, same_weights
from lakegen.attribution.distances import bulk_distance, lineage_distance, spectral_distance
from lakegen.attribution.edges import UNDECIDED, Edge, Lineage, undirected
from lakegen.attribution.families import families_by_signature
from lakegen.attribution.merges import Merge, merge_test
from lakegen.attribution.nearest import Match, closest, rank_signatures
from lakegen.attribution.recover import attribute
from lakegen.attribution.roots import placement_confidence
from lakegen.attribution.views import Pair, View, compare, pairwise

__all__ = [
    "UNDECIDED",
    "Copy",
    "Edge",
    "Lineage",
    "Match",
    "Merge",
    "Pair",
    "View",
    "attribute",
    "bulk_distance",
    "closest",
    "compare",
    "copy_confidence",
    "copy_test",
    "families_by_signature",
    "lineage_distance",
    "merge_test",
    "pairwise",
    "placement_confidence",
    "rank_signatures",
    "same_weights",
    "spectral_distance",
    "undirected",
]
