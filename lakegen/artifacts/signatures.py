"""OpenSSF model-signing bundles shipped beside artifacts, verified offline.

An artifact ``x.safetensors`` ships a signature as ``x.safetensors.sig`` beside
it (the model-signing bundle of that file). The lake says whom it trusts under
``signing:`` in ``catalog/policies.yaml``: public keys (``keys``), and
certificate chains (``certificate_chains``) for bundles signed with a
certificate; nothing else is trusted (the system's CAs are not), and no network
is used (no Sigstore transparency log). A bundle is only judged once the
artifact's sha256 is verified, and its verdict is kept in the cache keyed by the
artifact's and the bundle's sha256 and the trust settings, so it is computed
once: model-signing hashes the file again to compare it with the bundle.

States: ``verified`` (a trusted signer signed exactly these bytes),
``contradicted`` (a trusted signer signed other bytes), ``untrusted`` (no
trusted key or chain verifies the bundle), ``invalid`` (not a bundle lakegen can
read).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakegen.artifacts.digests import sha256_file
from lakegen.atomicfile import write_atomic

BUNDLE_SUFFIX = ".sig"
POLICIES_FILE = "catalog/policies.yaml"
State = Literal["verified", "contradicted", "untrusted", "invalid"]


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="A PEM public key, relative to the lake root.")
    signer: str = Field("", max_length=200, description="Who holds the key, as shown beside the sha256.")


class SigningSettings(BaseModel):
    """``signing:`` in ``catalog/policies.yaml``: whose model-signing bundles the lake trusts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[TrustedKey] = Field(default_factory=list, description="Public keys (key mode).")
    certificate_chains: list[str] = Field(
        default_factory=list,
        description="PEM files of the CAs that signing certificates chain to.",
    )


@dataclass(frozen=True)
class Signature:
    state: State
    signer: str  # the key's holder, or the signing certificate's subject; "" when unknown
    detail: str = ""


def load_settings(root: Path) -> SigningSettings:
    """The lake's signing settings (none trusted when the file is missing or broken)."""
    from lakegen.errors import LakeError
    from lakegen.safeyaml import load

    path = root / POLICIES_FILE
    if not path.is_file():
        return SigningSettings()
    try:
        data = load(path, POLICIES_FILE).data
        section = data.get("signing") if isinstance(data, dict) else None
        return SigningSettings.model_validate(section or {})
    except (LakeError, ValidationError):
        return SigningSettings()


def bundle_of(artifact: Path) -> Path | None:
    """The bundle shipped beside ``artifact``, if there is one."""
    bundle = artifact.with_name(artifact.name + BUNDLE_SUFFIX)
    return bundle if bundle.is_file() else None


# lake root -> the folder trust is read from instead of the working tree (see trust_from)
_TRUST_ROOTS: dict[Path, Path] = {}


def trust_from(root: Path, commit: str, into: Path) -> None:
    """Trust in this process, for the lake at ``root``, only the signing settings and the key and
    certificate files committed at ``commit`` (copied under ``into``): a pull request's check must
    not verify its own signatures with a key the request itself adds or replaces."""
    from lakegen.gitrepo import Repo

    repo = Repo.find(root)
    into.mkdir(parents=True, exist_ok=True)
    text = repo.file_at(commit, POLICIES_FILE) if repo is not None else None
    if text is not None:
        write_atomic(into / POLICIES_FILE, text)
        settings = load_settings(into)
        for rel in [k.path for k in settings.keys] + settings.certificate_chains:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                continue  # outside the lake: never trusted (check() reads only files inside it)
            blob = repo.file_at(commit, rel) if repo is not None else None
            if blob is not None:
                write_atomic(into / rel, blob)
    _TRUST_ROOTS[root.resolve()] = into


def check(root: Path, artifact: Path, bundle: Path, sha256: str, cache: Path) -> Signature:
    """The verdict on ``bundle`` for ``artifact`` (whose sha256, already verified, is ``sha256``)."""
    root = _TRUST_ROOTS.get(root.resolve(), root)  # where the trusted settings and keys are read
    settings = load_settings(root)
    files = [_inside(root, k.path) for k in settings.keys] + [
        _inside(root, c) for c in settings.certificate_chains
    ]
    trust = settings.model_dump_json() + "".join(sha256_file(f) if f else "-" for f in files)
    key = hashlib.sha256(f"{sha256}\0{sha256_file(bundle)}\0{trust}".encode()).hexdigest()
    memo = cache / "signatures" / key[:2] / f"{key}.json"
    try:
        found = json.loads(memo.read_text())
        return Signature(found["state"], found["signer"], found["detail"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    verdict = _verify(root, artifact, bundle, settings)
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        write_atomic(memo, json.dumps(verdict.__dict__).encode())
    return verdict


def _verify(root: Path, artifact: Path, bundle: Path, settings: SigningSettings) -> Signature:
    try:
        material = json.loads(bundle.read_text())["verificationMaterial"]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return Signature("invalid", "", f"{bundle.name} is not a model-signing bundle")
    try:
        from model_signing import verifying
    except ImportError:
        return Signature("invalid", "", "model-signing is not installed (pip install 'lakegen[remote]')")
    chain = material.get("x509CertificateChain") if isinstance(material, dict) else None
    attempts: list[tuple[str, verifying.Config]] = []
    if chain:
        signer = _subject(chain)
        paths = [_inside(root, p) for p in settings.certificate_chains]
        if any(p is not None for p in paths):
            chains = [p for p in paths if p is not None]
            attempts.append((signer, verifying.Config().use_certificate_verifier(certificate_chain=chains)))
    else:
        signer = ""
        for trusted in settings.keys:
            path = _inside(root, trusted.path)
            if path is not None:
                config = verifying.Config().use_elliptic_key_verifier(public_key=path)
                attempts.append((trusted.signer or Path(trusted.path).name, config))
    why = "no trusted key or certificate chain in catalog/policies.yaml (signing:) verifies it"
    for name, config in attempts:
        try:
            config.verify(artifact, bundle)
        except ValueError as e:
            if str(e).startswith("Signature mismatch"):
                return Signature("contradicted", name, "signed by a trusted signer, over other bytes")
            why = f"{why} ({str(e).splitlines()[0][:160]})"
            continue
        except Exception as e:  # model-signing raises what its crypto libraries raise
            why = f"{why} ({type(e).__name__})"
            continue
        return Signature("verified", name)
    return Signature("untrusted", signer, why)


def _inside(root: Path, rel: str) -> Path | None:
    path = (root / rel).resolve()
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


def _subject(chain: dict[str, object]) -> str:
    """The signing certificate's subject, as the bundle states it (shown, never trusted by itself)."""
    from cryptography import x509

    try:
        certificates = chain["certificates"]
        raw = base64.b64decode(certificates[0]["rawBytes"])  # type: ignore[index]
        return x509.load_der_x509_certificate(raw).subject.rfc4514_string()[:200]
    except (KeyError, IndexError, TypeError, ValueError):
        return ""
