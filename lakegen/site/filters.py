"""Small helpers the page templates call: headings, badges, owners, number formats, facet text.

Each returns text the templates escape, or :class:`~markupsafe.Markup` built
from escaped parts.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markupsafe import Markup, escape

_FACET_UNSAFE = re.compile(r"[<>&\"'`\\:,\x00-\x1f]")


def facet_text(value: object) -> str:
    """A facet name or value as the search page lists it: the search script writes it as text, and
    characters that could make markup (and the ``:``/``,`` of Pagefind's filter syntax) are dropped
    besides, so no reader of the index can be tricked into markup."""
    return _FACET_UNSAFE.sub("", str(value)).strip() or "?"


def h2(toc: list[tuple[str, str]], anchor: str, text: str) -> Markup:
    """A section heading, recorded in the page's table of contents."""
    toc.append((anchor, text))
    return Markup(f'<h2 id="{escape(anchor)}">{escape(text)}</h2>')


def badge(status: object) -> Markup:
    return _badge(status) if type(status) is str else _made_badge(status)


@lru_cache(maxsize=256)  # a handful of statuses, 17 calls a page
def _badge(status: str) -> Markup:
    return _made_badge(status)


def _made_badge(status: object) -> Markup:
    text = escape(status)
    return Markup(f'<span class="lg-badge lg-s-{text}">{text}</span>')


def owners(names: object) -> Markup:
    if not isinstance(names, list):
        return Markup("")
    return Markup(" ").join(Markup(f'<span class="lg-owner">{escape(o)}</span>') for o in names)


def num(value: object, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def size(value: object) -> str:
    if not isinstance(value, int | float):
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def signed(value: float) -> str:
    text = f"{value:+.4f}"
    return "0.0000" if text in ("+0.0000", "-0.0000") else text


def count(value: object) -> str:
    if not isinstance(value, int | float):
        return "–"
    for limit, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= limit:
            return f"{value / limit:.3g}{unit}"
    return str(value)


def short_sha(value: object, n: int = 12) -> str:
    return str(value)[:n] if value else ""
