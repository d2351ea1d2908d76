#!/usr/bin/env python3
"""Known-vulnerable and outdated dependencies: `make audit` (advisory; never part of `make test`).

A test command must give the same result for the same commit tomorrow, so nothing here runs in
`make test`: whether a newer release exists, or an advisory was published, is news about the world,
not about the commit. CI runs `make audit` and prints what it says, but never fails on it.

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

The whole run stops after ALM_AUDIT_TIME_LIMIT seconds (default 120), saying how far it got.
Exit codes: 0 no findings, 1 findings (each names the package), 2 PyPI could not be read for some
package, 3 the time limit ran out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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
TIME_LIMIT = float(os.environ.get("ALM_AUDIT_TIME_LIMIT", "120"))
EXIT_FINDINGS, EXIT_UNREADABLE, EXIT_TIME_LIMIT = 1, 2, 3


class OutOfTime(Exception):
    """The audit's total time limit ran out."""


class Deadline:
    """The one time budget of a run: every request and the pip-audit child get what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.ends - time.monotonic()
        if remaining <= 0:
            raise OutOfTime
        return remaining


DEADLINE = Deadline(TIME_LIMIT)
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
    with urllib.request.urlopen(request, timeout=min(TIMEOUT, DEADLINE.left())) as response:  # noqa: S310 - https only
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
    checked = 0
    try:
        for name, version in sorted(pinned.items(), key=lambda item: item[0].lower()):
            try:
                project = _fetch(f"{PYPI}/{name}/json")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                unreadable.append(f"{name}: {getattr(exc, 'reason', exc)}")
                continue
            checked += 1
            findings += release_findings(name, version, project)
    finally:
        for line in findings:
            print(f"dependency audit: {line}")
    if unreadable:
        print(f"dependency audit: PyPI could not be read for {len(unreadable)} package(s): {'; '.join(unreadable)}")
    if findings:
        return EXIT_FINDINGS
    if unreadable:
        return EXIT_UNREADABLE
    print(f"dependency audit: {checked} pins checked against PyPI release data, no findings")
    return 0


def main() -> int:
    pinned = pins(ROOT / name for name in REQUIREMENT_FILES)
    probe_name, probe_version = ("Django", pinned["Django"]) if "Django" in pinned else next(iter(pinned.items()))
    try:
        problems = source_problems(probe_name, probe_version)
        if not problems:
            command = [sys.executable, "-m", "pip_audit", "--strict", "--progress-spinner", "off", "--skip-editable"]
            # A fixed command, bounded by what is left of the run's time limit.
            return subprocess.run(command, cwd=ROOT, check=False, timeout=DEADLINE.left()).returncode  # noqa: S603
        reasons = "; ".join(f"{source}: {reason}" for source, reason in problems.items())
        print(f"dependency audit: pip-audit has no reachable vulnerability source ({reasons}); checking release data")
        return fallback(pinned)
    except (OutOfTime, subprocess.TimeoutExpired):
        print(f"dependency audit: stopped at the time limit of {DEADLINE.seconds:g} s (ALM_AUDIT_TIME_LIMIT)")
        return EXIT_TIME_LIMIT


if __name__ == "__main__":
    sys.exit(main())
