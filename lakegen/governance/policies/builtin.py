"""The built-in rules, registered through :func:`lakegen.governance.policies.register` like any other."""

from __future__ import annotations

from collections.abc import Iterable

from lakegen.errors import Finding
from lakegen.governance.policies.config import OWNERS_FILE, owner_key
from lakegen.governance.policies.licences import LicencePropagation
from lakegen.governance.policies.registry import Context, Policy, violation
from lakegen.governance.policies.releases import ImmutableReleases
from lakegen.model.manifest import Model

RISK_ORDER = ("minimal", "limited", "high", "unacceptable")


class Owners:
    name = "owners"
    description = f"Every entry has owners, and each owner is a person or team listed in {OWNERS_FILE}."

    def check(self, ctx: Context) -> Iterable[Finding]:
        known = ctx.config.owners
        if known is None and ctx.catalog.records:
            message = f"no {OWNERS_FILE}: list the lake's people and teams there"
            yield violation(None, (), message, path=OWNERS_FILE)
        for entry_id, record in sorted(ctx.catalog.records.items()):
            owners = record.entry.owners
            if not owners:
                yield violation(entry_id, ("owners",), "an entry needs at least one owner")
            for i, owner in enumerate(owners):
                if known is not None and owner_key(owner) not in known:
                    message = f"'{owner}' is not a person or team in {OWNERS_FILE}"
                    yield violation(entry_id, ("owners", i), message)


class RiskJustification:
    name = "risk-justification"
    description = (
        "A model's risk level is not lower than its base models' unless risk_justification says why."
    )

    def check(self, ctx: Context) -> Iterable[Finding]:
        for entry_id, record in sorted(ctx.catalog.records.items()):
            model = record.entry
            if not isinstance(model, Model) or model.risk_justification.strip():
                continue
            for base in model.base_models:
                parent = ctx.catalog.records.get(base.id)
                if parent is None or not isinstance(parent.entry, Model):
                    continue
                if RISK_ORDER.index(model.risk) < RISK_ORDER.index(parent.entry.risk):
                    yield violation(
                        entry_id,
                        ("risk",),
                        f"risk '{model.risk}' is lower than base '{base.id}' has ('{parent.entry.risk}'); "
                        "add risk_justification saying why the derivative is less risky",
                    )
                    break


DOCUMENTATION_FIELDS = ("intended_use", "limitations", "evaluations")


def documentation_score(model: Model) -> tuple[float, list[str]]:
    """How much documentation a model has (intended use, limitations, an evaluation), and what is missing."""
    missing = [
        name
        for name, present in (
            ("intended_use", bool(model.intended_use.strip())),
            ("limitations", bool(model.limitations.strip())),
            ("evaluations", bool(model.evaluations)),
        )
        if not present
    ]
    return round(1 - len(missing) / len(DOCUMENTATION_FIELDS), 3), missing


class Documentation:
    name = "documentation"
    description = "Each model documents its intended use and limitations and claims at least one evaluation."

    def check(self, ctx: Context) -> Iterable[Finding]:
        for entry_id, record in sorted(ctx.catalog.records.items()):
            if not isinstance(record.entry, Model):
                continue
            score, missing = documentation_score(record.entry)
            if missing:
                done = len(DOCUMENTATION_FIELDS) - len(missing)
                yield violation(
                    entry_id,
                    (missing[0],),
                    f"documentation {done}/{len(DOCUMENTATION_FIELDS)} complete (score {score:.2f}); "
                    f"missing: {', '.join(missing)}",
                )


class DeprecatedBase:
    name = "deprecated-base"
    description = (
        "Nothing new declares a deprecated base model or dataset unless the reference sets allow_deprecated "
        "to the reason."
    )

    def check(self, ctx: Context) -> Iterable[Finding]:
        records = ctx.catalog.records
        for entry_id, record in sorted(records.items()):
            model = record.entry
            if not isinstance(model, Model):
                continue
            refs = [
                (b.id, b.allow_deprecated, ("base_models", i, "id")) for i, b in enumerate(model.base_models)
            ]
            refs += [(d.id, d.allow_deprecated, ("datasets", i, "id")) for i, d in enumerate(model.datasets)]
            for ref, allowed, loc in refs:
                target = records.get(ref)
                if target is None or not target.entry.deprecated or allowed:
                    continue
                new = ctx.changes is not None and ctx.changes.is_new_reference(entry_id, ref)
                what = f"'{ref}' is deprecated"
                if new:
                    yield violation(
                        entry_id,
                        loc,
                        f"{what}; a new reference to it needs allow_deprecated: <why> on this reference",
                    )
                else:
                    yield violation(entry_id, loc, f"{what}; plan a move to its successor", advisory=True)


BUILTIN: tuple[Policy, ...] = (
    LicencePropagation(),
    Owners(),
    RiskJustification(),
    Documentation(),
    DeprecatedBase(),
    ImmutableReleases(),
)
