"""lakegen: a model lake compiled from YAML manifests into a verified governance site.

The public API (``docs/api.md``): load and compile a lake, render its site, fingerprint weights
and recover lineage from them. Every name is imported on first use, so ``import lakegen`` (and
the CLI's start) stays cheap; bad input raises :class:`LakeError` with every problem at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module defining it. No public name may equal a submodule's name: importing
# ``lakegen.<submodule>`` sets that attribute on the package and would replace the function.
_EXPORTS = {
    "Catalog": "lakegen.catalog",
    "load_catalog": "lakegen.catalog",
    "LakeIndex": "lakegen.index",
    "compile_lake": "lakegen.index",
    "BuildReport": "lakegen.site.build",
    "build_site": "lakegen.site.build",
    "Fingerprint": "lakegen.fingerprint",
    "fingerprint_weights": "lakegen.api",
    "Lineage": "lakegen.attribution",
    "attribute": "lakegen.api",
    "LakeError": "lakegen.errors",
    "Problem": "lakegen.errors",
}

__all__ = [
    "BuildReport",
    "Catalog",
    "Fingerprint",
    "LakeError",
    "LakeIndex",
    "Lineage",
    "Problem",
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
    from lakegen.catalog import Catalog, load_catalog
    from lakegen.errors import LakeError, Problem
    from lakegen.fingerprint import Fingerprint
    from lakegen.index import LakeIndex, compile_lake
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
