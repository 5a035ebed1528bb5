"""The compiled lake's data model: one serialisable product that the site, CLI search and exports read.

:mod:`lakegen.compile` fills a :class:`LakeIndex` by running the pipeline's stages; nothing
downstream re-derives lineage, results or findings: it reads them from here. This module
imports no stage.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    TypeAdapter,
    ValidationInfo,
)
from pydantic_core import to_json

from lakegen import fastjson
from lakegen.errors import Finding
from lakegen.version import __version__

Status = Literal["verified", "contradicted", "unchecked"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _pack(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bytes):
        return value
    held = info.context.get(_Held) if isinstance(info.context, dict) else None
    if isinstance(held, _Held) and type(value) is int and 0 <= value < len(held.rows):
        held.used += 1
        return held.rows[value]  # cut from lake.json as it was written (:func:`index_from_json`)
    # inf and nan kept as JSON's constants, so that the dict read back is the one packed
    return to_json(value, inf_nan_mode="constants")


@dataclass
class _Held:
    """The manifests :func:`index_json` copies as they are, each dumped as ``marker`` and its number
    (and :func:`index_from_json` reads as they are, each validated as its number)."""

    marker: str
    rows: list[bytes]
    used: int = 0


def _unpack(packed: bytes, info: SerializationInfo) -> Any:
    held = info.context.get(_Held) if isinstance(info.context, dict) else None
    # inf and nan are JSON's constants in the bytes but null in a dump of the dict: those decoded
    if not isinstance(held, _Held) or b"Infinity" in packed or b"NaN" in packed:
        return json.loads(packed)
    held.rows.append(packed)
    return f"{held.marker}{len(held.rows) - 1}"


Packed = Annotated[
    bytes,
    BeforeValidator(_pack),
    PlainSerializer(_unpack, return_type=Any),
]
"""A manifest as compact JSON: serialised (and compared) as the dict it encodes."""


@functools.lru_cache(maxsize=512)
def _unpacked(packed: bytes) -> dict[str, Any]:
    # Kept for the last few manifests read: a page or an export reads its entry's manifest a dozen
    # times (30 us a read at 10,000 models' size); keyed by the bytes, so never stale.
    result: dict[str, Any] = fastjson.loads(packed)
    return result


class IndexEntry(_Row):
    """One manifest: where it is and what it says (the manifest as JSON).

    The manifest is held as compact JSON bytes, read into a dict when :attr:`manifest` is: as
    dicts, the manifests were most of a 10,000-model index's memory (80 of 140 MB), alive through
    the whole compile and site build. In ``lake.json`` and every dump it is the dict, as before.
    """

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    kind: Literal["model", "dataset", "code"]
    path: str
    latest_version: str | None = None
    documentation: float | None = Field(None, description="Documentation completeness, 0 to 1 (models).")
    parameters: int | None = Field(None, description="Parameter count of the latest version (weights).")
    packed: Packed = Field(alias="manifest", repr=False)

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as JSON. Shared with other readers of the same manifest: never change it,
        assign a new one."""
        return _unpacked(self.packed)

    @manifest.setter
    def manifest(self, value: dict[str, Any]) -> None:
        self.packed = to_json(value, inf_nan_mode="constants")


class Edge(_Row):
    """A lineage edge parent -> child, declared, recovered from weights, or both: the one edge type of
    every stage and output. Attribution makes them from fingerprints alone (``declared`` False,
    ``confidence`` set); the lineage stage compares them with the manifests."""

    parent: str
    child: str
    relation: str
    declared: bool = Field(False, description="The child's manifest declares it.")
    status: Literal["verified", "contradicted", "unchecked", "undeclared"] = Field(
        "undeclared",
        description="verified: weights agree; contradicted: weights disagree; "
        "unchecked: not compared (e.g. a base outside the lake); "
        "undeclared: weights show it, manifest does not.",
    )
    weights_relation: str | None = Field(None, description="The relation the weights show, when compared.")
    confidence: float | None = None
    weight: float | None = Field(None, description="Estimated mixing weight, for merges.")
    proof: str | None = Field(
        None,
        description="What the audit at coordinates drawn from the child's sha256 showed, or why the "
        "edge could not be checked.",
    )


class Result(_Row):
    """A re-run of a declared evaluation, compared with the claimed number."""

    model: str
    version: str
    dataset: str
    split: str
    metric: str
    claimed: float
    tolerance: float
    reproduced: float | None = None
    status: Literal["verified", "contradicted", "unreproducible", "failed"]
    detail: str = ""
    ran_at: str | None = None
    device: str | None = None
    duration_s: float | None = None
    environment: dict[str, str] = {}
    cache_key: str | None = None


class FieldChange(_Row):
    field: str
    old: Any = None
    new: Any = None


class Change(_Row):
    """One commit's change to one entry's manifest."""

    entry: str
    commit: str
    author: str
    email: str = ""
    date: str
    subject: str = ""
    pr: int | None = Field(None, description="Only from a commit GitHub made (its merge or squash button).")
    path: str
    action: Literal["added", "modified", "renamed", "deleted"]
    changes: list[FieldChange] = []
    committer: str = ""
    committer_email: str = ""
    committer_date: str = ""
    signature: str = Field("N", description="git's %G?: G good, B bad, U untrusted, E unchecked, N none.")
    in_merge: bool = Field(False, description="Made by the merge commit itself (against its first parent).")
    dates_disagree: bool = Field(False, description="The author date is later than the commit date.")


class ArtifactCheck(_Row):
    entry: str
    version: str
    status: Status
    signature: Literal["verified", "contradicted", "untrusted", "invalid"] | None = Field(
        None,
        description="The model-signing bundle beside the artifact, if any (lakegen.artifacts.signatures).",
    )
    signer: str = Field("", description="The trusted key's holder, or the signing certificate's subject.")


class CompiledFrom(_Row):
    """What an index was compiled from (see :mod:`lakegen.compile.inputs`), to tell when it is out of date."""

    digest: str = Field("", description="sha256 of lakegen's version, git HEAD and every file read.")
    folders: list[str] = Field(default_factory=list, description="Folders read whole, from the lake root.")
    files: list[str] = Field(default_factory=list, description="Single files read outside those folders.")
    options: dict[str, bool] = Field(
        default_factory=dict, description="How it was compiled (whether artifacts were verified)."
    )


class MetricInfo(_Row):
    """A metric lakegen can compute, as its registry describes it (see :mod:`lakegen.bench.metrics`)."""

    name: str
    version: str
    description: str = ""
    higher_is_better: bool = True


class LakeIndex(_Row):
    """Everything the builder knows about a lake."""

    format: int = 1
    generated_at: str
    lakegen_version: str = __version__
    entries: list[IndexEntry] = []
    edges: list[Edge] = []
    findings: list[Finding] = []
    results: list[Result] = []
    history: list[Change] = []
    artifacts: list[ArtifactCheck] = []
    metrics: dict[str, MetricInfo] = Field(default_factory=dict, description="Metrics lakegen computes.")
    stages: dict[str, str] = Field(default_factory=dict, description="Stage name -> ran / skipped (why).")
    inputs: CompiledFrom = Field(default_factory=lambda: CompiledFrom())

    def entry(self, entry_id: str) -> IndexEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def higher_is_better(self, metric: str) -> bool | None:
        """The direction ``metric`` ranks in; None for a metric lakegen does not compute."""
        info = self.metrics.get(metric)
        return info.higher_is_better if info is not None else None


_AS_JSON = TypeAdapter(LakeIndex)


def index_json(index: LakeIndex) -> bytes:
    """``index`` as pydantic dumps it (``TypeAdapter(LakeIndex).dump_json``), the same bytes, with
    each manifest copied as the compact JSON it is held in rather than decoded and dumped again
    (that was four fifths of a 10,000-model dump)."""
    return b"".join(index_pieces(index))


def index_pieces(index: LakeIndex) -> list[bytes | memoryview]:
    """:func:`index_json`'s bytes as the pieces they are joined from, to be written one after
    another: at 100,000 models the dump is 280 MB, and its copies (split, then joined) were the
    peak of a cold compile's end."""
    held = _Held(f"\0{secrets.token_hex(8)}:", [])
    out = _AS_JSON.dump_json(index, context={_Held: held})
    # the marker as JSON writes it; a random one, so no other string of the index is one
    marker = to_json(held.marker)[:-1]
    view = memoryview(out)
    pieces: list[bytes | memoryview] = []
    at = 0
    for i, row in enumerate(held.rows):
        found = out.find(marker, at)
        end = out.find(b'"', found + len(marker)) if found >= 0 else -1
        if end < 0 or out[found + len(marker) : end] != str(i).encode():
            return [_AS_JSON.dump_json(index)]
        pieces += (view[at:found], row)
        at = end + 1
    if out.find(marker, at) >= 0:
        return [_AS_JSON.dump_json(index)]
    pieces.append(view[at:])
    return pieces


def manifest_spans(pieces: list[bytes | memoryview]) -> list[int]:
    """Where :func:`index_pieces`' manifests lie in the bytes they are joined into: the start and end
    of each, one after another."""
    spans, at = [], 0
    for i, piece in enumerate(pieces):
        if i % 2:  # the pieces alternate: the dump's bytes, a manifest, the dump's bytes, ...
            spans += [at, at + len(piece)]
        at += len(piece)
    return spans


def index_from_json(data: bytes, spans: list[int] | None = None) -> LakeIndex:
    """The index in ``data`` (``lake.json``), with ``spans`` (:func:`manifest_spans` of its pieces,
    as its writer recorded them) each manifest taken as the bytes it was written as rather than
    parsed into a dict and dumped again (half the time of validating 100,000 models' index). Spans
    that are not of ``data`` (not manifests after their key) are not used."""
    if not spans or len(spans) % 2 or not _spans_fit(data, spans):
        return LakeIndex.model_validate_json(data)
    view, rows, at = memoryview(data), [], 0
    stub: list[bytes | memoryview] = []
    for n, i in enumerate(range(0, len(spans), 2)):
        start, end = spans[i], spans[i + 1]
        rows.append(data[start:end])
        stub += (view[at:start], str(n).encode())
        at = end
    stub.append(view[at:])
    held = _Held("", rows)
    index = LakeIndex.model_validate_json(b"".join(stub), context={_Held: held})
    if held.used != len(rows):  # a number stood where no manifest was: the spans were of another file
        return LakeIndex.model_validate_json(data)
    return index


_KEY = b'"manifest":'


def _spans_fit(data: bytes, spans: list[int]) -> bool:
    at = 0
    for i in range(0, len(spans), 2):
        start, end = spans[i], spans[i + 1]
        if not at <= start - len(_KEY) or end > len(data) or end - start < 2:
            return False
        if data[start - len(_KEY) : start] != _KEY or data[start] != 0x7B or data[end - 1] != 0x7D:
            return False
        at = end
    return True


@dataclass
class Evaluation:
    """One evaluation of a model: what it claims and, when re-run, what was reproduced. A claim no
    result covers yet is ``unchecked``: nothing downstream counts it as evidence."""

    model: str
    version: str | None
    dataset: str
    split: str
    metric: str
    claimed: float
    tolerance: float | None
    reproduced: float | None
    status: str
    detail: str = ""

    @classmethod
    def of(cls, r: Result) -> Evaluation:
        return cls(
            r.model,
            r.version,
            r.dataset,
            r.split,
            r.metric,
            r.claimed,
            r.tolerance,
            r.reproduced,
            r.status,
            r.detail,
        )

    @property
    def value(self) -> float:
        return self.reproduced if self.reproduced is not None else self.claimed

    @property
    def delta(self) -> float | None:
        return None if self.reproduced is None else self.reproduced - self.claimed


def evaluations(entry: IndexEntry, results: list[Result]) -> list[Evaluation]:
    """An entry's results from the bench stage, plus the claims of its manifest no result covers yet
    (``unchecked``, "not re-run yet"): the one place that rule is computed."""
    rows = [Evaluation.of(r) for r in results]
    seen = {(r.dataset, r.split, r.metric) for r in rows}
    for ev in dicts(entry.manifest.get("evaluations")):
        key = (str(ev.get("dataset")), str(ev.get("split")), str(ev.get("metric")))
        value = ev.get("value")
        if key in seen or not isinstance(value, int | float):
            continue
        tolerance = ev.get("tolerance")
        version = ev.get("version") or entry.latest_version
        rows.append(
            Evaluation(
                entry.id,
                version,
                *key,
                float(value),
                float(tolerance) if isinstance(tolerance, int | float) else None,
                None,
                "unchecked",
                "not re-run yet",
            )
        )
    return rows


def dicts(value: object) -> list[dict[str, Any]]:
    """The mappings of a manifest list field as JSON (anything else in it, or a non-list, ignored)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
