"""A Hugging Face model card as hostile input: its front matter read safely, its sections by heading."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen import safeyaml
from lakegen.errors import Finding, LakeError
from lakegen.model.manifest import _licensing

CARD = "README.md"
RISKS = ("minimal", "limited", "high", "unacceptable")
NO_SPLIT = "unspecified"  # a model-index result need not name its split; an evaluation must
_MAX_TEXT = 20_000
_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$"
_PLACEHOLDER = re.compile(r"^\s*(\[?more information needed\]?|\[?needs more information\]?)\s*$", re.I)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HYPERPARAMETER = re.compile(r"^\s*[-*]\s+`?([A-Za-z][\w .()/-]{0,99}?)`?\s*:\s*(.+?)\s*$")
# The card's section titles that fill manifest fields, matched on lowercase words.
_SECTIONS = {
    "intended_use": ("intended uses", "intended use", "uses", "direct use"),
    "limitations": (
        "limitations",
        "bias, risks, and limitations",
        "risks and limitations",
        "out-of-scope use",
    ),
    "procedure": ("training procedure", "training details", "training"),
    "hyperparameters": ("training hyperparameters", "hyperparameters", "hyper parameters"),
    "citation": ("citation", "bibtex", "citation information"),
}


@dataclass
class Card:
    """A model card: its front matter (with the card line of each key) and its Markdown body."""

    display: str
    front: dict[str, Any] = field(default_factory=dict)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1

    def line(self, *loc: str | int) -> int:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


def read_card(path: Path, display: str) -> Card:
    """Parse a model card; broken front matter raises :class:`LakeError` at its line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise LakeError(Finding(display, 1, "", f"cannot read the card: {e.strerror}")) from None
    except UnicodeDecodeError as e:
        raise LakeError(Finding(display, 1, "", f"not UTF-8 at byte {e.start}")) from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return Card(display, body=text)
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise LakeError(Finding(display, 1, "", "the front matter opened by '---' is never closed"))
    front_text = "".join(lines[1:end])
    try:
        doc = safeyaml.parse(front_text) if front_text.strip() else safeyaml.Document({}, {})
    except safeyaml._Refused as e:  # its line counts from the front matter's first line
        raise LakeError(Finding(display, e.line + 1, "", f"front matter: {e.message}")) from None
    if not isinstance(doc.data, dict):
        raise LakeError(Finding(display, 2, "", "front matter must be a YAML mapping"))
    return Card(
        display,
        front=doc.data,
        lines={loc: n + 1 for loc, n in doc.lines.items()},
        body="".join(lines[end + 1 :]),
        body_line=end + 2,
    )


@dataclass
class Section:
    level: int
    title: str
    line: int  # of its heading, in the card
    text: str
    end: int  # the card line after its last


def sections(card: Card) -> list[Section]:
    """The body's headings, each with its text up to the next heading of the same or a higher level."""
    heads: list[tuple[int, str, int]] = []
    body = card.body.splitlines()
    fenced = False
    for i, line in enumerate(body):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            heads.append((i, m.group(2), len(m.group(1))))
    out = []
    for k, (i, title, level) in enumerate(heads):
        stop = next((j for j, _, lv in heads[k + 1 :] if lv <= level), len(body))
        text = "\n".join(line.rstrip() for line in body[i + 1 : stop]).strip()
        out.append(Section(level, title, card.body_line + i, text, card.body_line + stop))
    return out


def _section(found: list[Section], key: str) -> Section | None:
    names = _SECTIONS[key]
    for section in found:
        title = re.sub(r"[^a-z ,&-]", "", section.title.lower()).strip()
        named = title in names or any(title.startswith(n + " ") for n in names if " " in n)
        if named and section.text and not _PLACEHOLDER.match(section.text):
            return section
    return None


def _capped(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text
    cut = text.rfind("\n\n", 0, _MAX_TEXT - 100)
    return text[: cut if cut > 0 else _MAX_TEXT - 100] + "\n\n(cut here; the card has the rest)"


def normalise_licence(value: str) -> str | None:
    """The SPDX form of a Hub licence id or expression (``apache-2.0`` -> ``Apache-2.0``), or None."""
    info = _licensing().validate(value)
    return None if info.errors else str(info.normalized_expression)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
