"""How the caches are written: write_atomic's text a chunk at a time is the text's UTF-8 bytes,
whole; what to_keep keeps of a cold run and of a warm one."""

from __future__ import annotations

from pathlib import Path

from lakegen import atomicfile
from lakegen.atomicfile import write_atomic
from lakegen.catalog.parsecache import to_keep


def test_a_text_longer_than_a_chunk_is_written_whole(tmp_path: Path) -> None:
    text = ("ab\u00e9\u4e2d\U0001f600" * (atomicfile.CHUNK // 3))[: 2 * atomicfile.CHUNK + 7]
    write_atomic(tmp_path / "t.json", text)
    assert (tmp_path / "t.json").read_bytes() == text.encode("utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_empty_text_and_bytes(tmp_path: Path) -> None:
    write_atomic(tmp_path / "e", "")
    write_atomic(tmp_path / "b", b"\x00\xff")
    assert (tmp_path / "e").read_bytes() == b""
    assert (tmp_path / "b").read_bytes() == b"\x00\xff"


def test_what_a_cache_file_keeps() -> None:
    used = {"b": 1, "a": 2}
    cold = to_keep({}, used)
    assert cold == used and list(cold or {}) == ["b", "a"]
    assert to_keep({"a": 0, "b": 0, "c": 0}, {"a": 2}) is None  # nothing new: the file stays
    assert to_keep({"z": 0}, used) == {"z": 0, "b": 1, "a": 2}
    assert to_keep({str(i): 0 for i in range(1010)}, {"n": 1}) == {"n": 1}  # mostly unused: dropped
