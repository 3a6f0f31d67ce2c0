"""Every runtime dependency declared in pyproject.toml is used by the ``lsmap`` package.

A dependency counts as used when some module of ``lsmap`` imports it (static scan of the import
statements, so an import inside a function counts too). A library that lsmap needs but reaches
only through another one (pyarrow: the engine behind ``GeoDataFrame.to_parquet``) is listed in
``USED_THROUGH`` with the lsmap code that needs it; that code must still be there, so the entry
goes stale (and fails) when the use goes.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"pillow": "PIL", "pyyaml": "yaml"}  # distribution name -> import name, where they differ
USED_THROUGH = {"pyarrow": "to_parquet("}  # needed at run time, imported by geopandas when lsmap calls this


def declared_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]]


def imported_top_level_modules(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def lsmap_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "lsmap").rglob("*.py"))


def test_every_declared_runtime_dependency_is_imported_by_lsmap():
    imported = imported_top_level_modules(ROOT / "lsmap")
    source = lsmap_source()
    unused = []
    for dist in declared_dependencies():
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if module in imported:
            continue
        if dist in USED_THROUGH and USED_THROUGH[dist] in source:
            continue
        unused.append(dist)
    assert not unused, f"declared in pyproject.toml but never imported by lsmap: {unused} (remove them, or import them)"


def test_the_scan_sees_the_imports_it_must_see(tmp_path):
    """The checker itself: plain, dotted, from- and function-level imports count; relative ones do not."""
    (tmp_path / "a.py").write_text("import numpy as np\nimport xarray.core\nfrom rasterio.warp import reproject\n"
                                   "def f():\n    import rioxarray\nfrom . import sibling\n")
    assert imported_top_level_modules(tmp_path) == {"numpy", "xarray", "rasterio", "rioxarray"}
    assert "rioxarray" in declared_dependencies() and "dask" in declared_dependencies()  # extras stripped
