"""The dependency audit's judgement (scripts/audit_dependencies.py), on made-up PyPI project data.

`make audit` runs the script itself against the real sources (advisory, outside `make test`); these tests
show what it refuses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_dependencies.py"
_spec = importlib.util.spec_from_file_location("audit_dependencies", SCRIPT)
assert _spec and _spec.loader
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)

FILE = [{"filename": "x.whl", "yanked": False}]
YANKED = [{"filename": "x.whl", "yanked": True}]


def project(releases: dict[str, list[dict[str, Any]]], vulnerabilities: list[dict[str, Any]] | None = None) -> dict:
    return {"releases": releases, "vulnerabilities": vulnerabilities or []}


def test_the_newest_patch_of_its_series_without_advisories_passes() -> None:
    data = project({"5.1.9": FILE, "5.2.18": FILE, "5.2.19": FILE, "6.0.0": FILE, "5.2.20rc1": FILE})

    assert audit.release_findings("Django", "5.2.19", data) == []


def test_a_newer_patch_in_the_series_is_a_finding_but_a_yanked_one_is_not() -> None:
    assert audit.release_findings("Django", "5.2.18", project({"5.2.18": FILE, "5.2.19": FILE})) == [
        "Django 5.2.18: 5.2.19 is out in the same series (take its fixes)"
    ]
    assert audit.release_findings("Django", "5.2.18", project({"5.2.18": FILE, "5.2.19": YANKED})) == []


def test_a_yanked_or_unknown_pin_is_a_finding() -> None:
    assert audit.release_findings("x", "1.0", project({"1.0": YANKED})) == ["x 1.0: the release is yanked"]
    assert audit.release_findings("x", "1.1", project({"1.0": FILE})) == ["x 1.1: no such release on PyPI"]


@pytest.mark.parametrize(
    ("fixed_in", "withdrawn", "found"),
    [(["2.1"], None, True), ([], None, True), (["1.9"], None, False), (["2.1"], "2026-01-01", False)],
)
def test_advisories_count_when_fixed_only_after_the_pin(fixed_in: list[str], withdrawn: Any, found: bool) -> None:
    advisory = {"id": "PYSEC-2026-1", "aliases": ["CVE-2026-1"], "fixed_in": fixed_in, "withdrawn": withdrawn}

    findings = audit.release_findings("x", "2.0", project({"2.0": FILE}, [advisory]))

    assert bool(findings) is found
    if found:
        assert "PYSEC-2026-1" in findings[0]


def test_pins_are_read_from_both_requirement_files_with_extras(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# c\nDjango==5.2.19\n-r b.txt\n")
    (tmp_path / "b.txt").write_text("django-stubs[compatible-mypy]==6.1.2  # types\nloose>=1\n")

    assert audit.pins([tmp_path / "a.txt", tmp_path / "b.txt"]) == {"Django": "5.2.19", "django-stubs": "6.1.2"}


def test_the_project_pins_every_requirement_exactly() -> None:
    """The audit only sees `name==version` lines; a loose requirement would escape it."""
    root = SCRIPT.parent.parent
    for name in audit.REQUIREMENT_FILES:
        for line in (root / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert audit._PIN.match(line), f"{name}: {line!r} is not pinned with =="
