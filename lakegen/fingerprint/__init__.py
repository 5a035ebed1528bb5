"""Compact fingerprints of weight files: one streaming pass that also yields the sha256.

A fingerprint keeps, for every tensor, its name, dtype and shape (from the
header) and its values at a fixed pseudo-random set of coordinates: a
``GRID`` x ``GRID`` sub-matrix of each matrix (rows and columns seeded by the
tensor's name and shape) and ``VECTOR`` entries of each vector. Sampling is a
linear map, so ``sample(A) - sample(B) = sample(A - B)``, a low-rank delta
stays low-rank on the sub-matrix, and a merge of models is the same mix of
their samples. Every model of the same architecture is sampled at the same
coordinates, so all comparisons run on fingerprints alone.

Reading is one pass: a thread hashes the file (hashlib releases the GIL) while
the caller's thread gathers the samples (files under a megabyte are hashed after,
in the caller's thread); safetensors files are memory-mapped and the pages already
hashed or sampled are dropped from the process, so memory stays flat whatever the
file size. Fingerprints are cached by content
(sha256) under ``.lakegen/cache/`` (or ``$LAKEGEN_CACHE``), with a per-path
stat record so an unchanged file is never read again.

Modules: :mod:`~lakegen.fingerprint.prints` (the data and its bytes),
:mod:`~lakegen.fingerprint.sampling` (coordinates, samples, signature),
:mod:`~lakegen.fingerprint.hashing` (the sha256 thread),
:mod:`~lakegen.fingerprint.reading` (:func:`compute`: the one pass) and
:mod:`~lakegen.fingerprint.cache`.
"""

from lakegen.fingerprint.cache import Cache, Cached, cache_key, fingerprint, fresh, read_signature
from lakegen.fingerprint.prints import GRID, SIGNATURE, VECTOR, Fingerprint, TensorPrint
from lakegen.fingerprint.reading import compute, content_sha256, is_sharded, weight_files
from lakegen.fingerprint.sampling import coordinates

__all__ = [
    "GRID",
    "SIGNATURE",
    "VECTOR",
    "Cache",
    "Cached",
    "Fingerprint",
    "TensorPrint",
    "cache_key",
    "compute",
    "content_sha256",
    "coordinates",
    "fingerprint",
    "fresh",
    "is_sharded",
    "read_signature",
    "weight_files",
]
