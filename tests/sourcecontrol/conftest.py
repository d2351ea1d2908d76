"""Helpers for the Git client tests; the ``git_host`` fixture itself lives in tests/support/git_host.py so
every test folder can use it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alm_portal.sourcecontrol import CommitOutcome, GitRemote, Person, commit_version

FOLDER = "solutions/IncidentReporting/src"
MAKER = Person("Maria Maker", "maria@contoso.example")
PORTAL = Person("ALM Portal", "alm-portal@contoso.example")

CommitVersion = Callable[..., CommitOutcome]


def solution_files(version: str) -> dict[str, bytes]:
    """A small unpacked solution in SolutionPackager's layout."""
    return {
        "Other/Solution.xml": f"<ImportExportXml><Version>{version}</Version></ImportExportXml>".encode(),
        "Other/Customizations.xml": b"<ImportExportXml/>",
        "Entities/cr1_incident/Entity.xml": b"<Entity Name='cr1_incident'/>",
    }


@pytest.fixture
def commit(tmp_path: Path) -> CommitVersion:
    """``commit(remote, version, **overrides)``: commit_version with the usual arguments for one version."""

    def run(remote: GitRemote, version: str, **overrides: Any) -> CommitOutcome:
        arguments: dict[str, Any] = {
            "branch": "main",
            "folder": FOLDER,
            "files": solution_files(version),
            "author": MAKER,
            "committer": PORTAL,
            "message": f"IncidentReporting {version}",
            "trailers": {"Solution": "IncidentReporting", "Solution-Version": version},
            "tag": f"IncidentReporting-{version}",
            "expected_folder_tree": None,
            "work_dir": tmp_path / "cache",
        }
        arguments.update(overrides)
        return commit_version(remote, **arguments)

    return run
