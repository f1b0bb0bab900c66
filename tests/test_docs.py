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


def test_architecture_md_names_only_rooms_that_exist() -> None:
    """Every room of docs/architecture.md's table is a module or package of the core, and every
    module or package of the core is named by a room (the page is the house as it stands)."""
    import re

    core = Path(__file__).resolve().parent.parent / "core" / "iommu_uapi"
    text = (DOCS / "architecture.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines()
            if line.startswith("| `") and line.count("|") >= 4]
    named = {n.rstrip("/") for row in rows for n in re.findall(r"`([a-z_0-9/]+)`", row)}
    for name in named:
        assert (core / f"{name}.py").is_file() or (core / name).is_dir(), (
            f"docs/architecture.md names a room {name!r} the core does not have")
    present = {p.stem for p in core.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert present <= named, f"rooms missing from docs/architecture.md: {sorted(present - named)}"
