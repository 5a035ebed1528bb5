"""A field change in readable parts: short values as they are, structures as YAML, long text as a word diff.

``lakegen history``, ``lakegen diff`` and the site's audit trail show the same
:class:`~lakegen.model.index.FieldChange` rows. :func:`readable` turns one into
parts that each of them renders its own way (:func:`as_text` for a terminal,
the ``field_change`` macro of the site's templates as HTML), so no value is
shown as a Python repr or cut short:

- a short scalar stays inline: ``license: Apache-2.0 → MIT``;
- mappings and lists become YAML in the manifest's key order, each line marked
  ``-`` (removed) or ``+`` (added); two lists are compared item by item, so
  only the items that went or came are listed;
- long or multi-line text becomes a word diff, its unchanged lines folded to
  one line of context around each change.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from lakegen.model.index import FieldChange
from lakegen.terminal import printable

Mark = Literal[" ", "-", "+"]
LONG = 60  # characters: longer text is word-diffed rather than shown twice
WIDE = 120  # characters: YAML with a longer flow line is written in block style instead
CONTEXT = 1  # unchanged lines kept around each changed line of a word diff
GAP = "…"  # stands for unchanged lines left out of a word diff
_WORDS = re.compile(r"\s+|\S+")


@dataclass(frozen=True)
class Run:
    """A stretch of a word diff: kept (`` ``), deleted (``-``) or inserted (``+``)."""

    mark: Mark
    text: str


@dataclass(frozen=True)
class Readable:
    """One field change, in the one form of the three that suits its values.

    ``inline``: ``old`` and ``new`` are short scalars (either may be None: added,
    removed). Otherwise ``lines`` holds marked YAML or text lines, or ``words``
    a word diff, line by line (a line of one ``GAP`` run stands for lines left out).
    """

    field: str
    old: str | None = None
    new: str | None = None
    lines: tuple[tuple[Mark, str], ...] = ()
    words: tuple[tuple[Run, ...], ...] = ()

    @property
    def inline(self) -> bool:
        return not self.lines and not self.words


def readable(change: FieldChange) -> Readable:
    """The readable parts of ``change``, every string :func:`~lakegen.terminal.printable`.

    Old blobs in git were never validated, so a value may hold an ESC or a
    bidirectional override; shown as an escape, it can neither drive a terminal
    nor reorder what a reader of the site sees.
    """
    old, new, name = change.old, change.new, printable(change.field)
    if _is_short(old) and _is_short(new):
        return Readable(name, old=_printable(_scalar(old)), new=_printable(_scalar(new)))
    if isinstance(old, str) and isinstance(new, str):
        words = word_diff(old, new)
        if any(run.mark == " " and run.text.strip() for row in words for run in row):
            return Readable(
                name, words=tuple(tuple(Run(r.mark, printable(r.text)) for r in row) for row in words)
            )
        # nothing in common (a new sha256, a rewrite): the two texts read better whole
    if isinstance(old, list) and isinstance(new, list):
        lines = _by_item(old, new)
    else:
        lines = (*_marked("-", old), *_marked("+", new))
    return Readable(name, lines=tuple((mark, printable(line)) for mark, line in lines))


def _printable(text: str | None) -> str | None:
    return None if text is None else printable(text)


def as_text(change: FieldChange, indent: str = "") -> list[str]:
    """``change`` as terminal lines: ``-``/``+`` marks, ``[-deleted-]{+inserted+}`` words."""
    r = readable(change)
    if r.inline:
        if r.old is None:
            return [f"{indent}{r.field}: + {r.new}"]
        if r.new is None:
            return [f"{indent}{r.field}: - {r.old}"]
        return [f"{indent}{r.field}: {r.old} → {r.new}"]
    body = [f"{mark} {line}" for mark, line in r.lines]
    body += ["".join(_wdiff(run) for run in row) for row in r.words]
    return [f"{indent}{r.field}:", *(f"{indent}  {line}".rstrip() for line in body)]


def _wdiff(run: Run) -> str:
    return {" ": "{}", "-": "[-{}-]", "+": "{{+{}+}}"}[run.mark].format(run.text)


def word_diff(old: str, new: str) -> tuple[tuple[Run, ...], ...]:
    """The word diff of two texts, by line, without blank lines and lines beyond ``CONTEXT`` of a change."""
    a, b = _WORDS.findall(old.strip()), _WORDS.findall(new.strip())
    runs: list[Run] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            runs.append(Run(" ", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(Run("-", "".join(a[i1:i2])))
        if j2 > j1:
            runs.append(Run("+", "".join(b[j1:j2])))
    rows: list[list[Run]] = [[]]
    for run in runs:
        for n, piece in enumerate(run.text.split("\n")):
            if n:
                rows.append([])
            if piece:
                rows[-1].append(Run(run.mark, piece))
    changed = {n for n, row in enumerate(rows) if any(run.mark != " " for run in row)}
    out: list[tuple[Run, ...]] = []
    for n, row in enumerate(rows):
        if n in changed or (row and any(n + d in changed for d in range(-CONTEXT, CONTEXT + 1))):
            out.append(tuple(row))
        elif not out or out[-1] != (Run(" ", GAP),):
            out.append((Run(" ", GAP),))
    return tuple(out)


def _is_short(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict | list):
        return False
    text = _scalar(value) or ""
    return len(text) <= LONG and "\n" not in text


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def _by_item(old: list[Any], new: list[Any]) -> tuple[tuple[Mark, str], ...]:
    """The items that left ``old`` (``-``) and came into ``new`` (``+``), each as a YAML list item."""
    a = [json.dumps(v, sort_keys=True, default=str) for v in old]
    b = [json.dumps(v, sort_keys=True, default=str) for v in new]
    out: list[tuple[Mark, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out += _marked("-", old[i1:i2]) + _marked("+", new[j1:j2])
    return tuple(out)


def _marked(mark: Mark, value: Any) -> list[tuple[Mark, str]]:
    if value is None or value == [] or value == "":
        return []
    if isinstance(value, str):
        return [(mark, line) for line in value.strip("\n").split("\n")]
    return [(mark, line) for line in _yaml_lines(value)]


def _yaml_lines(value: Any) -> list[str]:
    """A list as YAML items one by one (so each item can be marked), anything else through ``as_yaml``.

    The items share one style: when one of them needs block style, all take it.
    """
    if not isinstance(value, list):
        return as_yaml(value).split("\n")
    block = any(isinstance(i, dict | list) and not as_yaml(i).startswith(("{", "[")) for i in value)
    out = []
    for item in value:
        first, *rest = as_yaml(item, block=block).split("\n")
        out += [f"- {first}", *(f"  {line}" for line in rest)]
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line text as a ``|`` block, the way manifests write it."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def as_yaml(value: Any, *, block: bool = False) -> str:
    """``value`` as YAML in its own key order: leaf mappings and lists in flow style when lines stay short
    (``block``: never)."""
    if not isinstance(value, dict | list):
        return _scalar(value) or ""
    dump: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "allow_unicode": True, "width": 1 << 16}
    if not block:
        flow = yaml.dump(value, default_flow_style=None, **dump)
        # a flow collection cannot hold a | block: text with line breaks (\n in JSON) needs block style
        if max(map(len, flow.splitlines()), default=0) <= WIDE and "\\n" not in json.dumps(
            value, default=str
        ):
            return flow.rstrip("\n")
    return yaml.dump(value, default_flow_style=False, **dump).rstrip("\n")
