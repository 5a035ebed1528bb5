"""Text on its way to a terminal, made inert.

Values printed by the CLI come from manifests, old git blobs and git metadata
(author, subject), none of which lakegen wrote. An ESC in any of them could
move the cursor, recolour or retitle the terminal, or hide the rest of a line;
bidirectional overrides can reorder what a reader sees. :func:`printable`
shows each such character as a visible escape instead.
"""

from __future__ import annotations

import re
from typing import TextIO

# Control characters, then the bidirectional marks and overrides.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
# What a stream of lines may carry besides: newlines and tabs, and the colour (SGR) sequences
# lakegen's own renderer writes around text it has already made printable.
_STREAM_UNSAFE = re.compile(f"\x1b\\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def printable(text: str) -> str:
    """``text`` with every control and bidirectional character written as ``\\xNN`` or ``\\uNNNN``."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class PrintableStream:
    """A text stream that writes every control and bidirectional character as an escape (all but
    newlines, tabs and colour codes): the CLI's last line of defence, whatever a command prints."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_STREAM_UNSAFE.sub(_keep_colour, text))
        return len(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _keep_colour(match: re.Match[str]) -> str:
    return match.group() if match.group().startswith("\x1b[") else _escape(match)
