"""Manifest Markdown to safe HTML: render with markdown-it-py, then sanitise with nh3's allowlist.

Raw HTML in a description is shown as text (markdown-it ``html`` off) and the
sanitiser runs afterwards anyway, so a ``javascript:`` or ``data:`` link, an
event handler or a ``<script>`` never reaches a page.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th",
    "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "td": {"align"}, "th": {"align"}}
SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def sanitise(html: str) -> str:
    """Keep only allowlisted tags, attributes and URL schemes; links get rel=noopener."""
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def markdown(text: object) -> str:
    """Safe HTML for a Markdown string from a manifest (anything else renders as empty)."""
    if not isinstance(text, str) or not text.strip():
        return ""
    return _rendered(text)


# Lakes repeat their texts (a team's limitations and intended use, "Initial release." changelogs):
# in a generated 10,000-model lake 30,000 texts were 10,000 distinct ones, each rendered and
# sanitised once now.
@lru_cache(maxsize=4096)
def _rendered(text: str) -> str:
    return sanitise(_md().render(text))


def safe_url(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None (manifest links go through here)."""
    if not isinstance(url, str):
        return None
    lowered = url.strip().lower()
    if not lowered.startswith(("https://", "http://")) or any(c in url for c in "\"'<> \t\n"):
        return None
    return url.strip()
