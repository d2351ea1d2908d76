"""Typed errors raised by the Dataverse client library.

One small hierarchy (docs/architecture.md §3 rule 5): every error keeps the HTTP status, the Dataverse hex error code
(docs/dataverse.md §1.4, normalised to ``0x`` + 8 upper-case hex digits) and the message, so callers can
store them on a job row and decide what to do without parsing text.

    DataverseError
    ├── TransientError            retrying later may succeed
    │   ├── Throttled             429 service protection (docs/dataverse.md §1.5), carries retry_after
    │   ├── EnvironmentBusy       another solution operation is running (CustomizationLock, docs/dataverse.md §1.6)
    │   ├── ServerError           5xx
    │   ├── ConnectionFailed      connection refused/reset, DNS, connect timeout
    │   ├── RequestTimeout        read timeout
    │   ├── SubmissionOutcomeUnknown  a non-idempotent call may or may not have been accepted
    │   └── AuthorityUnavailable  the token authority answered 5xx or could not be reached
    └── PermanentError            retrying the same request will fail the same way
        ├── NotFound              404 / 0x80040217
        ├── MissingDependencies   0x8004801D / 0x80048034
        ├── VersionNotHigher      80048541 "must have a higher version"
        ├── ManagedUnmanagedMismatch  0x80048040 / 0x80048041, export of a managed solution
        ├── BadSolutionZip        0x80048060
        ├── PublisherMismatch     0x8004801C
        ├── AuthenticationFailed  401 even with a freshly acquired token
        ├── AccessDenied          403
        │   └── MissingPrivilege  0x80040220: the identity lacks a named privilege (also a failed system job)
        ├── PayloadTooLarge       413 / 0x80040375
        ├── UnexpectedRedirect    any 3xx (redirects are never followed)
        ├── TlsError              certificate verification failed
        ├── InvalidResponse       a 2xx body that does not have the documented shape
        ├── TokenError            the authority refused to issue a token (names the AADSTS code)
        └── AsyncOperationFailed  a system job ended with statuscode 31/32 and no more specific code

``PollDeadlineExceeded`` is separate: the outcome of the operation is unknown, not failed.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

import urllib3.exceptions

from alm_portal.dataverse import unconfirmed

__all__ = [
    "AccessDenied",
    "AsyncOperationFailed",
    "AuthenticationFailed",
    "AuthorityUnavailable",
    "BadSolutionZip",
    "ConnectionFailed",
    "DataverseError",
    "EnvironmentBusy",
    "InvalidResponse",
    "ManagedUnmanagedMismatch",
    "MissingDependencies",
    "MissingPrivilege",
    "NotFound",
    "PayloadTooLarge",
    "PermanentError",
    "PollDeadlineExceeded",
    "PublisherMismatch",
    "RequestTimeout",
    "ServerError",
    "SubmissionOutcomeUnknown",
    "Throttled",
    "TlsError",
    "TokenError",
    "TransientError",
    "UnexpectedRedirect",
    "VersionNotHigher",
    "error_class_for",
    "error_from_dataverse",
    "network_reason",
    "normalize_error_code",
]

_HEX_CODE = re.compile(r"^(?:0x)?([0-9a-fA-F]{1,8})$")


def normalize_error_code(code: object) -> str | None:
    """Return a Dataverse error code as ``0x`` + 8 upper-case hex digits, or None when there is none.

    Accepts the Web API's hex string (``"0x8004801d"``, docs/dataverse.md §1.4), the bare hex of support articles
    (``"80048541"``, docs/dataverse.md §1.6), and the signed 32-bit integer of the SDK and ``asyncoperation.errorcode``
    (``-2147188707``; hex = value & 0xFFFFFFFF, docs/dataverse.md §1.6).
    """
    if code is None or code == "" or code is False:
        return None
    if isinstance(code, int):
        return None if code == 0 else f"0x{code & 0xFFFFFFFF:08X}"
    text = str(code).strip()
    if not text:
        return None
    if re.fullmatch(r"-?\d+", text) and (text.startswith("-") or len(text) > 8):
        value = int(text)
        return None if value == 0 else f"0x{value & 0xFFFFFFFF:08X}"
    match = _HEX_CODE.match(text)
    if match:
        value = int(match.group(1), 16)
        return None if value == 0 else f"0x{value:08X}"
    return text


class DataverseError(Exception):
    """Base class: keeps what Dataverse (or the network) said, for the job row and the audit event."""

    #: True when the same call may succeed later without any change on our side.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: object = None,
        environment_url: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = normalize_error_code(code)
        self.environment_url = environment_url
        self.request_id = request_id
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, http_status={self.http_status!r}, code={self.code!r})"


class TransientError(DataverseError):
    """Retrying later may succeed: 429, 5xx, connection reset, timeouts, a busy environment."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: Seconds the server asked us to wait (``Retry-After``), if it said so.
        self.retry_after = retry_after


class PermanentError(DataverseError):
    """The request itself is wrong or refused (4xx); sending it again will not help."""


class Throttled(TransientError):
    """HTTP 429 service-protection limit (docs/dataverse.md §1.5); ``retry_after`` is in seconds.

    Also raised *without* sending anything when the environment is still inside a previous
    ``Retry-After`` window (see ``alm_portal.dataverse.client.throttle_not_before``).
    """


class EnvironmentBusy(TransientError):
    """Another solution operation (import, export, publish, uninstall) runs in the environment.

    docs/dataverse.md §1.6 (CustomizationLock). For an import submission this means "maybe ours, still in flight:
    look again later" (docs/states.md §3).
    """


class ServerError(TransientError):
    """HTTP 5xx from Dataverse."""


class ConnectionFailed(TransientError):
    """The connection could not be established or was reset (nothing usable came back)."""


class RequestTimeout(TransientError):
    """No response within the read timeout."""


class SubmissionOutcomeUnknown(TransientError):
    """A non-idempotent call (an import submission) was possibly received but we got no answer.

    Never resubmit blindly: look for the operation it may have started first (docs/states.md §3).
    """


class AuthorityUnavailable(TransientError):
    """The token authority could not be reached or answered with a server error."""


class NotFound(PermanentError):
    """HTTP 404 / ``0x80040217`` "Does Not Exist" (docs/dataverse.md §1.4)."""


class MissingDependencies(PermanentError):
    """The solution needs components or solutions the target lacks (``0x8004801D``, ``0x80048034``)."""


class VersionNotHigher(PermanentError):
    """Upgrade with the same or a lower version (docs/dataverse.md §1.6, §11.3; ``80048541``)."""


class ManagedUnmanagedMismatch(PermanentError):
    """Managed package over an unmanaged install or the reverse (``0x80048040`` / ``0x80048041``)."""


class BadSolutionZip(PermanentError):
    """The file is not a valid solution zip (``0x80048060``, docs/dataverse.md §11.1)."""


class PublisherMismatch(PermanentError):
    """A managed solution's publisher cannot change (``0x8004801C``)."""


class AuthenticationFailed(PermanentError):
    """HTTP 401 even after dropping the cached token and acquiring a new one."""


class AccessDenied(PermanentError):
    """HTTP 403: the application user lacks a privilege."""


_MISSING_PRIVILEGE = re.compile(r"\bmissing\s+(?P<privilege>prv\w+)\s+privilege", re.IGNORECASE)


class MissingPrivilege(AccessDenied):
    """``0x80040220`` (-2147220960): the deploying identity lacks a privilege ("Principal user (Id=…, type=8) is
    missing prvWriteCustomization privilege", https://learn.microsoft.com/en-us/troubleshoot/power-platform/
    power-apps/dataverse/client-errors). Permanent: granting the privilege is a person's job, so a job that
    meets it fails at once. ``privilege`` is the name Dataverse gave (None when the text does not say);
    ``message`` leads with it and what to grant, ``dataverse_message`` keeps Dataverse's words."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        match = _MISSING_PRIVILEGE.search(message or "")
        self.privilege: str | None = match.group("privilege") if match else None
        self.dataverse_message = message
        if self.privilege:
            message = (
                f"The deploying identity lacks the Dataverse privilege {self.privilege}: give its application user "
                f"a security role that holds {self.privilege} (System Administrator holds every privilege). "
                f"Dataverse said: {message}"
            )
        super().__init__(message, **kwargs)


class PayloadTooLarge(PermanentError):
    """HTTP 413: the request body is larger than the service accepts."""


class UnexpectedRedirect(PermanentError):
    """A 3xx answer: redirects are never followed (outbound-URL policy)."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class TlsError(PermanentError):
    """The server's certificate did not verify against the configured CA bundle."""


class InvalidResponse(PermanentError):
    """A success status with a body that does not have the documented shape."""


class TokenError(PermanentError):
    """Entra ID (or the configured authority) refused to issue a token.

    ``aadsts_code`` is the ``AADSTS…`` code from the error description (e.g. ``AADSTS7000215`` invalid
    client secret), ``error`` the OAuth error (``invalid_client``), ``correlation_id`` the authority's id
    for support requests.
    """

    def __init__(
        self,
        message: str,
        *,
        aadsts_code: str | None = None,
        error: str | None = None,
        correlation_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.aadsts_code = aadsts_code
        self.error = error
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        return f"{self.message} aadsts_code={self.aadsts_code} error={self.error}"


class AsyncOperationFailed(PermanentError):
    """A system job ended failed (31) or canceled (32) without a more specific error code."""


class PollDeadlineExceeded(DataverseError):
    """The operation did not complete before the deadline; its outcome is unknown (not failed)."""

    def __init__(self, message: str, *, last_status: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.last_status = last_status


# Documented codes (docs/dataverse.md §1.4, §1.5, §1.6).
_NOT_FOUND_CODES = frozenset({"0x80040217"})
_MISSING_DEPENDENCY_CODES = frozenset({"0x8004801D", "0x80048034"})
_MISMATCH_CODES = frozenset({"0x80048040", "0x80048041"})
_BAD_ZIP_CODES = frozenset({"0x80048060"})
_PUBLISHER_CODES = frozenset({"0x8004801C"})
_THROTTLE_CODES = frozenset({"0x80072322", "0x80072321", "0x80072326"})
_TOO_LARGE_CODES = frozenset({"0x80040375"})  # ImportFileTooLargeToUpload
_PRIVILEGE_CODES = frozenset({"0x80040220"})  # "Principal user is missing privilege" (-2147220960)


def _mentions(message: str, fragments: tuple[str, ...]) -> bool:
    lowered = message.lower()
    return any(fragment in lowered for fragment in fragments)


def error_class_for(http_status: int | None, code: str | None, message: str) -> type[DataverseError]:
    """Pick the most specific error class for a Dataverse failure.

    The Dataverse code wins over the HTTP status (a CustomizationLock arrives as 429 but is not a service
    protection limit); message fragments are the fallback for codes docs/dataverse.md marks UNCONFIRMED
    (see ``alm_portal.dataverse.unconfirmed``).
    """
    if code in unconfirmed.CUSTOMIZATION_LOCK_CODES or _mentions(
        message, unconfirmed.CUSTOMIZATION_LOCK_MESSAGE_FRAGMENTS
    ):
        return EnvironmentBusy
    if code in _THROTTLE_CODES or http_status == 429:
        return Throttled
    if code in _MISSING_DEPENDENCY_CODES:
        return MissingDependencies
    if code in unconfirmed.VERSION_NOT_HIGHER_CODES or _mentions(
        message, unconfirmed.VERSION_NOT_HIGHER_MESSAGE_FRAGMENTS
    ):
        return VersionNotHigher
    if code in _MISMATCH_CODES or _mentions(message, unconfirmed.EXPORT_MANAGED_SOLUTION_MESSAGE_FRAGMENTS):
        # "Managed solutions cannot be exported" is the same kind of refusal: wrong mode for the operation.
        return ManagedUnmanagedMismatch
    if code in _BAD_ZIP_CODES:
        return BadSolutionZip
    if code in _PUBLISHER_CODES:
        return PublisherMismatch
    if code in _TOO_LARGE_CODES:
        return PayloadTooLarge
    if code in _NOT_FOUND_CODES or _mentions(message, unconfirmed.EXPORT_MISSING_SOLUTION_MESSAGE_FRAGMENTS):
        return NotFound
    if code in _PRIVILEGE_CODES:
        return MissingPrivilege
    if http_status is None:
        return DataverseError
    if http_status >= 500:
        return ServerError
    if http_status == 404:
        return NotFound
    if http_status == 401:
        return AuthenticationFailed
    if http_status == 403:
        return AccessDenied
    if http_status == 413:
        return PayloadTooLarge
    if 300 <= http_status < 400:
        return UnexpectedRedirect
    return PermanentError


def error_from_dataverse(
    *,
    http_status: int | None,
    code: object,
    message: str,
    environment_url: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
    default: type[DataverseError] | None = None,
) -> DataverseError:
    """Build the typed error for a Dataverse answer (docs/dataverse.md §1.4 error body, or a failed system job).

    ``default`` is used when nothing more specific than the generic class is known (e.g. a failed
    system job without a code becomes ``AsyncOperationFailed``).
    """
    normalized = normalize_error_code(code)
    cls = error_class_for(http_status, normalized, message or "")
    if default is not None and cls in (DataverseError, PermanentError):
        cls = default
    common: dict[str, Any] = {
        "http_status": http_status,
        "code": normalized,
        "environment_url": environment_url,
        "request_id": request_id,
        "details": details,
    }
    if issubclass(cls, TransientError):
        return cls(message or cls.__name__, retry_after=retry_after, **common)
    return cls(message or cls.__name__, **common)


def network_reason(exc: BaseException) -> str:
    """What failed on the way to a server, in words ("the connection was refused"), from a requests or
    urllib3 exception and what it wraps. The exception's own text (pool repr, retry counts, errno) is for
    logs, not for the person reading a health check."""
    chain = _exception_chain(exc)
    reasons: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        ((urllib3.exceptions.NameResolutionError, socket.gaierror), "its host name could not be resolved (DNS)"),
        (ConnectionRefusedError, "the connection was refused (nothing listens on that address and port)"),
        (ConnectionResetError, "the connection was reset"),
        ((ssl.SSLError, urllib3.exceptions.SSLError), "the TLS handshake or certificate verification failed"),
        (urllib3.exceptions.ProxyError, "the proxy refused the connection"),
    )
    for kinds, reason in reasons:
        if any(isinstance(item, kinds) for item in chain):
            return reason
    for item in chain:
        # The portal's outbound policy refuses inside the connection attempt and says why.
        text = str(item)
        if "outbound policy" in text:
            return text[text.index("refused by") :] if "refused by" in text else text
    # urllib3's NewConnectionError is itself a ConnectTimeoutError: only a timeout of another kind is one.
    if any(
        isinstance(item, TimeoutError | urllib3.exceptions.TimeoutError)
        and not isinstance(item, urllib3.exceptions.NewConnectionError)
        for item in chain
    ):
        return "it did not answer in time"
    if any(isinstance(item, urllib3.exceptions.NewConnectionError) for item in chain):
        return "no connection could be made"
    for item in chain:
        status = getattr(getattr(item, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"it answered HTTP {status}"
    return f"the network call failed ({type(exc).__name__})"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps: causes, contexts, urllib3's retry reasons, exceptions passed as args."""
    chain: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        reason = getattr(current, "reason", None)
        wrapped = [item for item in (*current.args, reason, current.__cause__, current.__context__)]
        pending += [item for item in wrapped if isinstance(item, BaseException)]
    return chain
