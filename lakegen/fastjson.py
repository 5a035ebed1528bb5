"""JSON read and digested through orjson, three to ten times faster than the standard library on
the hot paths of a build (100,000 manifests decoded, 100,000 page dependencies digested).

:func:`loads` gives what :func:`json.loads` gives: the standard library reads what orjson refuses
(``NaN``/``Infinity``, integers past 64 bits, lone surrogates). :func:`compact` is compact UTF-8
JSON for digests and for files only lakegen reads back: its bytes are not :func:`json.dumps`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # what orjson does not read, the standard library may
        return json.loads(data)


def compact(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact UTF-8 JSON of ``value`` (tuples as lists, NaN as null); ``default`` as in json.dumps."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # an integer past 64 bits, a str subclass orjson refuses, NaN keys...
        return json.dumps(value, default=default, ensure_ascii=False).encode("utf-8", "surrogatepass")
