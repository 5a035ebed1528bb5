"""Read one YAML manifest safely, keeping the line of every value.

Manifests come from pull requests, so they are hostile input. Only the YAML core
schema is accepted (strings, numbers, booleans, null, dates, lists, mappings);
tags such as ``!!python/object``, anchors and aliases (the alias-bomb vector),
duplicate keys, several documents, deep nesting and files over a size cap are
each refused with the line they occur on. The parser is libyaml's when present;
the tree is composed here from its events, so nothing PyYAML would construct
beyond plain data is ever built.
"""

from __future__ import annotations

import os
import weakref
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml import events

from lakegen.errors import Finding, LakeError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_STR = f"{_CORE}str"
Loc = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed manifest: plain data, and the 1-based line of every path in it."""

    data: Any
    lines: Mapping[Loc, int]

    def line(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            found = self.lines.get(tuple(loc[:end]))
            if found is not None:
                return found
        return 1

    def kept(self) -> Document:
        """The line map alone, compact, for a manifest whose data has been validated into an entry
        and is held for the rest of a compile: a 10,000-model lake's data and line dicts took
        150 MB, this takes a few."""
        return Document(None, LineMap(self.lines))


class _Shape(dict[Loc, int]):
    """Where each path's line sits in a :class:`LineMap`; one for all manifests with these paths."""


_SHAPES: weakref.WeakValueDictionary[tuple[Loc, ...], _Shape] = weakref.WeakValueDictionary()


class LineMap(Mapping[Loc, int]):
    """A manifest's line of every path, its paths shared with every manifest of the same shape
    (a lake's manifests mostly have the same fields) and its lines in an array."""

    __slots__ = ("_lines", "_shape")

    def __init__(self, lines: Mapping[Loc, int]):
        paths = tuple(lines)
        shape = _SHAPES.get(paths)
        if shape is None:
            shape = _Shape((loc, i) for i, loc in enumerate(paths))
            _SHAPES[paths] = shape
        self._shape = shape
        self._lines = array("L", lines.values())

    def __getitem__(self, loc: Loc) -> int:
        return self._lines[self._shape[loc]]

    def __iter__(self) -> Iterator[Loc]:
        return iter(self._shape)

    def __len__(self) -> int:
        return len(self._lines)


class _Refused(Exception):
    def __init__(self, line: int, message: str):
        self.line, self.message = line, message


def load(
    path: Path, display: str, max_bytes: int = MAX_BYTES, parser: Callable[[str], Document] | None = None
) -> Document:
    """Parse ``path`` (with ``parser``, default :func:`parse`); any problem raises :class:`LakeError`
    naming ``display`` and a line."""
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise _Refused(1, f"file is {size:,} bytes; manifests are capped at {max_bytes:,}")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise _Refused(1, f"file grew past {max_bytes:,} bytes while being read")
        return (parser or parse)(_decode(raw))
    except _Refused as e:
        raise LakeError(Finding(display, e.line, "", e.message)) from None
    except OSError as e:
        raise LakeError(Finding(display, 1, "", f"cannot read file: {e.strerror}")) from None


def parse(text: str) -> Document:
    """Parse manifest text (see the module docstring for what is refused)."""
    lines: dict[Loc, int] = {(): 1}
    loader = _Loader(text)
    try:
        loader.get_event()  # StreamStart
        if loader.check_event(events.StreamEndEvent):
            raise _Refused(1, "file is empty; a manifest is a YAML mapping")
        loader.get_event()  # DocumentStart
        data = _node(loader, (), 0, lines)
        loader.get_event()  # DocumentEnd
        if not loader.check_event(events.StreamEndEvent):
            start = loader.peek_event().start_mark.line + 1
            raise _Refused(start, "more than one YAML document; a manifest holds exactly one")
        return Document(data, lines)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        if "nesting depth" in (e.problem or ""):
            # libyaml 0.2.6 caps nesting itself and may scan that far ahead of our own check.
            raise _Refused(line, _TOO_DEEP) from None
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise _Refused(line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise _Refused(1, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _Refused(line, f"not UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded") from None


def _check_plain(event: events.NodeEvent, line: int, allowed: set[str]) -> None:
    if isinstance(event, events.AliasEvent):
        raise _Refused(line, f"aliases (*{event.anchor}) are not allowed in manifests")
    if event.anchor is not None:
        raise _Refused(line, f"anchors (&{event.anchor}) are not allowed in manifests")
    tag = getattr(event, "tag", None)
    if tag not in (None, "!") and tag not in allowed:
        raise _Refused(line, f"tag {tag.replace(_CORE, '!!')} is not allowed in manifests")


def _node(loader: Any, loc: Loc, depth: int, lines: dict[Loc, int]) -> Any:
    event = loader.get_event()
    line = event.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise _Refused(line, _TOO_DEEP)
    if isinstance(event, events.ScalarEvent):
        _check_plain(event, line, _SCALAR_TAGS)
        return _scalar(loader, event)
    if isinstance(event, events.SequenceStartEvent):
        _check_plain(event, line, {f"{_CORE}seq"})
        items: list[Any] = []
        while not loader.check_event(events.SequenceEndEvent):
            item_loc = (*loc, len(items))
            lines[item_loc] = loader.peek_event().start_mark.line + 1
            items.append(_node(loader, item_loc, depth + 1, lines))
        loader.get_event()
        return items
    if isinstance(event, events.MappingStartEvent):
        _check_plain(event, line, {f"{_CORE}map"})
        mapping: dict[str, Any] = {}
        while not loader.check_event(events.MappingEndEvent):
            key_event = loader.peek_event()
            key_line = key_event.start_mark.line + 1
            if not isinstance(key_event, events.ScalarEvent):
                raise _Refused(key_line, "mapping keys must be plain strings")
            key = _node(loader, loc, depth + 1, lines)
            if not isinstance(key, str):
                raise _Refused(key_line, f"mapping key {key!r} must be a string; quote it")
            key_loc = (*loc, key)
            if key in mapping:
                raise _Refused(key_line, f"duplicate key '{key}' (first at line {lines[key_loc]})")
            lines[key_loc] = key_line
            mapping[key] = _node(loader, key_loc, depth + 1, lines)
        loader.get_event()
        return mapping
    _check_plain(event, line, set())
    raise _Refused(line, f"unexpected YAML event {type(event).__name__}")


def _scalar(loader: Any, event: events.ScalarEvent) -> Any:
    if event.tag == "!" or (event.tag is None and event.style in ("'", '"', "|", ">")):
        return event.value  # quoted and block scalars are strings; skip the resolver
    tag = event.tag or loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == _STR or tag not in _SCALAR_TAGS:
        return event.value  # YAML 1.1's implicit '=' (value) and '<<' (merge) stay plain strings
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    return loader.yaml_constructors[tag](loader, node)
