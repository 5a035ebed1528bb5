"""Search the compiled lake: full text plus facets, ranked.

The site's search (Pagefind filters) and ``lakegen search`` share
:func:`entry_facets`, so a facet means the same thing in both. Everything here
reads the :class:`~lakegen.model.index.LakeIndex`; nothing is recomputed.
"""

from __future__ import annotations

import math
import operator
import re
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lakegen.errors import did_you_mean
from lakegen.model.index import Edge, Evaluation, IndexEntry, LakeIndex, Result, evaluations
from lakegen.model.manifest import KINDS, Relation

FACETS = ("kind", "task", "license", "framework", "owner", "relation", "lineage", "evaluation")
FACET_LABELS = {
    "kind": "kind",
    "task": "task",
    "license": "licence",
    "framework": "framework",
    "owner": "owner",
    "relation": "relation",
    "lineage": "lineage status",
    "evaluation": "evaluation status",
    "params": "parameters",
}
PARAM_BUCKETS = ((1e4, "<10K"), (1e5, "10K–100K"), (1e6, "100K–1M"), (1e7, "1M–10M"), (1e8, "10M–100M"))
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
_WHERE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(>=|<=|!=|==|=|>|<)\s*([-+0-9.eE]+)\s*$")
# values a facet can take whether or not an entry has one now: filtering by them is never a typo
VOCABULARY: dict[str, list[str]] = {
    "kind": list(KINDS),
    "relation": [r.value for r in Relation],
    "lineage": list(typing.get_args(Edge.model_fields["status"].annotation)),
    "evaluation": [*typing.get_args(Result.model_fields["status"].annotation), "unchecked"],
    "params": [label for _, label in PARAM_BUCKETS] + ["≥100M"],
}
_TOKEN = re.compile(r"[\w.@/-]+")
# Field weights for ranking: a hit in the id or name counts more than one in the description.
WEIGHTS = (("id", 8.0), ("name", 6.0), ("tags", 4.0), ("task", 3.0), ("owners", 2.0), ("text", 1.0))


@dataclass(frozen=True)
class Score:
    """One number an entry is known by: (dataset, split, metric) and its best-known value."""

    dataset: str
    split: str
    metric: str
    value: float
    reproduced: bool


@dataclass
class EntryFacets:
    """What an entry can be filtered by, on the site and on the command line."""

    kind: str
    task: str | None = None
    license: str | None = None
    framework: str | None = None
    owner: list[str] = field(default_factory=list)
    relation: list[str] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)
    evaluation: list[str] = field(default_factory=list)
    params: int | None = None
    scores: list[Score] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        """The values of facet ``name`` as a list of strings (empty when the entry has none)."""
        value = getattr(self, name)
        if value is None:
            return []
        return list(value) if isinstance(value, list) else [str(value)]

    def params_bucket(self) -> str | None:
        if self.params is None:
            return None
        return params_bucket(self.params)

    def metric_buckets(self) -> dict[str, list[str]]:
        """metric -> the ranges its values fall in, for range filters on the site."""
        out: dict[str, set[str]] = defaultdict(set)
        for s in self.scores:
            out[s.metric].add(value_bucket(s.value))
        return {k: sorted(v) for k, v in sorted(out.items())}


def params_bucket(count: int) -> str:
    for limit, label in PARAM_BUCKETS:
        if count < limit:
            return label
    return "≥100M"


def value_bucket(value: float) -> str:
    """A range label for a metric value: tenths inside [0, 1], powers of ten outside."""
    if 0 <= value <= 1:
        low = min(math.floor(value * 10), 9) / 10
        return f"{low:.1f}–{low + 0.1:.1f}"
    if value == 0 or not math.isfinite(value):
        return str(value)
    exp = math.floor(math.log10(abs(value)))
    sign = "-" if value < 0 else ""
    return f"{sign}1e{exp}–{sign}1e{exp + 1}"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def entry_facets(index: LakeIndex) -> dict[str, EntryFacets]:
    """The facets of every entry of ``index``, keyed by id."""
    incoming: dict[str, list[Any]] = defaultdict(list)
    for edge in index.edges:
        incoming[edge.child].append(edge)
    results: dict[str, list[Any]] = defaultdict(list)
    for result in index.results:
        results[result.model].append(result)
    return {
        e.id: facets_of(e, e.manifest, incoming.get(e.id, []), evaluations(e, results.get(e.id, [])))
        for e in index.entries
    }


def facets_of(entry: IndexEntry, m: dict[str, Any], edges: list[Edge], rows: list[Evaluation]) -> EntryFacets:
    """The facets of one entry, of manifest ``m``, with the lineage ``edges`` into it and its
    evaluation ``rows`` (:func:`~lakegen.model.index.evaluations`)."""
    owners = [o for o in m.get("owners", []) if isinstance(o, str)]
    facets = EntryFacets(
        kind=entry.kind,
        task=_str(m.get("task")),
        license=_str(m.get("license")),
        framework=_str(m.get("framework")),
        owner=owners,
        params=entry.parameters,
    )
    facets.relation = sorted({e.relation for e in edges})
    facets.lineage = sorted({e.status for e in edges})
    facets.evaluation = sorted({r.status for r in rows})
    facets.scores = [Score(r.dataset, r.split, r.metric, r.value, r.reproduced is not None) for r in rows]
    return facets


class QueryError(ValueError):
    """A search that cannot mean what was asked: a condition that does not parse, or a facet value
    or metric no entry has (most likely a typo), with the nearest known one."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems  # (facet, or "where"; the value given; what is wrong with it)
        super().__init__("; ".join(f"{given}: {why}" for _, given, why in problems))


@dataclass(frozen=True)
class Where:
    """A numeric condition: ``params>=1e6``, ``accuracy>=0.9``, ``digits/test/accuracy>0.95``."""

    name: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Where:
        match = _WHERE.match(text)
        if not match:
            raise QueryError([("where", text, "cannot read it; write NAME OP NUMBER, e.g. 'accuracy>=0.9'")])
        name, op, number = match.groups()
        try:
            return cls(name, op, float(number))
        except ValueError:
            raise QueryError([("where", text, f"{number!r} is not a number")]) from None

    def scopes(self, facets: EntryFacets) -> list[str]:
        """The names this condition could use for ``facets``' scores: as many parts as it has."""
        if self.name in ("params", "parameters"):
            return [self.name] if facets.params is not None else []
        n = len(self.name.split("/"))
        return ["/".join([s.dataset, s.split, s.metric][-n:]) for s in facets.scores] if n <= 3 else []

    def matches(self, facets: EntryFacets) -> bool:
        test = _OPS[self.op]
        if self.name in ("params", "parameters"):
            return facets.params is not None and test(facets.params, self.value)
        parts = self.name.split("/")
        for s in facets.scores:
            scope = [s.dataset, s.split, s.metric][-len(parts) :] if len(parts) <= 3 else []
            if scope == parts and test(s.value, self.value):
                return True
        return False


@dataclass
class Hit:
    id: str
    kind: str
    name: str
    score: float
    path: str
    facets: EntryFacets

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["facets"] = {k: v for k, v in data["facets"].items() if v not in (None, [])}
        return data


def search(
    index: LakeIndex,
    text: str = "",
    *,
    filters: dict[str, Iterable[str]] | None = None,
    where: Iterable[Where | str] = (),
    limit: int | None = None,
    facets: dict[str, EntryFacets] | None = None,
) -> list[Hit]:
    """Entries matching every word of ``text``, every facet filter and every ``where`` condition.

    ``filters`` maps a facet name (see :data:`FACETS`, plus ``params`` for a
    range label) to accepted values; an entry passes when it has any of them
    (case-insensitive). Hits are ranked by where the words occur.
    """
    facets = facets if facets is not None else entry_facets(index)
    conditions = [w if isinstance(w, Where) else Where.parse(w) for w in where]
    wanted = {k: {v.lower() for v in vs} for k, vs in (filters or {}).items() if vs}
    for name in wanted:
        if name not in (*FACETS, "params"):
            raise QueryError([("facet", name, f"unknown facet (one of {', '.join(FACETS)}, params)")])
    words = [w.lower() for w in _TOKEN.findall(text)]
    hits = []
    for entry in index.entries:
        f = facets[entry.id]
        if not all(_has(f, name, values) for name, values in wanted.items()):
            continue
        if not all(c.matches(f) for c in conditions):
            continue
        score = _rank(entry, words)
        if score is None:
            continue
        title = entry.manifest.get("name")
        hits.append(
            Hit(entry.id, entry.kind, title if isinstance(title, str) else entry.id, score, entry.path, f)
        )
    hits.sort(key=lambda h: (-h.score, h.kind, h.id))
    return hits[:limit] if limit else hits


def check_query(
    facets: dict[str, EntryFacets], filters: dict[str, Iterable[str]], where: Iterable[Where | str] = ()
) -> list[Where]:
    """The ``where`` conditions parsed, once sure every filter value and condition name means something.

    A value no entry has and :data:`VOCABULARY` does not know, or a condition on a
    metric no entry has a score for, matches nothing whatever else is asked: that
    is a typo, not an empty answer. Raises :class:`QueryError` naming the nearest
    known value (or, failing one, the known values).
    """
    problems: list[tuple[str, str, str]] = []
    conditions: list[tuple[str, Where]] = []
    for w in where:
        try:
            conditions.append((str(w), w) if isinstance(w, Where) else (w, Where.parse(w)))
        except QueryError as e:
            problems += e.problems
    for name, values in filters.items():
        known = sorted({v for f in facets.values() for v in f.values(name)} | set(VOCABULARY.get(name, [])))
        folded = {_fold(name, k) for k in known}
        for value in values or []:
            if _fold(name, value) not in folded:
                label = FACET_LABELS.get(name, name)
                problems.append((name, value, f"no entry has {label} {value!r}{did_you_mean(value, known)}"))
    for text, c in conditions:
        names = sorted({n for f in facets.values() for n in c.scopes(f)})
        if c.name not in names:
            what = "a parameter count" if c.name in ("params", "parameters") else f"a score named {c.name!r}"
            problems.append(("where", text, f"no entry has {what}{did_you_mean(c.name, names)}"))
    if problems:
        raise QueryError(problems)
    return [c for _, c in conditions]


def _fold(facet: str, value: str) -> str:
    """A value as filters compare it: case-insensitive, a typed hyphen in a range as its en dash."""
    value = value.lower()
    return value.replace("-", "–") if facet == "params" else value


def _has(facets: EntryFacets, name: str, values: set[str]) -> bool:
    if name == "params":  # the site's labels use an en dash; a typed hyphen means the same
        bucket = facets.params_bucket()
        return bucket is not None and bucket.lower() in {v.replace("-", "–") for v in values}
    return any(v.lower() in values for v in facets.values(name))


def _fields(entry: IndexEntry) -> dict[str, str]:
    m = entry.manifest
    text = " ".join(
        str(m.get(k, "")) for k in ("description", "intended_use", "limitations", "framework", "license")
    )
    return {
        "id": entry.id.lower(),
        "name": str(m.get("name", "")).lower(),
        "tags": " ".join(str(t) for t in m.get("tags", []) or []).lower(),
        "task": str(m.get("task", "")).lower(),
        "owners": " ".join(str(o) for o in m.get("owners", []) or []).lower(),
        "text": text.lower(),
    }


def _rank(entry: IndexEntry, words: list[str]) -> float | None:
    """The score of ``entry`` for ``words``, or None when a word is found nowhere."""
    if not words:
        return 0.0
    fields = _fields(entry)
    total = 0.0
    for word in words:
        best = 0.0
        for name, weight in WEIGHTS:
            value = fields[name]
            if word not in value:
                continue
            # A whole-word hit counts double a hit inside a longer word.
            whole = re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", value) is not None
            best = max(best, weight * (2 if whole else 1))
        if best == 0:
            return None
        total += best
    if " ".join(words) == fields["id"]:
        total += 20
    return total
