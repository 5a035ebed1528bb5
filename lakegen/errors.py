"""Problems found in a lake, and the one error type that carries them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about one place in one file: ``path:line: field: message``."""

    path: str
    line: int
    field: str = ""
    message: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: "
        what = f"{self.field}: " if self.field else ""
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}{tag}{what}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class LakeError(Exception):
    """Raised with every problem that stops an operation; the CLI prints them, one per line."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = sorted(problems) if isinstance(problems, list) else [problems]
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
