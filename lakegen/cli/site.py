"""The site commands of ``lakegen``: ``build``, ``serve`` and ``search``.

Kept beside :mod:`lakegen.cli.main` (which registers them); like it, this module
only parses arguments, calls library functions and prints.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
# search facet -> (its option, its argparse dest); "where" for --where conditions
FILTER_OPTIONS = {
    "kind": ("--kind", "kind"),
    "task": ("--task", "task"),
    "license": ("--license", "license"),
    "framework": ("--framework", "framework"),
    "owner": ("--owner", "owner"),
    "relation": ("--relation", "relation"),
    "lineage": ("--lineage-status", "lineage_status"),
    "evaluation": ("--eval-status", "eval_status"),
    "params": ("--params", "params"),
    "where": ("--where", "where"),
}


def _compiled(args: argparse.Namespace, root: Path, *, unread: bool = False) -> Any:
    """The lake index: read from ``--index`` when given, else compiled now and saved. With
    ``unread``, a saved index that is still current is returned unread (:func:`store.saved`)."""
    from lakegen.compile import compile_or_reuse
    from lakegen.compile.store import load_index, save, save_aside, saved

    if getattr(args, "index", None):
        return load_index(Path(args.index))
    kept = saved(root) if unread else None
    if kept is not None and kept.options == {"verify_artifacts": not getattr(args, "no_verify", False)}:
        return kept
    from lakegen.cli.common import engine

    index, reused = compile_or_reuse(
        root,
        verify_artifacts=not getattr(args, "no_verify", False),
        engine=engine(args),
        workers=getattr(args, "workers", None),
        isolate=unread,  # a build: the site reads the saved index next, so the compile may run aside
    )
    if not reused and unread:  # the site build goes on while the index is written; it settles it
        save_aside(index, root)
    elif not reused:
        save(index, root)
    return index


def cmd_build(args: argparse.Namespace) -> int:
    from lakegen.cli.common import EXIT_OK, lake_root, print_json
    from lakegen.compile.store import settle
    from lakegen.site import build_site

    root = lake_root(args)
    start = time.perf_counter()
    index = _compiled(args, root, unread=True)
    compile_s = time.perf_counter() - start
    try:
        report = build_site(
            root,
            index,
            site_dir=args.site,
            reuse=not args.full,
            pagefind=False if args.no_search else None,
        )
    finally:
        settle(root)  # the index saved aside, whatever became of the site
    stats = report.stats
    if args.json:
        print_json(
            {
                "site": str(report.site),
                "compile_s": round(compile_s, 3),
                "seconds": round(report.seconds, 3),
                "pages": report.pages,
                **stats,
            }
        )
        return EXIT_OK
    print(
        f"{report.site}: {report.pages} pages ({stats['rendered']} rendered, {stats['reused']} unchanged) "
        f"in {report.seconds:.1f} s"
    )
    if "search_shards" in stats:
        print(
            f"search: {stats['search_indexed']} of {stats['search_shards']} Pagefind shards indexed "
            f"in {stats['pagefind_s']:.1f} s"
        )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from lakegen.cli.common import EXIT_OK, lake_root
    from lakegen.site import build_site, serve

    root = lake_root(args)
    site = Path(args.site) if args.site else root / "site"
    if not args.no_build:
        report = build_site(root, _compiled(args, root), site_dir=site)
        print(f"built {report.pages} pages in {report.seconds:.1f} s")
    serve(site, "127.0.0.1", args.port)
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, UsageError, lake_root, print_json
    from lakegen.search import QueryError, check_query, entry_facets, search

    root = lake_root(args)
    index = _compiled(args, root) if args.index or args.compile else _saved_or_compiled(root)
    filters = {facet: getattr(args, dest) for facet, (_, dest) in FILTER_OPTIONS.items() if facet != "where"}
    facets = entry_facets(index)
    try:
        where = check_query(facets, filters, args.where)
    except QueryError as e:
        lines = (f"{FILTER_OPTIONS[f][0]} {shlex.quote(given)}: {why}" for f, given, why in e.problems)
        raise UsageError(*lines) from None
    hits = search(index, " ".join(args.text), filters=filters, where=where, limit=args.limit, facets=facets)
    if args.json:
        print_json([h.to_json() for h in hits])
    else:
        for h in hits:
            f = h.facets
            extra = " ".join(x for x in (f.task or "", f.license or "", ",".join(f.owner)) if x)
            print(f"{h.kind:7} {h.id:32} {h.score:5.1f}  {h.name}  [{extra}]")
        print(f"{len(hits)} {'entry' if len(hits) == 1 else 'entries'}", file=sys.stderr)
    return EXIT_OK if hits else EXIT_FINDINGS


def _saved_or_compiled(root: Path) -> Any:
    """The index the last build saved while it still matches the working tree; else one compiled now
    (without re-verifying artifacts, as searching should not) and saved for the next search."""
    from lakegen.compile import compile_lake
    from lakegen.compile.store import INDEX_FILE, load_current, save

    index, why = load_current(root)
    if index is not None:
        return index
    if (root / INDEX_FILE).is_file():
        print(f"lakegen: {why}; compiling the lake again", file=sys.stderr)
    index = compile_lake(root, verify_artifacts=False)
    save(index, root)
    return index


def add_commands(add: Add) -> None:
    from lakegen.cli.common import add_executor_option
    from lakegen.cli.governance import WORKERS

    p = add("build", cmd_build, "Compile the lake and render the governance site into site/.")
    p.add_argument("--site", help="output folder (default: site/ in the lake)")
    p.add_argument("--index", help="render this compiled lake.json instead of compiling the lake")
    p.add_argument("--full", action="store_true", help="render every page, even those that did not change")
    p.add_argument("--no-search", action="store_true", help="skip the Pagefind search index")
    p.add_argument("--no-verify", action="store_true", help="skip artifact sha256 checks")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    add_executor_option(p, WORKERS)

    p = add("serve", cmd_serve, "Build the site and preview it on http://127.0.0.1:PORT/.")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    p.add_argument("--site", help="folder to serve (default: site/ in the lake)")
    p.add_argument("--index", help="render this compiled lake.json instead of compiling the lake")
    p.add_argument("--no-build", action="store_true", help="serve what is there")
    p.add_argument("--no-verify", action="store_true", help="skip artifact sha256 checks")

    p = add("search", cmd_search, "Search the compiled lake: text, facets and numeric conditions.")
    p.add_argument("text", nargs="*", metavar="TEXT", help="words that must all occur (ranked by where)")
    p.add_argument(
        "--kind", action="append", choices=["model", "dataset", "code"], help="entry kind (repeatable)"
    )
    p.add_argument("--task", action="append", help="facet; repeat for any of several values")
    p.add_argument("--license", action="append", help="SPDX expression, exactly as in the manifest")
    p.add_argument("--framework", action="append", help="framework, e.g. pytorch (repeatable)")
    p.add_argument("--owner", action="append", help="@handle or org/team")
    p.add_argument("--relation", action="append", help="how a model derives from its parents")
    p.add_argument("--lineage-status", action="append", help="verified, contradicted, unchecked, undeclared")
    p.add_argument("--eval-status", action="append", help="verified, contradicted, unreproducible, unchecked")
    p.add_argument("--params", action="append", help="parameter-count range as on the site, e.g. 1M-10M")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        help="numeric condition, repeatable: 'accuracy>=0.9', 'digits/test/accuracy>0.95', 'params<1e6'",
    )
    p.add_argument("--limit", type=int, help="at most this many hits")
    p.add_argument("--index", help="search this compiled lake.json")
    p.add_argument(
        "--compile", action="store_true", help="compile the lake now instead of reading the last build"
    )
    p.add_argument("--no-verify", action="store_true", help="with --compile: skip artifact sha256 checks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
