"""The weight formats lakegen reads: one :class:`Reader` per format, tried in order.

A new format is one module with a reader and one line in :data:`READERS` (or a
:func:`register` call from outside lakegen). A reader says from a file's name
and first bytes whether the file is its format, and opens it as a
:class:`~lakegen.weights.base.WeightFile`; it never runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from lakegen.weights import capture, gguf, npz, onnx, pytorch, safetensors
from lakegen.weights.base import WeightFile, WeightsError

HEAD_BYTES = 16  # what detect() sees of a file: enough for any magic number


@runtime_checkable
class Reader(Protocol):
    """One weight format."""

    name: str
    suffixes: tuple[str, ...]  # the file names it reads, for the message that refuses others

    def detect(self, path: Path, head: bytes) -> bool:
        """Whether ``path``, which starts with ``head`` (at most :data:`HEAD_BYTES`), is this format."""
        ...

    def open(self, path: Path) -> WeightFile:
        """The open file; :class:`WeightsError` (or ``OSError``) when it is not a sound one."""
        ...


READERS: list[Reader] = [
    capture.REMOTE_READER,
    safetensors.READER,
    npz.READER,
    pytorch.READER,
    gguf.READER,
    onnx.READER,
]


def register(reader: Reader) -> None:
    """Add a format, tried after those already known."""
    READERS.append(reader)


def open_file(path: Path | str) -> WeightFile:
    """Open one weight file with the first reader that recognises it, exactly as stored."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(path, "file not found")
    if not path.is_file():
        raise WeightsError(path, "not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        for reader in READERS:
            if reader.detect(path, head):
                return reader.open(path)
    except OSError as e:
        raise WeightsError(path, f"cannot read: {e.strerror or e}") from None
    known = ", ".join(s.lstrip(".") for r in READERS for s in r.suffixes)
    raise WeightsError(path, f"unknown weight format '{path.suffix.lower() or path.name}' ({known})")
