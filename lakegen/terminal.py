"""Text on its way to a terminal, made inert.

Values printed by the CLI come from manifests, old git blobs and git metadata
(author, subject), none of which lakegen wrote. An ESC in any of them could
move the cursor, recolour or retitle the terminal, or hide the rest of a line;
bidirectional overrides can reorder what a reader sees. :func:`printable`
shows each such character as a visible escape instead.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control and bidirectional character written as ``\\xNN`` or ``\\uNNNN``."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
