#!/usr/bin/env python3
"""Known-vulnerable dependencies: `python scripts/audit_dependencies.py` (run by `make lint`, so by CI).

With a vulnerability source reachable (OSV, or PyPI's per-release JSON that carries advisories), this runs
pip-audit in strict mode over the environment it runs in (the one `make install` built from
requirements-dev.txt, which includes requirements.txt) and exits with its status.

Where neither source answers, pip-audit would skip every package ("not found on PyPI") and pass, which
proves nothing, so this says so on one line and runs the nearest check PyPI's project JSON allows,
over every pin in requirements.txt and requirements-dev.txt:
  - the pinned release exists and is not yanked (releases are yanked among other reasons for security);
  - it is the newest final release of its major.minor series (fixes ship as patch releases, so no
    published fix in our series is missing);
  - no advisory PyPI lists for the project (those attached to its latest release) is fixed only in a
    release newer than the pin.
Any failure exits 1 and names the package. If PyPI itself cannot be read, that fails under CI=true and
is reported as a skip elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt")
PYPI = "https://pypi.org/pypi"
OSV_QUERY = "https://api.osv.dev/v1/query"
TIMEOUT = 15
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def pins(files: Iterable[Path]) -> dict[str, str]:
    """name -> pinned version, from `name==version` lines (includes with -r are the other files)."""
    found: dict[str, str] = {}
    for path in files:
        for line in path.read_text().splitlines():
            match = _PIN.match(line)
            if match:
                found[match.group(1)] = match.group(2)
    return found


def _fetch(url: str, body: bytes | None = None) -> Any:
    if not url.startswith("https://"):
        raise ValueError(f"not an https URL: {url}")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - https only
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - https only
        return json.load(response)


def source_problems(name: str, version: str) -> dict[str, str]:
    """Why each vulnerability source pip-audit knows cannot be used from here (empty: one works)."""
    problems: dict[str, str] = {}
    query = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version}).encode()
    for source, url, body in (
        ("osv", OSV_QUERY, query),
        ("pypi", f"{PYPI}/{name}/{version}/json", None),
    ):
        try:
            _fetch(url, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems[source] = str(getattr(exc, "reason", exc))
        else:
            return {}
    return problems


def _final(text: str) -> Version | None:
    try:
        version = Version(text)
    except InvalidVersion:
        return None
    return None if version.is_prerelease or version.is_devrelease else version


def _available(files: list[Mapping[str, Any]]) -> bool:
    return bool(files) and not all(file.get("yanked") for file in files)


def release_findings(name: str, pinned: str, project: Mapping[str, Any]) -> list[str]:
    """What is wrong with pinning `name==pinned`, judged from PyPI's project JSON."""
    releases: Mapping[str, list[Mapping[str, Any]]] = project.get("releases") or {}
    if pinned not in releases:
        return [f"{name} {pinned}: no such release on PyPI"]
    if not _available(releases[pinned]):
        return [f"{name} {pinned}: the release is yanked"]
    findings = []
    ours = Version(pinned)
    series = [
        version
        for text, files in releases.items()
        if (version := _final(text)) is not None
        and version.release[:2] == ours.release[:2]
        and version > ours
        and _available(files)
    ]
    if series:
        findings.append(f"{name} {pinned}: {max(series)} is out in the same series (take its fixes)")
    for advisory in project.get("vulnerabilities") or []:
        if advisory.get("withdrawn"):
            continue
        fixed = [version for text in advisory.get("fixed_in") or [] if (version := _final(text)) is not None]
        if not fixed or any(version > ours for version in fixed):
            ident = advisory.get("id") or ",".join(advisory.get("aliases") or []) or "advisory"
            findings.append(f"{name} {pinned}: {ident} (fixed in {', '.join(map(str, fixed)) or 'no release'})")
    return findings


def fallback(pinned: Mapping[str, str]) -> int:
    findings: list[str] = []
    unreadable: list[str] = []
    for name, version in sorted(pinned.items(), key=lambda item: item[0].lower()):
        try:
            project = _fetch(f"{PYPI}/{name}/json")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            unreadable.append(f"{name}: {getattr(exc, 'reason', exc)}")
            continue
        findings += release_findings(name, version, project)
    for line in findings:
        print(f"dependency audit: {line}")
    if unreadable:
        print(f"dependency audit: PyPI could not be read for {len(unreadable)} package(s): {'; '.join(unreadable)}")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            return 1
    if not findings:
        print(f"dependency audit: {len(pinned) - len(unreadable)} pins checked against PyPI release data, no findings")
    return 1 if findings else 0


def main() -> int:
    pinned = pins(ROOT / name for name in REQUIREMENT_FILES)
    probe_name, probe_version = ("Django", pinned["Django"]) if "Django" in pinned else next(iter(pinned.items()))
    problems = source_problems(probe_name, probe_version)
    if not problems:
        command = [sys.executable, "-m", "pip_audit", "--strict", "--progress-spinner", "off", "--skip-editable"]
        return subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603 - a fixed command
    reasons = "; ".join(f"{source}: {reason}" for source, reason in problems.items())
    print(f"dependency audit: pip-audit has no reachable vulnerability source ({reasons}); checking release data")
    return fallback(pinned)


if __name__ == "__main__":
    sys.exit(main())
