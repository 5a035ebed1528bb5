"""What a licence obliges a derivative to, and the rule that carries it down lineage and data.

Classes come from data, not from a list typed here: license-expression ships
the ScanCode LicenseDB index (every SPDX licence with a ``category``), and that
category decides:

* ``Permissive``, ``Public Domain``: permissive;
* ``Copyleft``, ``Copyleft Limited``: share-alike, the derivative keeps the licence;
* ``Source-available``, ``Free Restricted``, ``Proprietary Free``, ``Commercial``:
  use-restricted (non-commercial, no-derivatives, responsible-AI terms...), so a
  derivative cannot be released under a permissive licence;
* anything else (``other``, unknown ids): not classified, left to a person.

Two refinements read the SPDX id itself, because ScanCode files CC-BY-NC-SA
under ``Source-available`` only: Creative Commons ``-SA`` licences are also
share-alike, and ids with an ``NC``/``Noncommercial`` part are named
"non-commercial" in messages.

An expression is expanded into the options a licensee may pick (``A OR B``: two
options; ``A AND B``: one option holding both). An obligation binds only when
every option carries it, and a child breaks it when any option escapes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from lakegen.errors import Finding
from lakegen.governance.policies.registry import Context, violation
from lakegen.model.manifest import Dataset, Model, is_external

LicenceClass = Literal["permissive", "share-alike", "restricted", "unknown"]
_CATEGORIES: dict[str, LicenceClass] = {
    "Permissive": "permissive",
    "Public Domain": "permissive",
    "Copyleft": "share-alike",
    "Copyleft Limited": "share-alike",
    "Source-available": "restricted",
    "Free Restricted": "restricted",
    "Proprietary Free": "restricted",
    "Commercial": "restricted",
}
_NC = re.compile(r"(^|-)(NC|Noncommercial|NonCommercial)(-|$)", re.IGNORECASE)
_CC_SA = re.compile(r"^CC-BY(-NC)?-SA-", re.IGNORECASE)


@lru_cache(maxsize=1)
def _categories() -> dict[str, str]:
    """SPDX id (lower case) -> ScanCode category, from the index license-expression vendors."""
    from license_expression import vendored_scancode_licensedb_index_location

    with open(vendored_scancode_licensedb_index_location, encoding="utf-8") as f:
        index = json.load(f)
    out: dict[str, str] = {}
    for row in index:
        category = row.get("category") or ""
        for key in [row.get("spdx_license_key"), *(row.get("other_spdx_license_keys") or [])]:
            if key:
                out.setdefault(key.lower(), category)
    return out


def classify(key: str) -> LicenceClass:
    """The class of one SPDX licence id (see the module docstring)."""
    if _CC_SA.match(key) and not re.search(r"-ND-", key, re.IGNORECASE):
        return "share-alike" if not _NC.search(key) else "restricted"
    return _CATEGORIES.get(_categories().get(key.lower(), ""), "unknown")


def is_share_alike(key: str) -> bool:
    return classify(key) == "share-alike" or bool(_CC_SA.match(key))


def describe(key: str) -> str:
    """A few words for messages: 'non-commercial', 'share-alike', ..."""
    if _NC.search(key):
        return "non-commercial"
    return {"restricted": "use-restricted", "unknown": "unclassified"}.get(classify(key), classify(key))


@lru_cache(maxsize=4096)
def options(expression: str) -> tuple[frozenset[str], ...]:
    """The sets of licences a licensee may choose between; ``other`` is one unknown licence."""
    if expression == "other":
        return (frozenset({"other"}),)
    from license_expression import AND, OR, LicenseSymbol, LicenseWithExceptionSymbol

    from lakegen.model.manifest import _licensing  # the parser manifests are validated with, built once

    def expand(node: Any) -> list[frozenset[str]]:
        if isinstance(node, LicenseWithExceptionSymbol):
            return [frozenset({node.license_symbol.key})]
        if isinstance(node, LicenseSymbol):
            return [frozenset({node.key})]
        parts = [expand(arg) for arg in node.args]
        if isinstance(node, OR):
            return [opt for part in parts for opt in part]
        if isinstance(node, AND):
            combined = [frozenset[str]()]
            for part in parts:
                combined = [a | b for a in combined for b in part]
            return combined
        raise ValueError(f"unexpected licence expression node {node!r}")

    return tuple(dict.fromkeys(expand(_licensing().parse(expression))))


@dataclass(frozen=True)
class Obligation:
    """What an ancestor's licence imposes: ``restricted`` or ``share-alike`` of ``licence``."""

    kind: Literal["restricted", "share-alike", "unknown"]
    licence: str
    source: str
    chain: tuple[str, ...]  # source ... parent, the path it travelled


def own_obligations(entry_id: str, licence: str) -> list[Obligation]:
    """What an entry's own licence passes to its derivatives: only what every option carries."""
    opts = options(licence)
    found: list[Obligation] = []
    if all(any(classify(k) == "restricted" for k in opt) for opt in opts):
        key = next(k for k in sorted(opts[0]) if classify(k) == "restricted")
        found.append(Obligation("restricted", key, entry_id, (entry_id,)))
    shared = frozenset.intersection(*opts)
    for key in sorted(shared):
        if is_share_alike(key):
            found.append(Obligation("share-alike", key, entry_id, (entry_id,)))
    if any(all(classify(k) == "unknown" for k in opt) for opt in opts):
        found.append(Obligation("unknown", licence, entry_id, (entry_id,)))
    return found


def parents(entry: Model | Dataset) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """The ids an entry derives from (base models, training data, source datasets), with where it says so."""
    if isinstance(entry, Model):
        for i, base in enumerate(entry.base_models):
            yield base.id, ("base_models", i, "id")
        for i, use in enumerate(entry.datasets):
            if use.role in ("train", "finetune"):
                yield use.id, ("datasets", i, "id")
    else:
        for i, source in enumerate(entry.derived_from):
            yield source.id, ("derived_from", i, "id")


class LicencePropagation:
    name = "licence-propagation"
    description = (
        "A derivative of a use-restricted (e.g. non-commercial) model or dataset is not released under a "
        "permissive licence, and share-alike licences carry down lineage and training data."
    )

    def check(self, ctx: Context) -> Iterable[Finding]:
        inherited = _inherited(ctx)
        for entry_id in sorted(inherited):
            entry = ctx.catalog.get(entry_id)
            yield from _check_entry(entry_id, entry.license, inherited[entry_id])
        for entry_id, entry in _derived(ctx):
            for ref, loc in parents(entry):
                if is_external(ref):
                    message = f"'{ref}' is outside the lake; check its licence by hand"
                    yield violation(entry_id, loc, message, advisory=True)


def _derived(ctx: Context) -> Iterator[tuple[str, Model | Dataset]]:
    for entry_id, record in sorted(ctx.catalog.records.items()):
        if isinstance(record.entry, Model | Dataset):
            yield entry_id, record.entry


def _inherited(ctx: Context) -> dict[str, list[Obligation]]:
    """Entry id -> obligations reaching it from its ancestors, memoised over the lineage DAG."""
    records = ctx.catalog.records
    total: dict[str, list[Obligation]] = {}  # own + inherited: what the entry passes on
    incoming: dict[str, list[Obligation]] = {}

    def visit(entry_id: str, active: set[str]) -> list[Obligation]:
        if entry_id in total:
            return total[entry_id]
        entry = records[entry_id].entry
        assert isinstance(entry, Model | Dataset)
        active.add(entry_id)
        reach: dict[tuple[str, str], Obligation] = {}
        # the weights' evidence counts as much as the manifest's word: an undeclared parent's
        # licence binds the child as a declared one's does
        shown = [(ref, ("base_models",)) for ref in ctx.recovered.get(entry_id, ())]
        for ref, _loc in [*parents(entry), *shown]:
            other = records.get(ref)
            if other is None or ref in active or not isinstance(other.entry, Model | Dataset):
                continue  # outside the lake, a cycle (a validation error already), or not derivable
            for ob in visit(ref, active):
                reach.setdefault((ob.kind, ob.licence), ob)
        active.discard(entry_id)
        incoming[entry_id] = list(reach.values())
        # an obligation keeps its first source, so messages name where it came from
        passed = {
            key: Obligation(ob.kind, ob.licence, ob.source, (*ob.chain, entry_id))
            for key, ob in reach.items()
        }
        for ob in own_obligations(entry_id, entry.license):
            passed.setdefault((ob.kind, ob.licence), ob)
        total[entry_id] = list(passed.values())
        return total[entry_id]

    for entry_id, _entry in _derived(ctx):
        visit(entry_id, set())
    return {k: v for k, v in incoming.items() if v}


def _check_entry(entry_id: str, licence: str, obligations: list[Obligation]) -> Iterator[Finding]:
    opts = options(licence)
    for ob in obligations:
        via = " → ".join((*ob.chain, entry_id))
        if ob.kind == "restricted":
            free = [opt for opt in opts if all(classify(k) == "permissive" for k in opt)]
            if free:
                as_free = " AND ".join(sorted(free[0]))
                yield violation(
                    entry_id,
                    ("license",),
                    f"'{licence}' lets it be used as {as_free} (permissive), but it derives "
                    f"from '{ob.source}' under {ob.licence} ({describe(ob.licence)}) through {via}; "
                    f"use a licence at least as restrictive as {ob.licence}",
                )
        elif ob.kind == "share-alike":
            if any(ob.licence not in opt for opt in opts):
                yield violation(
                    entry_id,
                    ("license",),
                    f"'{ob.source}' is under {ob.licence} (share-alike), which carries down through {via}; "
                    f"'{licence}' must keep {ob.licence}",
                )
        else:
            yield violation(
                entry_id,
                ("license",),
                f"'{ob.source}' has a licence lakegen cannot classify ('{ob.licence}'), reaching it through "
                f"{via}; check by hand that '{licence}' is compatible",
                advisory=True,
            )
