"""A backend's known-gaps file turns the named suite tests into expected failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from iommu_uapi.testing.plugin import read_known_gaps

pytest_plugins = ["pytester"]


def test_known_gaps_file_marks_tests_xfail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite="""
        def test_works(): assert True
        def test_gap_one(): assert False, "not done"
        def test_gap_fixed(): assert True
    """)
    gaps = pytester.path / "gaps.txt"
    gaps.write_text("# known gaps\ntest_gap_one: page requests not modelled\n"
                    "test_gap_fixed: was broken\n")
    result = pytester.runpytest("--iommu-known-gaps", str(gaps), "-rxX")
    result.assert_outcomes(passed=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(["*known gap: page requests not modelled*"])


def test_malformed_line_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "gaps.txt"
    bad.write_text("no reason here\n")
    with pytest.raises(pytest.UsageError):
        read_known_gaps(bad)
