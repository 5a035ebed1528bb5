"""The schema of lake entries: models, datasets and code (pydantic v2, no I/O).

Every model forbids unknown fields, so a typo is an error rather than a field
silently ignored. Strings refuse control characters and bidirectional
overrides, which could make a manifest read differently from what it says.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
# The Hugging Face Hub: a model's or dataset's ``links`` naming a repo here tie it to that Hub repo.
HUB = "https://huggingface.co"


def slug(text: str) -> str:
    """A lowercase slug of ``text`` (may be empty): how a Hub name becomes a lake id."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", text.lower())).strip("-._")[:64].strip("-._")


SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# A catalog id, or an entry outside the lake: hf:org/name, or url:https://...
EXTERNAL_PATTERN = r"^(hf:[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?|url:https?://\S+)$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_LINE_BAD = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_TEXT_BAD = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def _clean(bad: re.Pattern[str]) -> AfterValidator:
    def check(value: str) -> str:
        found = bad.search(value)
        if found:
            raise ValueError(
                f"contains the invisible or control character U+{ord(found.group()):04X}; remove it"
            )
        return value

    return AfterValidator(check)


Line = Annotated[str, StringConstraints(min_length=1, max_length=200), _clean(_LINE_BAD)]
Text = Annotated[str, StringConstraints(max_length=20_000), _clean(_TEXT_BAD)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
SemVer = Annotated[str, StringConstraints(pattern=SEMVER_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2000)]
Entrypoint = Annotated[str, StringConstraints(pattern=ENTRYPOINT_PATTERN)]
Ref = Annotated[str, StringConstraints(pattern=f"{SLUG_PATTERN}|{EXTERNAL_PATTERN}")]
Owner = Annotated[
    str, StringConstraints(pattern=r"^@?[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?$", max_length=100)
]


def is_external(ref: str) -> bool:
    """True for references to things outside the lake (``hf:...``, ``url:...``)."""
    return ref.startswith(("hf:", "url:"))


@lru_cache(maxsize=4096)
def spdx_problem(expression: str) -> str | None:
    """Why ``expression`` is not a valid SPDX licence expression, or None when it is."""
    info = _licensing().validate(expression, strict=True)
    if info.errors:
        return "; ".join(info.errors)
    if info.normalized_expression != expression:
        return f"write it as '{info.normalized_expression}'"
    return None


@lru_cache(maxsize=1)
def _licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key following semver precedence (pre-releases sort before the release)."""
    match = re.match(SEMVER_PATTERN, version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre, _build = match.groups()
    pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
    return int(major), int(minor), int(patch), 0 if pre else 1, pre_key


class Relation(StrEnum):
    """How a model was derived from a base model."""

    finetune = "finetune"
    adapter = "adapter"
    quantized = "quantized"
    merge = "merge"
    pruned = "pruned"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class Link(Strict):
    title: Line
    url: HttpUrl


class CompanionFile(Strict):
    """A file that travels with an artifact, pinned like the artifact itself."""

    path: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", max_length=500)
    ] = Field(description="Relative to the artifact's folder, e.g. adapter_config.json.")
    sha256: Sha256
    size: int = Field(ge=0)


class Artifact(Strict):
    """A file the entry ships: where it is, and what it must hash to."""

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="A path relative to the manifest, or an https/http/s3/gs/hf URI."
    )
    sha256: Sha256
    size: int = Field(ge=0, description="Size in bytes.")
    format: Literal["safetensors", "pytorch", "npz", "parquet", "csv", "jsonl", "onnx", "gguf"]
    files: list[CompanionFile] = Field(
        default_factory=list,
        description="Files that belong with the artifact (an adapter's adapter_config.json, further "
        "shards); each is verified like the artifact.",
    )


class Version(Strict):
    version: SemVer
    released: dt.date
    changelog: Text = ""
    artifact: Artifact
    yanked: Line | None = Field(
        None,
        description="Why this release was withdrawn. A yanked release stays in the manifest, so its "
        "id@version is never reused; its artifact may then be deleted, and it is not attributed or "
        "benchmarked.",
    )


class EntryBase(Strict):
    """Fields every entry has."""

    id: Slug = Field(description="Unique in the lake; equal to the file name without .yaml.")
    name: Line
    description: Text = Field(description="Markdown.")
    owners: list[Owner] = Field(min_length=1, description="People (@handle) or teams (org/team).")
    license: Annotated[str, StringConstraints(min_length=1, max_length=300)] = Field(
        description="An SPDX licence expression, or 'other' with license_url."
    )
    license_url: HttpUrl | None = None
    tags: list[Slug] = []
    links: list[Link] = []
    deprecated: bool = False

    @field_validator("license")
    @classmethod
    def _spdx(cls, value: str) -> str:
        problem = None if value == "other" else spdx_problem(value)
        if problem:
            raise ValueError(f"'{value}' is not an SPDX licence expression: {problem}")
        return value

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each tag may appear once")
        return value

    @model_validator(mode="after")
    def _license_url(self) -> EntryBase:
        if self.license == "other" and not self.license_url:
            raise ValueError("license 'other' needs a license_url")
        return self


def _unique_versions(versions: list[Version]) -> None:
    seen = [v.version for v in versions]
    dupes = sorted({v for v in seen if seen.count(v) > 1})
    if dupes:
        raise ValueError(f"versions: version {dupes[0]} appears more than once")


class Architecture(Strict):
    """Which network this is, and how to build it."""

    family: Slug = Field(description="Architecture family shared by related models, e.g. digits-mlp.")
    code: Slug | None = Field(None, description="The code entry that builds the network.")
    entrypoint: Entrypoint | None = Field(None, description="module:function that returns the network.")
    config: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for entrypoint.")

    @model_validator(mode="after")
    def _both(self) -> Architecture:
        if (self.code is None) != (self.entrypoint is None):
            raise ValueError("code: give both code and entrypoint, or neither")
        return self


class BaseModelRef(Strict):
    id: Ref
    version: SemVer | None = None
    relation: Relation
    weight: float | None = Field(None, gt=0, le=1, description="Mixing weight, for merges.")
    allow_deprecated: Line | None = Field(
        None, description="Why a deprecated base is used on purpose (overrides the deprecated-base policy)."
    )


class DatasetUse(Strict):
    id: Ref
    version: SemVer | None = None
    role: Literal["train", "finetune", "eval"]
    allow_deprecated: Line | None = Field(
        None,
        description="Why a deprecated dataset is used on purpose (overrides the deprecated-base policy).",
    )


class CodeUse(Strict):
    id: Slug
    role: Literal["train", "eval", "build", "other"]


class Evaluation(Strict):
    """A claimed result, which lakegen re-runs when ``dataset`` is in the lake.

    A result on a benchmark outside the lake (``hf:glue``, as a model card's ``model-index``
    reports it) stays a claim until a lake dataset reproduces it.
    """

    dataset: Ref = Field(description="A dataset of the lake, or a benchmark outside it (hf:org/name).")
    split: Slug
    metric: Slug
    value: float = Field(description="The claimed number.")
    tolerance: float = Field(0.005, ge=0, description="Allowed absolute difference when re-run.")
    version: SemVer | None = Field(None, description="Model version measured; default the latest.")
    config: dict[str, Any] = Field(default_factory=dict, description="Metric options such as k.")
    subset: Line | None = Field(None, description="The benchmark's configuration (a Hub dataset's config).")
    source: Link | None = Field(None, description="Where the claim was reported, for outside benchmarks.")


Scalar = str | int | float | bool


class Training(Strict):
    """How the model was trained, as its authors tell it (a model card's training section)."""

    procedure: Text = ""
    hyperparameters: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Scalar] = Field(
        default_factory=dict, description="Name -> value, e.g. learning_rate: 2.0e-05."
    )


class Model(EntryBase):
    kind: Literal["model"]
    task: Slug
    framework: Literal["pytorch", "jax", "tensorflow", "onnx", "sklearn", "other"]
    architecture: Architecture
    versions: list[Version] = []
    base_models: list[BaseModelRef] = []
    datasets: list[DatasetUse] = []
    code: list[CodeUse] = []
    evaluations: list[Evaluation] = []
    intended_use: Text = ""
    limitations: Text = ""
    risk: Literal["minimal", "limited", "high", "unacceptable"] = Field(
        description="Risk level under the EU AI Act."
    )
    risk_justification: Text = Field(
        "", description="Why the risk level is lower than a base model's; required when it is."
    )
    language: list[Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]] = Field(
        default_factory=list, description="Natural languages it handles, as ISO 639 codes (en, fr, pt-BR)."
    )
    library_name: Slug | None = Field(None, description="The library that loads it (transformers, peft...).")
    training: Training | None = None
    citation: Text = Field("", description="How to cite the model (BibTeX or prose).")

    @model_validator(mode="after")
    def _checks(self) -> Model:
        _unique_versions(self.versions)
        if sum(1 for b in self.base_models if b.relation == Relation.merge) == 1:
            raise ValueError("base_models: a merge has two or more parents with relation 'merge'")
        return self


class Split(Strict):
    name: Slug
    rows: int = Field(ge=0)


class Feature(Strict):
    name: Line
    dtype: Slug
    shape: list[int] = []
    description: Text = ""


class Source(Strict):
    name: Line
    url: HttpUrl | None = None
    citation: Text = ""


class DerivedFrom(Strict):
    id: Ref
    note: Text = ""


class Dataset(EntryBase):
    kind: Literal["dataset"]
    task: Slug
    source: Source
    personal_data: bool
    versions: list[Version] = []
    splits: list[Split] = []
    features: list[Feature] = []
    derived_from: list[DerivedFrom] = []

    @model_validator(mode="after")
    def _checks(self) -> Dataset:
        _unique_versions(self.versions)
        return self


class Code(EntryBase):
    kind: Literal["code"]
    repository: HttpUrl | None = Field(None, description="Where the code lives, when outside this repo.")
    path: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        None, description="A folder of this repository, relative to the repository root."
    )
    ref: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{1,200}$")] | None = Field(
        None, description="Git ref or commit of repository."
    )
    language: Slug = "python"
    entrypoints: dict[Slug, Entrypoint] = Field(
        default_factory=dict, description="Named module:function entry points (build_model, evaluate...)."
    )
    lower_is_better: list[Slug] = Field(
        default_factory=list,
        description="Entry points that are metrics where a smaller number is better (a loss, an error "
        "rate); every other metric ranks higher first.",
    )

    @model_validator(mode="after")
    def _checks(self) -> Code:
        if (self.repository is None) == (self.path is None):
            raise ValueError("code: give exactly one of repository (with ref) or path")
        if self.repository is not None and self.ref is None:
            raise ValueError("code: a repository needs a ref (tag or commit)")
        return self


Entry = Model | Dataset | Code
KINDS: dict[str, type[Model] | type[Dataset] | type[Code]] = {
    "model": Model,
    "dataset": Dataset,
    "code": Code,
}
FOLDERS = {"model": "models", "dataset": "datasets", "code": "code"}
