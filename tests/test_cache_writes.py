"""The attribution caches written a part at a time: the same bytes as written in one piece, and an
old file left whole when writing fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lakegen.atomicfile import writing
from lakegen.attribution.memo import code_digest
from lakegen.lineage import partial
from lakegen.lineage.memo import FORMAT, DiskMemo, _items


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "kept.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), writing(path) as f:
        f.write(b"half of the new")
        raise RuntimeError
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]


@pytest.mark.parametrize("size", [0, 1, 4, 9])
def test_the_memo_written_in_batches_is_its_json_text(size: int) -> None:
    memo = {f"k{i}": {"edges": [i, "é", 0.1 * i], "ok": i % 2 == 0, "none": None} for i in range(size)}
    text = "{" + "".join(_items(memo, batch=4)) + "}"
    assert text == json.dumps(memo, separators=(",", ":"))


def test_the_memo_file_reads_back(tmp_path: Path) -> None:
    memo = DiskMemo(tmp_path)
    for i in range(25_001):  # past one batch
        memo.put(f"{i:064x}", [i, True] if i % 3 else "c2lnbmF0dXJl")
    memo.save()
    data = json.loads(memo.path.read_bytes())
    assert memo.path.read_text() == json.dumps({"format": FORMAT, "memo": memo.used}, separators=(",", ":"))
    assert DiskMemo(tmp_path).get(f"{7:064x}") == [7, True] == data["memo"][f"{7:064x}"]


def test_the_signature_index_holds_unit_rows_of_this_run_and_the_last(tmp_path: Path) -> None:
    path = tmp_path / partial.SIGNATURES
    rng = np.random.default_rng(3)
    first = {f"{i:064x}": rng.normal(size=5) for i in range(3)}
    first[f"{3:064x}"] = np.array([np.nan, 0.0, 0.0, 0.0, 2.0])
    partial._write_signatures(path, {"sig": dict(first)})
    now = {f"{i:064x}": rng.normal(size=5).astype(np.float32) for i in range(2, 6)}
    partial._write_signatures(path, {"sig": dict(now)})
    ids, rows = partial._read_signatures(path)["sig"]
    assert ids == sorted({*first, *now})
    wanted = {**{k: v for k, v in first.items() if k not in now}, **now}
    for i, row in zip(ids, rows, strict=True):
        x = np.nan_to_num(np.asarray(wanted[i], np.float32))
        assert row.dtype == np.float32
        assert np.array_equal(row, x / np.maximum(np.linalg.norm(x), np.float32(1e-12)))
    assert str(np.load(path)["code"]) == code_digest()
