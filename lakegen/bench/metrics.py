"""Metrics: how a model is scored on one split of a dataset.

Every metric, built-in or custom, has the shape of :class:`Metric`: it gets a
:class:`Predictor` (the network, batched, on its device), the split's arrays
and the evaluation's ``config``, and returns one number. Built-ins are
registered in :data:`REGISTRY` through :meth:`Registry.register`, the same call
the runner uses for a custom metric or evaluator that a code entry provides.

Scores are computed in numpy; only :class:`Predictor` touches torch, so this
module imports without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from lakegen.model.index import MetricInfo

Arrays = Mapping[str, np.ndarray]


class Predictor(Protocol):
    """The network under evaluation: numpy in, numpy out, in batches, without gradients."""

    module: Any
    device: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class Metric(Protocol):
    """Score ``model`` on ``data`` (a split's arrays: ``x``, ``y``, ...) with the evaluation's ``config``."""

    def __call__(self, model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float: ...


@dataclass(frozen=True)
class Registered:
    name: str
    metric: Metric
    version: str
    description: str = ""
    higher_is_better: bool = True  # the direction a leaderboard ranks in


class Registry:
    """Metric name -> implementation; a result cached under one version is not reused under another."""

    def __init__(self) -> None:
        self._items: dict[str, Registered] = {}

    def register(
        self,
        name: str,
        metric: Metric,
        *,
        version: str = "1",
        description: str = "",
        higher_is_better: bool = True,
    ) -> None:
        self._items[name] = Registered(name, metric, version, description, higher_is_better)

    def get(self, name: str) -> Registered:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"no metric '{name}' (built-in: {', '.join(self.names())})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Registered]:
        return iter(self._items.values())

    def describe(self) -> dict[str, MetricInfo]:
        """Every metric as the lake index records it: name, version, description, direction."""
        return {
            m.name: MetricInfo(
                name=m.name, version=m.version, description=m.description, higher_is_better=m.higher_is_better
            )
            for m in self
        }

    def names(self) -> list[str]:
        return sorted(self._items)

    def copy(self) -> Registry:
        other = Registry()
        other._items = dict(self._items)
        return other


REGISTRY = Registry()


def builtin(
    name: str, description: str, version: str = "1", *, higher_is_better: bool = True
) -> Callable[[Metric], Metric]:
    """Register a built-in metric in :data:`REGISTRY`."""

    def register(metric: Metric) -> Metric:
        REGISTRY.register(
            name, metric, version=version, description=description, higher_is_better=higher_is_better
        )
        return metric

    return register


def split_array(data: Arrays, key: str) -> np.ndarray:
    if key not in data:
        raise KeyError(f"the split has no array '{key}' (it has {', '.join(sorted(data)) or 'none'})")
    return np.asarray(data[key])


def _predicted_classes(out: np.ndarray, threshold: float) -> np.ndarray:
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out.reshape(len(out)) > threshold).astype(np.int64)


def _labels(data: Arrays) -> np.ndarray:
    return split_array(data, "y").reshape(-1).astype(np.int64)


@builtin("accuracy", "Share of rows whose arg-max class equals y (one output: logit above threshold, 0).")
def accuracy(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    pred = _predicted_classes(model(split_array(data, "x")), float(config.get("threshold", 0.0)))
    return float(np.mean(pred == _labels(data)))


@builtin("top-k-accuracy", "Share of rows whose true class is among the k highest outputs (config k, 5).")
def top_k_accuracy(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    out = model(split_array(data, "x"))
    k = int(config.get("k", 5))
    if out.ndim != 2 or not 1 <= k <= out.shape[1]:
        raise ValueError(f"top-k accuracy needs k between 1 and the class count; k={k}, outputs {out.shape}")
    top = np.argsort(-out, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == _labels(data)[:, None]).any(axis=1)))


def f1_macro(y: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes in y or pred (0 where a class has no hits)."""
    scores = []
    for c in np.union1d(y, pred):
        tp = np.sum((pred == c) & (y == c))
        denominator = np.sum(pred == c) + np.sum(y == c)
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


@builtin("macro-f1", "Unweighted mean of per-class F1 over the classes seen in y or predictions.")
def macro_f1(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    pred = _predicted_classes(model(split_array(data, "x")), float(config.get("threshold", 0.0)))
    return f1_macro(_labels(data), pred)


def _regression(model: Predictor, data: Arrays) -> np.ndarray:
    y = split_array(data, "y").astype(np.float64)
    out = model(split_array(data, "x")).astype(np.float64)
    if out.size != y.size:
        raise ValueError(f"outputs {out.shape} do not match targets {y.shape}")
    return out.reshape(y.shape) - y


@builtin("mse", "Mean squared error between outputs and y.", higher_is_better=False)
def mse(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    return float(np.mean(_regression(model, data) ** 2))


@builtin("mae", "Mean absolute error between outputs and y.", higher_is_better=False)
def mae(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    return float(np.mean(np.abs(_regression(model, data))))


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.reshape(len(rows), -1).astype(np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def recall_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out retrieval: share of rows with a same-label row among their k nearest (cosine)."""
    if not 1 <= k < len(labels):
        raise ValueError(f"recall@k needs 1 <= k < rows; k={k}, rows={len(labels)}")
    unit = _unit(embeddings)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return float(np.mean((labels[nearest] == labels[:, None]).any(axis=1)))


@builtin("recall-at-k", "Embeddings: leave-one-out recall@k by cosine similarity, y as labels (k, 1).")
def recall_at_k_metric(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    return recall_at_k(model(split_array(data, "x")), _labels(data), int(config.get("k", 1)))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; ties get their average rank."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    if denominator == 0:
        raise ValueError("Spearman correlation is undefined when one side is constant")
    return float((ra * rb).sum() / denominator)


@builtin(
    "spearman",
    "Embeddings: rank correlation of cosine(model(xa), model(xb)) with y; without pairs, of outputs with y.",
)
def spearman_metric(model: Predictor, data: Arrays, config: Mapping[str, Any]) -> float:
    y = split_array(data, "y").astype(np.float64)
    if "xa" in data and "xb" in data:
        scores = (_unit(model(split_array(data, "xa"))) * _unit(model(split_array(data, "xb")))).sum(axis=1)
    else:
        scores = model(split_array(data, "x")).astype(np.float64)
    if scores.size != y.size:
        raise ValueError(f"scores {scores.shape} do not match targets {y.shape}")
    return spearman(scores, y)
