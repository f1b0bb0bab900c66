"""The page-request glue gets the unit's parts it uses, not the backend: no import of it."""

from __future__ import annotations

import ast
from pathlib import Path

import iommu_uapi_vtd.prq_glue as prq_glue


def test_prq_glue_does_not_import_the_backend() -> None:
    tree = ast.parse(Path(prq_glue.__file__).read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "backend" not in modules and "iommu_uapi_vtd.backend" not in modules, modules
