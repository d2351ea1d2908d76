"""The one error the Git client raises: a stable code, a message safe to show, and whether a retry may help."""

from __future__ import annotations

# code -> transient (a later retry of the same call may succeed)
ERROR_CODES: dict[str, bool] = {
    "git_url_invalid": False,
    "git_auth_failed": False,
    "git_unreachable": True,
    "git_ref_not_found": False,
    "git_folder_missing": False,
    "git_folder_too_large": False,
    "git_tag_conflict": False,
    "git_push_rejected": True,
    "git_timeout": True,
    "git_failed": False,
}


class GitError(Exception):
    """A failed Git operation. ``str(error)`` is ``message``, which never carries a token or a private key."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown Git error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = ERROR_CODES[code]

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"GitError({self.code!r}, {self.message!r})"
