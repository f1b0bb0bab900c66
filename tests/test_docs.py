"""Documentation that cannot rot: every hook documented, generated references up to date."""

from __future__ import annotations

import inspect
from pathlib import Path

from iommu_uapi import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_hookspec_has_a_docstring_and_a_section_in_hooks_md() -> None:
    text = (DOCS / "hooks.md").read_text()
    names = hookspecs.hook_names()
    assert len(names) >= 20
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 40, f"{name} has no real docstring"
        assert f"## `{name}`" in text, f"{name} missing from docs/hooks.md"


def test_hooks_md_is_generated_from_the_hookspecs() -> None:
    assert (DOCS / "hooks.md").read_text() == hookspecs.render_markdown(), (
        "docs/hooks.md is stale: run python -m iommu_uapi.hookspecs docs/hooks.md")


def test_every_hook_is_prefixed() -> None:
    assert all(name.startswith("iommu_") for name in hookspecs.hook_names())
