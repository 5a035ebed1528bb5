"""Governance policies: rules every entry of the lake is held to.

A policy is any object with a ``name``, a ``description`` and a ``check(context)``
that yields :class:`Violation` rows (see :class:`Policy`). The built-in rules are
registered with :func:`register` exactly as a third-party one is; an installed
package adds its own through the ``lakegen.policies`` entry-point group, naming
an object that follows the protocol. Which rules run, and how severe each one is,
comes from one lake-level file, ``catalog/policies.yaml`` (see :mod:`.config`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lakegen.errors import format_loc
from lakegen.policies.config import LEVEL_ORDER, POLICIES_FILE, GovernanceConfig, levels_in, load_config

if TYPE_CHECKING:
    from lakegen.catalog import Catalog
    from lakegen.changes import LakeChanges
    from lakegen.index import Finding, LakeIndex

__all__ = [
    "Context",
    "GovernanceConfig",
    "Policy",
    "ShadowingError",
    "Violation",
    "builtin_rules",
    "governance_stage",
    "load_config",
    "register",
    "registered",
    "run_policies",
]

ENTRY_POINT_GROUP = "lakegen.policies"


@dataclass(frozen=True)
class Violation:
    """One breach of a rule: which entry, where in its manifest, and why.

    ``advisory`` marks a note for a person (reported as ``info`` whatever the
    rule's level). ``path`` and ``line`` are for places that are not an entry of
    the catalog as loaded, such as a manifest the pull request deletes.
    """

    entry: str | None
    loc: tuple[str | int, ...]
    message: str
    advisory: bool = False
    path: str | None = None
    line: int | None = None


@dataclass
class Context:
    """What a policy may read: the catalog, the lake's configuration, and the base of a pull request."""

    catalog: Catalog
    config: GovernanceConfig
    changes: LakeChanges | None = None
    cache: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """A governance rule. ``name`` is its key in ``policies.yaml``."""

    name: str
    description: str

    def check(self, ctx: Context) -> Iterable[Violation]:
        """Yield every violation of this rule in ``ctx``."""
        ...


_REGISTRY: dict[str, Policy] = {}
_BUILTIN: set[str] = set()
# Installed plugins that could not be taken, and why: reported as findings of every run.
_REFUSED: list[str] = []
_loaded = False


class ShadowingError(ValueError):
    """A rule named like a built-in one: the built-ins cannot be replaced."""


def register(policy: Policy) -> Policy:
    """Add ``policy`` to the rules lakegen runs.

    A plugin rule runs only where ``policies.yaml`` names it; a name a built-in rule
    holds is refused (:class:`ShadowingError`), so the rules a report lists as run are
    the rules that ran.
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"{policy!r} is not a policy: it needs name, description and check(ctx)")
    if policy.name in _BUILTIN:
        raise ShadowingError(f"'{policy.name}' is a built-in rule; a plugin cannot replace it")
    _REGISTRY[policy.name] = policy
    return policy


def _register_builtin(policy: Policy) -> None:
    register(policy)
    _BUILTIN.add(policy.name)


def builtin_rules() -> set[str]:
    """The names of lakegen's own rules: they run unless ``policies.yaml`` turns them off."""
    registered()
    return set(_BUILTIN)


def registered() -> dict[str, Policy]:
    """Every known rule by name: the built-ins, then those of installed packages."""
    global _loaded
    if not _loaded:
        _loaded = True
        from lakegen.policies import builtin  # noqa: F401  (registers the built-in rules)

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            where = (
                f"{ep.dist.name if ep.dist else 'an installed package'}: entry point {ep.name} = {ep.value}"
            )
            try:
                obj = ep.load()
                register(obj() if isinstance(obj, type) else obj)
            except ShadowingError as e:
                _REFUSED.append(f"plugin rule refused ({where}): {e}")
            except Exception as e:  # a broken plugin is a finding, not a crash of every run
                _REFUSED.append(f"plugin rule refused ({where}): {type(e).__name__}: {e}")
    return dict(_REGISTRY)


def run_policies(
    catalog: Catalog, *, changes: LakeChanges | None = None, config: GovernanceConfig | None = None
) -> list[Finding]:
    """Run every enabled rule over ``catalog`` and return its findings, sorted by place."""
    from lakegen.index import Finding

    rules = registered()
    config = config or load_config(catalog.root, set(rules))
    findings = [Finding.from_problem(p, catalog, stage="governance", rule="config") for p in config.problems]
    findings += [
        Finding(stage="governance", rule="plugins", severity="error", path="catalog", line=1, message=m)
        for m in _REFUSED
    ]
    weakened = _weakened(changes, config, set(rules)) if changes is not None else {}
    for name, (before, after) in sorted(weakened.items()):
        message = (
            f"weakens rule '{name}' from {before} to {after}; this check still holds the pull request to "
            f"{before}, and a change to the lake's governance needs its governance owners' review"
        )
        findings.append(
            Finding(
                stage="governance",
                rule="policy-change",
                severity="error",
                path=POLICIES_FILE,
                line=config.lines.get(name, 1),
                field=f"rules.{name}",
                message=message,
            )
        )
    ctx = Context(catalog, config, changes)
    for name, policy in sorted(rules.items()):
        # A rule the pull request itself weakens is applied at the base's level.
        level = weakened[name][0] if name in weakened else config.level(name)
        if level == "off":
            continue
        for violation in policy.check(ctx):
            findings.append(_finding(catalog, name, level, violation))
    return sorted(findings, key=lambda f: (f.path, f.line, f.rule, f.message))


def _weakened(changes: LakeChanges, config: GovernanceConfig, rules: set[str]) -> dict[str, tuple[str, str]]:
    """Rules whose level the pull request lowers: name -> (base level, head level)."""
    if POLICIES_FILE not in changes.config_changed:
        return {}
    blob = changes.repo.tree(changes.base_commit, POLICIES_FILE).get(POLICIES_FILE)
    text = changes.repo.blobs([blob]).get(blob, b"") if blob else None
    base_levels = levels_in(text.decode("utf-8", "replace")) if text is not None else {}
    if base_levels is None:
        return {}  # the base's file did not parse; nothing to weaken against
    base = GovernanceConfig(levels=base_levels, builtin=config.builtin)
    out: dict[str, tuple[str, str]] = {}
    for name in sorted(rules | set(base_levels)):
        before, after = base.level(name), config.level(name)
        if LEVEL_ORDER[after] < LEVEL_ORDER[before]:
            out[name] = (before, after)
    return out


def _finding(catalog: Catalog, rule: str, level: str, v: Violation) -> Finding:
    from lakegen.index import Finding

    record = catalog.records.get(v.entry) if v.entry else None
    severity = "info" if v.advisory else ("error" if level == "error" else "warning")
    return Finding(
        stage="governance",
        rule=rule,
        severity=severity,
        entry=v.entry,
        owners=list(record.entry.owners) if record else [],
        path=v.path or (record.path if record else "catalog"),
        line=v.line or (record.line(*v.loc) if record else 1),
        field=format_loc(v.loc),
        message=v.message,
    )


def governance_stage(catalog: Catalog, index: LakeIndex) -> None:
    """The compile stage: every rule's findings, and each model's documentation score, into ``index``."""
    from lakegen.manifest import Model
    from lakegen.policies.builtin import documentation_score

    findings = run_policies(catalog)
    index.findings.extend(findings)
    for row in index.entries:
        entry = catalog.records[row.id].entry if row.id in catalog.records else None
        if isinstance(entry, Model):
            row.documentation = documentation_score(entry)[0]
    errors = sum(f.severity == "error" for f in findings)
    index.stages["governance"] = f"ran ({len(findings)} findings, {errors} errors)"
