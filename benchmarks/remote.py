"""Remote artifacts: a big safetensors file on moto's S3 server on 127.0.0.1.

    .venv/bin/python benchmarks/remote.py [--gib 2] [--keep DIR] [--ranges]
    .venv/bin/python benchmarks/remote.py --many 500 [--lag-ms 50]

Uploads an N GiB safetensors file to a local S3 server, then times, each in a
fresh ``lakegen`` process under ``/usr/bin/time`` (peak RSS, blocks written):
``validate`` cold (one streaming pass: fetch and sha256, nothing written),
``attribute`` cold (the fingerprint from the header and the sampled rows, by
range requests), and both again warm; after each step, the bytes under the
lake's cache folder and its largest file. Baselines: ``openssl dgst -sha256`` of
the same file on local disk, and boto3's GET of the object piped into ``openssl
dgst -sha256`` (the transfer alone). Then counts, in this process, the bytes a
warm validate and attribute fetch, and the bytes a warm attribute reads from
disk (``/proc/self/io``); with ``--ranges``, the bytes and range requests of a
fingerprint made without the capture.

``--many N`` instead serves N small artifacts from a local HTTP server whose HEAD
answers take ``--lag-ms`` (a round trip to a far server), and times a cold and a
warm ``lakegen validate``: one HEAD after another would take N x lag.
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

import numpy as np
from safetensors.numpy import save_file

LAKEGEN = Path(sys.executable).with_name("lakegen")


def remote_lake(lake: Path, model_id: str, uri: str, sha256: str, size: int) -> None:
    """Add to ``lake`` a model whose artifact is at ``uri``, in a lake allowed to fetch from 127.0.0.1."""
    (lake / "catalog/models").mkdir(parents=True, exist_ok=True)
    (lake / "catalog/policies.yaml").write_text("rules: {}\nstorage:\n  allow_hosts: ['127.0.0.1']\n")
    (lake / f"catalog/models/{model_id}.yaml").write_text(
        f"""kind: model
id: {model_id}
name: Model {model_id}
description: Benchmark.
owners: ['@ada']
license: MIT
task: classification
framework: pytorch
architecture: {{family: bench}}
versions:
  - {{version: 1.0.0, released: 2026-01-02, artifact: {{uri: "{uri}", sha256: {sha256}, size: {size}, format: safetensors}}}}
risk: minimal
"""
    )


def big_file(path: Path, gib: float) -> None:
    rng = np.random.default_rng(0)
    rows = 4096
    n = int(gib * (1 << 30) / (rows * 4 * 4096))
    save_file(
        {f"layers.{i}.weight": rng.standard_normal((rows, 4096), dtype=np.float32) for i in range(n)},
        str(path),
    )


def timed(*cmd: str, env: dict[str, str], cwd: Path | None = None, shell: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        cmd[0] if shell else list(cmd),
        env=env,
        cwd=cwd,
        shell=shell,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, (out.stdout + out.stderr).strip().splitlines()[-1:][0] if (
        out.stdout + out.stderr
    ).strip() else ""


def measured(*cmd: str, env: dict[str, str]) -> str:
    """``cmd`` run under ``/usr/bin/time``: seconds, peak RSS and blocks written, and its last line."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M %O", *cmd], env=env, capture_output=True, text=True, check=False
    )
    lines = (out.stdout + out.stderr).strip().splitlines()
    stamp = next(line for line in reversed(lines) if line.startswith("TIME "))
    seconds, rss_kib, blocks = stamp.split()[1:]
    last = next((line for line in reversed(lines) if not line.startswith("TIME ")), "")
    return (
        f"{float(seconds):6.2f} s, peak RSS {int(rss_kib) / 1024:5.0f} MiB, "
        f"{int(blocks) * 512 / (1 << 20):7.1f} MiB written   ({last})"
    )


def on_disk(folder: Path) -> str:
    files = [p.stat().st_size for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return f"cache folder: {sum(files) / (1 << 20):.1f} MiB in {len(files)} files, largest {max(files, default=0):,} bytes"


def rchar() -> int:
    return int(
        next(
            line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar")
        ).split()[1]
    )


def many(count: int, lag_ms: float) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    blobs = {f"m{i}.safetensors": f"weights {i} ".encode() * 100 for i in range(count)}

    class Lagging(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            time.sleep(lag_ms / 1000)
            self._send(body=False)

        def do_GET(self) -> None:
            self._send(body=True)

        def _send(self, body: bool) -> None:
            data = blobs[self.path.lstrip("/")]
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Lagging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with tempfile.TemporaryDirectory(prefix="lakegen-remote-") as tmp:
        lake = Path(tmp) / "lake"
        for i, (name, data) in enumerate(blobs.items()):
            uri = f"http://127.0.0.1:{port}/{name}"
            remote_lake(lake, f"m{i}", uri, hashlib.sha256(data).hexdigest(), len(data))
        env = {k: v for k, v in os.environ.items() if k != "LAKEGEN_OFFLINE"}
        print(
            f"{count} remote artifacts, HEAD answered after {lag_ms:g} ms (one after another: {count * lag_ms / 1000:.1f} s)"
        )
        for run in ("cold", "warm"):
            t, last = timed(str(LAKEGEN), "--root", str(lake), "validate", env=env)
            print(f"lakegen validate, {run}: {t:6.2f} s   ({last})")
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--ranges", action="store_true", help="also fingerprint without the capture")
    parser.add_argument("--many", type=int, default=0)
    parser.add_argument("--lag-ms", type=float, default=50.0)
    args = parser.parse_args()
    if args.many:
        many(args.many, args.lag_ms)
        return
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    work = args.keep or Path(tempfile.mkdtemp(prefix="lakegen-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.update(env)
    os.environ.pop("LAKEGEN_OFFLINE", None)
    env.pop("LAKEGEN_OFFLINE", None)
    try:
        data = work / "big.safetensors"
        if not data.exists():
            big_file(data, args.gib)
        size = data.stat().st_size
        with open(data, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        s3.upload_file(str(data), "bench", "big.safetensors")
        lake = work / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        remote_lake(lake, "big", "s3://bench/big.safetensors", digest, size)
        print(f"{size / (1 << 30):.2f} GiB safetensors on moto S3 at {host}:{port}")
        t, _ = timed(f"openssl dgst -sha256 {data}", env=env, shell=True)
        print(f"openssl dgst -sha256 (local file):          {t:6.2f} s")
        get = (
            f'{sys.executable} -c "import boto3,shutil,sys; '
            "b=boto3.client('s3').get_object(Bucket='bench',Key='big.safetensors')['Body']; "
            f'shutil.copyfileobj(b, sys.stdout.buffer, 8<<20)" | openssl dgst -sha256'
        )
        t, _ = timed(get, env=env, shell=True)
        print(f"boto3 GET | openssl dgst -sha256:           {t:6.2f} s")
        cache = lake / ".lakegen" / "cache"
        for run in ("cold", "warm"):
            for step in ("validate", "attribute"):
                print(f"lakegen {step}, {run}: {measured(str(LAKEGEN), '--root', str(lake), step, env=env)}")
                print(f"    {on_disk(cache)}")
        from lakegen.artifacts import remote
        from lakegen.catalog.loader import load_catalog
        from lakegen.fingerprint import Cache
        from lakegen.lineage.recover import attribute_catalog

        catalog = load_catalog(lake)
        fetcher = remote.for_lake(lake)
        print(
            f"warm validate, in process: {catalog.artifacts[('big', '1.0.0')]}, {fetcher.bytes_fetched} bytes fetched"
        )
        before = rchar()
        attribute_catalog(catalog, Cache(cache))
        print(
            f"warm attribute, in process: {fetcher.bytes_fetched} bytes fetched, {rchar() - before:,} bytes "
            "read from disk in all (records and the cached fingerprint)"
        )

        def attribute_without(derived: tuple[str, ...], what: str) -> None:
            for name in derived:
                shutil.rmtree(cache / name, ignore_errors=True)
                (cache / name).unlink(missing_ok=True)
            start = time.perf_counter()
            attribute_catalog(catalog, Cache(cache))
            print(
                f"attribute with {what}, in process: {time.perf_counter() - start:.2f} s, "
                f"{fetcher.bytes_fetched:,} bytes in {fetcher.range_requests} range requests "
                f"({fetcher.bytes_fetched / size:.2%} of the file)"
            )

        attribute_without(("fingerprints", "lineage.json"), "no fingerprint cached (from the capture)")
        if args.ranges:  # moto copies the whole object for every range it serves: keep it small
            attribute_without(("fingerprints", "lineage.json", "caught"), "no capture (by range requests)")
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
