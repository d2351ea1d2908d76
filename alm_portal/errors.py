"""Domain errors with stable codes; the API's exception handler and the pages turn them into answers.

Services raise these instead of returning flags, so every interface (API, page, command, task)
reports the same refusal with the same code (docs/api.md).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal a user can cause. `code` is stable and documented; `message` is for people."""

    status = 400
    code = "validation_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details if details is not None else {}


class ValidationFailed(DomainError):
    status = 400
    code = "validation_error"


class PermissionRefused(DomainError):
    status = 403
    code = "permission_denied"


class ScopeInsufficient(PermissionRefused):
    """The caller's role allows the action but the API token it presented lacks the scope."""

    code = "scope_insufficient"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class InvalidState(DomainError):
    status = 409
    code = "invalid_state"


class Conflict(DomainError):
    status = 409
    code = "conflict"
