"""The governance site: the compiled lake rendered by mkdocs-material, searched with Pagefind."""

from lakegen.site.build import BuildReport, build_site, serve

__all__ = ["BuildReport", "build_site", "serve"]
