"""OpenSSF model-signing bundles beside artifacts, signed here with real keys and certificates and
verified offline: key mode, certificate mode, a tampered file, an untrusted signer."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import write_tree
from model_signing import signing

from lakegen.catalog.loader import load_catalog

WEIGHTS = b"signed weights " * 1000


def pem_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def pem_public(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    path: Path,
) -> Path:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lake"),
        ]
    )
    issuer_name = (
        name
        if issuer is None
        else x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, issuer[0]),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lake"),
            ]
        )
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=issuer is not None,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=issuer is None,
                crl_sign=issuer is None,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    signer = key if issuer is None else issuer[1]
    path.write_bytes(builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def lake(root: Path, data: bytes, signing_yaml: str) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    write_tree(
        root,
        {
            "catalog/models/signed.yaml": f"""\
kind: model
id: signed
name: A signed model
description: Fixture.
owners: ['@ada']
license: MIT
task: classification
framework: pytorch
architecture: {{family: fixture}}
versions:
  - {{version: 1.0.0, released: 2026-01-02, artifact: {{uri: ../artifacts/m.safetensors, sha256: {digest}, size: {len(data)}, format: safetensors}}}}
risk: minimal
""",
            "catalog/artifacts/m.safetensors": data,
            "catalog/policies.yaml": f"rules: {{}}\nsigning:\n{signing_yaml}",
        },
    )
    return root


def findings(root: Path) -> tuple[object, list[tuple[str, str, str]]]:
    catalog = load_catalog(root)
    return catalog.signatures.get(("signed", "1.0.0")), [
        (p.severity, p.field, p.message) for p in catalog.problems
    ]


@pytest.fixture
def ada(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign_with_key(root: Path, key: ec.EllipticCurvePrivateKey, tmp: Path) -> None:
    model = root / "catalog/artifacts/m.safetensors"
    config = signing.Config().use_elliptic_key_signer(private_key=pem_key(key, tmp / "private.pem"))
    config.sign(model, model.with_name("m.safetensors.sig"))


def test_a_bundle_signed_with_a_trusted_key_is_verified_and_names_its_signer(
    tmp_path: Path, ada: ec.EllipticCurvePrivateKey
) -> None:
    root = lake(tmp_path / "lake", WEIGHTS, "  keys: [{path: keys/ada.pub, signer: Ada's release key}]\n")
    (root / "keys").mkdir()
    pem_public(ada, root / "keys/ada.pub")
    sign_with_key(root, ada, tmp_path)
    verdict, problems = findings(root)
    assert problems == []
    assert (verdict.state, verdict.signer) == ("verified", "Ada's release key")  # type: ignore[attr-defined]
    memos = list((root / ".lakegen/cache/signatures").rglob("*.json"))
    assert len(memos) == 1
    # the verdict is remembered; a new trusted key is a new question
    pem_public(ec.generate_private_key(ec.SECP256R1()), root / "keys/ada.pub")
    verdict, problems = findings(root)
    assert verdict.state == "untrusted"  # type: ignore[attr-defined]
    assert problems[0][:2] == ("warning", "versions[0].artifact.uri")


def test_bytes_changed_after_signing_contradict_the_signature(
    tmp_path: Path, ada: ec.EllipticCurvePrivateKey
) -> None:
    root = lake(tmp_path / "lake", WEIGHTS, "  keys: [{path: keys/ada.pub, signer: Ada}]\n")
    (root / "keys").mkdir()
    pem_public(ada, root / "keys/ada.pub")
    sign_with_key(root, ada, tmp_path)
    lake(
        root, WEIGHTS + b"!", "  keys: [{path: keys/ada.pub, signer: Ada}]\n"
    )  # manifest follows the new bytes
    verdict, problems = findings(root)
    assert (verdict.state, verdict.signer) == ("contradicted", "Ada")  # type: ignore[attr-defined]
    assert problems == [
        (
            "error",
            "versions[0].artifact.uri",
            "signature m.safetensors.sig is contradicted: signed by a trusted signer, over other bytes",
        )
    ]


def test_a_bundle_from_a_key_the_lake_does_not_trust_is_untrusted(
    tmp_path: Path, ada: ec.EllipticCurvePrivateKey
) -> None:
    root = lake(tmp_path / "lake", WEIGHTS, "  keys: [{path: keys/ada.pub, signer: Ada}]\n")
    (root / "keys").mkdir()
    pem_public(ada, root / "keys/ada.pub")
    sign_with_key(root, ec.generate_private_key(ec.SECP256R1()), tmp_path)
    verdict, problems = findings(root)
    assert verdict.state == "untrusted"  # type: ignore[attr-defined]
    assert [p[:2] for p in problems] == [("warning", "versions[0].artifact.uri")]
    assert (
        "no trusted key or certificate chain in catalog/policies.yaml (signing:) verifies it"
        in problems[0][2]
    )


def test_a_certificate_signed_bundle_chains_to_the_lakes_ca(tmp_path: Path) -> None:
    root = lake(tmp_path / "lake", WEIGHTS, "  certificate_chains: [keys/ca.pem]\n")
    (root / "keys").mkdir()
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Lake CA", ca_key, None, root / "keys/ca.pem")
    leaf = certificate("Ada Lovelace", leaf_key, ("Lake CA", ca_key), tmp_path / "leaf.pem")
    model = root / "catalog/artifacts/m.safetensors"
    signing.Config().use_certificate_signer(
        private_key=pem_key(leaf_key, tmp_path / "leaf.key"), signing_certificate=leaf, certificate_chain=[ca]
    ).sign(model, model.with_name("m.safetensors.sig"))
    verdict, problems = findings(root)
    assert problems == []
    assert (verdict.state, verdict.signer) == ("verified", "O=Lake,CN=Ada Lovelace")  # type: ignore[attr-defined]
    other = certificate("Other CA", ec.generate_private_key(ec.SECP256R1()), None, root / "keys/ca.pem")
    assert other.is_file()
    verdict, problems = findings(root)
    assert (verdict.state, verdict.signer) == ("untrusted", "O=Lake,CN=Ada Lovelace")  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_site_shows_the_signature_and_signer_beside_the_sha256(tmp_path: Path) -> None:
    from lakegen.compile import compile_lake
    from lakegen.site.build import build_site

    root = lake(tmp_path / "lake", WEIGHTS, "  certificate_chains: [keys/ca.pem]\n")
    (root / "keys").mkdir()
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Lake CA", ca_key, None, root / "keys/ca.pem")
    leaf = certificate("<script>alert(1)</script>", leaf_key, ("Lake CA", ca_key), tmp_path / "leaf.pem")
    model = root / "catalog/artifacts/m.safetensors"
    signing.Config().use_certificate_signer(
        private_key=pem_key(leaf_key, tmp_path / "leaf.key"), signing_certificate=leaf, certificate_chain=[ca]
    ).sign(model, model.with_name("m.safetensors.sig"))
    index = compile_lake(root)
    (check,) = index.artifacts
    assert (check.status, check.signature, check.signer) == (
        "verified",
        "verified",
        r"O=Lake,CN=\<script\>alert(1)\</script\>",
    )
    page = (
        build_site(root, index, site_dir=tmp_path / "site", pagefind=False).site / "models/signed.html"
    ).read_text()
    assert (
        'signature <span class="lg-badge lg-s-verified">verified</span> O=Lake,CN=\\&lt;script\\&gt;alert(1)\\&lt;/script\\&gt;'
        in page
    )
    assert "<script>alert(1)" not in page


def test_a_pull_request_cannot_trust_its_own_signing_key(
    tmp_path: Path, ada: ec.EllipticCurvePrivateKey
) -> None:
    # The attack: a PR adds a key to policies.yaml (or replaces a trusted key's file) and signs its own
    # artifact with it; its check must judge the signature with the base branch's trust, not its own.
    import subprocess

    from lakegen.check.report import run_check

    root = lake(tmp_path / "lake", WEIGHTS, "  keys: [{path: keys/ada.pub, signer: Ada}]\n")
    (root / "keys").mkdir()
    pem_public(ada, root / "keys/ada.pub")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("-c", "user.name=A", "-c", "user.email=a@example.org", "add", "-A")
    git("-c", "user.name=A", "-c", "user.email=a@example.org", "commit", "-qm", "base")
    git("checkout", "-qb", "pr")
    mallory = ec.generate_private_key(ec.SECP256R1())
    pem_public(mallory, root / "keys/ada.pub")  # the trusted key's file, replaced
    sign_with_key(root, mallory, tmp_path)
    git("-c", "user.name=M", "-c", "user.email=m@example.org", "add", "-A")
    git("-c", "user.name=M", "-c", "user.email=m@example.org", "commit", "-qm", "sign it")
    assert findings(root)[0].state == "verified"  # type: ignore[attr-defined]  # as the PR's tree sees it
    report = run_check(root, "main", run_evaluations=False)
    (check,) = [a for a in report.index.artifacts if a.entry == "signed"]
    assert check.signature == "untrusted"
