"""Fingerprint speed per weight format, against ``openssl dgst -sha256`` on the same bytes.

    .venv/bin/python benchmarks/fingerprint.py [--gib 0.5] [--formats safetensors,gguf-q8_0,gguf-f16,pytorch,npz] [--json]
    .venv/bin/python benchmarks/fingerprint.py --search 1000,10000 [--json]

For each format it writes an N GiB file of 4096x8192 matrices (safetensors float32 with
benchmarks/attribution.py's writer; GGUF Q8_0 or F16 with the writer below), warms the page
cache (``pytorch``: ``torch.save``; ``npz``: an uncompressed ``.npz``), and prints the best of three wall times and peak RSS of ``lakegen fingerprint --no-cache``
and of ``openssl dgst -sha256`` (the floor: a fingerprint hashes every byte too), and their ratio.
It also prints the machine's load (``os.getloadavg``), the ratio of CPU times and the ratio with both
pinned to one core: lakegen hashes in a thread beside the sampling, so the wall-time ratio moves with
the cores the load leaves (see :func:`cpu_and_one_core`).

``--search N,...`` instead times the search over a lake of N cached fingerprints: synthetic but
shaped as real ones (the digits MLP's fingerprint as template, its samples redrawn: families of
eight, each member correlating with its root at 0.4 to 0.99, twenty architectures by tensor name),
written to a fingerprint cache. For each N it prints one new model against the cache
(``closest``: the signatures, the candidates, the exact comparisons), the nearest-signature search
of a cold lake (:class:`~lakegen.attribution.neighbours.Neighbours` against every pair), and how
many members had a relative among their 16 nearest, by correlation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from attribution import LAKEGEN, against_openssl, peak_rss_mib, write_big

ROWS, COLS = 4096, 8192
GGUF_TYPES = {"q8_0": (8, 32, 34), "f16": (1, 1, 2)}  # label -> (GGML type, elements, bytes) per block


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def write_gguf(path: Path, gib: float, kind: str) -> None:
    """An N GiB GGUF (version 3) file of ``kind`` matrices, random values at realistic scales."""
    ggml, block, size = GGUF_TYPES[kind]
    per = ROWS * COLS // block * size
    count = max(1, int(gib * (1 << 30) // per))
    kv = _string("general.architecture") + struct.pack("<I", 8) + _string("llama")
    infos = b""
    for i in range(count):
        infos += _string(f"blk.{i}.ffn_up.weight") + struct.pack("<IQQ", 2, COLS, ROWS)
        infos += struct.pack("<IQ", ggml, i * per)  # per is a multiple of the 32-byte alignment
    head = b"GGUF" + struct.pack("<IQQ", 3, count, 1) + kv + infos
    head += b"\0" * (-len(head) % 32)
    rng = np.random.default_rng(0)
    rows = 256
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(count):
            for _ in range(0, ROWS, rows):
                x = rng.standard_normal((rows, COLS), dtype=np.float32) * 0.02
                if kind == "f16":
                    f.write(x.astype(np.float16).tobytes())
                    continue
                blocks = x.reshape(-1, 32)
                d = np.abs(blocks).max(axis=1, keepdims=True) / 127
                q = np.round(blocks / d).astype(np.int8)
                out = np.empty((len(blocks), 34), np.uint8)
                out[:, :2] = d.astype(np.float16).view(np.uint8)
                out[:, 2:] = q.view(np.uint8)
                f.write(out.tobytes())


FAMILY, ARCHITECTURES = 8, 20
TEMPLATE = Path(__file__).resolve().parents[1] / "catalog/artifacts/models/digits-mlp-base-1.0.0.safetensors"


def synthetic_lake(
    n: int, rng: np.random.Generator, architectures: int = ARCHITECTURES
) -> tuple[list, list[int], list[float]]:
    """``n`` fingerprints: families of :data:`FAMILY` (a root, and members correlating with it at
    0.4-0.99), each family in one of :data:`ARCHITECTURES` architectures (the template's tensors
    renamed, so their sketches are independent). Returns them, each one's family and correlation."""
    from lakegen.fingerprint import fingerprint
    from lakegen.fingerprint.sampling import signature_of

    template = fingerprint(TEMPLATE)
    fps, family, corr = [], [], []
    for f in range((n + FAMILY - 1) // FAMILY):
        arch = f % architectures
        tensors = [replace(t, name=f"arch{arch}.{t.name}") for t in template.tensors]
        root = rng.standard_normal(template.samples.shape).astype(np.float32)
        for m in range(min(FAMILY, n - len(fps))):
            r = 1.0 if m == 0 else float(rng.uniform(0.4, 0.99))
            x = r * root + np.sqrt(1 - r * r) * rng.standard_normal(root.shape).astype(np.float32)
            x = (x * 0.05).astype(np.float32)
            sha = f"{len(fps):064x}"
            fps.append(
                replace(template, sha256=sha, tensors=tensors, samples=x, signature=signature_of(tensors, x))
            )
            family.append(f)
            corr.append(r)
    return fps, family, corr


def derived(root: Any, rng: np.random.Generator, r: float = 0.9) -> Any:
    """A new member of ``root``'s family."""
    from lakegen.fingerprint.sampling import signature_of

    x = r * root.samples + np.sqrt(1 - r * r) * 0.05 * rng.standard_normal(root.samples.shape)
    x = x.astype(np.float32)
    return replace(root, sha256="f" * 64, samples=x, signature=signature_of(root.tensors, x))


def search(sizes: list[int], architectures: int = ARCHITECTURES) -> dict[str, dict[str, float]]:
    from lakegen.attribution import closest
    from lakegen.attribution.neighbours import Neighbours
    from lakegen.fingerprint import Cache
    from lakegen.fingerprint.cache import Cached

    out = {}
    rng = np.random.default_rng(0)
    for n in sizes:
        fps, family, corr = synthetic_lake(n, rng, architectures)
        new, new_family = derived(fps[0], rng), family[0]
        with tempfile.TemporaryDirectory(prefix="lakegen-search-bench-") as tmp:
            cache = Cache(tmp)
            for fp in fps:
                cache.put(fp.sha256, fp)
            keys = {f"m{i}": fp.sha256 for i, fp in enumerate(fps)}
            times, found = [], False
            for _ in range(3):
                known = Cached(cache, keys)  # nothing loaded yet: the signatures are read from disk
                start = time.perf_counter()
                matches = closest(new, known)
                times.append(time.perf_counter() - start)
                found = any(family[int(m.id[1:])] == new_family for m in matches if m.relation != "unrelated")
        sigs = np.stack([fp.signature for fp in fps])
        archs = [fp.architecture for fp in fps]
        start = time.perf_counter()
        index = Neighbours(sigs, archs)
        hits = dict(index.each(16))
        indexed = time.perf_counter() - start
        start = time.perf_counter()
        unit = sigs / np.linalg.norm(sigs, axis=1, keepdims=True)
        for lo in range(0, n, 1024):
            np.argpartition(-(unit[lo : lo + 1024] @ unit.T), 16, axis=1)
        every_pair = time.perf_counter() - start
        recall: dict[str, list[bool]] = {}
        for a in range(n):
            if corr[a] < 1.0:
                band = f"{int(corr[a] * 10) / 10:.1f}"
                recall.setdefault(band, []).append(any(family[b] == family[a] and b != a for b in hits[a]))
        out[str(n)] = {
            "closest_s": min(times),
            "closest_found_family": found,
            "cold_neighbours_s": indexed,
            "cold_every_pair_s": every_pair,
            **{f"recall_{band}": float(np.mean(v)) for band, v in sorted(recall.items())},
        }
    return out


def cpu_and_one_core(path: Path) -> dict[str, float]:
    """What the load cannot blur, best of three each: the CPU time (user + system) of both, and both
    pinned to one core (``taskset -c 0``). lakegen hashes in a thread beside the sampling, so with a
    second core free its wall time is bounded by the hash, and sharing one the two add up: on a
    shared machine the wall-time ratio lies between, moving with what the other load leaves."""
    ssl_cmd, lg_cmd = (
        ["openssl", "dgst", "-sha256", str(path)],
        [str(LAKEGEN), "fingerprint", "--no-cache", "--json", str(path)],
    )
    out = {
        "openssl_cpu_s": min(_cpu(ssl_cmd) for _ in range(3)),
        "lakegen_cpu_s": min(_cpu(lg_cmd) for _ in range(3)),
    }
    out["cpu_ratio"] = out["lakegen_cpu_s"] / out["openssl_cpu_s"]
    if shutil.which("taskset") is not None:
        pin = ["taskset", "-c", "0"]
        ssl = min(peak_rss_mib([*pin, *ssl_cmd])[0] for _ in range(3))
        lg = min(peak_rss_mib([*pin, *lg_cmd])[0] for _ in range(3))
        out |= {"one_core_openssl_s": ssl, "one_core_lakegen_s": lg, "one_core_ratio": lg / ssl}
    return out


def _cpu(cmd: list[str]) -> float:
    """User plus system seconds of ``cmd`` and its threads."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_other(path: Path, gib: float) -> None:
    """The same float32 4096x8192 matrices as a PyTorch state dict (``torch.save``: a zip of raw
    storages) or an uncompressed ``.npz`` (a zip of raw ``.npy`` arrays); one matrix in memory at a
    time for the npz, the whole dict for torch (it pickles them together)."""
    import zipfile

    rows, cols = 4096, 8192
    count = max(1, int(gib * (1 << 30) // (rows * cols * 4)))
    rng = np.random.default_rng(0)
    if path.suffix == ".npz":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for i in range(count):
                with z.open(f"layers.{i}.weight.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, rng.standard_normal((rows, cols), dtype=np.float32))
        return
    import torch

    state = {
        f"layers.{i}.weight": torch.from_numpy(rng.standard_normal((rows, cols), dtype=np.float32))
        for i in range(count)
    }
    torch.save(state, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.5)
    parser.add_argument("--formats", default="safetensors,gguf-q8_0,gguf-f16")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--search", help="lake sizes, e.g. 1000,10000: time the search instead")
    parser.add_argument("--architectures", type=int, default=ARCHITECTURES, help="in the --search lake")
    args = parser.parse_args(argv)
    load = "load average {:.2f} {:.2f} {:.2f} on {} cores".format(*os.getloadavg(), os.cpu_count())
    if args.search:
        found = search([int(n) for n in args.search.split(",")], args.architectures)
        if args.json:
            print(json.dumps({"load": load, "search": found}, indent=1))
            return 0
        print(f"{load}; {args.architectures} architectures")
        for n, f in found.items():
            bands = ", ".join(f"{k[7:]}: {v:.0%}" for k, v in f.items() if k.startswith("recall_"))
            print(
                f"{n:>6} cached  one new model {f['closest_s']:.2f} s (family found: {f['closest_found_family']})"
                f"  cold lake: neighbours {f['cold_neighbours_s']:.2f} s, every pair {f['cold_every_pair_s']:.2f} s"
                f"  relative among 16 nearest by correlation {bands}"
            )
        return 0
    figures = {}
    with tempfile.TemporaryDirectory(prefix="lakegen-fp-bench-") as tmp:
        for fmt in args.formats.split(","):
            if fmt == "safetensors":
                path = Path(tmp) / "big.safetensors"
                write_big(path, args.gib)
            elif fmt in ("pytorch", "npz"):
                path = Path(tmp) / ("big.bin" if fmt == "pytorch" else "big.npz")
                write_other(path, args.gib)
            else:
                path = Path(tmp) / "big.gguf"
                write_gguf(path, args.gib, fmt.removeprefix("gguf-"))
            figures[fmt] = against_openssl([path], path)
            figures[fmt].update(cpu_and_one_core(path))
            path.unlink()
    if args.json:
        print(json.dumps({"load": load, **figures}, indent=1))
    else:
        print(load)
        for fmt, f in figures.items():
            print(
                f"{fmt:12} {f['gib']:.2f} GiB  lakegen {f['lakegen_s']:.2f} s ({f['lakegen_peak_rss_mib']:.0f} MiB)"
                f"  openssl {f['openssl_s']:.2f} s  ratio {f['ratio']:.2f}"
                + f"  CPU time ratio {f['cpu_ratio']:.2f}"
                + (f"  on one core: ratio {f['one_core_ratio']:.2f}" if "one_core_ratio" in f else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
