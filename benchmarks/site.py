"""How the site build scales: a generated lake of 2,000 and 10,000 entries.

Prints, per size: full build time and pages per second (with the part spent
rendering lakegen's pages and the part spent in Pagefind), site size, peak
memory, the time to rebuild after one manifest changes, and the bytes one
search query transfers (measured in headless Chromium when /usr/bin/chromium is
there, else estimated from the Pagefind files a query needs).

    python benchmarks/site.py                  # 2000 and 10000
    python benchmarks/site.py --sizes 500 --keep /tmp/bench-site
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lakegen.errors import Finding
from lakegen.model.index import ArtifactCheck, Change, Edge, IndexEntry, LakeIndex, Result

TASKS = [
    "image-classification",
    "text-classification",
    "tabular-regression",
    "speech-recognition",
    "detection",
]
LICENCES = ["Apache-2.0", "MIT", "CC-BY-4.0", "GPL-3.0-only", "BSD-3-Clause", "other"]
FRAMEWORKS = ["pytorch", "jax", "onnx", "sklearn"]
RELATIONS = ["finetune", "adapter", "quantized", "pruned"]
WORDS = [
    "robust",
    "compact",
    "distilled",
    "multilingual",
    "vision",
    "audio",
    "tabular",
    "sparse",
    "efficient",
    "calibrated",
    "baseline",
    "student",
    "teacher",
    "noisy",
    "clean",
    "medical",
    "legal",
    "finance",
    "retail",
    "edge",
    "mobile",
    "server",
]


def generate(n: int, seed: int = 0) -> LakeIndex:
    """A lake of ``n`` entries: 2% datasets, 0.5% code, the rest models in families up to 5 deep."""
    rnd = random.Random(seed)
    n_data, n_code = max(2, n // 50), max(1, n // 200)
    n_models = n - n_data - n_code
    entries: list[IndexEntry] = []
    datasets = [f"data-{i:05d}" for i in range(n_data)]
    for i, d in enumerate(datasets):
        entries.append(
            _entry(
                d, "dataset", rnd, i, splits=[{"name": "train", "rows": 1000}, {"name": "test", "rows": 200}]
            )
        )
    for i in range(n_code):
        entries.append(_entry(f"code-{i:04d}", "code", rnd, i))
    edges, results, findings, history, artifacts = [], [], [], [], []
    models: list[str] = []
    for i in range(n_models):
        mid = f"model-{i:06d}"
        parents = []
        if models and rnd.random() < 0.7:
            parent = models[max(0, len(models) - 1 - int(rnd.expovariate(1 / 20)))]
            parents.append(parent)
        ds = rnd.sample(datasets, k=min(2, len(datasets)))
        evals = [
            {
                "dataset": ds[0],
                "split": "test",
                "metric": "accuracy",
                "value": round(rnd.uniform(0.5, 0.99), 4),
                "tolerance": 0.005,
            },
            {
                "dataset": ds[0],
                "split": "test",
                "metric": "loss",
                "value": round(rnd.uniform(0.05, 2), 4),
                "tolerance": 0.01,
            },
        ]
        rel = rnd.choice(RELATIONS)
        entry = _entry(
            mid,
            "model",
            rnd,
            i,
            base_models=[{"id": p, "version": None, "relation": rel, "weight": None} for p in parents],
            datasets=[
                {"id": ds[0], "version": None, "role": "train"},
                {"id": ds[1], "version": None, "role": "eval"},
            ],
            evaluations=evals,
        )
        entries.append(entry)
        models.append(mid)
        for p in parents:
            status = rnd.choices(["verified", "unchecked", "contradicted"], [6, 3, 1])[0]
            edges.append(
                Edge(parent=p, child=mid, relation=rel, declared=True, status=status, confidence=0.9)
            )
        if models[:-1] and rnd.random() < 0.03:
            edges.append(
                Edge(
                    parent=rnd.choice(models[:-1]),
                    child=mid,
                    relation="finetune",
                    declared=False,
                    status="undeclared",
                )
            )
        ev = evals[0]
        if rnd.random() < 0.8:
            reproduced = ev["value"] + rnd.gauss(0, 0.004)
            status = "verified" if abs(reproduced - ev["value"]) <= 0.005 else "contradicted"
            results.append(Result(model=mid, version="1.0.0", dataset=ev["dataset"], split="test", metric="accuracy",
                                  claimed=ev["value"], tolerance=0.005, reproduced=reproduced, status=status))  # fmt: skip
        if rnd.random() < 0.1:
            findings.append(Finding(stage="governance", rule=rnd.choice(["license-compatibility", "owner-missing", "risk-review"]),
                                    severity=rnd.choice(["error", "warning", "info"]), entry=mid, owners=entry.manifest["owners"],
                                    path=entry.path, line=rnd.randint(1, 40), message="generated finding"))  # fmt: skip
        history.append(Change(entry=mid, commit=f"{i:040x}", author="Bench", date=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                              subject=f"Add {mid}", path=entry.path, action="added"))  # fmt: skip
        artifacts.append(ArtifactCheck(entry=mid, version="1.0.0", status="verified"))
    return LakeIndex(
        generated_at="2024-06-01T00:00:00+00:00",
        entries=entries,
        edges=edges,
        results=results,
        findings=findings,
        history=history,
        artifacts=artifacts,
        stages={"validate": "ran", "attribution": "ran", "bench": "ran", "governance": "ran"},
    )


def _entry(entry_id: str, kind: str, rnd: random.Random, i: int, **extra: Any) -> IndexEntry:
    words = " ".join(rnd.sample(WORDS, 4))
    manifest: dict[str, Any] = {
        "id": entry_id,
        "kind": kind,
        "name": f"{words.title()} {i}",
        "description": f"A **{words}** {kind}.\n\nTrained for the *{rnd.choice(WORDS)}* use case; see the evaluations.",
        "owners": [f"@owner{rnd.randint(0, 49)}", f"team/{rnd.choice(WORDS)}"],
        "license": rnd.choice(LICENCES[:-1]),
        "tags": rnd.sample(WORDS, 2),
    }
    if kind == "model":
        manifest.update(
            task=rnd.choice(TASKS),
            framework=rnd.choice(FRAMEWORKS),
            architecture={"family": "bench-mlp"},
            versions=[_version()],
            risk="minimal",
            **extra,
        )
    elif kind == "dataset":
        manifest.update(
            task=rnd.choice(TASKS),
            source={"name": "generated"},
            personal_data=False,
            versions=[_version()],
            **extra,
        )
    else:
        manifest.update(path="catalog/src", language="python", entrypoints={"build": "pkg.mod:build"})
    folder = {"model": "models", "dataset": "datasets", "code": "code"}[kind]
    return IndexEntry(
        id=entry_id,
        kind=kind,  # type: ignore[arg-type]
        path=f"catalog/{folder}/{entry_id}.yaml",
        latest_version="1.0.0" if kind != "code" else None,
        manifest=manifest,
    )


def _version() -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "released": "2024-05-01",
        "changelog": "",
        "artifact": {"uri": "w.safetensors", "sha256": "0" * 64, "size": 1_000_000, "format": "safetensors"},
    }


def _size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def measure_query_bytes(site: Path, queries: list[tuple[str, dict[str, list[str]]]]) -> list[dict[str, Any]]:
    """Bytes and requests of the search index (``pagefind/``) that the site's own search page
    fetches in headless Chromium: once to open, then for each query typed in (filters as chosen
    in the address), until its results are listed and the network is idle."""
    import functools
    import http.server
    import threading
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--no-first-run",
                ],
            )
            for text, filters in [("", {}), *queries]:
                # a page per query, as a visitor opening a shared search address; the first one only opens
                page = browser.new_page()
                page.set_default_timeout(600_000)
                seen: list[tuple[str, int]] = []
                page.on(
                    "requestfinished",
                    lambda r, seen=seen: (
                        seen.append((r.url, r.sizes()["responseBodySize"])) if "/pagefind/" in r.url else None
                    ),
                )
                args = ([("q", text)] if text else []) + [(k, v) for k, vs in filters.items() for v in vs]
                page.goto(f"{base}/search.html" + ("?" + urlencode(args) if args else ""))
                page.wait_for_function(
                    "() => { const s = document.getElementById('lg-search-status').textContent;"
                    " return !/^(Loading|Searching)/.test(s); }"
                )
                page.wait_for_load_state("networkidle")
                hits = page.locator(".lg-results li").count()
                status = page.locator("#lg-search-status").inner_text()
                out.append(
                    {
                        "query": text,
                        "filters": filters,
                        "listed": hits,
                        "status": status,
                        "bytes": sum(s for _, s in seen),
                        "requests": len(seen),
                    }
                )
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return out


def one(n: int, keep: Path | None) -> dict[str, Any]:
    from lakegen.site import build_site

    t0 = time.perf_counter()
    index = generate(n)
    gen_s = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix=f"lakegen-site-{n}-"))
    try:
        (work / "catalog").mkdir()
        report = build_site(work, index)
        full_s = report.seconds
        # Children so far are the Pagefind runs (the browser measuring queries comes later).
        rss_pagefind = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        files, size = _size(report.site)
        _, pf_size = _size(report.site / "pagefind")
        # One manifest changes: its description, as a pull request would.
        changed = index.model_copy(deep=True)
        target = next(e for e in changed.entries if e.kind == "model" and e.id.endswith("0100"))
        target.manifest["description"] += "\n\nEdited."
        again = build_site(work, changed)
        queries = [
            ("robust", {}),
            ("medical student", {"task": ["detection"]}),
            ("edge", {"licence": ["MIT"]}),
        ]
        try:
            query_bytes: Any = (
                measure_query_bytes(report.site, queries)
                if Path("/usr/bin/chromium").exists()
                else "no chromium"
            )
        except Exception as e:  # report, don't hide, a measurement that could not run
            query_bytes = f"failed: {e}"
        if keep:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(report.site, keep)
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "entries": n,
            "pages": report.pages,
            "generate_s": round(gen_s, 2),
            "full_build_s": round(full_s, 2),
            "pages_per_s": round(report.pages / full_s, 1),
            "render_s": round(report.stats["render_s"], 2),
            "pagefind_s": round(report.stats.get("pagefind_s", 0), 2),
            "search_shards": report.stats.get("search_shards"),
            "site_files": files,
            "site_mb": round(size / 1e6, 1),
            "pagefind_mb": round(pf_size / 1e6, 1),
            "peak_rss_mb_python": round(rss_self),
            "peak_rss_mb_pagefind": round(rss_pagefind),
            "incremental_s": round(again.seconds, 2),
            "incremental_render_s": round(again.stats["render_s"], 2),
            "incremental_rendered": again.stats["rendered"],
            "incremental_reused": again.stats["reused"],
            "incremental_pagefind_s": round(again.stats.get("pagefind_s", 0), 2),
            "incremental_shards_indexed": again.stats.get("search_indexed"),
            "query_bytes": query_bytes,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--keep", type=Path, help="copy the last built site here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.keep)))
        return
    for n in args.sizes:
        # Each size in a fresh process, so peak memory is that size's own.
        cmd = [sys.executable, __file__, "--one", str(n)] + (["--keep", str(args.keep)] if args.keep else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\n== {n} entries ==")
        for key, value in result.items():
            if key == "query_bytes" and isinstance(value, list):
                for q in value:
                    print(
                        f"  search {q['query']!r} {q['filters'] or ''}: {q['listed']} listed ({q['status']}), "
                        f"{q['bytes'] / 1024:.0f} KiB in {q['requests']} requests"
                    )
            else:
                print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
