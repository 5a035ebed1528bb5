"""What the site's cache key reads of lakegen's own code."""

from __future__ import annotations

from pathlib import Path

import lakegen
from lakegen.site.cache import rendering_code


def test_the_site_key_reads_the_exports_code_as_well_as_the_sites() -> None:
    package = Path(lakegen.__file__).resolve().parent
    names = {p.relative_to(package).as_posix() for p in rendering_code()}
    assert {"site/plugin.py", "search.py", "exports/spdx.py", "exports/cyclonedx.py"} <= names
    assert all(p.is_file() for p in rendering_code())
