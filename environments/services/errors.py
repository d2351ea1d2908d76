"""Refusals of the environment services and how Dataverse errors are summarised for people."""

from __future__ import annotations

from alm_portal.dataverse.errors import DataverseError, TokenError
from alm_portal.errors import DomainError


class CredentialVerificationFailed(DomainError):
    status = 400
    code = "credential_verification_failed"


class InventorySyncFailed(Exception):
    """The inventory could not be read; `retry_after` is set when Dataverse asked us to wait."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def dataverse_error_code(exc: DataverseError) -> str:
    if isinstance(exc, TokenError):
        return exc.aadsts_code or exc.error or "token_error"
    return exc.code or (f"http_{exc.http_status}" if exc.http_status else type(exc).__name__)


def dataverse_error_text(exc: DataverseError) -> str:
    """The error in words for a person (its code is shown beside it): the message, and the HTTP status
    when there was one; not the exception's text, which repeats the code and carries library detail."""
    text = exc.message
    if exc.http_status is not None and f"HTTP {exc.http_status}" not in text:
        text = f"{text} (HTTP {exc.http_status})"
    return text[:1000]
