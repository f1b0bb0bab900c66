"""``iommu-uapi new-backend NAME [DIR]``: the skeleton of a third-party backend distribution.

The skeleton installs and is found through its entry point straight away: its capabilities claim
nothing and every instance hook refuses with ``EOPNOTSUPP``, so the conformance suite skips every
area with the reason. Replace the hooks one by one (``docs/writing-a-backend.md``) and watch
areas turn from "not supported" to "passed".
"""

from __future__ import annotations

import errno
import keyword
import re
from pathlib import Path

from .errors import UAPIError
from .hookspecs import hook_names

__all__ = ["generate"]

_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "iommu-uapi-{dist}"
version = "0.1.0"
description = "{name}: an IOMMU model for iommu-uapi"
requires-python = ">=3.11"
dependencies = ["iommu-uapi"]

[project.entry-points."iommu_uapi.backends"]
{name} = "{package}.hooks"

[tool.hatch.build.targets.wheel]
packages = ["{package}"]
"""

_README = """\
# iommu-uapi-{dist}

The `{name}` IOMMU model for iommu-uapi.

Install it where iommu-uapi is installed (iommu-uapi is on no package index: in a fresh
environment, give pip the core's path in the same call, `pip install PATH-TO-IOMMU-UAPI -e .`):

    pip install -e .
    iommu-uapi backends            # {name} is listed
    iommu-uapi matrix --backend {name}
    pytest                         # the conformance suite against {name}
"""

_CONFTEST = '''\
"""Select this backend for the iommu-uapi conformance suite."""

import os

os.environ.setdefault("IOMMU_UAPI_BACKEND", "{name}")
'''

_TEST = '''\
"""The iommu-uapi conformance suite, run against {name}."""

from iommu_uapi.testing.suite.test_conformance import *  # noqa: F403
'''

_HOOKS_HEAD = '''\
"""The {name} backend: hook implementations (every one a stub to start from)."""

from __future__ import annotations

import errno
from typing import Any

from iommu_uapi.errors import UAPIError
from iommu_uapi.features import Capabilities, Feature
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.plugins import BackendSpec


def _unsupported(op: str) -> UAPIError:
    return UAPIError(errno.EOPNOTSUPP, f"{name}: {{op}} is not implemented yet")


class Backend:
    """One {name} IOMMU instance: its tables live in ``memory``."""

    name = "{name}"

    def __init__(self, memory: PhysicalMemory, **config: Any) -> None:
        if config:
            raise UAPIError(errno.EINVAL, f"{name}: unknown configuration {{sorted(config)}}")
        self.memory = memory
        self.iommu: Any = None

    @hookimpl
    def iommu_instance_init(self, iommu: Any) -> None:
        self.iommu = iommu

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        # Claim nothing until it is implemented: negotiation refuses what is not declared.
        return Capabilities(features=Feature(0))
'''

_STUB = '''
    @hookimpl
    def {hook}({params}) -> Any:
        raise _unsupported("{op}")
'''

_HOOKS_TAIL = '''

@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the {name} backend."""
    register(BackendSpec(name="{name}", factory=Backend, description="{name} IOMMU model"))
'''


def _params(hook: str) -> str:
    import inspect

    from . import hookspecs

    sig = inspect.signature(getattr(hookspecs, hook))
    params = ["self", *(f"{p}: Any" for p in sig.parameters)]
    one_line = ", ".join(params)
    if len(one_line) + len(hook) < 80:
        return one_line
    return "\n" + "".join(f"        {p},\n" for p in params) + "    "


def generate(name: str, directory: Path) -> list[Path]:
    """Write the skeleton of backend ``name`` into ``directory`` (which must not exist or be
    empty); returns the files written. Refusals, each changing nothing on disk: ``EINVAL``
    (``new_backend.name``) for a name that is not an identifier, ``ENOTDIR``
    (``new_backend.not_dir``) for a path that is a file, ``EEXIST`` (``new_backend.exists``)
    for a non-empty directory, and the system's errno (``new_backend.write``) when the files
    cannot be written there (a read-only place, a parent that is a file)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UAPIError(errno.EINVAL, f"new-backend: {name!r} must be a lower-case identifier",
                        rule="new_backend.name")
    if directory.exists() and not directory.is_dir():
        raise UAPIError(errno.ENOTDIR, f"new-backend: {directory} exists and is not a directory",
                        rule="new_backend.not_dir")
    if directory.is_dir() and any(directory.iterdir()):
        raise UAPIError(errno.EEXIST, f"new-backend: {directory} exists and is not empty",
                        rule="new_backend.exists")
    package = f"iommu_uapi_{name}"
    dist = name.replace("_", "-")
    values = {"name": name, "package": package, "dist": dist}
    stubs = "".join(
        _STUB.format(hook=hook, params=_params(hook), op=hook.removeprefix("iommu_"))
        for hook in hook_names()
        if hook not in ("iommu_register_backends", "iommu_instance_init", "iommu_capabilities")
    )
    files = {
        "pyproject.toml": _PYPROJECT.format(**values),
        "README.md": _README.format(**values),
        f"{package}/__init__.py": f'"""The {name} IOMMU model for iommu-uapi."""\n',
        f"{package}/py.typed": "",
        f"{package}/hooks.py": _HOOKS_HEAD.format(**values) + stubs + _HOOKS_TAIL.format(
            **values),
        "tests/conftest.py": _CONFTEST.format(**values),
        "tests/test_conformance.py": _TEST.format(**values),
    }
    return _write(directory, files)


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` below ``directory``; on an OS error remove what was created and refuse
    with its errno."""
    created: list[Path] = []
    try:
        for rel, text in files.items():
            path = directory / rel
            for parent in reversed([path.parent, *path.parent.parents]):
                if not parent.exists():
                    parent.mkdir()
                    created.append(parent)
            path.write_text(text)
            created.append(path)
    except OSError as exc:
        for done in reversed(created):
            if done.is_dir():
                done.rmdir()
            else:
                done.unlink()
        raise UAPIError(exc.errno or errno.EIO, f"new-backend: cannot write {exc.filename}: "
                        f"{exc.strerror or exc}", rule="new_backend.write") from None
    return [p for p in created if p.is_file()]
