"""The registry of governance rules: the :class:`Policy` protocol, the :class:`Context` a rule reads,
:func:`register`, and :func:`violation`, which makes the findings a rule yields.

It imports no rule: the built-in ones are registered by :mod:`lakegen.governance.policies` through
the same :func:`register` a plugin's rule goes through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lakegen.errors import Finding, format_loc

if TYPE_CHECKING:
    from lakegen.catalog.loader import Catalog
    from lakegen.governance.changes import LakeChanges
    from lakegen.governance.policies.config import GovernanceConfig

ENTRY_POINT_GROUP = "lakegen.policies"


def violation(
    entry: str | None,
    loc: tuple[str | int, ...],
    message: str,
    *,
    advisory: bool = False,
    path: str | None = None,
    line: int | None = None,
) -> Finding:
    """One breach of a rule, as the :class:`~lakegen.errors.Finding` a policy yields: which entry,
    where in its manifest (``loc``, e.g. ``("base_models", 0, "id")``), and why.

    ``advisory`` marks a note for a person (reported as ``info`` whatever the rule's level).
    ``path`` and ``line`` are for places that are not an entry of the catalog as loaded, such as a
    manifest the pull request deletes; otherwise the runner finds them from ``entry`` and ``loc``.
    The runner fills in the rule's name and its level.
    """
    return Finding(
        path or "",
        line or 0,
        format_loc(loc),
        message,
        "info" if advisory else "error",
        stage="governance",
        rule="",
        entry=entry,
    )


@dataclass
class Context:
    """What a policy may read: the catalog, the lake's configuration, and the base of a pull request."""

    catalog: Catalog
    config: GovernanceConfig
    changes: LakeChanges | None = None
    cache: dict[str, object] = field(default_factory=dict)
    # child id -> parent ids the weights show and its manifest does not declare (from attribution)
    recovered: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """A governance rule. ``name`` is its key in ``policies.yaml``."""

    name: str
    description: str

    def check(self, ctx: Context) -> Iterable[Finding]:
        """Yield every breach of this rule in ``ctx``, each made by :func:`violation`."""
        ...


_REGISTRY: dict[str, Policy] = {}
_BUILTIN: set[str] = set()
# Installed plugins that could not be taken, and why: reported as findings of every run.
_REFUSED: list[str] = []


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


def register_builtin(policy: Policy) -> None:
    register(policy)
    _BUILTIN.add(policy.name)


def builtin_names() -> set[str]:
    return set(_BUILTIN)


def rules() -> dict[str, Policy]:
    return dict(_REGISTRY)
