"""lakegen: a model lake compiled from YAML manifests into a verified governance site.

The public API (``docs/api.md``): load and compile a lake, render its site, fingerprint weights
and recover lineage from them. Every name is imported on first use, so ``import lakegen`` (and
the CLI's start) stays cheap; bad input raises :class:`LakeError` with every problem at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lakegen.version import __version__

# name -> the module defining it. No public name may equal a submodule's name: importing
# ``lakegen.<submodule>`` sets that attribute on the package and would replace the function.
_EXPORTS = {
    "Catalog": "lakegen.catalog.loader",
    "load_catalog": "lakegen.catalog.loader",
    "LakeIndex": "lakegen.model.index",
    "compile_lake": "lakegen.compile",
    "BuildReport": "lakegen.site.build",
    "build_site": "lakegen.site.build",
    "Fingerprint": "lakegen.fingerprint",
    "fingerprint_weights": "lakegen.api",
    "Lineage": "lakegen.attribution",
    "attribute": "lakegen.api",
    "LakeError": "lakegen.errors",
    "Finding": "lakegen.errors",
}

__all__ = [
    "BuildReport",
    "Catalog",
    "Finding",
    "Fingerprint",
    "LakeError",
    "LakeIndex",
    "Lineage",
    "__version__",
    "attribute",
    "build_site",
    "compile_lake",
    "fingerprint_weights",
    "load_catalog",
]

if TYPE_CHECKING:
    from lakegen.api import attribute, fingerprint_weights
    from lakegen.attribution import Lineage
    from lakegen.catalog.loader import Catalog, load_catalog
    from lakegen.compile import compile_lake
    from lakegen.errors import Finding, LakeError
    from lakegen.fingerprint import Fingerprint
    from lakegen.model.index import LakeIndex
    from lakegen.site.build import BuildReport, build_site


if not TYPE_CHECKING:  # type checkers see the imports above, and flag a misspelt name

    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'lakegen' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
