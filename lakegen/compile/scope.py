"""What one compile covers: the whole lake (``lakegen build``), or what a pull request changes against
its base (``lakegen check``), and whether evaluations may run and contributed code run unconfined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakegen.artifacts.digests import Digests
from lakegen.catalog.loader import Catalog
from lakegen.executor import Engine
from lakegen.governance.changes import LakeChanges
from lakegen.model.manifest import Model

if TYPE_CHECKING:
    from lakegen.lineage.known import Known


@dataclass
class Scope:
    catalog: Catalog
    changes: LakeChanges | None = None  # what a pull request changes against its base (--base)
    check: bool = False  # a PR check (``lakegen check``) rather than the lake's build
    run_evaluations: bool = False
    trust_code: bool = False  # run code entries without the sandbox (see lakegen.executor.sandbox)
    engine: Engine = "local"  # where fingerprints and evaluations run (lakegen.executor)
    workers: int | None = None  # how many at once; None: the engine's default
    memo: bool = True  # reuse what earlier compiles kept (lakegen.attribution.memo)
    digests: Digests | None = None  # artifacts' sha256 as the loader had them (compile.inputs.Recorded)
    known: Known | None = None  # the catalog holds part of the lake; the rest is its base's (a check)

    def changed_models(self) -> list[str]:
        """Models the pull request adds, renames or modifies (present at head)."""
        if self.changes is None:
            return []
        records = self.catalog.records
        return sorted(
            c.entry
            for c in self.changes.entries
            if c.path and c.entry in records and isinstance(records[c.entry].entry, Model)
        )

    def changed_code(self) -> set[str]:
        """Code entries whose source files the pull request changes."""
        if self.changes is None:
            return set()
        return {c for f in self.changes.files for c in f.code_entries}

    def changed_evaluations(self) -> list[str]:
        """Models whose claimed evaluations are new or may read differently (new weights, new claims,
        or code entries they are built or evaluated with whose source changed)."""
        if self.changes is None:
            return []
        code = self.changed_code()
        out = []
        for model in self.catalog.models():
            uses = {c.id for c in model.code} | (
                {model.architecture.code} if model.architecture.code else set()
            )
            if model.evaluations and uses & code:
                out.append(model.id)
        for model_id in self.changed_models():
            if model_id in out:
                continue
            change = self.changes.of(model_id)
            entry = self.catalog.get(model_id)
            assert change is not None and isinstance(entry, Model)
            touched = change.base_data is None or any(
                f.field.startswith(("evaluations", "versions", "architecture", "datasets"))
                for f in change.fields
            )
            if entry.evaluations and touched:
                out.append(model_id)
        return sorted(out)
