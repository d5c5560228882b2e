# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/test_summary.py: the last line of `make test` names every skip by reason and tier."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("test_summary", ROOT / "tools" / "test_summary.py")
test_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_summary)


def test_skips_from_pytest_and_ansible_test_are_counted_per_reason(tmp_path):
    (tmp_path / "units.log").write_text(
        "........s\n"
        "=========================== short test summary info ============================\n"
        "SKIPPED [2] tests/unit/roles/root_pivot/test_shim.py:59: needs root\n"
        "\x1b[33mSKIPPED\x1b[0m [1] tests/unit/a.py:3: shellcheck is not installed (apt: shellcheck)\n"
        "SKIPPED [1] tests/unit/b.py:9: needs root\n"
    )
    (tmp_path / "sanity.log").write_text("WARNING: Skipping sanity test 'pylint' on Python 3.13\n")
    (tmp_path / "lint.log").write_text("All checks passed!\n")
    lines = test_summary.summary(str(tmp_path), ["lint", "sanity", "units", "integration"])
    assert lines[-1] == (
        "make test: all tiers passed (lint sanity units); 5 skipped: "
        "1 × sanity: Skipping sanity test 'pylint' on Python 3.13; 3 × units: needs root; "
        "1 × units: shellcheck is not installed (apt: shellcheck)"
    )
    assert "  skipped 2 in tests/unit/roles/root_pivot/test_shim.py (units): needs root" in lines


def test_a_failed_tier_is_named_and_nothing_skipped_is_said(tmp_path):
    (tmp_path / "lint.log").write_text("ok\n")
    (tmp_path / "sanity.log").write_text("ERROR: boom\n")
    lines = test_summary.summary(str(tmp_path), ["lint", "sanity", "units"], failed="sanity")
    assert lines == ["make test: FAILED in sanity (tiers run: lint sanity); nothing skipped"]


def test_tier_times_are_listed_before_the_verdict(tmp_path):
    (tmp_path / "lint.log").write_text("ok\n")
    (tmp_path / "lint.seconds").write_text("42\n")
    (tmp_path / "units.log").write_text("ERROR\n")
    (tmp_path / "units.seconds").write_text("300\n")
    lines = test_summary.summary(str(tmp_path), ["lint", "units"], failed="units")
    assert lines[-2] == "  seconds per tier: lint 42s, units 300s"
    assert lines[-1].startswith("make test: FAILED in units")
