"""Remote artifacts against real servers on 127.0.0.1: moto's S3 server, an HTTP server with
ranges, redirects, slow and cut-off bodies, and a Hugging Face endpoint through ``HF_ENDPOINT``."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from helpers import write_tree

from lakegen.artifacts import remote
from lakegen.catalog.loader import load_catalog

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_secret_token_never_printed"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: a cut-off body leaves whole chunks behind


class Files(BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) with ranges and ETags; the first path segment
    picks a behaviour: ``files``, ``cut`` (the first GET stops halfway), ``norange`` (ranges
    ignored), ``short`` (a range's body stops halfway), ``slow`` (stalls),
    ``drip`` (4 KiB every 50 ms), ``long`` (GET sends more than HEAD announced), ``lag`` (HEAD
    takes 0.2 s), ``same`` / ``other`` (redirect to this host / to ``localhost``), ``hf`` (a Hub
    endpoint)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        server: Any = self.server
        with server.lock:
            server.heads_now += 1
            server.heads_peak = max(server.heads_peak, server.heads_now)
        if self.path.startswith("/lag/"):
            time.sleep(0.2)
        self._serve(body=False)
        with server.lock:
            server.heads_now -= 1

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        server: Any = self.server
        mode, _, name = unquote(self.path).lstrip("/").partition("/")
        if body:
            server.gets[self.path] += 1
            server.auth_to[self.headers.get("Host")].append(self.headers.get("Authorization"))
        if mode in ("same", "other"):
            host = f"127.0.0.1:{server.port}" if mode == "same" else f"localhost:{server.port}"
            self.send_response(302)
            self.send_header("Location", f"http://{host}/files/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hf":
            server.auth.append(self.headers.get("Authorization"))
            prefix = f"org/model/resolve/{COMMIT}/"
            name = name.removeprefix(prefix) if name.startswith(prefix) else ""
        data = server.files.get(name)
        if mode == "long" and body and data is not None:
            data += b"more than HEAD said"
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(data)
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        ranged = self.headers.get("Range", "") if mode != "norange" else ""
        if self.headers.get("If-Range") not in (None, etag):
            ranged = ""  # the object changed: the whole of it, as RFC 9110 says
        if ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start, end = int(first), min(int(last) + 1, len(data)) if last else len(data)
            if body:
                server.ranges[self.path] += 1
        self.send_response(206 if ranged else 200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(end - start))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if mode == "short" and ranged:
            self.wfile.write(data[start : start + (end - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "slow":
            self.wfile.write(data[:1000])
            self.wfile.flush()
            time.sleep(3)
            return
        if mode == "drip":
            with contextlib.suppress(ConnectionError):  # the client gives up first
                for i in range(0, len(data), 4096):
                    self.wfile.write(data[i : i + 4096])
                    self.wfile.flush()
                    time.sleep(0.05)
            return
        if mode == "cut" and server.gets[self.path] == 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:end])


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gives up on a stalled body resets its connection: that is the test


@pytest.fixture
def http() -> Iterator[Any]:
    server: Any = Server(("127.0.0.1", 0), Files)
    server.files, server.gets, server.auth, server.port = {}, Counter(), [], server.server_address[1]
    server.ranges = Counter()  # path -> the range requests among its GETs
    server.lock, server.heads_now, server.heads_peak = threading.Lock(), 0, 0
    server.auth_to = defaultdict(list)  # Host header -> the Authorization headers of its GETs
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="lake")
    client.port = port  # type: ignore[attr-defined]
    yield client
    server.stop()


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(remote.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")


def manifest(uri: str, data: bytes, model_id: str = "remote-model") -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"""\
kind: model
id: {model_id}
name: A model whose weights live on a server
description: Fixture.
owners: ['@ada']
license: MIT
task: classification
framework: pytorch
architecture: {{family: fixture}}
versions:
  - {{version: 1.0.0, released: 2026-01-02, artifact: {{uri: "{uri}", sha256: {digest}, size: {len(data)}, format: safetensors}}}}
risk: minimal
"""


def make_lake(root: Path, uri: str, data: bytes, allow: str | None = "127.0.0.1", **storage: Any) -> Path:
    settings = "".join(f"  {k}: {v}\n" for k, v in storage.items())
    hosts = f"  allow_hosts: ['{allow}']\n" if allow else ""
    write_tree(
        root,
        {
            "catalog/models/remote-model.yaml": manifest(uri, data),
            "catalog/policies.yaml": f"rules: {{}}\nstorage:\n{hosts}{settings}"
            if hosts or settings
            else "rules: {}\n",
        },
    )
    return root


def problems(root: Path) -> tuple[str, list[tuple[str, str]]]:
    catalog = load_catalog(root)
    return catalog.artifacts[("remote-model", "1.0.0")], [(p.field, p.message) for p in catalog.problems]


def fresh(root: Path) -> remote.Remote:
    """A new process's view of the lake: settings read again, nothing counted yet."""
    remote.forget(root)
    return remote.for_lake(root)


# ------------------------------------------------------------------------------------------ s3


def test_an_s3_artifact_is_verified_once_and_a_warm_run_reads_no_byte(tmp_path: Path, s3: Any) -> None:
    # a .bin is kept in the download cache; a safetensors file is not (see test_remote_stream.py)
    s3.put_object(Bucket="lake", Key="models/m.bin", Body=PAYLOAD)
    root = make_lake(tmp_path / "lake", "s3://lake/models/m.bin", PAYLOAD)
    assert problems(root) == ("verified", [])
    assert remote.for_lake(root).bytes_fetched == len(PAYLOAD)
    blob = remote.for_lake(root).blob(hashlib.sha256(PAYLOAD).hexdigest())
    assert blob is not None and blob.read_bytes() == PAYLOAD and blob.name == "m.bin"
    warm = fresh(root)
    assert problems(root) == ("verified", [])
    assert warm.bytes_fetched == 0


def test_a_tampered_s3_object_is_contradicted(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=PAYLOAD)
    root = make_lake(tmp_path / "lake", "s3://lake/m.safetensors", PAYLOAD)
    assert problems(root)[0] == "verified"
    tampered = PAYLOAD[:-1] + b"\x00"
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=tampered)  # same size, new ETag
    state, found = problems(root)
    assert state == "contradicted"
    assert found == [
        (
            "versions[0].artifact.sha256",
            f"sha256 mismatch: manifest says {hashlib.sha256(PAYLOAD).hexdigest()}, "
            f"the remote object has {hashlib.sha256(tampered).hexdigest()}",
        )
    ]


def test_a_missing_s3_object_is_a_clear_finding(tmp_path: Path, s3: Any) -> None:
    root = make_lake(tmp_path / "lake", "s3://lake/gone.safetensors", PAYLOAD)
    state, found = problems(root)
    assert state == "contradicted"
    assert found == [("versions[0].artifact.uri", "file not found: not found at s3://lake/gone.safetensors")]


def test_a_loopback_endpoint_is_refused_unless_the_lake_allows_it(tmp_path: Path, s3: Any) -> None:
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=PAYLOAD)
    root = make_lake(tmp_path / "lake", "s3://lake/m.safetensors", PAYLOAD, allow=None)
    state, found = problems(root)
    assert state == "unchecked"
    assert found == [
        (
            "versions[0].artifact.uri",
            "refused: 127.0.0.1 is a loopback address; a lake that needs it lists '127.0.0.1' "
            "under storage.allow_hosts in catalog/policies.yaml",
        )
    ]


# --------------------------------------------------------------------------------------- https


def test_https_resumes_a_cut_off_body_with_a_range_request(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/cut/m.safetensors", PAYLOAD)
    assert problems(root) == ("verified", [])
    assert http.gets["/cut/m.safetensors"] == 2  # the cut one, then the rest from where it stopped
    assert remote.for_lake(root).bytes_fetched == len(PAYLOAD)


def test_a_warm_run_sends_its_head_requests_side_by_side(tmp_path: Path, http: Any) -> None:
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/lag/m0.safetensors", PAYLOAD)
    for i in range(8):
        data = PAYLOAD[i:]
        http.files[f"m{i}.safetensors"] = data
        uri = f"http://127.0.0.1:{http.port}/lag/m{i}.safetensors"
        write_tree(root, {f"catalog/models/remote-{i}.yaml": manifest(uri, data, f"remote-{i}")})
    load_catalog(root)
    fresh(root)
    http.heads_peak = 0
    catalog = load_catalog(root)
    assert [catalog.artifacts[(f"remote-{i}", "1.0.0")] for i in range(8)] == ["verified"] * 8
    assert http.heads_peak > 1
    assert remote.for_lake(root).bytes_fetched == 0


def test_the_download_cache_keeps_the_most_recently_used_within_its_cap(tmp_path: Path, http: Any) -> None:
    first, second, big = PAYLOAD, PAYLOAD[1:], PAYLOAD + PAYLOAD
    cap = len(first) + len(second) // 2
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/files/a.bin", first, cache_bytes=cap)
    for name, data in {"a.bin": first, "b.bin": second, "big.bin": big}.items():
        http.files[name] = data
        uri = f"http://127.0.0.1:{http.port}/files/{name}"
        write_tree(
            root, {f"catalog/models/model-{name[:-4]}.yaml": manifest(uri, data, f"model-{name[:-4]}")}
        )
    catalog = load_catalog(root)
    assert set(catalog.artifacts.values()) == {"verified"} and catalog.problems == []
    fetcher = remote.for_lake(root)
    kept = {name for name, data in http.files.items() if fetcher.blob(hashlib.sha256(data).hexdigest())}
    assert kept == {"b.bin"}  # a was used before b; the big one was hashed, never kept
    blobs = sum(p.stat().st_size for p in (root / ".lakegen/cache/blobs").rglob("*.bin"))
    assert blobs <= cap
    art = catalog.records["model-big"].entry.versions[0].artifact  # type: ignore[union-attr]
    assert remote.local_weights(root, art) == (
        f"remote artifact {art.uri}: {art.uri} ({len(big):,} bytes) is larger than the download cache "
        f"(storage.cache_bytes, {cap:,} bytes)"
    )


def test_a_redirect_on_the_same_host_is_followed(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/same/m.safetensors", PAYLOAD)
    assert problems(root) == ("verified", [])


def test_a_redirect_to_another_host_is_refused(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    uri = f"http://127.0.0.1:{http.port}/other/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD)
    state, found = problems(root)
    assert state == "unchecked"
    assert found == [
        (
            "versions[0].artifact.uri",
            f"refused: {uri} redirects to another host (localhost); a lake that trusts it lists it "
            "under storage.redirect_hosts in catalog/policies.yaml",
        )
    ]


def test_a_stalled_body_times_out_with_a_clear_error(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    uri = f"http://127.0.0.1:{http.port}/slow/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD, timeout_s=0.5, retries=1)
    state, found = problems(root)
    assert state == "unchecked"
    assert found == [
        ("versions[0].artifact.uri", f"could not fetch {uri}: timed out waiting for data (storage.timeout_s)")
    ]


def test_a_trickling_body_is_stopped_at_the_time_cap(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    uri = f"http://127.0.0.1:{http.port}/drip/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD, timeout_s=1, max_seconds=0.5)
    started = time.monotonic()
    state, found = problems(root)
    assert time.monotonic() - started < 3  # the whole body would take 13 s
    assert (state, found) == (
        "unchecked",
        [("versions[0].artifact.uri", f"{uri}: not fetched within storage.max_seconds (0.5 s)")],
    )


def test_an_object_over_the_size_cap_is_refused_before_any_byte(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    uri = f"http://127.0.0.1:{http.port}/files/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD, max_bytes=1000)
    state, found = problems(root)
    assert (state, found) == (
        "unchecked",
        [
            (
                "versions[0].artifact.uri",
                f"refused: {uri} is {len(PAYLOAD):,} bytes, over storage.max_bytes (1,000)",
            )
        ],
    )
    assert http.gets["/files/m.safetensors"] == 0


def test_a_size_that_differs_from_the_manifest_costs_no_download(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD + b"more"
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/files/m.safetensors", PAYLOAD)
    state, found = problems(root)
    assert state == "contradicted"
    assert found == [
        ("versions[0].artifact.size", f"size is {len(PAYLOAD) + 4:,} bytes; manifest says {len(PAYLOAD):,}")
    ]
    assert http.gets["/files/m.safetensors"] == 0


def test_a_body_longer_than_the_manifest_says_is_stopped_and_contradicted(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/long/m.safetensors", PAYLOAD)
    state, found = problems(root)
    assert state == "contradicted"
    assert found == [
        (
            "versions[0].artifact.size",
            f"size is over {len(PAYLOAD):,} bytes, the manifest's (the transfer was stopped there)",
        )
    ]
    assert remote.for_lake(root).blob(hashlib.sha256(PAYLOAD).hexdigest()) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "a link-local address (where cloud metadata services answer)"),
        ("10.1.2.3", "a private address"),
        ("fd00:ec2::254", "a private address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("100.100.100.200", "not a public address"),
    ],
)
def test_metadata_services_and_private_addresses_are_refused(address: str, why: str) -> None:
    with pytest.raises(remote.Refused, match=re.escape(f"is {why};")):
        remote.check_host(address, 80, remote.StorageSettings())
    assert remote.check_host(address, 80, remote.StorageSettings(allow_hosts=[address])) != []


def test_a_gs_object_is_verified_through_STORAGE_EMULATOR_HOST(
    tmp_path: Path, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"127.0.0.1:{http.port}")
    http.files["models/m v1.safetensors"] = PAYLOAD
    # the bucket "files" is the server's plain mode: GET /files/<object>
    root = make_lake(tmp_path / "lake", "gs://files/models/m v1.safetensors", PAYLOAD)
    assert problems(root) == ("verified", [])
    assert http.gets["/files/models/m%20v1.safetensors"] == 1


# ------------------------------------------------------------------------------------------ hf


def test_an_hf_uri_goes_to_HF_ENDPOINT_with_the_token_and_never_shows_it(
    tmp_path: Path, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{http.port}/hf")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    http.files["weights/m.safetensors"] = PAYLOAD
    root = make_lake(tmp_path / "lake", f"hf://org/model@{COMMIT}/weights/m.safetensors", PAYLOAD)
    assert problems(root) == ("verified", [])
    assert http.auth and set(http.auth) == {f"Bearer {TOKEN}"}
    root2 = make_lake(tmp_path / "lake2", f"hf://org/model@{COMMIT}/weights/gone.safetensors", PAYLOAD)
    state, found = problems(root2)
    assert state == "contradicted" and "not found at hf://org/model@" in found[0][1]
    assert TOKEN not in repr(found) and not any(
        TOKEN.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    )


def test_the_token_does_not_follow_a_redirect_to_the_hubs_cdn(
    tmp_path: Path, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the endpoint's "other" mode redirects to localhost, standing in for the Hub's CDN
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{http.port}/other")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    http.files[f"org/model/resolve/{COMMIT}/m.safetensors"] = PAYLOAD
    root = make_lake(
        tmp_path / "lake",
        f"hf://org/model@{COMMIT}/m.safetensors",
        PAYLOAD,
        allow=None,
        allow_hosts="['127.0.0.1', 'localhost']",
        redirect_hosts="['localhost']",
    )
    assert problems(root) == ("verified", [])
    assert http.auth_to == {
        f"127.0.0.1:{http.port}": [f"Bearer {TOKEN}"],
        f"localhost:{http.port}": [None],
    }


def test_an_hf_branch_is_refused_for_a_released_version(tmp_path: Path) -> None:
    root = make_lake(tmp_path / "lake", "hf://org/model@main/m.safetensors", PAYLOAD)
    assert problems(root) == (
        "unchecked",
        [
            (
                "versions[0].artifact.uri",
                "hf://org/model@main/m.safetensors: revision 'main' is a branch or tag, which can move; "
                "a released version pins the 40-character commit id",
            )
        ],
    )


# ------------------------------------------------------------------------- across the stages


def test_a_content_is_fetched_once_across_validate_attribute_and_bench(tmp_path: Path, http: Any) -> None:
    """A single file, an adapter folder and a sharded checkpoint, each moved to the server."""
    from lakegen.bench.plan import Planner
    from lakegen.lineage.recover import attribute_catalog

    lake = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", lake / "catalog")
    models = lake / "catalog/artifacts/models"
    moved = ["digits-mlp-ft-small", "digits-mlp-lora", "digits-mlp-merge"]
    for model_id in moved:
        for file in sorted(models.rglob(f"{model_id}-*")):
            for path in [file] if file.is_file() else sorted(file.iterdir()):
                http.files[path.relative_to(models).as_posix()] = path.read_bytes()
                path.unlink()
        yaml = lake / f"catalog/models/{model_id}.yaml"
        yaml.write_text(
            yaml.read_text().replace("../artifacts/models/", f"http://127.0.0.1:{http.port}/files/")
        )
    assert len(http.files) == 7  # 1 + adapter and config + 1 + index and 2 shards
    policies = lake / "catalog/policies.yaml"
    policies.write_text(policies.read_text() + "storage:\n  allow_hosts: ['127.0.0.1']\n")

    catalog = load_catalog(lake)
    assert catalog.errors == []
    remote_versions = [(m, v) for (m, v) in catalog.artifacts if m in moved]
    assert len(remote_versions) == 4 and all(catalog.artifacts[k] == "verified" for k in remote_versions)
    lineage = attribute_catalog(catalog)
    edges = [(d.model, d.base, d.status) for d in lineage.declared if d.model in moved]
    assert len(edges) == 4 and all(status == "verified" for _, _, status in edges), edges
    plans = Planner(catalog).plans(moved)
    assert plans and all(not p.missing for p in plans), [p.missing for p in plans]
    cache = lake / ".lakegen/cache"
    assert all(Path(p.payload["weights"]["path"]).is_relative_to(cache) for p in plans)
    assert dict(http.gets) == {f"/files/{name}": 1 for name in http.files}


@pytest.mark.slow
def test_bench_reads_remote_weights_from_a_cache_in_the_hidden_home(
    tmp_path: Path, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox hides $HOME; a download cache there must stay readable to the worker."""
    from lakegen.bench.run import Options, run_bench
    from lakegen.executor.sandbox import unavailable

    if unavailable() is not None:
        pytest.skip(f"no sandbox: {unavailable()}")
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LAKEGEN_CACHE", str(home / ".cache/lakegen"))
    lake = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", lake / "catalog")
    name = "digits-mlp-ft-small-1.0.0.safetensors"
    weights = lake / "catalog/artifacts/models" / name
    http.files[name] = weights.read_bytes()
    weights.unlink()
    yaml = lake / "catalog/models/digits-mlp-ft-small.yaml"
    yaml.write_text(
        yaml.read_text().replace(f"../artifacts/models/{name}", f"http://127.0.0.1:{http.port}/files/{name}")
    )
    policies = lake / "catalog/policies.yaml"
    policies.write_text(policies.read_text() + "storage:\n  allow_hosts: ['127.0.0.1']\n")
    report = run_bench(
        lake, ["digits-mlp-ft-small"], Options(workers=1, write_results=False, read_committed=False)
    )
    assert report.results and {r.status for r in report.results} == {"verified"}, report.results
    assert http.gets[f"/files/{name}"] == 1


def test_a_pull_request_cannot_loosen_the_rules_for_its_own_check(tmp_path: Path, http: Any) -> None:
    from gitlake import GitLake

    from lakegen.check.report import run_check

    lake = GitLake(tmp_path / "lake", policies="rules: {}\n")
    lake.commit("An empty lake")
    lake.git("checkout", "-q", "-b", "pr")
    http.files["m.safetensors"] = PAYLOAD
    make_lake(lake.root, f"http://127.0.0.1:{http.port}/files/m.safetensors", PAYLOAD)  # allows 127.0.0.1
    lake.commit("Add a model on an internal server, and allow that server")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert report.catalog.artifacts[("remote-model", "1.0.0")] == "unchecked"
    assert [p.message for p in report.catalog.problems if p.field == "versions[0].artifact.uri"] == [
        "refused: 127.0.0.1 is a loopback address; a lake that needs it lists '127.0.0.1' under "
        "storage.allow_hosts in catalog/policies.yaml"
    ]
    assert http.gets["/files/m.safetensors"] == 0
    lake.git("checkout", "-q", "main")
    lake.merge("pr", "Merge pull request #1 from ada/pr")
    fresh(lake.root)  # a new process, after the merge
    assert load_catalog(lake.root).artifacts[("remote-model", "1.0.0")] == "verified"


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD, retries=1)
    assert problems(root) == (
        "unchecked",
        [
            (
                "versions[0].artifact.uri",
                f"could not reach {uri}: cannot connect ([Errno 111] Connection refused)",
            )
        ],
    )


def test_attribution_skips_a_refused_uri_and_says_why(tmp_path: Path) -> None:
    from lakegen.lineage.recover import artifact_paths

    uri = "hf://org/model@main/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD)
    paths, skipped = artifact_paths(load_catalog(root, verify_artifacts=False))
    assert paths == {}
    assert skipped["remote-model@1.0.0"].startswith(
        f"remote artifact {uri}: {uri}: revision 'main' is a branch or tag"
    )


def test_progress_is_reported_as_bytes_arrive_and_ends_at_the_size(tmp_path: Path, http: Any) -> None:
    http.files["m.safetensors"] = PAYLOAD
    uri = f"http://127.0.0.1:{http.port}/cut/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, PAYLOAD)
    seen: list[tuple[str, int, int]] = []
    fetcher = remote.Remote(root, remote.load_settings(root), progress=lambda *p: seen.append(p))
    assert fetcher.verify(uri, len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest()) is None
    done = [d for _, d, _ in seen]
    assert {u for u, _, _ in seen} == {uri} and {t for _, _, t in seen} == {len(PAYLOAD)}
    assert done == sorted(done) and done[0] < len(PAYLOAD) and done[-1] == len(PAYLOAD)


def test_a_cached_copy_changed_on_disk_is_fetched_again(tmp_path: Path, http: Any) -> None:
    from lakegen.lineage.recover import artifact_paths

    http.files["m.bin"] = PAYLOAD
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/files/m.bin", PAYLOAD)
    assert problems(root)[0] == "verified"
    blob = remote.for_lake(root).blob(hashlib.sha256(PAYLOAD).hexdigest())
    assert blob is not None
    blob.chmod(0o644)
    blob.write_bytes(PAYLOAD[:-1] + b"\x00")  # the cache tampered with after the fetch
    paths, _ = artifact_paths(load_catalog(root, verify_artifacts=False))
    assert paths["remote-model@1.0.0"].read_bytes() == PAYLOAD
    assert http.gets["/files/m.bin"] == 2


# ------------------------------------------------------------------------- on the executor


def jobs_lake(root: Path, port: int) -> Path:
    """Three models on one server: two sound objects (one named by two versions' manifests) and a
    tampered one."""
    url = f"http://127.0.0.1:{port}/files"
    files = {
        f"catalog/models/{name}.yaml": manifest(f"{url}/{name}.bin", PAYLOAD, name)
        for name in ("a", "b", "c")
    }
    files["catalog/models/twin.yaml"] = manifest(f"{url}/a.bin", PAYLOAD, "twin")
    files["catalog/policies.yaml"] = "rules: {}\nstorage:\n  allow_hosts: ['127.0.0.1']\n"
    write_tree(root, files)
    return root


def test_remote_artifacts_verified_by_two_workers_read_as_verified_one_by_one(
    tmp_path: Path, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    http.files.update({"a.bin": PAYLOAD, "b.bin": PAYLOAD, "c.bin": PAYLOAD[:-1] + b"\x00"})
    results = {}
    for workers in (1, 2):
        root = jobs_lake(tmp_path / f"lake{workers}", http.port)
        monkeypatch.setenv("LAKEGEN_CACHE", str(tmp_path / f"cache{workers}"))
        http.gets.clear()
        fresh(root)
        catalog = load_catalog(root, workers=workers)
        results[workers] = (dict(catalog.artifacts), [(p.path, p.line, p.message) for p in catalog.problems])
        # each object is fetched once, whichever worker's pass (the twin names a.bin again) ...
        assert dict(http.gets) == {"/files/a.bin": 1, "/files/b.bin": 1, "/files/c.bin": 1}
        # ... by this process with one worker, by the worker processes with two
        assert remote.for_lake(root).bytes_fetched == (3 * len(PAYLOAD) if workers == 1 else 0)
    assert results[1] == results[2]
    states = results[1][0]
    assert states[("c", "1.0.0")] == "contradicted" and states[("twin", "1.0.0")] == "verified"
    # the workers' passes are this process's records too: a warm run fetches nothing
    http.gets.clear()
    fresh(tmp_path / "lake2")
    assert load_catalog(tmp_path / "lake2").artifacts == results[2][0]
    assert sum(http.gets.values()) == 0


def test_jobs_verify_under_the_base_rules_in_a_pull_request_check(tmp_path: Path, http: Any) -> None:
    """The workers read no settings of their own: a pull request that allows its own loopback
    server is refused on the executor as in-process."""
    from gitlake import GitLake

    from lakegen.check.report import run_check

    lake = GitLake(tmp_path / "lake", policies="rules: {}\n")
    lake.commit("An empty lake")
    lake.git("checkout", "-q", "-b", "pr")
    http.files.update({"a.bin": PAYLOAD, "b.bin": PAYLOAD, "c.bin": PAYLOAD})
    jobs_lake(lake.root, http.port)
    lake.commit("Add models on an internal server, and allow that server")
    report = run_check(lake.root, "main", run_evaluations=False, workers=2)
    assert set(report.catalog.artifacts.values()) == {"unchecked"}
    refused = [p.message for p in report.catalog.problems if p.field == "versions[0].artifact.uri"]
    assert len(refused) == 4 and all(
        m.startswith("refused: 127.0.0.1 is a loopback address") for m in refused
    )
    assert sum(http.gets.values()) == 0
