"""The README's promises: its Python quick start runs and prints what it says; CI runs its test
command; its shell example gives the verdict shown."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from iommu_uapi.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_runs_and_prints_its_comments() -> None:
    code = blocks("python")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    expected = [line.split("# ", 1)[1].strip() for line in code.splitlines()
                if line.startswith("    print(")]
    assert out.getvalue().splitlines() == expected


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(b for b in blocks("sh") if "tox run" in b).strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_shell_decode_example_is_rejected_with_the_rule(capsys: object) -> None:
    line = next(x for b in blocks("sh") for x in b.splitlines()
                if x.startswith("iommu-uapi decode"))
    assert main(line.split()[1:]) == 1


def pip_installs() -> list[list[str]]:
    """Every ``pip install`` command of the README's shell blocks, as its arguments."""
    found = []
    for block in blocks("sh"):
        for command in re.split(r"&&|\n", block):
            words = command.split("#", 1)[0].split()
            if "pip" in " ".join(words[:1]) and words[1:2] == ["install"]:
                found.append([w.strip("'\"") for w in words[2:]])
    return found


def test_every_plugin_install_names_the_core_in_the_same_pip_call() -> None:
    """iommu-uapi is on no index: a plugin installs only next to the core's path."""
    with_plugin = [args for args in pip_installs() if any("plugins/" in a for a in args)]
    assert len(with_plugin) >= 2
    for args in with_plugin:
        assert any(a == "." or (a.startswith((".[", "./[", "./")) and "plugins" not in a)
                   for a in args), args
    prose = " ".join(README.split())
    assert "No matching distribution found for iommu-uapi" in prose
    assert "pip install ./plugins/vtd` alone" in prose  # the call that fails, named as such


def test_benchmarks_say_what_they_need_and_how_much_figures_vary() -> None:
    bench = [args for args in pip_installs() if any("[bench]" in a for a in args)]
    assert bench, "the README installs the bench extra"
    perf = " ".join(README[README.index("## Performance"):].split())
    assert ".venv/bin/python bench/" in perf
    assert "AMD EPYC" in perf and "CPython 3.11" in perf and "vary" in perf
