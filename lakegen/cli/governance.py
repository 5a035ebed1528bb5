"""The governance commands of ``lakegen``: ``check``, ``history`` and ``diff``.

Kept beside :mod:`lakegen.cli.main` (which registers them) so that file stays short;
like it, this module only parses, calls library functions and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


WORKERS = "jobs at once (default: fingerprints 1, evaluations half the CPUs up to 4; on Ray, one per CPU)"
TRUST_CODE = "run the pull request's code entries without the sandbox, as you (never in CI)"


def cmd_check(args: argparse.Namespace) -> int:
    from lakegen.check.render import render
    from lakegen.check.report import run_check
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, colour, engine, lake_root

    root = lake_root(args)
    if args.base:
        _check_base(root, args.base)
    report = run_check(
        root,
        args.base,
        run_evaluations=not args.no_bench,
        verify_artifacts=not args.no_verify,
        trust_code=args.trust_code,
        engine=engine(args),
        workers=args.workers,
    )
    markdown = render(report, "markdown")
    if args.report:
        Path(args.report).write_text(markdown, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown + "\n")
    fmt = "json" if args.json else args.format
    sys.stdout.write(markdown if fmt == "markdown" else render(report, fmt, colour=colour(sys.stdout)))
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _check_base(root: Path, base: str) -> None:
    """Refuse a ``--base`` that git cannot compare HEAD with, in one line, before any work is done."""
    from lakegen.cli.common import UsageError
    from lakegen.errors import LakeError
    from lakegen.gitrepo import Repo

    repo = Repo.find(root)
    if repo is None:
        raise UsageError(f"--base {base}: the lake is not in a git repository")
    try:
        commit = repo.commit_of(base)
    except LakeError:
        raise UsageError(
            f"--base {base}: not a git revision here (in CI, fetch full history: fetch-depth 0)"
        ) from None
    try:
        repo.merge_base(commit)
    except LakeError:
        raise UsageError(f"--base {base}: has no common history with HEAD (fetch-depth 0?)") from None


def cmd_history(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog
    from lakegen.cli.common import EXIT_OK, UsageError, lake_root, print_json
    from lakegen.errors import did_you_mean
    from lakegen.governance.changetext import as_text
    from lakegen.governance.history import lake_history, provenance
    from lakegen.terminal import printable

    root = lake_root(args)
    catalog = load_catalog(root, verify_artifacts=False)
    changes = lake_history(root, catalog)
    if args.id:
        known = sorted(set(catalog.records) | {c.entry for c in changes})  # deleted ones have a history
        if args.id not in known:
            raise UsageError(f"no entry '{args.id}' in the lake or its history{did_you_mean(args.id, known)}")
        changes = [c for c in changes if c.entry == args.id]
    if args.json:
        print_json([c.model_dump(mode="json") for c in changes])
        return EXIT_OK
    for c in changes:
        pr = f" (PR #{c.pr})" if c.pr else ""
        head = f"{c.date[:10]} {c.commit[:12]} {c.author} <{c.email}>{pr} {c.action} {c.entry}: {c.subject}"
        notes = "".join(f" [{n}]" for n in provenance(c))
        print(printable(head + notes))
        for fc in c.changes:
            print("\n".join(as_text(fc, "    ")))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog
    from lakegen.cli.common import EXIT_OK, UsageError, lake_root, print_json
    from lakegen.errors import did_you_mean
    from lakegen.governance.versiondiff import diff_versions, render_text

    catalog = load_catalog(lake_root(args), verify_artifacts=False)
    if args.id not in catalog:
        raise UsageError(f"no entry '{args.id}'{did_you_mean(args.id, sorted(catalog.records))}")
    have = [v.version for v in getattr(catalog.get(args.id), "versions", [])]
    for v in (args.version_a, args.version_b):
        if v not in have:
            raise UsageError(f"{args.id} has no version '{v}' (has {', '.join(have) or 'none'})")
    diff = diff_versions(catalog, args.id, args.version_a, args.version_b, weights=not args.no_weights)
    if args.json:
        print_json(diff.to_json())
    else:
        sys.stdout.write(render_text(diff))
    return EXIT_OK


def cmd_codeowners(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, lake_root
    from lakegen.governance.codeowners import CODEOWNERS, drift, render
    from lakegen.governance.policies import load_config

    root = lake_root(args)
    text = render(load_catalog(root, verify_artifacts=False), load_config(root).governance)
    if args.check:
        why = drift(root, text)
        if why is not None:
            print(why)
        return EXIT_FINDINGS if why else EXIT_OK
    if args.write:
        (root / CODEOWNERS).parent.mkdir(parents=True, exist_ok=True)
        (root / CODEOWNERS).write_text(text, encoding="utf-8")
        print(CODEOWNERS)
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


def add_commands(add: Add) -> None:
    """Register ``check``, ``codeowners``, ``history`` and ``diff`` through cli's ``add`` helper."""
    from lakegen.check.render import FORMATS  # not lakegen.check.report: --help stays fast
    from lakegen.cli.common import add_executor_option

    p = add(
        "codeowners",
        cmd_codeowners,
        "The .github/CODEOWNERS file from owners.yaml (governance) and each manifest's owners.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write .github/CODEOWNERS")
    group.add_argument("--check", action="store_true", help="exit 1 when .github/CODEOWNERS has drifted")

    p = add(
        "check",
        cmd_check,
        "Check the lake as a pull request: validation, policies, attribution, bench. "
        "The Markdown report is also appended to $GITHUB_STEP_SUMMARY when that is set.",
    )
    p.add_argument("--base", metavar="REF", help="the branch or commit the pull request targets")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="what to print: text (coloured on a terminal unless NO_COLOR is set; the default), "
        "markdown or json",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--report", metavar="FILE", help="also write the Markdown report to FILE")
    p.add_argument("--no-bench", action="store_true", help="do not re-run new or changed evaluations")
    p.add_argument("--no-verify", action="store_true", help="skip artifact sha256 checks")
    p.add_argument("--trust-code", action="store_true", help=TRUST_CODE)
    add_executor_option(p, WORKERS)

    p = add("history", cmd_history, "The audit trail of manifests from git: field-level changes.")
    p.add_argument("id", nargs="?", help="only this entry (also one deleted since)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("diff", cmd_diff, "Compare two versions of an entry: manifest and weights.")
    p.add_argument("id", help="the entry's id")
    p.add_argument("version_a", metavar="VERSION_A", help="the older version, e.g. 1.0.0")
    p.add_argument("version_b", metavar="VERSION_B", help="the version to compare it with, e.g. 1.1.0")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-weights", action="store_true", help="compare manifests only")
