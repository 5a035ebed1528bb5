"""What lakegen finds in a lake, as one type every stage and output uses, and the one error type that
carries findings which stop an operation."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """Something a person should look at, at one place in one file: ``path:line: field: message``.

    ``stage`` and ``rule`` say who found it and by which rule (``validate``/``schema`` for what the
    loader finds); ``entry`` and ``owners`` tie it to the manifest it is about, where there is one.
    """

    path: str
    line: int = 1
    field: str = ""
    message: str = ""
    severity: Severity = "error"
    stage: str = "validate"
    rule: str = "schema"
    entry: str | None = None
    owners: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: "
        label = self.field if self.stage == "validate" else self.rule  # a stage's rule names the finding
        what = f"{label}: " if label else ""
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}{tag}{what}{self.message}"

    def key(self) -> tuple[str, int, str, str, str]:
        """The order findings are listed in: by place, then by rule and message."""
        return (self.path, self.line, self.field, self.rule, self.message)

    def replace(self, **changes: Any) -> Finding:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["owners"] = list(self.owners)
        return out


def by_place(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=Finding.key)


class LakeError(Exception):
    """Raised with every finding that stops an operation; the CLI prints them, one per line."""

    def __init__(self, problems: list[Finding] | Finding):
        self.problems = by_place(problems) if isinstance(problems, list) else [problems]
        super().__init__("\n".join(str(p) for p in self.problems))


def format_loc(loc: tuple[str | int, ...]) -> str:
    """``("base_models", 0, "id")`` -> ``base_models[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_LOC_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def parse_loc(field: str) -> tuple[str | int, ...]:
    """``base_models[0].id`` -> ``("base_models", 0, "id")``: :func:`format_loc` read back."""
    return tuple(int(m[1]) if m[1] is not None else m[2] for m in _LOC_PART.finditer(field))


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``known`` (a near spelling, else a word it
    begins), or `` (known: a, b, ...)`` when none is close; '' when nothing is known."""
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    close = close or [k for k in sorted(lower) if k.startswith(word.lower())][:1]
    if close:
        return f" (did you mean '{lower[close[0]]}'?)"
    if not known:
        return ""
    more = f" and {len(known) - 12} more" if len(known) > 12 else ""
    return f" (known: {', '.join(known[:12])}{more})"


class WeightsError(Exception):
    """A weight file (or model folder) lakegen will not read, with a one-line reason."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        self.reason = " ".join(message.split())
        super().__init__(f"{self.path}: {self.reason}")
