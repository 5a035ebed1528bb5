"""The lake's governance configuration: ``catalog/policies.yaml`` and ``catalog/owners.yaml``.

``policies.yaml`` sets each rule to ``error``, ``warn`` or ``off``; a built-in rule
it does not name is ``error``, so a lake without the file gets the strict set, and
a plugin rule it does not name is ``off``: installing a package never changes
what a lake's checks decide until the lake asks for its rule.
``owners.yaml`` lists the people and teams that may own entries. Both files are
read with the same safe loader as manifests, and a problem in either is a
finding with its line, never a crash.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from lakegen.artifacts.remote import StorageSettings
from lakegen.artifacts.signatures import SigningSettings
from lakegen.catalog.loader import OWNERS_FILE, POLICIES_FILE
from lakegen.errors import Finding, LakeError, format_loc
from lakegen.model.manifest import Line, Owner
from lakegen.safeyaml import Document, load, parse

Level = Literal["error", "warn", "off"]
_M = TypeVar("_M", bound=BaseModel)
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoliciesFile(_Strict):
    rules: dict[RuleName, Level] = Field(default_factory=dict, description="Rule name -> error, warn or off.")
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="How remote artifacts are fetched (docs/storage.md)."
    )
    signing: SigningSettings = Field(
        default_factory=SigningSettings,
        description="Whose model-signing bundles are trusted (docs/storage.md).",
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _bare_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false; that is what the author meant
        if isinstance(value, dict):
            return {k: "off" if v is False else v for k, v in value.items()}
        return value


class Person(_Strict):
    handle: Owner = Field(description="A GitHub handle, written @name.")
    name: Line | None = None
    email: Line | None = None


class Team(_Strict):
    id: Owner = Field(description="org/team, as used in manifests' owners.")
    name: Line | None = None
    members: list[Owner] = []


class OwnersFile(_Strict):
    people: list[Person] = []
    teams: list[Team] = []
    governance: list[Owner] = Field(
        default_factory=list,
        description="Who reviews changes to how the lake is governed (policies, owners, workflows); "
        "lakegen codeowners writes them into .github/CODEOWNERS.",
    )


def owner_key(owner: str) -> str:
    """Handles compare without the leading @ and without case, as GitHub compares them."""
    return owner.removeprefix("@").lower()


@dataclass
class GovernanceConfig:
    """Rule levels and known owners; ``problems`` holds what was wrong with the files."""

    levels: dict[str, Level] = field(default_factory=dict)
    owners: set[str] | None = None  # None: there is no owners file
    problems: list[Finding] = field(default_factory=list)
    builtin: set[str] | None = None  # lakegen's own rules; None: every rule counts as one
    governance: list[str] = field(default_factory=list)  # owners.yaml's governance owners
    lines: dict[str, int] = field(default_factory=dict)  # rule -> its line in policies.yaml

    def level(self, rule: str) -> Level:
        if rule in self.levels:
            return self.levels[rule]
        return "error" if self.builtin is None or rule in self.builtin else "off"


LEVEL_ORDER: dict[Level, int] = {"off": 0, "warn": 1, "error": 2}


def levels_in(text: str) -> dict[str, Level] | None:
    """The rule levels a ``policies.yaml`` text sets (None when it does not parse or validate)."""
    try:
        doc = parse(text)
        return dict(PoliciesFile.model_validate(doc.data if doc.data is not None else {}).rules)
    except (LakeError, ValidationError):
        return None


def load_config(root: Path, known_rules: set[str] | None, builtin: set[str]) -> GovernanceConfig:
    """Read both files under ``root``; built-in rules missing from ``policies.yaml`` stay ``error``,
    plugin rules missing from it are ``off``."""
    config = GovernanceConfig(builtin=builtin)
    policies = _read(root, POLICIES_FILE, PoliciesFile, config.problems)
    if policies is not None:
        doc, data = policies
        config.levels = dict(data.rules)
        config.lines = {name: doc.line(("rules", name)) for name in data.rules}
        for name in data.rules:
            if known_rules is not None and name not in known_rules:
                close = difflib.get_close_matches(name, sorted(known_rules), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                config.problems.append(
                    Finding(POLICIES_FILE, doc.line(("rules", name)), f"rules.{name}", f"unknown rule{hint}")
                )
    owners = _read(root, OWNERS_FILE, OwnersFile, config.problems)
    if owners is not None:
        doc, people = owners
        config.owners = {owner_key(p.handle) for p in people.people}
        for i, team in enumerate(people.teams):
            for j, member in enumerate(team.members):
                if owner_key(member) not in config.owners:
                    config.problems.append(
                        Finding(
                            OWNERS_FILE,
                            doc.line(("teams", i, "members", j)),
                            f"teams[{i}].members[{j}]",
                            f"'{member}' is not listed under people",
                        )
                    )
        config.owners |= {owner_key(t.id) for t in people.teams}
        config.governance = list(people.governance)
        for i, owner in enumerate(people.governance):
            if owner_key(owner) not in config.owners:
                config.problems.append(
                    Finding(
                        OWNERS_FILE,
                        doc.line(("governance", i)),
                        f"governance[{i}]",
                        f"'{owner}' is not listed under people or teams",
                    )
                )
    return config


def _read(root: Path, name: str, cls: type[_M], problems: list[Finding]) -> tuple[Document, _M] | None:
    path = root / name
    if not path.is_file():
        return None
    try:
        doc = load(path, name)
    except LakeError as e:
        problems.extend(e.problems)
        return None
    try:
        return doc, cls.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as e:
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            problems.append(Finding(name, doc.line(loc), format_loc(loc), err["msg"]))
        return None
