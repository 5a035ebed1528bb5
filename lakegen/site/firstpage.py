"""The first page of a search, precomputed: a query's bytes bounded however large the lake grows.

Pagefind's index is split into shards (:mod:`lakegen.site.searchindex`) and a query reads a
little of every shard, so its bytes grow with the lake. This index answers the first page
instead. For every *key* (a word, a word beginning of three letters or more, and a filter value)
it keeps how many entries match, what they count per filter value, and the :data:`TOP` best of
them with what a result shows and what a query is checked against (a *record*). Keys are hashed
into buckets (``pagefind/first/<b>.json.gz``) of at most :data:`BUCKET_REFS` records whatever the
size of the lake, so a query reads a small meta file plus one bucket per word and per chosen filter value.

The search script ranks the records exactly as :func:`score` does here (the same fields, weights
and tokens): a key whose matches all fit in :data:`TOP` (or a single word, or a single filter
value, whose first page fills from its top) gives the exact first page and count; otherwise the
script says so and its "search everything" runs Pagefind over every shard, as before.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import heapq
import json
import math
import re
from array import array
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lakegen.search import FACET_LABELS, FACETS, WEIGHTS, EntryFacets, params_bucket, value_bucket
from lakegen.site.filters import facet_text

TOP = 40  # records kept per key: a page of 30 results, and room for a filter to drop some
BUCKET_REFS = 200  # records a bucket lists, counted once per key: ~20 KB gzipped at most
FOLDER = "pagefind/first"
STATE = ".lakegen-first"  # what the next build patches from (lakegen/site/firstpatch.py)
PREFIX = 3  # the shortest word beginning that is a key of its own
DESCRIPTION = 240  # characters of a description kept (shown, and searched)
ROW_BITS = 32  # rows a lake can have: 4 billion
_ROW = (1 << ROW_BITS) - 1
_BEST = 1 << 8  # above any score (twice the largest weight)
_WORD = re.compile(r"[^\W_]+")
_MARKUP = re.compile(r"[*_`#>\[\]]|\]\([^)]*\)|<[^>]*>")


@dataclass(frozen=True, slots=True)
class Record:
    """What a result shows and what a query is checked against, for one entry page."""

    url: str
    title: str
    id: str
    kind: str
    fields: tuple[str, ...]  # in the order of WEIGHTS, lower case
    description: str
    facets: tuple[tuple[str, tuple[str, ...]], ...]  # (filter label, values), as the site's filters

    def row(self) -> list[Any]:
        facets = {label: list(values) for label, values in self.facets}
        return [self.url, self.title, self.id, self.kind, list(self.fields), self.description, facets]


def tokens(text: str) -> list[str]:
    """The words of ``text``, as the search script splits them (letters and digits, lower case)."""
    return _WORD.findall(text.lower())


def key_of(word: str) -> str:
    return "w:" + word


def filter_key(label: str, value: str) -> str:
    return f"f:{label}\0{value}"


def bucket_of(key: str, buckets: int) -> int:
    """FNV-1a (32 bits) of the key's UTF-8, which the search script computes the same way."""
    h = 0x811C9DC5
    for byte in key.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % buckets


def score(word: str, record: Record) -> float:
    """How well ``record`` matches one query word: the best field's weight, doubled for a whole
    word, single for a word beginning (of :data:`PREFIX` letters or more); 0 when neither."""
    best = 0.0
    for (_, weight), text in zip(WEIGHTS, record.fields, strict=True):
        words = tokens(text)
        if word in words:
            best = max(best, 2 * weight)
        elif len(word) >= PREFIX and any(w.startswith(word) for w in words):
            best = max(best, weight)
    return best


def record_of(url: str, entry_id: str, kind: str, manifest: dict[str, Any], facets: EntryFacets) -> Record:
    m = manifest
    name = m.get("name") if isinstance(m.get("name"), str) and m.get("name") else entry_id
    description = " ".join(_MARKUP.sub(" ", str(m.get("description") or "")).split())[:DESCRIPTION]
    text = " ".join([description, *(str(m.get(k) or "") for k in ("framework", "license"))])
    fields = (
        entry_id,
        str(name),
        " ".join(str(t) for t in m.get("tags") or [] if isinstance(m.get("tags"), list)),
        str(m.get("task") or ""),
        " ".join(str(o) for o in m.get("owners") or [] if isinstance(m.get("owners"), list)),
        text,
    )
    return Record(
        url,
        str(name),
        entry_id,
        kind,
        tuple(f.lower() for f in fields),
        description,
        _filters(facets),
    )


@functools.lru_cache(maxsize=4096)
def _text(value: str) -> str:
    # a lake's facet values repeat (tasks, licences, owners, buckets): 18 a record, 10,000 records
    return facet_text(value)


def _filters(facets: EntryFacets) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The entry's filter values under the labels its page gives Pagefind (``_macros.filters``)."""
    # what they are made of, as a key: a lake's entries share a few hundred combinations of them
    # (100,000 records a build)
    f = facets
    scores = tuple(sorted({(s.metric, value_bucket(s.value)) for s in f.scores}))
    bucket = params_bucket(f.params) if f.params is not None else None
    key = (f.kind, f.task, f.license, f.framework, tuple(f.owner), tuple(f.relation), tuple(f.lineage))
    return _filters_of((*key, tuple(f.evaluation)), bucket, scores)


@functools.lru_cache(maxsize=4096)
def _filters_of(
    values: tuple[Any, ...], bucket: str | None, scores: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for name, value in zip(FACETS, values, strict=True):
        if value is None or value == ():
            continue
        found = tuple(_text(v) for v in value) if isinstance(value, tuple) else (_text(str(value)),)
        out.append((_text(FACET_LABELS[name]), found))
    if bucket:
        out.append(("parameters", (_text(bucket),)))
    by_metric: dict[str, list[str]] = {}
    for metric, b in scores:
        by_metric.setdefault(metric, []).append(_text(b))
    out += [(_text(metric) + " range", tuple(b)) for metric, b in by_metric.items()]
    return tuple(out)


def _prefixes(word: str) -> tuple[tuple[str, int], ...]:
    """The keys of a word: its beginnings (1) and itself (2, a whole word counts double)."""
    return (*((key_of(word[:end]), 1) for end in range(PREFIX, len(word))), (key_of(word), 2))


def _keys(record: Record, known: dict[str, tuple[tuple[str, int], ...]]) -> dict[str, float]:
    """Every key the record is found under, with its :func:`score` (0 for a filter value);
    ``known`` keeps each word's keys (a lake's words repeat: names, tags, owners, tasks)."""
    found: dict[str, float] = {}
    for (_, weight), text in zip(WEIGHTS, record.fields, strict=True):
        for word in tokens(text):
            keys = known.get(word)
            if keys is None:
                keys = known[word] = _prefixes(word)
            for key, times in keys:
                if found.get(key, 0.0) < weight * times:
                    found[key] = weight * times
    for label, values in record.facets:
        for value in values:
            found[filter_key(label, value)] = 0.0
    return found


def order(record: Record) -> tuple[str, str]:
    return record.kind, record.id


class _Listed(NamedTuple):
    total: int  # entries under the key
    top: list[int]  # the best TOP of them (row numbers), all of them when they are fewer
    counts: dict[str, dict[str, int]] | None  # per filter value, when ``top`` is not all of them


class Index:
    """The first page's index of a lake's records: its :attr:`digest` (what it is made of, cheap),
    and its :meth:`files`."""

    def __init__(self, records: Iterable[Record]):
        self.rows = sorted(records, key=order)
        # each record's JSON made once: a bucket's file is put together from them
        self.texts = [_json(r.row()) for r in self.rows]

    @functools.cached_property
    def digest(self) -> str:
        h = hashlib.sha256(_json([TOP, BUCKET_REFS, PREFIX, WEIGHTS]).encode())
        for text in self.texts:
            h.update(text.encode() + b"\n")
        return h.hexdigest()

    def files(self) -> dict[str, bytes]:
        """``meta.json.gz``, one ``<b>.json.gz`` per bucket and the :data:`STATE` (name -> bytes)."""
        return _files(self.rows, self.texts)


def build(records: Iterable[Record]) -> dict[str, bytes]:
    """The files of the index of ``records`` (see :meth:`Index.files`)."""
    return Index(records).files()


def postings_of(rows: list[Record], only: Iterable[int] | None = None) -> dict[str, array[int]]:
    """Every key's postings over ``rows`` (or only the rows numbered ``only``), in row order.

    A posting is one int, the best first: (ROW_BITS+ bits of) the score's complement, then the row
    (arrays of 8-byte ints: a tenth of 10,000 models' 600,000 postings as Python ints in lists)."""
    postings: dict[str, array[int]] = defaultdict(lambda: array("q"))
    known: dict[str, tuple[tuple[str, int], ...]] = {}
    for i in range(len(rows)) if only is None else only:
        for key, weight in _keys(rows[i], known).items():
            postings[key].append((_BEST - int(weight)) << ROW_BITS | i)
    return postings


class Filters(NamedTuple):
    values: list[tuple[str, str]]  # every (label, value) of the lake, sorted
    has: Any  # entries x values, 0/1 (sparse)
    totals: dict[str, dict[str, int]]  # entries per label and value (the meta file's "filters")


def filters_of(rows: list[Record]) -> Filters:
    # imported here: a no-op build imports this module and needs neither (a third of a second)
    import numpy as np

    values = sorted({(label, v) for r in rows for label, vs in r.facets for v in vs})
    # entries x filter values: every long list's counts per value come out of one product
    number = {lv: n for n, lv in enumerate(values)}
    pairs = [(i, number[(label, v)]) for i, r in enumerate(rows) for label, vs in r.facets for v in vs]
    has = _matrix(pairs, (len(rows), len(values)))
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for (label, value), total in zip(values, np.asarray(has.sum(axis=0)).ravel().tolist(), strict=True):
        totals[label][value] = total
    return Filters(values, has, totals)


def counts_of(
    lists: dict[str, array[int]], filters: Filters, entries: int
) -> dict[str, dict[str, dict[str, int]]]:
    """Per filter value, how many of each list's postings have it."""
    import numpy as np
    from scipy import sparse

    keys = sorted(lists)
    cols = np.concatenate([np.frombuffer(lists[k], np.int64) for k in keys] or [np.zeros(0, np.int64)])
    lengths = [len(lists[k]) for k in keys]
    member = sparse.csr_matrix(
        (np.ones(len(cols), np.int32), (np.repeat(np.arange(len(keys)), lengths), cols & _ROW)),
        shape=(len(keys), entries),
    )
    tally = (member @ filters.has).tocsr()
    out = {}
    for n, key in enumerate(keys):
        row = tally.getrow(n)
        made: dict[str, dict[str, int]] = defaultdict(dict)
        for col, count in zip(row.indices.tolist(), row.data.tolist(), strict=True):
            made[filters.values[col][0]][filters.values[col][1]] = count
        out[key] = made
    return out


def listed(found: Any, counts: dict[str, dict[str, int]] | None) -> _Listed:
    return _Listed(len(found), [c & _ROW for c in heapq.nsmallest(TOP, found)], counts)


def bucket_count(tops: int) -> int:
    """Buckets for ``tops`` records listed in all: a bucket lists about BUCKET_REFS records (fewer
    once those its keys share are written once): its bytes are bounded by that, so the number of
    buckets grows with the lake instead."""
    return max(1, math.ceil(tops / BUCKET_REFS))


def meta_file(buckets: int, entries: int, filters: Filters) -> bytes:
    # the search script ranks with the weights and prefix length written here, not copies of its own
    weights = [w for _, w in WEIGHTS]
    return _gzip(
        _json(
            {
                "buckets": buckets,
                "top": TOP,
                "prefix": PREFIX,
                "weights": weights,
                "entries": entries,
                "filters": filters.totals,
            }
        )
    )


def bucket_file(keys: dict[str, _Listed], texts: list[str]) -> bytes:
    used = sorted({i for v in keys.values() for i in v.top})
    where = {i: n for n, i in enumerate(used)}
    lists = _json({k: [v.total, [where[i] for i in v.top], v.counts] for k, v in keys.items()})
    records = ",".join(texts[i] for i in used)
    return _gzip(f'{{"keys":{lists},"records":[{records}]}}')


def _files(rows: list[Record], texts: list[str]) -> dict[str, bytes]:
    postings = postings_of(rows)
    filters = filters_of(rows)
    counts = counts_of({k: p for k, p in postings.items() if len(p) > TOP}, filters, len(rows))
    lists = {key: listed(found, counts.get(key)) for key, found in postings.items()}
    buckets = bucket_count(sum(len(v.top) for v in lists.values()))
    grouped: list[dict[str, _Listed]] = [{} for _ in range(buckets)]
    for key in sorted(lists):
        grouped[bucket_of(key, buckets)][key] = lists[key]
    files = {"meta.json.gz": meta_file(buckets, len(rows), filters)}
    for b, keys in enumerate(grouped):
        files[f"{b}.json.gz"] = bucket_file(keys, texts)
    files[STATE] = state(postings, row_digests(texts), buckets)
    return files


# the state a whole build leaves for the next to patch from (lakegen/site/firstpatch.py)
MAGIC = b"lakegen-first-state 1\n"
ROW_DIGEST = 16  # bytes of each record's digest


@functools.cache
def state_code() -> str:
    """What the state's meaning depends on: this code and the index's parameters."""
    h = hashlib.sha256(_json([TOP, BUCKET_REFS, PREFIX, WEIGHTS, ROW_BITS]).encode())
    for module in (__file__, Path(__file__).with_name("firstpatch.py")):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def row_digests(texts: list[str]) -> bytes:
    return b"".join(hashlib.blake2b(t.encode(), digest_size=ROW_DIGEST).digest() for t in texts)


def state(postings: dict[str, array[int]], digests: bytes, buckets: int) -> bytes:
    """The state of an index whose keys have ``postings`` (in row order), and whose rows have
    ``digests`` (:func:`row_digests`)."""
    keys = sorted(postings)
    sizes = array("q", (len(postings[k]) for k in keys))
    header = {"code": state_code(), "buckets": buckets, "entries": len(digests) // ROW_DIGEST, "keys": keys}
    parts = [MAGIC, _json(header).encode(), b"\n", sizes.tobytes()]
    parts += [postings[k].tobytes() for k in keys]
    return b"".join([*parts, digests])


def _matrix(cells: list[tuple[int, int]], shape: tuple[int, int]) -> Any:
    """A sparse 0/1 matrix with ones at ``cells``."""
    import numpy as np
    from scipy import sparse

    ones = np.ones(len(cells), dtype=np.int32)
    return sparse.csr_matrix((ones, ([r for r, _ in cells], [c for _, c in cells])), shape=shape)


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _gzip(text: str) -> bytes:
    # level 6: a tenth larger than 9, a third of its time; mtime 0: the same bytes from the same index
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        path.unlink(missing_ok=True)  # it may be a hard link into the previous site
        path.write_bytes(data)
