"""A Git client for committing solution versions and reading them back, with no Django in it.

It drives the ``git`` command line (never hand-written Git plumbing); see docs/source-control.md,
"The Git client and the test Git host".
"""

from .errors import ERROR_CODES, GitError
from .reading import FetchedFolder, FileChange, branch_contains, fetch_folder, folder_diff
from .remotes import GitRemote, compare_url, remote_host, remote_kind
from .repository import CommitOutcome, Person, commit_version, full_message

__all__ = [
    "ERROR_CODES",
    "CommitOutcome",
    "FetchedFolder",
    "FileChange",
    "GitError",
    "GitRemote",
    "Person",
    "branch_contains",
    "commit_version",
    "compare_url",
    "fetch_folder",
    "folder_diff",
    "full_message",
    "remote_host",
    "remote_kind",
]
