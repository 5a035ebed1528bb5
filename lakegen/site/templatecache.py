"""Compiled templates kept between builds."""

from __future__ import annotations

import functools

from jinja2 import FileSystemBytecodeCache


@functools.cache
def template_cache() -> FileSystemBytecodeCache:
    """Where compiled templates are kept between builds (lakegen's and the theme's: compiling them
    cost half a second a build). Jinja's own per-user folder (``$TMPDIR/_jinja2-cache-<uid>``, which
    it makes private and checks is the user's), never the lake: a compiled template is code, and a
    pull request can commit files into the lake, ``.lakegen/`` included."""
    return FileSystemBytecodeCache()
