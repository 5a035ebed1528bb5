"""LoRA adapters: the weights confirm which models an adapter fits; its config names the base."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from lakegen.attribution.edges import Edge
from lakegen.attribution.views import View, aliased, shortened
from lakegen.fingerprint import Fingerprint


def default_adapter_base(ids: Sequence[str]) -> Callable[[str, Fingerprint], str | None]:
    known = set(ids)

    def resolve(adapter_id: str, fp: Fingerprint) -> str | None:
        meta = fp.adapter or {}
        base, revision = meta.get("base"), meta.get("revision")
        if not base:
            return None
        names = [base, base.rstrip("/").rsplit("/", 1)[-1]]
        for name in names:
            for candidate in ([f"{name}-{revision}", f"{name}@{revision}"] if revision else []) + [name]:
                if candidate in known and candidate != adapter_id:
                    return candidate
        return None

    return resolve


def adapter_edge(
    adapter_id: str,
    view: View,
    resolve: Callable[[str, Fingerprint], str | None],
    fingerprints: Mapping[str, Fingerprint],
) -> tuple[Edge | None, str]:
    fp = view.fp
    base = resolve(adapter_id, fp)
    named = (fp.adapter or {}).get("base")
    if base is None:
        if named:
            return None, f"{adapter_id}: adapter base '{named}' is not among the models compared"
        return None, f"{adapter_id}: adapter config names no base model"
    target = fingerprints[base]
    if target.kind != "model":
        return None, f"{adapter_id}: adapter base '{base}' is not a full model"
    # the adapter's names may carry a task model's prefix (bert.) that the base lacks, or the reverse
    have = aliased([t.key for t in target.tensors])
    missing = [t.name for t in fp.tensors if not any(k in have for k in [t.key, *shortened(t.key)])]
    if missing or not fp.tensors:
        return None, (
            f"{adapter_id}: adapter does not fit '{base}': no tensor {missing[0]} of that shape"
            if missing
            else f"{adapter_id}: adapter has no tensors to check"
        )
    return Edge(parent=base, child=adapter_id, relation="adapter", confidence=0.8), ""
