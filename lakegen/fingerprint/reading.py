"""One pass over a weight file, adapter folder or sharded checkpoint: its sha256 and its fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from lakegen.artifacts.layout import is_sharded, model_layout
from lakegen.fingerprint.hashing import Hasher
from lakegen.fingerprint.prints import Fingerprint
from lakegen.fingerprint.sampling import sample_adapter, sample_model, signature_of
from lakegen.weights import (
    DequantizedFile,
    RangedSafetensors,
    SafetensorsFile,
    ShardedWeights,
    WeightFile,
    WeightsError,
    is_adapter,
    logical_tensors,
    open_model,
)


def weight_files(path: Path) -> list[Path]:
    """The files whose bytes a fingerprint hashes: the file itself, an adapter folder's weights,
    or a sharded checkpoint's shards (sorted by name)."""
    return model_layout(path).files


def content_sha256(path: Path, files: Sequence[Path], digests: Sequence[str]) -> str:
    """The sha256 a fingerprint is known by: the file's own, or for a sharded checkpoint the sha256
    of its shards' ``sha256sum`` listing (``sha256sum <shards, sorted> | sha256sum``)."""
    if not is_sharded(path):
        return digests[0]
    listing = "".join(f"{digest}  {file.name}\n" for file, digest in zip(files, digests, strict=True))
    return hashlib.sha256(listing.encode()).hexdigest()


def _hashable(part: WeightFile) -> SafetensorsFile | RangedSafetensors | None:
    """The safetensors file under ``part`` (a library's quantisation read back wraps one), which
    the hasher reads through its map, or knows the sha256 of (a remote one)."""
    inner = part.inner if isinstance(part, DequantizedFile) else part
    return inner if isinstance(inner, SafetensorsFile | RangedSafetensors) else None


def compute(path: Path | str) -> Fingerprint:
    """Read one weight file (or adapter folder) once: its sha256 and its fingerprint."""
    path = Path(path)
    adapter = is_adapter(path)
    wf = open_model(path)
    parts = wf.shards if isinstance(wf, ShardedWeights) else [wf]
    files = [part.path for part in parts]  # as weight_files(path) names them, without reading the index again
    hasher = Hasher([(part.path, _hashable(part)) for part in parts])
    threaded = not hasher.small()
    if threaded:
        hasher.start()
    try:
        if adapter:
            prints, samples, scales, meta, skipped = sample_adapter(wf, path)
        else:
            prints, samples, scales, meta, skipped = sample_model(wf)
        stored = len(wf.tensors)
        dtypes: dict[str, int] = {}
        scale_names = {t.scale for t in logical_tensors(wf) if t.scale} if not adapter else set()
        for info in wf.tensors.values():
            if info.name not in scale_names:
                dtypes[info.dtype] = dtypes.get(info.dtype, 0) + info.numel
    finally:
        if threaded:
            hasher.join()
        else:
            hasher.run()
        wf.close()
    if hasher.error is not None:
        if isinstance(hasher.error, OSError):
            raise WeightsError(path, f"cannot read: {hasher.error}")
        raise hasher.error
    shards = None
    if isinstance(wf, ShardedWeights):
        shards = [
            {"file": f.name, "sha256": d, "bytes": n}
            for f, d, n in zip(files, hasher.digests, hasher.sizes, strict=True)
        ]
    return Fingerprint(
        sha256=content_sha256(path, files, hasher.digests),
        bytes=sum(hasher.sizes),
        format=wf.format,
        kind="adapter" if adapter else "model",
        stored_tensors=stored,
        parameters=sum(dtypes.values()),
        dtypes=dtypes,
        tensors=prints,
        samples=samples,
        scales=scales,
        signature=signature_of(prints, samples),
        adapter=meta,
        skipped=skipped,
        shards=shards,
    )
