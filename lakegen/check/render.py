"""The ``lakegen check`` report written out: text for a terminal, Markdown for GitHub, or JSON.

All three say the same things in the same order (verdict, what the pull request
changes, stages, findings on what it touches, then the rest of the lake). Every
string that comes from a manifest or from git is made inert for where it goes:
:func:`md` escapes Markdown, HTML, links and ``@`` mentions for the summary
GitHub renders; :func:`plain` escapes control characters, so a manifest cannot send
escape sequences to a terminal. Colour (bold verdict, red errors, yellow
warnings) is added only when asked, which the CLI does on a terminal without
``NO_COLOR``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lakegen.errors import SEVERITY_ORDER
from lakegen.terminal import printable

FORMATS = ("text", "markdown", "json")

if TYPE_CHECKING:
    from lakegen.check.report import CheckReport
    from lakegen.errors import Finding

_ICON = {"error": "❌ error", "warning": "⚠️ warning", "info": "ℹ️ info"}
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# one pass: Markdown punctuation backslash-escaped; HTML, '#' (issue links) and '@' (mentions) as entities
_ESCAPES = str.maketrans(
    {
        **{c: "\\" + c for c in "\\`*_{}[]()+-.!|~^=:"},
        **{"&": "&amp;", "<": "&lt;", ">": "&gt;", "#": "&#35;", "@": "&#64;"},
    }
)


def plain(value: Any, limit: int = 300) -> str:
    """``value`` as one line of text: JSON for non-strings, line breaks and tabs as spaces, other
    control and bidi characters as visible escapes (:func:`lakegen.terminal.printable`), at most
    ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = printable(re.sub(r"[\t\n\r]+", " ", text))
    return text[: limit - 1] + "…" if len(text) > limit else text


def md(value: Any, limit: int = 300) -> str:
    """``value`` as inert Markdown text: no markup, HTML, links, mentions or table breaks survive."""
    return plain(value, limit).translate(_ESCAPES)


def render(report: CheckReport, fmt: str, *, colour: bool = False) -> str:
    """``report`` as ``text``, ``markdown`` or ``json``."""
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "text":
        return render_text(report, colour=colour)
    raise ValueError(f"unknown report format {fmt!r} (text, markdown or json)")


def _tally(report: CheckReport) -> str:

    counts = {s: sum(f.severity == s for f in report.findings) for s in SEVERITY_ORDER}
    tally = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())
    return f"{len(report.index.entries)} entries; findings: {tally}."


def _file_what(f: Any) -> str:
    if f.code_entries:
        return f"source of code entry {', '.join(f.code_entries)}"
    return str(f.what)


def _kind(report: CheckReport, change: Any) -> str:
    record = report.catalog.records.get(change.entry)
    if record and change.path:
        return str(record.entry.kind)
    return str(change.base_entry.kind) if change.base_entry else ""


def _change_summary(change: Any, esc: Callable[..., str], limit: int = 6) -> str:
    if change.status == "added":
        return "new entry"
    if change.status == "removed":
        return "manifest deleted"
    parts = []
    for fc in change.fields[:limit]:
        if fc.old is None:
            parts.append(f"{esc(fc.field)}: added {esc(fc.new, 80)}")
        elif fc.new is None:
            parts.append(f"{esc(fc.field)}: removed")
        else:
            parts.append(f"{esc(fc.field)}: {esc(fc.old, 80)} → {esc(fc.new, 80)}")
    if len(change.fields) > limit:
        parts.append(f"and {len(change.fields) - limit} more fields")
    return "; ".join(parts) or "formatting only"


# ------------------------------------------------------------------------------- Markdown


def _findings_table(findings: list[Finding]) -> list[str]:
    lines = ["| severity | where | rule | message |", "|---|---|---|---|"]
    for f in findings:
        where = f"{md(f.path)}:{f.line}" + (f" {md(f.field)}" if f.field else "")
        lines.append(f"| {_ICON[f.severity]} | {where} | {md(f.stage)}/{md(f.rule)} | {md(f.message, 600)} |")
    return lines


def render_markdown(report: CheckReport) -> str:
    """The pull-request summary GitHub renders: verdict, what changes, stages, then every finding."""
    verdict = "✅ passed" if report.ok else "❌ failed"
    out = [f"## lakegen check: {verdict}", "", _tally(report), ""]
    changes = report.changes
    if changes is not None:
        out += [f"Compared with {md(changes.base_ref)} (merge base {changes.base_commit[:12]}).", ""]
        out += ["### What this pull request changes", ""]
        if changes.entries or changes.config_changed or changes.files:
            out += ["| change | entry | kind | what |", "|---|---|---|---|"]
            for c in changes.entries:
                out.append(f"| {c.status} | {md(c.entry)} | {_kind(report, c)} | {_change_summary(c, md)} |")
            for path, status in sorted(changes.config_changed.items()):
                out.append(f"| {status} | {md(path)} | configuration | governance settings |")
            for f in changes.files:
                out.append(f"| {f.status} | {md(f.path)} | file | {md(_file_what(f))} |")
        else:
            out.append("No manifest changes.")
        out.append("")
    out += ["### Stages", "", "| stage | status |", "|---|---|"]
    out += [f"| {md(s.name)} | {md(s.status, 400)} |" for s in report.stages]
    out.append("")
    mine, rest = report.grouped()
    out += [f"### {_findings_title(report)} ({len(mine)})", ""]
    out += _findings_table(mine) if mine else ["None."]
    out.append("")
    if rest:
        out += [
            f"<details><summary>Elsewhere in the lake ({len(rest)})</summary>",
            "",
            *_findings_table(rest),
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


def _findings_title(report: CheckReport) -> str:
    return "Findings" if report.changes is None else "Findings in this pull request"


# ----------------------------------------------------------------------------------- text


def render_text(report: CheckReport, *, colour: bool = False) -> str:
    """The report for a person at a terminal: plain lines, findings as ``path:line: severity: ...``
    (as editors and ``lakegen validate`` write them), with ANSI colour when ``colour``."""
    from rich.console import Console
    from rich.text import Text

    lines: list[Text] = []

    def line(*parts: str | tuple[str, str]) -> None:
        lines.append(Text.assemble(*parts))

    verdict = ("passed", "bold green") if report.ok else ("failed", "bold red")
    line(("lakegen check: ", "bold"), verdict)
    line(_tally(report))
    changes = report.changes
    if changes is not None:
        line(f"Compared with {plain(changes.base_ref)} (merge base {changes.base_commit[:12]}).")
        line()
        line(("What this pull request changes", "bold"))
        rows = [
            [c.status, plain(c.entry), _kind(report, c), _change_summary(c, plain)] for c in changes.entries
        ]
        rows += [
            [status, plain(path), "configuration", "governance settings"]
            for path, status in sorted(changes.config_changed.items())
        ]
        rows += [[f.status, plain(f.path), "file", plain(_file_what(f))] for f in changes.files]
        lines.extend(Text("  " + row) for row in _columns(rows) or ["No changes."])
    line()
    line(("Stages", "bold"))
    lines.extend(
        Text("  " + row) for row in _columns([[s.name, plain(s.status, 400)] for s in report.stages])
    )
    mine, rest = report.grouped()
    sections = [(_findings_title(report), mine)] + ([("Elsewhere in the lake", rest)] if rest else [])
    for title, group in sections:
        line()
        line((f"{title} ({len(group)})", "bold"))
        lines.extend([_finding_line(f) for f in group] or [Text("  None.")])
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=colour,
        no_color=not colour,
        color_system="standard" if colour else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
        width=10_000,
    )
    for text in lines:
        console.print(text)
    return buffer.getvalue()


def _finding_line(f: Finding) -> Any:
    from rich.text import Text

    where = f"  {plain(f.path)}:{f.line}: "
    what = f"{plain(f.field)}: " if f.field else ""
    rule = f" [{plain(f.stage)}/{plain(f.rule)}]"
    return Text.assemble(
        where, (f.severity, _STYLE[f.severity]), ": ", what, plain(f.message, 600), (rule, "dim")
    )


def _columns(rows: list[list[str]]) -> list[str]:
    """``rows`` with every column but the last padded to its widest cell."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
