"""Validation speed: the demo lake, and a generated lake of N manifests (default 10,000).

    .venv/bin/python benchmarks/validate.py [--entries 10000] [--keep DIR] [--big-gib 2]

Prints wall time of ``lakegen validate`` (the real CLI, artifacts verified) on
both lakes, the in-process time of ``load_catalog`` with and without artifact
hashing, and, as a baseline run in the same process, the time PyYAML's C
``safe_load`` alone takes to parse the same files.

``--big-gib N`` validates a lake whose one model artifact is an N GiB file
three times: with no hash memo (the file is read), again (the memo answers),
and after rewriting one byte and setting the modification time back (read
again, and the mismatch is reported); ``openssl dgst -sha256`` on the same file
is the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lakegen.catalog.loader import load_catalog, manifest_files

REPO = Path(__file__).resolve().parents[1]
LAKEGEN = Path(sys.executable).with_name("lakegen")


def generate(root: Path, entries: int) -> None:
    """A lake of ``entries`` manifests: 1% datasets, 1% code, the rest models in lineage chains."""
    n_data = max(1, entries // 100)
    n_code = max(1, entries // 100)
    n_models = entries - n_data - n_code
    art = root / "catalog" / "artifacts"
    art.mkdir(parents=True)
    for kind in ("models", "datasets", "code"):
        (root / "catalog" / kind).mkdir(parents=True)
    (root / "src" / "gen").mkdir(parents=True)
    (root / "src" / "gen" / "nets.py").write_text("def build(**kw):\n    return kw\n")

    def blob(name: str) -> tuple[str, int, str]:
        data = hashlib.sha256(name.encode()).digest() * 128  # 4 KiB, distinct per artifact
        (art / name).write_bytes(data)
        return hashlib.sha256(data).hexdigest(), len(data), f"../artifacts/{name}"

    common = "owners: ['acme/ml', '@ada']\nlicense: Apache-2.0\ntags: [generated, bench]\n"
    for i in range(n_code):
        (root / f"catalog/code/code-{i}.yaml").write_text(
            f"kind: code\nid: code-{i}\nname: Code {i}\ndescription: Generated.\n{common}"
            "path: src\nentrypoints: {build_model: 'gen.nets:build'}\n"
        )
    for i in range(n_data):
        sha, size, uri = blob(f"data-{i}.npz")
        (root / f"catalog/datasets/data-{i}.yaml").write_text(
            f"kind: dataset\nid: data-{i}\nname: Data {i}\ndescription: Generated.\n{common}"
            "task: image-classification\nsource: {name: generator}\npersonal_data: false\n"
            f"versions:\n  - {{version: 1.0.0, released: 2026-01-01, artifact: "
            f"{{uri: {uri}, sha256: {sha}, size: {size}, format: npz}}}}\n"
            "splits: [{name: train, rows: 100}, {name: test, rows: 20}]\n"
        )
    for i in range(n_models):
        sha, size, uri = blob(f"model-{i}.safetensors")
        base = (
            f"base_models:\n  - {{id: model-{i - 1}, version: 1.0.0, relation: finetune}}\n" if i % 10 else ""
        )
        data_id, code_id = f"data-{i % n_data}", f"code-{i % n_code}"
        (root / f"catalog/models/model-{i}.yaml").write_text(
            f"# yaml-language-server: $schema=../../schemas/model.schema.json\n"
            f"kind: model\nid: model-{i}\nname: Model {i}\n"
            f"description: |\n  Generated model number {i}.\n\n  *Markdown* body.\n{common}"
            "task: image-classification\nframework: pytorch\n"
            f"architecture: {{family: fam-{i // 10}, code: {code_id}, entrypoint: 'gen.nets:build', "
            "config: {hidden: 8}}\n"
            f"versions:\n  - version: 1.0.0\n    released: 2026-01-02\n    changelog: First.\n"
            f"    artifact: {{uri: {uri}, sha256: {sha}, size: {size}, format: safetensors}}\n"
            f"{base}datasets:\n  - {{id: {data_id}, role: train}}\n"
            f"code:\n  - {{id: {code_id}, role: train}}\n"
            f"evaluations:\n  - {{dataset: {data_id}, split: test, metric: accuracy, value: 0.9}}\n"
            "intended_use: Benchmarks.\nlimitations: None known.\nrisk: minimal\n"
        )


def cli_validate(root: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    result = subprocess.run([str(LAKEGEN), "--root", str(root), "validate"], capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode, result.stderr.strip().splitlines()[-1]


def in_process(root: Path) -> dict[str, float]:
    files = manifest_files(root)
    start = time.perf_counter()
    for f in files:
        yaml.load(f.read_bytes(), Loader=yaml.CSafeLoader)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    catalog = load_catalog(root, verify_artifacts=False)
    no_hash = time.perf_counter() - start
    start = time.perf_counter()
    catalog = load_catalog(root)
    full = time.perf_counter() - start
    assert not catalog.errors, catalog.errors[:5]
    return {"files": len(files), "safe_load": baseline, "no_hash": no_hash, "full": full}


def report(name: str, root: Path) -> None:
    wall, rc, summary = cli_validate(root)
    figures = in_process(root)
    n = figures["files"]
    print(f"{name}: {n} manifests")
    print(f"  lakegen validate (CLI, artifacts verified): {wall:.2f} s  exit {rc}  [{summary}]")
    print(
        f"  load_catalog, artifacts verified (memo):   {figures['full']:.2f} s  ({n / figures['full']:.0f} manifests/s)"
    )
    print(f"  load_catalog, no artifact hashing:         {figures['no_hash']:.2f} s")
    print(
        f"  baseline yaml.CSafeLoader parse only:      {figures['safe_load']:.2f} s  "
        f"(full validation = {figures['full'] / figures['safe_load']:.1f}x the bare parse)"
    )


def big_artifact(gib: float) -> None:
    """Validation of an N GiB artifact: first read, then from the hash memo, then after tampering."""
    with tempfile.TemporaryDirectory(prefix="lakegen-big-") as tmp:
        root = Path(tmp) / "lake"
        generate(root, 3)  # one dataset, one code entry, one model
        path = root / "catalog/artifacts/model-0.safetensors"
        manifest = root / "catalog/models/model-0.yaml"
        old_sha, old_size = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
        block = os.urandom(64 << 20)
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            for _ in range(int(gib * 16)):
                f.write(block)
                digest.update(block)
        size = path.stat().st_size
        text = (
            manifest.read_text()
            .replace(old_sha, digest.hexdigest())
            .replace(f"size: {old_size}", f"size: {size}")
        )
        manifest.write_text(text)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))  # past the "just written" window
        env = {**os.environ, "LAKEGEN_CACHE": str(Path(tmp) / "cache")}

        def run() -> tuple[float, int, str]:
            start = time.perf_counter()
            result = subprocess.run(
                [str(LAKEGEN), "--root", str(root), "validate"], capture_output=True, text=True, env=env
            )
            return time.perf_counter() - start, result.returncode, result.stderr.strip().splitlines()[-1]

        start = time.perf_counter()
        subprocess.run(["openssl", "dgst", "-sha256", str(path)], capture_output=True, check=True)
        openssl = time.perf_counter() - start
        first, second = run(), run()
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        third = run()
        print(f"lake with one {size / 2**30:.1f} GiB artifact")
        print(f"  openssl dgst -sha256 (baseline):          {openssl:.2f} s")
        print(f"  lakegen validate, no memo (file read):   {first[0]:.2f} s  exit {first[1]}  [{first[2]}]")
        print(
            f"  lakegen validate, unchanged (memo):      {second[0]:.2f} s  exit {second[1]}  [{second[2]}]"
            f"  = {second[0] / first[0]:.3f}x the first"
        )
        print(f"  after a byte changed, mtime set back:    {third[0]:.2f} s  exit {third[1]}  [{third[2]}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="generate the lake here and keep it")
    parser.add_argument(
        "--big-gib", type=float, default=0, help="also validate an N GiB artifact (see above)"
    )
    args = parser.parse_args()
    if args.big_gib:
        big_artifact(args.big_gib)
    report("demo lake", REPO)
    root = args.keep or Path(tempfile.mkdtemp(prefix="lakegen-bench-"))
    if root.exists() and any(root.iterdir()):
        sys.exit(f"{root} is not empty")
    try:
        start = time.perf_counter()
        generate(root, args.entries)
        print(f"(generated {args.entries} manifests in {time.perf_counter() - start:.1f} s)")
        report("generated lake", root)
    finally:
        if args.keep is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
