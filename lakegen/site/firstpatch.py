"""The first page's index patched, not remade, when a rebuild changed a few of its records.

A whole index costs every record's keys and every long list's counts (two seconds of CPU at
10,000 models). Each build leaves, beside the buckets, its :data:`~lakegen.site.firstpage.STATE`:
every key's postings (8-byte ints, as :func:`~lakegen.site.firstpage.postings_of` makes them) and a
digest per record. The next build finds the records whose digest changed, redoes the keys they
had or have (lists, per-filter counts), rewrites the buckets those keys hash into and the meta
file, and keeps the other buckets. Anything doubtful (no state, a damaged one, other code or
parameters, rows added or removed, many changed, another bucket count) builds whole. The
bytes are those of a whole build (tests/test_firstpage.py).

The state is raw bytes behind a JSON header, never a pickle: it is read from the site folder.
"""

from __future__ import annotations

import gzip
import json
import os
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lakegen.site import firstpage as fp
from lakegen.site.cache import link

CHANGED = 0.02  # above this share of the records changed, a whole build is as cheap


def write(index: fp.Index, out: Path, old: Path | None = None) -> bool:
    """Write ``index`` into ``out`` (which must not exist): patched from the index in ``old`` (a
    previous build's folder) when its state says how and few records changed, else whole.
    Either way the same bytes. Returns whether it was patched."""
    made = patch(index.rows, index.texts, old) if old is not None else None
    if made is None:
        fp.write(out, index.files())
        return False
    assert old is not None
    out.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(old):  # the buckets no changed key hashes into, as they were
        if name not in made:
            link(old / name, out / name)
    fp.write(out, made)
    return True


class _State:
    def __init__(self, data: bytes):
        import numpy as np

        if not data.startswith(fp.MAGIC):
            raise ValueError("not a state")
        end = data.index(b"\n", len(fp.MAGIC))
        header = json.loads(data[len(fp.MAGIC) : end])
        if header["code"] != fp.state_code():
            raise ValueError("other code")
        self.keys: list[str] = header["keys"]
        self.buckets: int = header["buckets"]
        self.entries: int = header["entries"]
        at = end + 1
        self.sizes = np.frombuffer(data, np.int64, len(self.keys), at)
        at += 8 * len(self.keys)
        total = int(self.sizes.sum())
        self.postings = np.frombuffer(data, np.int64, total, at)
        at += 8 * total
        if len(data) != at + fp.ROW_DIGEST * self.entries:
            raise ValueError("damaged")
        self.digests = np.frombuffer(data, np.uint8, offset=at).reshape(self.entries, fp.ROW_DIGEST)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])


def _load(old: Path) -> _State | None:
    try:
        return _State((old / fp.STATE).read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def patch(rows: list[fp.Record], texts: list[str], old: Path) -> dict[str, bytes] | None:
    """The files of the index of ``rows`` that differ from those in ``old`` (the meta file, the
    buckets the changed records' keys hash into, the state), or None when it must be built whole."""
    import numpy as np

    found = _load(old)
    if found is None or found.entries != len(rows):
        return None
    there = set(os.listdir(old))  # the buckets kept are linked from there: all of them, or build whole
    if "meta.json.gz" not in there or any(f"{b}.json.gz" not in there for b in range(found.buckets)):
        return None
    digests = fp.row_digests(texts)
    now = np.frombuffer(digests, np.uint8).reshape(len(rows), fp.ROW_DIGEST)
    changed = np.flatnonzero((now != found.digests).any(axis=1))
    if len(changed) > max(1, CHANGED * len(rows)):
        return None
    had = np.flatnonzero(np.isin(found.postings & fp._ROW, changed))
    position = {k: n for n, k in enumerate(found.keys)}
    gained = fp.postings_of(rows, changed.tolist())
    redone: dict[str, array[int]] = {}
    for key in {found.keys[n] for n in np.searchsorted(found.starts, had, "right") - 1} | set(gained):
        n = position.get(key)
        kept = found.postings[found.starts[n] : found.starts[n + 1]] if n is not None else found.postings[:0]
        kept = kept[~np.isin(kept & fp._ROW, changed)]
        both = np.concatenate([kept, np.frombuffer(gained[key], np.int64) if key in gained else kept[:0]])
        redone[key] = array("q", both[np.argsort(both & fp._ROW, kind="stable")].tobytes())
    sizes = found.sizes.copy()
    for key, postings in redone.items():
        if key in position:
            sizes[position[key]] = len(postings)
    added = [k for k in redone if k not in position]
    tops = int(np.minimum(sizes, fp.TOP).sum()) + sum(min(len(redone[k]), fp.TOP) for k in added)
    buckets = fp.bucket_count(tops)
    if buckets != found.buckets:
        return None
    filters = fp.filters_of(rows)
    counts = fp.counts_of({k: p for k, p in redone.items() if len(p) > fp.TOP}, filters, len(rows))
    lists = {k: fp.listed(p, counts.get(k)) for k, p in redone.items() if len(p)}
    files = {"meta.json.gz": fp.meta_file(buckets, len(rows), filters)}
    row_of = {(r.kind, r.id): i for i, r in enumerate(rows)}
    if len(row_of) != len(rows):  # a kept list's records are found by kind and id
        return None
    touched: dict[int, dict[str, fp._Listed]] = {}
    for key in redone:
        touched.setdefault(fp.bucket_of(key, buckets), {})
    for key, made in lists.items():
        touched[fp.bucket_of(key, buckets)][key] = made
    try:
        for b, keys in touched.items():
            keys.update(_kept(old / f"{b}.json.gz", redone, row_of))
            files[f"{b}.json.gz"] = fp.bucket_file(keys, texts)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    files[fp.STATE] = _state(found, redone, digests, buckets)
    return files


def _kept(
    bucket: Path, redone: dict[str, Any], row_of: dict[tuple[str, str], int]
) -> Iterable[tuple[str, fp._Listed]]:
    """The lists of ``bucket`` that no changed record is in, as they were (they list unchanged
    records only, so their rows are found by kind and id)."""
    data = json.loads(gzip.decompress(bucket.read_bytes()))
    rows = [row_of[(r[3], r[2])] for r in data["records"]]
    for key, (total, listed, counts) in data["keys"].items():
        if key not in redone:
            yield key, fp._Listed(total, [rows[i] for i in listed], counts)


def _state(found: _State, redone: dict[str, array[int]], digests: bytes, buckets: int) -> bytes:
    """The state a whole build of the patched index would leave."""
    keys = sorted({*found.keys, *redone})
    postings: dict[str, array[int]] = {}
    position = {k: n for n, k in enumerate(found.keys)}
    for key in keys:
        if key in redone:
            if len(redone[key]):
                postings[key] = redone[key]
        else:
            n = position[key]
            postings[key] = found.postings[found.starts[n] : found.starts[n + 1]]  # type: ignore[assignment]
    return fp.state(postings, digests, buckets)
