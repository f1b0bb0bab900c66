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
    test_command = blocks("sh")[1].strip()
    assert "tox" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_shell_decode_example_is_rejected_with_the_rule(capsys: object) -> None:
    line = next(x for x in blocks("sh")[2].splitlines() if x.startswith("iommu-uapi decode"))
    assert main(line.split()[1:]) == 1
