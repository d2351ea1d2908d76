"""`make test` gives the same result for the same commit tomorrow: its lint stage reads nothing from the
network, and the dependency audit (which does) is `make audit`, advisory, outside the suite.

The lint stage runs here in a new network namespace (`unshare --net`), where no address but an unconfigured
loopback exists: a check that needed PyPI, OSV or any other host would fail instead of passing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "scripts" / "audit_dependencies.py"
STAMP = ".venv/.installed-stamp"


def _offline_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to cut the network off")
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here (root or user namespaces needed): {probe.stderr.strip()}")
    return [unshare, "--net", "--"]


def _recipe(target: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert match, f"Makefile has no {target} target"
    return match.group(1)


@pytest.mark.slow
def test_the_lint_stage_passes_with_the_network_unreachable() -> None:
    if not (ROOT / STAMP).exists():
        pytest.skip("the project is not installed (make install); the lint stage needs .venv")
    # -o: take the install stamp as up to date, so make never tries pip (which needs the network).
    result = subprocess.run(
        [*_offline_prefix(), "make", "-C", str(ROOT), "-o", STAMP, "lint"],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "audit_dependencies" not in result.stdout


def test_neither_lint_nor_test_runs_the_dependency_audit() -> None:
    assert "audit_dependencies" not in _recipe("lint")
    assert "audit_dependencies" not in _recipe("test")
    assert "scripts/audit_dependencies.py" in _recipe("audit")


def test_ci_prints_the_audit_but_never_fails_on_it() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    audit_line = next(line for line in ci.splitlines() if "make audit" in line)

    assert "timeout" in audit_line and "||" in audit_line
    assert ci.index("make audit") < ci.index("\nmake test")


def test_the_audit_without_network_says_pypi_could_not_be_read_and_exits_2() -> None:
    result = subprocess.run(
        [*_offline_prefix(), sys.executable, str(AUDIT)], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "no reachable vulnerability source" in result.stdout
    assert "PyPI could not be read" in result.stdout


def test_the_audit_stops_at_its_time_limit_and_exits_3() -> None:
    environment = {**os.environ, "ALM_AUDIT_TIME_LIMIT": "0"}

    result = subprocess.run([sys.executable, str(AUDIT)], capture_output=True, text=True, timeout=60, env=environment)

    assert result.returncode == 3, result.stdout + result.stderr
    assert "stopped at the time limit of 0 s (ALM_AUDIT_TIME_LIMIT)" in result.stdout
