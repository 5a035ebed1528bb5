"""Fingerprint speed per weight format, against ``openssl dgst -sha256`` on the same bytes.

    .venv/bin/python benchmarks/fingerprint.py [--gib 0.5] [--formats safetensors,gguf-q8_0,gguf-f16] [--json]

For each format it writes an N GiB file of 4096x8192 matrices (safetensors float32 with
benchmarks/attribution.py's writer; GGUF Q8_0 or F16 with the writer below), warms the page
cache, and prints the best of three wall times and peak RSS of ``lakegen fingerprint --no-cache``
and of ``openssl dgst -sha256`` (the floor: a fingerprint hashes every byte too), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
from attribution import against_openssl, write_big

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.5)
    parser.add_argument("--formats", default="safetensors,gguf-q8_0,gguf-f16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="lakegen-fp-bench-") as tmp:
        for fmt in args.formats.split(","):
            if fmt == "safetensors":
                path = Path(tmp) / "big.safetensors"
                write_big(path, args.gib)
            else:
                path = Path(tmp) / "big.gguf"
                write_gguf(path, args.gib, fmt.removeprefix("gguf-"))
            figures[fmt] = against_openssl([path], path)
            path.unlink()
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for fmt, f in figures.items():
            print(
                f"{fmt:12} {f['gib']:.2f} GiB  lakegen {f['lakegen_s']:.2f} s ({f['lakegen_peak_rss_mib']:.0f} MiB)"
                f"  openssl {f['openssl_s']:.2f} s  ratio {f['ratio']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
