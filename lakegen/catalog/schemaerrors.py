"""Pydantic's validation errors of a manifest, as one ``path:line: what is wrong`` finding each,
with the nearest valid name when a field or value is misspelt."""

from __future__ import annotations

import difflib
import re
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from lakegen.errors import Finding, format_loc
from lakegen.model.manifest import SEMVER_PATTERN, SLUG_PATTERN
from lakegen.safeyaml import Document, Loc

_PATTERN_HELP = {
    SLUG_PATTERN: "must be a lowercase slug: a-z, 0-9, '.', '_' and '-', at most 64 characters",
    SEMVER_PATTERN: "must be a semantic version such as 1.2.0",
    r"^[0-9a-f]{64}$": "must be 64 lowercase hexadecimal digits",
}


def validation_problems(
    err: ValidationError, cls: type[BaseModel], doc: Document, display: str
) -> list[Finding]:
    problems = []
    for e in err.errors(include_url=False):
        loc: Loc = tuple(e["loc"])
        kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
        message = e["msg"]
        if kind == "extra_forbidden":
            fields = _fields_at(cls, loc[:-1])
            message = "unknown field" + did_you_mean(str(loc[-1]), list(fields or ()))
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "too_short":
            message = f"needs at least {ctx.get('min_length', 1)} item(s)"
        elif kind in ("literal_error", "enum"):
            options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            message = f"{value!r} is not one of: {', '.join(options)}" + did_you_mean(str(value), options)
        elif kind == "string_pattern_mismatch":
            message = (
                _PATTERN_HELP.get(str(ctx.get("pattern")), "has the wrong form") + f" (got {_short(value)})"
            )
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
            head = re.match(r"^(\w+): ", message)
            fields = _fields_at(cls, loc) or {}
            if head and head.group(1) in fields:
                loc, message = (*loc, head.group(1)), message[head.end() :]
        else:
            message = f"{message[0].lower()}{message[1:]} (got {_short(value)})"
        problems.append(Finding(display, doc.line(loc), format_loc(loc), message))
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(cls: type[BaseModel], loc: Loc) -> dict[str, Any] | None:
    current: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return None
        current = _model_in(current.model_fields[part].annotation)
    return dict(current.model_fields) if current is not None else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def did_you_mean(word: str, pool: list[str]) -> str:
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
