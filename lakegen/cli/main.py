"""The ``lakegen`` command: parses arguments, calls library functions, prints results.

Exit codes: 0 clean, 1 findings (or an operation refused for bad input in the
lake), 2 usage errors: an unknown option, or an id, version, revision or search
filter value that is not there (:class:`UsageError`, one line each). Heavy
libraries are imported inside the commands that need them, so ``lakegen --help``
stays fast.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakegen.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_executor_option,
    engine,
    lake_root,
    print_json,
    progress,
)
from lakegen.errors import LakeError, did_you_mean
from lakegen.version import __version__


def cmd_validate(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog

    catalog = load_catalog(
        lake_root(args), verify_artifacts=not args.no_verify, engine=engine(args), workers=args.workers
    )
    states = list(catalog.artifacts.values())
    counts = {s: states.count(s) for s in ("verified", "contradicted", "unchecked")}
    errors = catalog.errors
    if args.json:
        print_json(
            {
                "ok": not errors,
                "entries": len(catalog.records),
                "artifacts": counts,
                "problems": [p.to_json() for p in catalog.problems],
            }
        )
    else:
        for problem in catalog.problems:
            print(problem)
        warnings = len(catalog.problems) - len(errors)
        print(
            f"{len(catalog.records)} entries: {len(errors)} errors, {warnings} warnings; artifacts: "
            f"{counts['verified']} verified, {counts['contradicted']} contradicted, "
            f"{counts['unchecked']} unchecked",
            file=sys.stderr,
        )
    return EXIT_FINDINGS if errors else EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    from lakegen.scaffold import new_manifest

    root = lake_root(args)
    path = new_manifest(root, args.kind, args.id, args.owner, args.artifact, args.version)
    print(path.relative_to(root).as_posix())
    return EXIT_OK


def _summary(entry: Any) -> dict[str, Any]:
    from lakegen.catalog.loader import latest_version

    versions = getattr(entry, "versions", None)
    return {
        "id": entry.id,
        "kind": entry.kind,
        "name": entry.name,
        "license": entry.license,
        "owners": list(entry.owners),
        "latest_version": latest_version(entry) if versions is not None else None,
    }


def cmd_list(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog

    catalog = load_catalog(lake_root(args), verify_artifacts=False)
    rows = [_summary(e) for e in sorted(catalog.entries(args.kind), key=lambda e: (e.kind, e.id))]
    if args.json:
        print_json(rows)
    else:
        table = [["kind", "id", "version", "license", "owners", "name"]] + [
            [r["kind"], r["id"], r["latest_version"] or "-", r["license"], ",".join(r["owners"]), r["name"]]
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5])
    _warn_if_broken(catalog)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog

    catalog = load_catalog(lake_root(args), verify_artifacts=False)
    if args.id not in catalog:
        raise UsageError(f"no entry '{args.id}'{did_you_mean(args.id, sorted(catalog.records))}")
    record = catalog.records[args.id]
    if args.json:
        print_json({"path": record.path, **record.entry.model_dump(mode="json")})
    else:
        import yaml

        data = record.entry.model_dump(mode="json", exclude_unset=True)
        print(f"# {record.path}")
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), end="")
    _warn_if_broken(catalog)
    return EXIT_OK


def _warn_if_broken(catalog: Any) -> None:
    if catalog.errors:
        print(
            f"lakegen: the lake has {len(catalog.errors)} problems; run 'lakegen validate'", file=sys.stderr
        )


def cmd_schema(args: argparse.Namespace) -> int:
    from lakegen.model import schema

    if args.write or args.check:
        root = lake_root(args)
        if args.check:
            stale = schema.stale(root)
            for name in stale:
                print(f"{name}: out of date; run 'lakegen schema --write'")
            return EXIT_FINDINGS if stale else EXIT_OK
        for name in schema.write(root):
            print(name)
        return EXIT_OK
    print(schema.render(args.kind), end="")
    return EXIT_OK


TRUST_CODE = "run code entries without the sandbox, as you (only for code you have reviewed)"


def cmd_bench(args: argparse.Namespace) -> int:
    from lakegen.bench.run import BenchError, Options, run_bench

    options = Options(
        device=args.device,
        force=args.force,
        timeout_s=args.timeout,
        trust_code=args.trust_code,
        read_committed=not args.no_committed,
        engine=engine(args),
    )
    if args.workers:
        options.workers = args.workers
    if args.memory_limit is not None:
        options.memory_limit_bytes = int(args.memory_limit * (1 << 30))
    try:
        with progress(not args.json, "evaluating") as bar:
            report = run_bench(lake_root(args), args.ids, options, bar.update if bar else None)
    except BenchError as e:
        print(f"lakegen bench: {e}", file=sys.stderr)
        return EXIT_FINDINGS
    counts = report.counts()
    if args.json:
        print_json(
            {
                "ok": report.ok,
                "counts": counts,
                "executed": report.executed,
                "cached": report.cached,
                "duration_s": round(report.duration_s, 3),
                "results": [r.model_dump(mode="json") for r in report.results],
            }
        )
    else:
        table = [["status", "model", "version", "dataset/split", "metric", "claimed", "reproduced", "detail"]]
        for r in report.results:
            numbers = [f"{r.claimed:g}", "-" if r.reproduced is None else f"{r.reproduced:.4f}"]
            where, detail = f"{r.dataset}/{r.split}", r.detail.split("\n", 1)[0]
            table.append([r.status, r.model, r.version, where, r.metric, *numbers, detail])
        widths = [max(len(row[i]) for row in table) for i in range(7)]
        for row in table:
            cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[7]]).rstrip())
        print(
            f"{len(report.results)} evaluations: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + f"; {report.executed} run, {report.cached} from cache, {report.duration_s:.1f} s",
            file=sys.stderr,
        )
    return EXIT_FINDINGS if args.strict and not report.ok else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakegen", description="Compile a model lake of YAML manifests into a verified catalog."
    )
    parser.add_argument("--root", help="the lake (a folder holding catalog/); default: found from here")
    parser.add_argument("--version", action="version", version=f"lakegen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("validate", cmd_validate, "Check every manifest: schema, references, lineage, artifacts.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-verify", action="store_true", help="skip artifact sha256 checks")
    add_executor_option(p, workers="remote artifacts verified side by side (default 1: one after another)")

    p = add("new", cmd_new, "Scaffold a manifest that validates as it stands.")
    p.add_argument("kind", choices=["model", "dataset", "code"], help="what the entry is")
    p.add_argument("id", help="the new entry's id (a lowercase slug)")
    p.add_argument("--owner", help="owner handle or team (default: @$USER)")
    p.add_argument(
        "--artifact",
        type=Path,
        help="release this file of the lake (or adapter / sharded checkpoint folder), pinned by sha256",
    )
    p.add_argument("--version", default="1.0.0", help="the version --artifact is released as (default 1.0.0)")

    p = add("list", cmd_list, "List the lake's entries.")
    p.add_argument("--kind", choices=["model", "dataset", "code"], help="only entries of this kind")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("show", cmd_show, "Show one entry.")
    p.add_argument("id", help="the entry's id")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("schema", cmd_schema, "Print, write or check the JSON Schema of manifests.")
    p.add_argument(
        "--kind", choices=["model", "dataset", "code"], default="model", help="which schema to print (model)"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write schemas/*.schema.json")
    group.add_argument("--check", action="store_true", help="exit 1 when schemas/ is out of date")

    p = add("bench", cmd_bench, "Re-run the evaluations manifests claim and compare the numbers.")
    p.add_argument("ids", nargs="*", metavar="ID", help="models to benchmark (default: all)")
    p.add_argument(
        "--workers",
        type=int,
        help="evaluations run in parallel (default: half the CPUs, 1-4; on Ray, one per CPU of the cluster)",
    )
    add_executor_option(p)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: GPU if present")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one evaluation may run (600)")
    p.add_argument("--memory-limit", type=float, metavar="GIB", help="address-space cap per worker; 0: none")
    p.add_argument("--force", action="store_true", help="run again even when a cached result exists")
    p.add_argument("--trust-code", action="store_true", help=TRUST_CODE)
    p.add_argument(
        "--no-committed",
        action="store_true",
        help="take no result from catalog/results/ (a pull request may have changed it), only the local "
        "cache or a fresh run: what publish.yml does",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on a contradicted claim or a failed run")
    p.add_argument("--json", action="store_true", help="machine-readable output, no progress bar")
    from lakegen.cli.governance import add_commands

    add_commands(add)
    from lakegen.cli.site import add_commands as add_site_commands  # build, serve, search

    add_site_commands(add)
    from lakegen.cli.attribution import add_commands as add_weight_commands  # fingerprint, attribute
    from lakegen.cli.attribution import add_search

    add_weight_commands(add)
    add_search(add, sub)  # search --like FILE
    from lakegen.cli.exports import add_commands as add_export_commands  # export, import

    add_export_commands(add)
    return parser


def reference() -> str:
    """The CLI reference (``docs/cli.md``), generated from the parser so it cannot drift from ``--help``."""
    import os

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal; the document must not depend on it
    try:
        return _reference(build_parser())
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _reference(parser: argparse.ArgumentParser) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = [
        "# Command-line reference\n\n"
        "Generated from `lakegen --help` by `python -c 'from lakegen.cli.main import reference; "
        'print(reference(), end="")\' > docs/cli.md`; a test fails when it is out of date.\n',
        f"## lakegen\n\n```text\n{parser.format_help()}```\n",
    ]
    for name, command in sub.choices.items():
        parts.append(f"## lakegen {name}\n\n```text\n{command.format_help()}```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    from lakegen.terminal import PrintableStream

    # Whatever a command prints, no control character from a manifest or git reaches the terminal.
    sys.stdout = PrintableStream(sys.stdout)
    sys.stderr = PrintableStream(sys.stderr)
    args = build_parser().parse_args(argv)
    # A lake's compile holds hundreds of thousands of objects that live to the end: at the default
    # thresholds the collector walked them all again and again (a third of loading 10,000
    # manifests). Cycles are still collected, just in larger batches.
    gc.set_threshold(100_000, 50, 100)
    try:
        return int(args.func(args))
    except UsageError as e:
        for line in e.lines:
            print(f"lakegen {args.command}: {line}", file=sys.stderr)
        return EXIT_USAGE
    except LakeError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return EXIT_FINDINGS
    except BrokenPipeError:
        return EXIT_OK
    finally:
        if argv is None:
            # The program ends here (its own command line; a caller passing ``argv`` goes on). What
            # the compile left in reference cycles would be collected at exit, object by object:
            # 1.5-2 s of a one-change rebuild at 10,000 models, for memory the exit frees anyway.
            # Frozen objects are left to the exit; atexit handlers still run.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
