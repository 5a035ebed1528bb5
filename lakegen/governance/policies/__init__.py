"""Governance policies: rules every entry of the lake is held to.

A policy is any object with a ``name``, a ``description`` and a ``check(context)``
that yields findings made by :func:`violation` (see :class:`Policy`). The built-in rules are
registered with :func:`register` exactly as a third-party one is; an installed
package adds its own through the ``lakegen.policies`` entry-point group, naming
an object that follows the protocol. Which rules run, and how severe each one is,
comes from one lake-level file, ``catalog/policies.yaml`` (see :mod:`.config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.errors import Finding, parse_loc
from lakegen.governance.policies import builtin, config
from lakegen.governance.policies.config import LEVEL_ORDER, POLICIES_FILE, GovernanceConfig, levels_in
from lakegen.governance.policies.registry import (
    _REFUSED,
    ENTRY_POINT_GROUP,
    Context,
    Policy,
    ShadowingError,
    builtin_names,
    register,
    register_builtin,
    rules,
    violation,
)

if TYPE_CHECKING:
    from lakegen.catalog.loader import Catalog
    from lakegen.governance.changes import LakeChanges
    from lakegen.model.index import LakeIndex

__all__ = [
    "Context",
    "GovernanceConfig",
    "Policy",
    "ShadowingError",
    "builtin_rules",
    "governance_stage",
    "load_config",
    "register",
    "registered",
    "run_policies",
    "violation",
]

_loaded = False


def registered() -> dict[str, Policy]:
    """Every known rule by name: the built-ins, then those of installed packages."""
    global _loaded
    if not _loaded:
        _loaded = True
        for policy in builtin.BUILTIN:
            register_builtin(policy)
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
    return rules()


def builtin_rules() -> set[str]:
    """The names of lakegen's own rules: they run unless ``policies.yaml`` turns them off."""
    registered()
    return builtin_names()


def load_config(root: Path, known_rules: set[str] | None = None) -> GovernanceConfig:
    """The lake's governance configuration (see :mod:`.config`), held against lakegen's own rules."""
    return config.load_config(root, known_rules, builtin_rules())


def run_policies(
    catalog: Catalog,
    *,
    changes: LakeChanges | None = None,
    config: GovernanceConfig | None = None,
    recovered: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Finding]:
    """Run every enabled rule over ``catalog`` and return its findings, sorted by place."""
    rules = registered()
    config = config or load_config(catalog.root, set(rules))
    findings = [catalog.owned(p, stage="governance", rule="config") for p in config.problems]
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
    ctx = Context(catalog, config, changes, recovered=recovered or {})
    for name, policy in sorted(rules.items()):
        # A rule the pull request itself weakens is applied at the base's level.
        level = weakened[name][0] if name in weakened else config.level(name)
        if level == "off":
            continue
        findings += [_finding(catalog, name, level, v) for v in policy.check(ctx)]
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


def _finding(catalog: Catalog, rule: str, level: str, v: Finding) -> Finding:
    record = catalog.records.get(v.entry) if v.entry else None
    severity = "info" if v.severity == "info" else ("error" if level == "error" else "warning")
    return v.replace(
        stage="governance",
        rule=rule,
        severity=severity,
        owners=tuple(record.entry.owners) if record else (),
        path=v.path or (record.path if record else "catalog"),
        line=v.line or (record.line(*parse_loc(v.field)) if record else 1),
    )


def governance_stage(catalog: Catalog, index: LakeIndex, changes: LakeChanges | None = None) -> LakeIndex:
    """The compile stage: every rule's findings (held against the pull request's base when there is
    one), CODEOWNERS drift, and each model's documentation score, into ``index``."""
    from lakegen.governance.codeowners import drift_findings
    from lakegen.model.manifest import Model

    rules = registered()
    config = load_config(catalog.root, set(rules))
    recovered: dict[str, tuple[str, ...]] = {}
    for edge in index.edges:
        if edge.status == "undeclared" and edge.parent in catalog.records:
            recovered[edge.child] = (*recovered.get(edge.child, ()), edge.parent)
    index.findings += run_policies(catalog, changes=changes, config=config, recovered=recovered)
    index.findings += drift_findings(catalog, config.governance)
    for row in index.entries:
        entry = catalog.records[row.id].entry if row.id in catalog.records else None
        if isinstance(entry, Model):
            row.documentation = builtin.documentation_score(entry)[0]
    on = [n for n in sorted(rules) if config.level(n) != "off"]
    index.stages["governance"] = f"ran: {len(on)} rules ({', '.join(on)})"
    return index
