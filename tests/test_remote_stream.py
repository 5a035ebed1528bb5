"""Remote safetensors files fingerprinted from the pass that hashes them, and audited by range
requests, without a copy on disk, against moto's S3 server and an HTTP server on 127.0.0.1 (the
servers of ``test_remote``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import write_tree
from test_remote import _online as _online  # the servers' fixtures, shared
from test_remote import fresh, make_lake, manifest
from test_remote import http as http
from test_remote import s3 as s3

from lakegen.artifacts import remote
from lakegen.catalog.loader import load_catalog
from lakegen.fingerprint import Cache, compute
from lakegen.lineage.recover import attribute_catalog

KEY = "remote-model@1.0.0"


def write_weights(path: Path, seed: int = 0, parent: Path | None = None) -> Path:
    """A real checkpoint written by torch through the safetensors library: float32, bfloat16 and
    float16 matrices, int8 with a per-row scale, a vector and an empty tensor; with ``parent``, its
    tensors plus a little noise (a fine-tune)."""
    import torch
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(seed)
    if parent is not None:
        tensors = {
            k: v + 0.01 * torch.randn(v.shape, generator=g).to(v.dtype) for k, v in load_file(parent).items()
        }
        tensors = {k: v for k, v in tensors.items() if v.dtype != torch.int8}
        tensors.update({k: v for k, v in load_file(parent).items() if v.dtype == torch.int8})
    else:
        tensors = {
            "layers.0.mlp.weight": torch.randn(2048, 2048, generator=g),  # 16 MiB, 8 KiB rows
            "layers.0.attention.weight": torch.randn(512, 768, generator=g).to(torch.bfloat16),
            "layers.1.mlp.weight": torch.randn(256, 1024, generator=g).to(torch.float16),
            "layers.1.bias": torch.randn(1024, generator=g),
            "head.weight": torch.randint(-127, 127, (128, 256), generator=g, dtype=torch.int8),
            "head.weight_scale": torch.rand(128, generator=g),
            "empty": torch.zeros(0),
        }
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights") / "m.safetensors")


def cache_files(root: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def fingerprint_bytes(root: Path, sha256: str) -> bytes:
    fp = Cache(root / ".lakegen/cache").get(sha256)
    assert fp is not None, "no fingerprint cached under the artifact's sha256"
    return fp.to_bytes()


def test_an_s3_safetensors_is_fingerprinted_as_its_local_copy_and_never_lands_on_disk(
    tmp_path: Path, s3: Any, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = weights.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket="lake", Key="models/m.safetensors", Body=data)
    root = make_lake(tmp_path / "lake", "s3://lake/models/m.safetensors", data)
    catalog = load_catalog(root)
    assert catalog.artifacts[("remote-model", "1.0.0")] == "verified" and catalog.problems == []
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped and lineage.parameters[KEY] > 0
    assert fingerprint_bytes(root, sha) == compute(weights).to_bytes()
    assert remote.for_lake(root).bytes_fetched == len(data)  # one pass, and no range request after it
    big = [(name, size) for name, size in cache_files(root) if size > len(data) // 10]
    assert big == []  # nothing near the artifact's size: fingerprints, memos, records and a view

    warm = fresh(root)
    lineage = attribute_catalog(load_catalog(root), Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped and warm.bytes_fetched == 0
    monkeypatch.setenv(remote.OFFLINE_ENV, "1")  # the cached fingerprint answers without the server
    offline = fresh(root)
    lineage = attribute_catalog(load_catalog(root), Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped and lineage.parameters[KEY] > 0 and offline.bytes_fetched == 0


def test_an_https_safetensors_is_fingerprinted_from_the_pass_that_hashed_it(
    tmp_path: Path, http: Any, weights: Path
) -> None:
    """The server's chunks arrive in whatever sizes the network gives; the capture does not care."""
    data = weights.read_bytes()
    http.files["m.safetensors"] = data
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/cut/m.safetensors", data)
    lineage = attribute_catalog(load_catalog(root), Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped
    assert fingerprint_bytes(root, hashlib.sha256(data).hexdigest()) == compute(weights).to_bytes()
    # cut off halfway, resumed by one range request; nothing read again after
    assert (http.gets["/cut/m.safetensors"], http.ranges["/cut/m.safetensors"]) == (2, 1)
    assert all(size < len(data) // 10 for _, size in cache_files(root))


def test_without_a_sound_capture_the_fingerprint_comes_from_range_requests(
    tmp_path: Path, http: Any, weights: Path
) -> None:
    data = weights.read_bytes()
    http.files["m.safetensors"] = data
    root = make_lake(tmp_path / "lake", f"http://127.0.0.1:{http.port}/files/m.safetensors", data)
    catalog = load_catalog(root)
    (caught,) = (root / ".lakegen/cache/caught").iterdir()
    caught.chmod(0o644)
    caught.write_bytes(b"PK\x03\x04 not a capture")  # as a cache that could not keep it whole
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped
    assert fingerprint_bytes(root, hashlib.sha256(data).hexdigest()) == compute(weights).to_bytes()
    whole = http.gets["/files/m.safetensors"] - http.ranges["/files/m.safetensors"]
    assert whole == 1 and 1 <= http.ranges["/files/m.safetensors"] <= 200
    assert len(data) < remote.for_lake(root).bytes_fetched < len(data) * 1.2  # the header and sampled rows
    assert all(size < len(data) // 10 for _, size in cache_files(root))


def test_an_s3_safetensors_without_a_capture_is_read_by_ranges_pinned_to_its_etag(
    tmp_path: Path, s3: Any, weights: Path
) -> None:
    data = weights.read_bytes()
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=data)
    root = make_lake(tmp_path / "lake", "s3://lake/m.safetensors", data)
    catalog = load_catalog(root)
    shutil.rmtree(root / ".lakegen/cache/caught")
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped
    assert fingerprint_bytes(root, hashlib.sha256(data).hexdigest()) == compute(weights).to_bytes()
    fetcher = remote.for_lake(root)
    assert 1 <= fetcher.range_requests <= 200 and fetcher.bytes_fetched < len(data) * 1.2


def test_an_hf_safetensors_through_HF_ENDPOINT_is_read_by_ranges_with_the_token(
    tmp_path: Path, http: Any, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_remote import COMMIT, TOKEN

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{http.port}/hf")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    data = weights.read_bytes()
    http.files["weights/m.safetensors"] = data
    root = make_lake(tmp_path / "lake", f"hf://org/model@{COMMIT}/weights/m.safetensors", data)
    catalog = load_catalog(root)
    shutil.rmtree(root / ".lakegen/cache/caught")  # so the fingerprint needs ranges
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped
    assert fingerprint_bytes(root, hashlib.sha256(data).hexdigest()) == compute(weights).to_bytes()
    path = f"/hf/org/model/resolve/{COMMIT}/weights/m.safetensors"
    assert http.ranges[path] >= 1 and set(http.auth) == {f"Bearer {TOKEN}"}


def test_a_tampered_object_is_contradicted_and_never_read_in_parts(
    tmp_path: Path, s3: Any, weights: Path
) -> None:
    data = weights.read_bytes()
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=data)
    root = make_lake(tmp_path / "lake", "s3://lake/m.safetensors", data)
    catalog = load_catalog(root)
    assert catalog.artifacts[("remote-model", "1.0.0")] == "verified"
    tampered = bytearray(data)
    tampered[-1] ^= 1
    s3.put_object(Bucket="lake", Key="m.safetensors", Body=bytes(tampered))
    # after validation, in the same run: range requests are pinned to the ETag that was hashed
    shutil.rmtree(root / ".lakegen/cache/caught")
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    found = [f for f in lineage.findings if f.entry == "remote-model"]
    assert [f.rule for f in found] == ["unreadable-weights"], found
    assert "s3://lake/m.safetensors" in found[0].message
    assert Cache(root / ".lakegen/cache").keys() == []
    # the next run: the new ETag fetches the object again, and its sha256 is not the pinned one
    fresh(root)
    state, problems = load_catalog(root).artifacts[("remote-model", "1.0.0")], load_catalog(root).problems
    assert state == "contradicted" and [p.field for p in problems] == ["versions[0].artifact.sha256"]


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("norange", "answered a range request with HTTP 200, not the bytes asked for"),
        ("short", "could not read bytes 0-"),
    ],
)
def test_a_server_that_ignores_ranges_or_cuts_them_short_is_one_clear_finding(
    tmp_path: Path, http: Any, weights: Path, mode: str, why: str
) -> None:
    data = weights.read_bytes()
    http.files["m.safetensors"] = data
    uri = f"http://127.0.0.1:{http.port}/{mode}/m.safetensors"
    root = make_lake(tmp_path / "lake", uri, data, retries=0)
    catalog = load_catalog(root)
    assert catalog.artifacts[("remote-model", "1.0.0")] == "verified"  # the whole pass needs no range
    shutil.rmtree(root / ".lakegen/cache/caught")  # so the fingerprint needs ranges
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    found = [f for f in lineage.findings if f.entry == "remote-model"]
    assert len(found) == 1 and found[0].rule == "unreadable-weights", found
    assert why in found[0].message and uri in found[0].message and "\n" not in found[0].message


def test_a_declared_fine_tune_is_audited_by_range_requests(tmp_path: Path, http: Any, weights: Path) -> None:
    child = write_weights(tmp_path / "child.safetensors", seed=1, parent=weights)
    files = {"parent.safetensors": weights.read_bytes(), "child.safetensors": child.read_bytes()}
    http.files.update(files)
    base = f"http://127.0.0.1:{http.port}/files"
    root = make_lake(tmp_path / "lake", f"{base}/parent.safetensors", files["parent.safetensors"])
    child_yaml = manifest(f"{base}/child.safetensors", files["child.safetensors"], "child-model")
    child_yaml = child_yaml.replace(
        "versions:", "base_models: [{id: remote-model, version: 1.0.0, relation: finetune}]\nversions:"
    )
    write_tree(root, {"catalog/models/child-model.yaml": child_yaml})
    catalog = load_catalog(root)
    assert catalog.errors == [] and set(catalog.artifacts.values()) == {"verified"}
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    declared = [(d.model, d.status, d.audit.status if d.audit else None) for d in lineage.declared]
    assert declared == [("child-model", "verified", "verified")], [d.detail for d in lineage.declared]
    assert all(size < len(files["parent.safetensors"]) // 10 for _, size in cache_files(root))
    assert all(http.gets[f"/files/{name}"] - http.ranges[f"/files/{name}"] == 1 for name in files)
    assert all(http.ranges[f"/files/{name}"] >= 1 for name in files)  # the audit's entries, by ranges


class FileRanges:
    """A local file read by parts, counting the reads: what a server would be asked for."""

    def __init__(self, path: Path):
        self.path, self.data = path, path.read_bytes()
        self.size, self.sha256 = len(self.data), hashlib.sha256(self.data).hexdigest()
        self.asked: list[tuple[int, int]] = []

    def read(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.asked += ranges
        return [self.data[s:e] for s, e in ranges]


@pytest.mark.parametrize(("chunk", "small"), [(5, True), (7, True), (4096, False), (1 << 20, False)])
def test_a_capture_holds_every_read_of_a_fingerprint_whatever_the_chunk_sizes(
    tmp_path: Path, weights: Path, chunk: int, small: bool
) -> None:
    """Entries straddle chunk boundaries when chunks are smaller than an entry or oddly sized."""
    import torch
    from safetensors.torch import save_file

    from lakegen.fingerprint.sampling import sample_model
    from lakegen.weights import RangedSafetensors, open_weights
    from lakegen.weights.capture import Capture, CaughtSource
    from lakegen.weights.dequant import dequantize

    if small:
        weights = tmp_path / "small.safetensors"
        g = torch.Generator().manual_seed(2)
        tensors = {"layers.0.w": torch.randn(600, 200, generator=g), "b": torch.randn(3, generator=g)}
        save_file(
            {**tensors, "layers.0.h": torch.randn(300, 300, generator=g).to(torch.float16)}, str(weights)
        )
    data = weights.read_bytes()
    capture = Capture(len(data))
    for i in range(0, len(data), chunk):
        capture.feed(data[i : i + chunk])
    capture.save(tmp_path / "caught.npz")
    source = FileRanges(weights)
    with open_weights(weights) as local:
        expected = sample_model(local)
    wf = dequantize(
        RangedSafetensors(tmp_path / "m.safetensors", CaughtSource(source, tmp_path / "caught.npz"))
    )
    got = sample_model(wf)
    assert got[0] == expected[0] and got[1].tobytes() == expected[1].tobytes()
    assert got[2].tobytes() == expected[2].tobytes() and got[4] == expected[4]
    assert source.asked == []  # every read answered by the capture
    if not small:  # the small file's tensors are kept whole
        assert (tmp_path / "caught.npz").stat().st_size < len(data) // 10


def test_a_capture_of_an_unsound_header_keeps_nothing_and_hashing_goes_on(tmp_path: Path) -> None:
    from lakegen.weights.capture import Capture

    data = (10**12).to_bytes(8, "little") + b"{}" * 100
    capture = Capture(len(data))
    capture.feed(data)
    capture.save(tmp_path / "caught.npz")
    assert capture.error is not None and "implausible" in capture.error
    assert not (tmp_path / "caught.npz").exists()


def test_a_sharded_checkpoint_on_s3_is_fingerprinted_as_its_local_folder_without_a_copy(
    tmp_path: Path, s3: Any, weights: Path
) -> None:
    import json

    from safetensors.torch import load_file, save_file

    from lakegen.fingerprint import fingerprint

    tensors = load_file(weights)
    names = sorted(tensors)
    local = tmp_path / "local"
    local.mkdir()
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    for shard, held in shards.items():
        save_file({n: tensors[n] for n in held}, str(local / shard))
    weight_map = {n: shard for shard, held in shards.items() for n in held}
    index = "model.safetensors.index.json"
    (local / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    files = {p.name: p.read_bytes() for p in local.iterdir()}
    for name, data in files.items():
        s3.put_object(Bucket="lake", Key=f"sharded/{name}", Body=data)
    root = make_lake(tmp_path / "lake", f"s3://lake/sharded/{index}", files[index])
    pins = ", ".join(
        f"{{path: {n}, sha256: {hashlib.sha256(files[n]).hexdigest()}, size: {len(files[n])}}}"
        for n in shards
    )
    yaml = root / "catalog/models/remote-model.yaml"
    yaml.write_text(
        yaml.read_text().replace("format: safetensors}", f"format: safetensors, files: [{pins}]}}")
    )
    catalog = load_catalog(root)
    assert catalog.problems == [] and catalog.artifacts[("remote-model", "1.0.0")] == "verified"
    lineage = attribute_catalog(catalog, Cache(root / ".lakegen/cache"))
    assert KEY not in lineage.skipped, lineage.skipped
    expected = fingerprint(local)
    assert fingerprint_bytes(root, expected.sha256) == expected.to_bytes()
    assert remote.for_lake(root).bytes_fetched == sum(len(d) for d in files.values())  # one pass each
    smallest = min(len(files[n]) for n in shards)  # 0.8 MiB, beside 17 MiB
    assert all(size < smallest // 2 for _, size in cache_files(root))
