"""The Dataverse Web API client: typed methods, explicit timeouts, typed errors, streaming package transfer.

The one boundary to Dataverse (STYLE.md point 5). Every method's docstring names the section of
``shared/reference/dataverse-web-api.md`` it implements. Behaviour in brief:

* Requests: ``https://<environment>/api/data/v9.2/…`` with the OData headers of reference 1.2, a bearer
  token from a :class:`~alm_portal.dataverse.auth.TokenProvider` (scope ``<environment url>/.default``),
  ``verify=<bundle>`` on every request, ``allow_redirects=False`` (a 3xx is an error), (connect, read)
  timeouts from :class:`Timeouts`.
* 401: the token is dropped from the provider's cache and the request is sent once more with a new one.
* Retries (:class:`RetryPolicy`): only idempotent calls are retried, on 5xx, connection failures and
  timeouts, with capped exponential backoff and jitter. ``Retry-After`` is always honoured: after a 429 the
  environment gets a process-wide "not before" time (:func:`throttle_not_before`); no request goes to that
  environment before it — the client sleeps through short waits and raises :class:`Throttled` for longer
  ones (``RetryPolicy.max_retry_after``), so a Celery task can persist the time and come back.
* The import submissions (ImportSolutionAsync, StageAndUpgradeAsync) are never retried automatically: an
  answer we did not get becomes :class:`SubmissionOutcomeUnknown` so the job can adopt the operation it may
  have started (DESIGN section 4).
* Packages are streamed both ways: the import body is JSON with the zip as base64, generated while reading
  the file (Content-Length known in advance); an export's base64 is decoded to a file while the response is
  read. Neither ever holds the whole package in memory.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.auth import ClientCredentials, MsalTokenProvider, TokenProvider, VerifiedSession
from alm_portal.dataverse.errors import (
    AsyncOperationFailed,
    ConnectionFailed,
    DataverseError,
    EnvironmentBusy,
    InvalidResponse,
    PollDeadlineExceeded,
    RequestTimeout,
    SubmissionOutcomeUnknown,
    Throttled,
    TlsError,
    TransientError,
    UnexpectedRedirect,
    error_from_dataverse,
    normalize_error_code,
)
from alm_portal.dataverse.importlog import ImportLog, parse_import_log
from alm_portal.dataverse.settings_document import DeploymentSettings

__all__ = [
    "API_PATH",
    "AsyncOperation",
    "AsyncOperationType",
    "DataverseClient",
    "Dependency",
    "ExportHandle",
    "ExportedFile",
    "ImportHandle",
    "ImportJob",
    "Publisher",
    "RetryPolicy",
    "Solution",
    "SolutionHistoryEntry",
    "StageResult",
    "Timeouts",
    "ValidationResult",
    "WhoAmI",
    "clear_throttle",
    "restore_throttle_not_before",
    "throttle_not_before",
]

logger = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2/"

#: Base64 is produced from and consumed in blocks of whole 3-byte groups / 4-character quanta.
_UPLOAD_READ_SIZE = 3 * 256 * 1024  # 768 KiB of zip → 1 MiB of base64 per chunk
_DOWNLOAD_CHUNK_SIZE = 1024 * 1024
_MAX_JSON_PREFIX = 1024 * 1024  # bytes tolerated before the base64 field of an export response


# --- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts in seconds; ``transfer_read`` for package upload/download calls."""

    connect: float = 10.0
    read: float = 120.0
    transfer_read: float = 900.0


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent calls are retried (reliability-security C7: capped exponential backoff with jitter).

    ``max_attempts`` counts every send of one call. ``max_retry_after`` is the longest wait (a Retry-After or
    a remaining "not before") the client sleeps through itself; a longer one raises :class:`Throttled` with
    ``retry_after`` so the caller can persist it. ``max_retry_after=0`` never sleeps for throttling.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 60.0
    jitter: bool = True

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``retry_number`` (1-based): base·2^(n-1) capped at max_delay, "equal jitter"."""
        delay = min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1)))
        if self.jitter:
            delay = delay / 2 + (rng or random).uniform(0, delay / 2)
        return delay


# --- process-wide throttle state (reference 1.5) ------------------------------------------------------------


def _environment_key(environment_url: str) -> str:
    parts = urlsplit(environment_url)
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


_throttle_lock = threading.Lock()
_not_before: dict[str, float] = {}


def throttle_not_before(environment_url: str) -> datetime | None:
    """When requests to this environment may resume after a 429 (UTC), or None when not throttled.

    A Celery task that receives :class:`Throttled` can persist this value (DESIGN: ``not_before`` column)
    and give it back to another process with :func:`restore_throttle_not_before`.
    """
    with _throttle_lock:
        until = _not_before.get(_environment_key(environment_url))
    if until is None or until <= time.time():
        return None
    return datetime.fromtimestamp(until, tz=UTC)


def restore_throttle_not_before(environment_url: str, not_before: datetime) -> None:
    """Adopt a persisted "not before" time for an environment (only ever moves it later)."""
    if not_before.tzinfo is None:
        raise ValueError("not_before must be timezone-aware")
    _extend_not_before(_environment_key(environment_url), not_before.timestamp())


def clear_throttle(environment_url: str | None = None) -> None:
    """Forget the throttle state of one environment (or all): for tests and administrative resets."""
    with _throttle_lock:
        if environment_url is None:
            _not_before.clear()
        else:
            _not_before.pop(_environment_key(environment_url), None)


def _extend_not_before(key: str, until: float) -> None:
    with _throttle_lock:
        if until > _not_before.get(key, 0.0):
            _not_before[key] = until


def _remaining_throttle(key: str) -> float:
    with _throttle_lock:
        until = _not_before.get(key)
    if until is None:
        return 0.0
    return max(0.0, until - time.time())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (reference 1.5); an HTTP-date is accepted as well (RFC 9110)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


# --- result types --------------------------------------------------------------------------------------------


def _uuid(value: object) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(str(value).strip("{}"))
    except ValueError:
        return None


def _required_uuid(value: object, what: str) -> uuid.UUID:
    parsed = _uuid(value)
    if parsed is None:
        raise InvalidResponse(f"{what} is missing or not a GUID: {value!r}")
    return parsed


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "0", "1"):
        return value.lower() in ("true", "1")
    return None


@dataclass(frozen=True)
class WhoAmI:
    """Reference 2: the calling application user and its organization."""

    user_id: uuid.UUID
    business_unit_id: uuid.UUID
    organization_id: uuid.UUID


@dataclass(frozen=True)
class Publisher:
    """Reference 3.3."""

    publisher_id: uuid.UUID | None
    unique_name: str
    friendly_name: str
    customization_prefix: str


@dataclass(frozen=True)
class Solution:
    """Reference 3.1 (``solution``)."""

    solution_id: uuid.UUID
    unique_name: str
    friendly_name: str
    version: str
    is_managed: bool
    is_visible: bool | None
    installed_on: datetime | None
    modified_on: datetime | None
    publisher_id: uuid.UUID | None
    publisher: Publisher | None
    parent_solution_id: uuid.UUID | None
    description: str

    @property
    def is_patch(self) -> bool:
        return self.parent_solution_id is not None


@dataclass(frozen=True)
class ExportedFile:
    """A solution zip written to disk, with its SHA-256 and size computed while it was written."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class ExportHandle:
    """Reference 4.2: ExportSolutionAsync's answer."""

    async_operation_id: uuid.UUID
    export_job_id: uuid.UUID


@dataclass(frozen=True)
class ImportHandle:
    """Reference 5.2: the handles of record of an import (DESIGN section 4).

    ``import_job_id`` is ``ImportJobKey`` parsed as a GUID (falls back to the id we sent, if any);
    ``package_sha256``/``package_size`` describe the bytes actually streamed.
    """

    async_operation_id: uuid.UUID
    import_job_id: uuid.UUID | None
    import_job_key: str | None
    sent_import_job_id: uuid.UUID | None
    package_sha256: str
    package_size: int


class AsyncOperationType:
    """``asyncoperation.operationtype`` values used here (reference 7.1)."""

    EXECUTE_ASYNC_REQUEST = 54
    IMPORT_SOLUTION_METADATA = 93
    EXPORT_SOLUTION = 202
    IMPORT_SOLUTION = 203
    PUBLISH_ALL = 204
    DELETE_AND_PROMOTE = 207
    UNINSTALL_SOLUTION = 208
    STAGE_AND_UPGRADE = 211


@dataclass(frozen=True)
class AsyncOperation:
    """Reference 7.1 (``asyncoperation``): state 0 Ready, 1 Suspended, 2 Locked, 3 Completed; status 30
    Succeeded, 31 Failed, 32 Canceled."""

    async_operation_id: uuid.UUID
    name: str
    operation_type: int | None
    state_code: int
    status_code: int
    message: str
    friendly_message: str
    error_code: str | None
    created_on: datetime | None
    started_on: datetime | None
    completed_on: datetime | None

    STATE_COMPLETED = 3
    STATUS_SUCCEEDED = 30
    STATUS_FAILED = 31
    STATUS_CANCELED = 32

    @property
    def is_completed(self) -> bool:
        return self.state_code == self.STATE_COMPLETED

    @property
    def succeeded(self) -> bool:
        return self.is_completed and self.status_code == self.STATUS_SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.is_completed and self.status_code == self.STATUS_FAILED

    @property
    def canceled(self) -> bool:
        return self.is_completed and self.status_code == self.STATUS_CANCELED

    def error(self, environment_url: str | None = None) -> DataverseError | None:
        """The typed error of a failed or canceled operation (None while running or after success).

        The code comes from ``errorcode`` or, failing that, from a hex code quoted in the message
        (``unconfirmed.ASYNC_OPERATION_CODE_IN_MESSAGE``).
        """
        if not self.is_completed or self.succeeded:
            return None
        message = self.message or self.friendly_message or f"system job ended with status {self.status_code}"
        code = self.error_code
        if code is None and unconfirmed.ASYNC_OPERATION_CODE_IN_MESSAGE:
            found = re.search(r"\b0x[0-9A-Fa-f]{8}\b", f"{self.message} {self.friendly_message}")
            code = found.group(0) if found else None
        error = error_from_dataverse(
            http_status=None,
            code=code,
            message=message,
            environment_url=environment_url,
            details={"async_operation_id": str(self.async_operation_id), "status_code": self.status_code},
            default=AsyncOperationFailed,
        )
        if isinstance(error, TransientError) and not isinstance(error, EnvironmentBusy):
            # A finished job that "was throttled" or hit a server error is still a finished, failed job.
            return AsyncOperationFailed(message, code=error.code, environment_url=environment_url)
        return error

    def raise_for_failure(self, environment_url: str | None = None) -> None:
        """Raise the typed error if the operation failed or was canceled."""
        error = self.error(environment_url)
        if error is not None:
            raise error


@dataclass(frozen=True)
class ImportJob:
    """Reference 8.1 (``importjob``) with the log of 8.3 parsed when it was read."""

    import_job_id: uuid.UUID
    solution_name: str
    progress: float | None
    created_on: datetime | None
    started_on: datetime | None
    completed_on: datetime | None
    data: str | None = field(default=None, repr=False)
    log: ImportLog | None = None


@dataclass(frozen=True)
class ValidationResult:
    """Reference 6 (``SolutionValidationResult``)."""

    result_type: str
    message: str
    error_code: str | None
    additional_info: str


@dataclass(frozen=True)
class StageResult:
    """Reference 6 (``StageSolutionResults``): what a staged package lacks, without installing it."""

    upload_id: uuid.UUID | None
    status: str
    solution_details: dict[str, Any]
    missing_dependencies: tuple[dict[str, Any], ...]
    validation_results: tuple[ValidationResult, ...]
    component_details: tuple[dict[str, Any], ...]

    @property
    def failed(self) -> bool:
        return self.status.strip().lower() in unconfirmed.STAGE_SOLUTION_FAILED_STATUSES

    @property
    def ok(self) -> bool:
        errors = [r for r in self.validation_results if r.result_type.lower() in ("error", "failure", "failed")]
        return not self.failed and not self.missing_dependencies and not errors


@dataclass(frozen=True)
class Dependency:
    """Reference 10 (``dependency``): a required component and the component that needs it."""

    dependency_type: int | None
    required_component_type: int | None
    required_component_object_id: uuid.UUID | None
    required_component_base_solution_id: uuid.UUID | None
    dependent_component_type: int | None
    dependent_component_object_id: uuid.UUID | None
    dependent_component_base_solution_id: uuid.UUID | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class SolutionHistoryEntry:
    """Reference 9 (``msdyn_solutionhistory``): operation 0 Import, 1 Uninstall, 2 Export, …; suboperation
    0 None, 1 New, 2 Upgrade, 3 Update, 4 Delete; status 0 Started, 1 Completed."""

    history_id: uuid.UUID | None
    solution_name: str
    solution_version: str
    operation: int | None
    suboperation: int | None
    status: int | None
    result: bool | None
    start_time: datetime | None
    end_time: datetime | None
    is_managed: bool | None
    error_code: str
    exception_message: str
    publisher_name: str


# --- streaming helpers -------------------------------------------------------------------------------------------


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (a short read mid-file would break base64 framing)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        block = stream.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


class Base64JsonBody:
    """A JSON request body whose one field is a file as base64, produced while the file is read.

    Yields ``prefix`` (``{"…": …, "CustomizationFile": "``), then base64 of consecutive blocks of
    ``read_size`` bytes (a multiple of 3, so the pieces concatenate into one valid base64 string), then
    ``suffix`` (``"}``). ``len()`` is known in advance, so requests sends a Content-Length instead of chunked
    framing. SHA-256 and size of the file bytes are computed on the way.
    """

    def __init__(self, prefix: bytes, path: Path, suffix: bytes, *, read_size: int = _UPLOAD_READ_SIZE) -> None:
        if read_size % 3:
            raise ValueError("read_size must be a multiple of 3")
        self.prefix = prefix
        self.path = path
        self.suffix = suffix
        self.read_size = read_size
        self.file_size = path.stat().st_size
        self.sha256: str | None = None
        self.bytes_read = 0

    def __len__(self) -> int:
        return len(self.prefix) + 4 * ((self.file_size + 2) // 3) + len(self.suffix)

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        self.bytes_read = 0
        yield self.prefix
        with self.path.open("rb") as stream:
            while True:
                block = _read_exact(stream, self.read_size)
                if not block:
                    break
                digest.update(block)
                self.bytes_read += len(block)
                yield base64.b64encode(block)
                if len(block) < self.read_size:
                    break
        if self.bytes_read != self.file_size:
            raise OSError(f"{self.path} changed size while it was being sent ({self.file_size} → {self.bytes_read})")
        self.sha256 = digest.hexdigest()
        yield self.suffix


def base64_json_body(
    fields: Mapping[str, Any], file_field: str, path: Path, *, read_size: int = _UPLOAD_READ_SIZE
) -> Base64JsonBody:
    """Build a :class:`Base64JsonBody` for ``{**fields, file_field: base64(file)}``."""
    head = json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=True)
    assert head.endswith("}")
    opening = head[:-1] + ("," if fields else "") + json.dumps(file_field) + ':"'
    return Base64JsonBody(opening.encode("ascii"), path, b'"}', read_size=read_size)


class _Base64FieldWriter:
    """Decode the base64 string value of one JSON field to a file while the JSON arrives in chunks.

    Only the field's value is decoded; bytes before it are kept (bounded) until the key is found, bytes after
    its closing quote are ignored. JSON escapes inside a base64 string can only be ``\\/`` (and, from some
    serialisers, ``\\r``/``\\n`` line breaks); anything else is an invalid response.
    """

    def __init__(self, field_name: str, out: BinaryIO) -> None:
        self._pattern = re.compile(rb'"' + re.escape(field_name.encode("ascii")) + rb'"\s*:\s*"')
        self._null_pattern = re.compile(rb'"' + re.escape(field_name.encode("ascii")) + rb'"\s*:\s*null')
        self._field_name = field_name
        self._out = out
        self._state = "seek"
        self._pending = b""  # undecoded base64 text (len < 4) or unscanned prefix
        self._escape = b""
        self._digest = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if self._state == "seek":
            self._pending += chunk
            match = self._pattern.search(self._pending)
            if match is None:
                if self._null_pattern.search(self._pending):
                    raise InvalidResponse(f"{self._field_name} is null")
                if len(self._pending) > _MAX_JSON_PREFIX:
                    raise InvalidResponse(f"{self._field_name} not found in the first {_MAX_JSON_PREFIX} bytes")
                return
            rest = self._pending[match.end() :]
            self._pending = b""
            self._state = "value"
            chunk = rest
        if self._state == "value":
            self._feed_value(chunk)

    def _feed_value(self, chunk: bytes) -> None:
        data = self._escape + chunk
        self._escape = b""
        end = data.find(b'"')
        if end >= 0:
            value, self._state = data[:end], "done"
        else:
            value = data
            if value.endswith(b"\\"):
                value, self._escape = value[:-1], b"\\"
        if b"\\" in value:
            value = value.replace(b"\\/", b"/").replace(b"\\r", b"").replace(b"\\n", b"")
            if b"\\" in value:
                raise InvalidResponse(f"unexpected JSON escape in {self._field_name}")
        text = self._pending + value
        usable = len(text) - len(text) % 4
        if self._state == "done":
            usable = len(text)
        if usable:
            self._write(text[:usable])
        self._pending = text[usable:]

    def _write(self, text: bytes) -> None:
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidResponse(f"{self._field_name} is not valid base64: {exc}") from exc
        self._digest.update(data)
        self.size += len(data)
        self._out.write(data)

    def finish(self) -> str:
        if self._state != "done":
            raise InvalidResponse(f"the response ended before {self._field_name} was complete")
        return self._digest.hexdigest()


def _odata_string(value: str) -> str:
    """An OData string literal: single quotes, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _odata_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("datetimes sent to Dataverse must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(params: Mapping[str, str]) -> str:
    """A query string that keeps OData's ``$`` and ``@`` and encodes spaces as %20 (not +)."""
    return "&".join(
        f"{quote(key, safe='$@')}={quote(value, safe=chr(39) + '$@(),:/')}" for key, value in params.items()
    )


_VERSION = re.compile(rf"^\d+(\.\d+){{{unconfirmed.VERSION_MIN_PARTS - 1},{unconfirmed.VERSION_MAX_PARTS - 1}}}$")


def _check_version(version: str) -> str:
    text = version.strip()
    if not _VERSION.match(text):
        raise ValueError(f"not a solution version (major.minor[.build[.revision]]): {version!r}")
    return text


_SOLUTION_SELECT = (
    "solutionid,uniquename,friendlyname,version,ismanaged,isvisible,installedon,modifiedon,"
    "_publisherid_value,_parentsolutionid_value,description"
)
_PUBLISHER_EXPAND = "publisherid($select=publisherid,uniquename,friendlyname,customizationprefix)"
_ASYNC_SELECT = (
    "asyncoperationid,name,operationtype,statecode,statuscode,message,friendlymessage,errorcode,"
    "createdon,startedon,completedon"
)
_IMPORT_JOB_SELECT = "importjobid,solutionname,progress,createdon,startedon,completedon"
_HISTORY_SELECT = (
    "msdyn_solutionhistoryid,msdyn_name,msdyn_solutionversion,msdyn_operation,msdyn_suboperation,msdyn_status,"
    "msdyn_result,msdyn_starttime,msdyn_endtime,msdyn_ismanaged,msdyn_errorcode,msdyn_exceptionmessage,"
    "msdyn_publishername"
)

#: pac's ``--include`` names for ExportSolution's optional settings (reference 4.1, 4.2).
EXPORT_SETTINGS: Mapping[str, str] = {
    "autonumbering": "ExportAutoNumberingSettings",
    "calendar": "ExportCalendarSettings",
    "customization": "ExportCustomizationSettings",
    "emailtracking": "ExportEmailTrackingSettings",
    "externalapplications": "ExportExternalApplications",
    "general": "ExportGeneralSettings",
    "isvconfig": "ExportIsvConfig",
    "marketing": "ExportMarketingSettings",
    "outlooksynchronization": "ExportOutlookSynchronizationSettings",
    "relationshiproles": "ExportRelationshipRoles",
    "sales": "ExportSales",
}


# --- the client --------------------------------------------------------------------------------------------------


class DataverseClient:
    """Typed access to one Dataverse environment's Web API (reference sections 1-12).

    ``environment_url`` is ``https://<org>.<region>.dynamics.com`` (a path prefix is allowed, for the
    emulator). Give either ``token_provider`` or ``credentials`` (then an :class:`MsalTokenProvider` sharing
    the process-wide msal application is used, with the same CA bundle). ``import_job_id_mode`` sends a
    caller-chosen ``ImportJobId`` on the async import actions (DESIGN section 4; off by default, UNCONFIRMED).
    ``sleep`` is injectable so tests and callers control waiting; ``page_size`` is the ``odata.maxpagesize``
    asked for collections (all pages are followed). ``on_throttled`` is called with the Retry-After (seconds,
    or None) for every service-protection 429 received, so the caller can count them durably; an error it
    raises is logged and never fails the call. A client holds one HTTP session: use one per thread or task.
    """

    def __init__(
        self,
        environment_url: str,
        *,
        token_provider: TokenProvider | None = None,
        credentials: ClientCredentials | None = None,
        ca_bundle: str | None = None,
        timeouts: Timeouts | None = None,
        retry_policy: RetryPolicy | None = None,
        import_job_id_mode: bool = unconfirmed.IMPORT_JOB_ID_ON_ASYNC_ACTIONS_DEFAULT,
        proxies: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 500,
        user_agent: str = "alm-portal-dataverse/1",
        on_throttled: Callable[[float | None], None] | None = None,
    ) -> None:
        parts = urlsplit(environment_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("environment_url must be an https URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("environment_url must not carry credentials, a query or a fragment")
        if (token_provider is None) == (credentials is None):
            raise ValueError("give exactly one of token_provider and credentials")
        self.environment_url = environment_url.rstrip("/")
        self._key = _environment_key(self.environment_url)
        self.api_url = self.environment_url + API_PATH
        self.scope = f"{self.environment_url}/.default"
        self.timeouts = timeouts or Timeouts()
        self.retry_policy = retry_policy or RetryPolicy()
        self.import_job_id_mode = import_job_id_mode
        if not 1 <= page_size <= 5000:
            raise ValueError("page_size must be between 1 and 5000 (Dataverse's maximum page size)")
        self.page_size = page_size
        self._sleep = sleep
        self._on_throttled = on_throttled
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._session = VerifiedSession(
            ca_bundle=ca_bundle,
            proxies=proxies,
            timeout=(self.timeouts.connect, self.timeouts.read),
            user_agent=user_agent,
        )
        if credentials is not None:
            token_provider = MsalTokenProvider(credentials, ca_bundle=ca_bundle, proxies=proxies)
        assert token_provider is not None
        self.token_provider: TokenProvider = token_provider

    # -- lifecycle --

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataverseClient({self.environment_url!r})"

    # -- transport --

    def _url(self, resource: str) -> str:
        return resource if resource.startswith("https://") else self.api_url + resource.lstrip("/")

    def _check_same_origin(self, url: str) -> None:
        """``@odata.nextLink`` and the like must stay on this environment's API (the token goes with them)."""
        if _environment_key(url.split("?", 1)[0]).startswith(_environment_key(self.api_url)):
            return
        raise InvalidResponse(f"refusing to follow a link outside {self.api_url}: {url}")

    def _headers(self, token: str, extra: Mapping[str, str] | None, has_body: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
        }
        if has_body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if extra:
            headers.update(extra)
        return headers

    def _wait_for_throttle(self) -> None:
        """Never send to an environment inside its Retry-After window (reference 1.5)."""
        remaining = _remaining_throttle(self._key)
        if remaining <= 0:
            return
        if remaining > self.retry_policy.max_retry_after:
            raise Throttled(
                f"{self.environment_url} is throttled for another {remaining:.1f}s",
                http_status=None,
                environment_url=self.environment_url,
                retry_after=remaining,
            )
        logger.info("waiting %.1fs before calling throttled %s", remaining, self.environment_url)
        self._sleep(remaining)
        # Another caller may have extended the window while we slept.
        self._wait_for_throttle()

    def _error_from_response(self, response: requests.Response) -> DataverseError:
        status = response.status_code
        code: object = None
        message = ""
        details: dict[str, Any] = {}
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
            error = payload["error"]
            code = error.get("code")
            message = _str(error.get("message"))
            details = {key: value for key, value in error.items() if key not in ("code", "message")}
        elif isinstance(payload, Mapping) and "error" in payload:
            message = _str(payload.get("error_description") or payload.get("error"))
        if not message:
            message = (response.text or "")[:500] or f"HTTP {status}"
        request_id = (
            response.headers.get("x-ms-service-request-id")
            or response.headers.get("REQ_ID")
            or response.headers.get("x-ms-request-id")
        )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            return UnexpectedRedirect(
                f"unexpected redirect (HTTP {status}); redirects are never followed",
                location=response.headers.get("Location"),
                http_status=status,
                environment_url=self.environment_url,
                request_id=request_id,
            )
        error = error_from_dataverse(
            http_status=status,
            code=code,
            message=message,
            environment_url=self.environment_url,
            request_id=request_id,
            retry_after=retry_after,
            details=details,
        )
        if isinstance(error, Throttled) and error.retry_after is None:
            # A service-protection 429 without Retry-After still means "back off" (reference 1.5). A busy
            # environment (CustomizationLock, also 429) without the header does not block other calls.
            error.retry_after = unconfirmed.DEFAULT_RETRY_AFTER_SECONDS
        return error

    def _send(
        self,
        method: str,
        resource: str,
        *,
        json_body: Any = None,
        body_factory: Callable[[], Base64JsonBody] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> requests.Response:
        """Send one call with throttle gating, 401 refresh, and retries for idempotent calls."""
        url = self._url(resource)
        policy = self.retry_policy
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            self._wait_for_throttle()
            token = self.token_provider.get_token(self.scope)
            data: Any = None
            if body_factory is not None:
                data = body_factory()
            elif json_body is not None:
                data = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            timeout = (self.timeouts.connect, read_timeout or self.timeouts.read)
            failure: DataverseError
            try:
                response = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=self._headers(token, headers, data is not None),
                    timeout=timeout,
                    stream=stream,
                )
            except requests.exceptions.SSLError as exc:
                raise TlsError(
                    f"TLS verification of {self.environment_url} failed: {exc}", environment_url=self.environment_url
                ) from exc
            except requests.exceptions.ConnectTimeout as exc:
                failure = ConnectionFailed(f"connect timeout: {exc}", environment_url=self.environment_url)
                failure.__cause__ = exc
            except requests.exceptions.ReadTimeout as exc:
                failure = (
                    RequestTimeout(f"no answer within {timeout[1]}s: {exc}", environment_url=self.environment_url)
                    if idempotent
                    else SubmissionOutcomeUnknown(
                        f"no answer within {timeout[1]}s; the request may have been accepted",
                        environment_url=self.environment_url,
                    )
                )
                failure.__cause__ = exc
            except requests.exceptions.RequestException as exc:
                never_sent = _never_sent(exc)
                failure = (
                    ConnectionFailed(f"connection failed: {exc}", environment_url=self.environment_url)
                    if idempotent or never_sent
                    else SubmissionOutcomeUnknown(
                        f"connection lost; the request may have been accepted: {exc}",
                        environment_url=self.environment_url,
                    )
                )
                failure.__cause__ = exc
            else:
                status = response.status_code
                if status < 300:
                    return response
                if status == 401 and not refreshed:
                    # Reference 13.1: drop the token from msal's cache and acquire once more.
                    response.close()
                    self.token_provider.invalidate_token(self.scope, token)
                    refreshed = True
                    attempt -= 1
                    continue
                try:
                    failure = self._error_from_response(response)
                finally:
                    response.close()
                if status == 429 and isinstance(failure, TransientError) and failure.retry_after is not None:
                    _extend_not_before(self._key, time.time() + failure.retry_after)
                if status == 429 and isinstance(failure, Throttled):
                    self._report_throttled(failure.retry_after)
                if not idempotent and status in (502, 504):
                    failure = SubmissionOutcomeUnknown(
                        f"gateway error {status}; the request may have been accepted: {failure.message}",
                        http_status=status,
                        code=failure.code,
                        environment_url=self.environment_url,
                    )
            if not self._should_retry(failure, idempotent, attempt):
                raise failure
            delay = policy.backoff(attempt, self._rng)
            if isinstance(failure, TransientError) and failure.retry_after is not None:
                delay = max(delay, failure.retry_after) if not isinstance(failure, Throttled) else 0.0
            logger.info(
                "retrying %s %s after %s (attempt %d, wait %.1fs)",
                method,
                resource,
                type(failure).__name__,
                attempt,
                delay,
            )
            if delay > 0:
                self._sleep(delay)

    def _report_throttled(self, retry_after: float | None) -> None:
        if self._on_throttled is None:
            return
        try:
            self._on_throttled(retry_after)
        except Exception:  # counting is observability; it must never change what the call does
            logger.warning("on_throttled callback failed for %s", self.environment_url, exc_info=True)

    def _should_retry(self, failure: DataverseError, idempotent: bool, attempt: int) -> bool:
        if not idempotent or attempt >= self.retry_policy.max_attempts:
            return False
        if isinstance(failure, EnvironmentBusy | SubmissionOutcomeUnknown):
            return False
        if not isinstance(failure, TransientError):
            return False
        # A server-requested wait longer than we sleep through is the caller's to schedule.
        return failure.retry_after is None or failure.retry_after <= self.retry_policy.max_retry_after

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponse(
                f"expected JSON from {response.request.method} {response.url}: {exc}",
                http_status=response.status_code,
                environment_url=self.environment_url,
            ) from exc
        finally:
            response.close()

    def _get(self, resource: str, *, headers: Mapping[str, str] | None = None) -> Any:
        return self._json(self._send("GET", resource, headers=headers, idempotent=True))

    def _post(self, action: str, body: Mapping[str, Any], *, idempotent: bool) -> Any:
        response = self._send("POST", action, json_body=body, idempotent=idempotent)
        if response.status_code == 204 or not response.content:
            response.close()
            return {}
        return self._json(response)

    def _get_all(self, resource: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Follow ``@odata.nextLink`` until the collection ends (reference 1.2, ``odata.maxpagesize``)."""
        records: list[dict[str, Any]] = []
        next_url: str | None = resource
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        while next_url:
            if next_url.startswith("https://"):
                self._check_same_origin(next_url)
            payload = self._get(next_url, headers=headers)
            if not isinstance(payload, Mapping) or not isinstance(payload.get("value"), list):
                raise InvalidResponse(f"expected an OData collection from {next_url}")
            records.extend(item for item in payload["value"] if isinstance(item, dict))
            if limit is not None and len(records) >= limit:
                return records[:limit]
            link = payload.get("@odata.nextLink")
            next_url = link if isinstance(link, str) and link else None
        return records

    # -- identity and version --

    def who_am_i(self) -> WhoAmI:
        """Reference 2: ``GET WhoAmI()``."""
        payload = self._get("WhoAmI()")
        return WhoAmI(
            user_id=_required_uuid(payload.get("UserId"), "UserId"),
            business_unit_id=_required_uuid(payload.get("BusinessUnitId"), "BusinessUnitId"),
            organization_id=_required_uuid(payload.get("OrganizationId"), "OrganizationId"),
        )

    def retrieve_version(self) -> str:
        """``GET RetrieveVersion()`` → the organization version (not in the reference; UNCONFIRMED shape)."""
        payload = self._get(unconfirmed.RETRIEVE_VERSION_FUNCTION)
        version = payload.get("Version") if isinstance(payload, Mapping) else None
        if not isinstance(version, str) or not version:
            raise InvalidResponse("RetrieveVersion returned no Version")
        return version

    # -- solutions and publishers (reference 3) --

    @staticmethod
    def _solution(record: Mapping[str, Any]) -> Solution:
        publisher_id = _uuid(record.get("_publisherid_value"))
        expanded = record.get("publisherid")
        publisher = (
            Publisher(
                publisher_id=_uuid(expanded.get("publisherid")) or publisher_id,
                unique_name=_str(expanded.get("uniquename")),
                friendly_name=_str(expanded.get("friendlyname")),
                customization_prefix=_str(expanded.get("customizationprefix")),
            )
            if isinstance(expanded, Mapping)
            else None
        )
        return Solution(
            solution_id=_required_uuid(record.get("solutionid"), "solutionid"),
            unique_name=_str(record.get("uniquename")),
            friendly_name=_str(record.get("friendlyname")),
            version=_str(record.get("version")),
            is_managed=bool(_bool(record.get("ismanaged"))),
            is_visible=_bool(record.get("isvisible")),
            installed_on=_datetime(record.get("installedon")),
            modified_on=_datetime(record.get("modifiedon")),
            publisher_id=publisher_id,
            publisher=publisher,
            parent_solution_id=_uuid(record.get("_parentsolutionid_value")),
            description=_str(record.get("description")),
        )

    def list_solutions(self, *, managed: bool | None = None, visible_only: bool = True) -> list[Solution]:
        """Reference 3.1/3.3: ``GET solutions`` (paged) with the publisher through ``$expand=publisherid``."""
        filters = []
        if managed is not None:
            filters.append(f"ismanaged eq {'true' if managed else 'false'}")
        if visible_only:
            filters.append("isvisible eq true")
        params = {"$select": _SOLUTION_SELECT, "$expand": _PUBLISHER_EXPAND, "$orderby": "uniquename asc"}
        if filters:
            params["$filter"] = " and ".join(filters)
        return [self._solution(record) for record in self._get_all("solutions?" + _query(params))]

    def get_solution(self, unique_name: str) -> Solution | None:
        """Reference 3.1/3.3: the solution with this unique name and its publisher, or None (an unknown name is
        an empty collection, not a 404)."""
        params = {
            "$select": _SOLUTION_SELECT,
            "$expand": _PUBLISHER_EXPAND,
            "$filter": f"uniquename eq {_odata_string(unique_name)}",
        }
        records = self._get_all("solutions?" + _query(params), limit=1)
        return self._solution(records[0]) if records else None

    def update_solution_version(self, unique_name: str, version: str) -> Solution:
        """Reference 3.1: ``PATCH solutions(<id>) {"version": …}`` in the source (unmanaged) environment.

        ``If-Match: *`` keeps the PATCH from ever creating a record (Dataverse PATCH is an upsert).
        """
        new_version = _check_version(version)
        solution = self.get_solution(unique_name)
        if solution is None:
            raise error_from_dataverse(
                http_status=404, code="0x80040217", message=f"solution {unique_name!r} does not exist"
            )
        response = self._send(
            "PATCH",
            f"solutions({solution.solution_id})",
            json_body={"version": new_version},
            headers={"If-Match": "*"},
            idempotent=True,
        )
        response.close()
        updated = self.get_solution(unique_name)
        if updated is None:
            raise InvalidResponse(f"solution {unique_name!r} vanished after the version update")
        return updated

    # -- export (reference 4) --

    @staticmethod
    def _export_parameters(unique_name: str, managed: bool, include: Iterable[str]) -> dict[str, Any]:
        parameters: dict[str, Any] = {"SolutionName": unique_name, "Managed": managed}
        for name in include:
            key = EXPORT_SETTINGS.get(name.lower())
            if key is None:
                raise ValueError(f"unknown export setting {name!r}; known: {', '.join(sorted(EXPORT_SETTINGS))}")
            parameters[key] = True
        return parameters

    def _stream_to_file(self, response: requests.Response, field_name: str, destination: Path) -> ExportedFile:
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = _Base64FieldWriter(field_name, out)
                try:
                    for chunk in response.iter_content(chunk_size=_DOWNLOAD_CHUNK_SIZE):
                        if chunk:
                            writer.feed(chunk)
                except requests.exceptions.RequestException as exc:
                    raise ConnectionFailed(
                        f"the download broke off: {exc}", environment_url=self.environment_url
                    ) from exc
                sha256 = writer.finish()
            os.replace(temp_name, destination)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return ExportedFile(path=destination, sha256=sha256, size=writer.size)

    def export_solution(
        self, unique_name: str, *, managed: bool, destination: str | Path, include: Iterable[str] = ()
    ) -> ExportedFile:
        """Reference 4.1: synchronous ``ExportSolution`` (small solutions), base64 decoded to ``destination``."""
        response = self._send(
            "POST",
            "ExportSolution",
            json_body=self._export_parameters(unique_name, managed, include),
            idempotent=True,
            stream=True,
            read_timeout=self.timeouts.transfer_read,
        )
        return self._stream_to_file(response, "ExportSolutionFile", Path(destination))

    def export_solution_async(self, unique_name: str, *, managed: bool, include: Iterable[str] = ()) -> ExportHandle:
        """Reference 4.2: ``ExportSolutionAsync`` → AsyncOperationId + ExportJobId (not retried: it starts a job)."""
        payload = self._post(
            "ExportSolutionAsync", self._export_parameters(unique_name, managed, include), idempotent=False
        )
        return ExportHandle(
            async_operation_id=_required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId"),
            export_job_id=_required_uuid(payload.get("ExportJobId"), "ExportJobId"),
        )

    def download_solution_export_data(self, export_job_id: uuid.UUID | str, destination: str | Path) -> ExportedFile:
        """Reference 4.2: ``DownloadSolutionExportData`` after the export job succeeded; streamed to a file."""
        response = self._send(
            "POST",
            "DownloadSolutionExportData",
            json_body={"ExportJobId": str(export_job_id)},
            idempotent=True,
            stream=True,
            read_timeout=self.timeouts.transfer_read,
        )
        return self._stream_to_file(response, "ExportSolutionFile", Path(destination))

    # -- import (reference 5, 6) --

    def _import_fields(
        self,
        *,
        overwrite_unmanaged_customizations: bool,
        publish_workflows: bool,
        convert_to_managed: bool | None,
        skip_product_update_dependencies: bool | None,
        settings: DeploymentSettings | None,
        import_job_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "OverwriteUnmanagedCustomizations": overwrite_unmanaged_customizations,
            "PublishWorkflows": publish_workflows,
        }
        if convert_to_managed is not None or not unconfirmed.SEND_CONVERT_TO_MANAGED_ONLY_WHEN_SET:
            fields["ConvertToManaged"] = bool(convert_to_managed)
        if skip_product_update_dependencies is not None:
            fields["SkipProductUpdateDependencies"] = skip_product_update_dependencies
        if settings:
            parameters = settings.component_parameters()
            if parameters:
                fields["ComponentParameters"] = parameters
        if import_job_id is not None:
            fields["ImportJobId"] = str(import_job_id)
        return fields

    def _submit_import(
        self, action: str, package: Path, fields: dict[str, Any], sent_import_job_id: uuid.UUID | None
    ) -> ImportHandle:
        package = Path(package)
        if not package.is_file():
            raise FileNotFoundError(package)
        bodies: list[Base64JsonBody] = []

        def body() -> Base64JsonBody:
            bodies.append(base64_json_body(fields, "CustomizationFile", package))
            return bodies[-1]

        response = self._send(
            "POST",
            action,
            body_factory=body,
            idempotent=False,
            read_timeout=self.timeouts.transfer_read,
        )
        payload = self._json(response)
        sent = bodies[-1]
        if not isinstance(payload, Mapping):
            raise InvalidResponse(f"{action} returned no object")
        key = payload.get("ImportJobKey")
        key_text = key if isinstance(key, str) and key else None
        return ImportHandle(
            async_operation_id=_required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId"),
            import_job_id=_uuid(key_text) or sent_import_job_id,
            import_job_key=key_text,
            sent_import_job_id=sent_import_job_id,
            package_sha256=sent.sha256 or "",
            package_size=sent.bytes_read,
        )

    def _import_job_id(self, import_job_id: uuid.UUID | None) -> uuid.UUID | None:
        if not self.import_job_id_mode:
            if import_job_id is not None:
                raise ValueError("import_job_id is only sent with import_job_id_mode=True (DESIGN section 4)")
            return None
        return import_job_id or uuid.uuid4()

    def import_solution_async(
        self,
        package: str | Path,
        *,
        overwrite_unmanaged_customizations: bool = False,
        publish_workflows: bool = True,
        holding_solution: bool = False,
        convert_to_managed: bool | None = None,
        skip_product_update_dependencies: bool | None = None,
        settings: DeploymentSettings | None = None,
        import_job_id: uuid.UUID | None = None,
    ) -> ImportHandle:
        """Reference 5.2: ``ImportSolutionAsync`` with the package streamed as base64 (never retried).

        ``holding_solution=True`` stages the package as ``<name>_Upgrade`` (reference 6, 11.3). ComponentParameters
        come from ``settings`` (reference 12). A lost answer raises :class:`SubmissionOutcomeUnknown`; a busy
        environment :class:`EnvironmentBusy` (DESIGN section 4).
        """
        sent_id = self._import_job_id(import_job_id)
        fields = self._import_fields(
            overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
            publish_workflows=publish_workflows,
            convert_to_managed=convert_to_managed,
            skip_product_update_dependencies=skip_product_update_dependencies,
            settings=settings,
            import_job_id=sent_id,
        )
        if holding_solution:
            fields["HoldingSolution"] = True
        return self._submit_import("ImportSolutionAsync", Path(package), fields, sent_id)

    def stage_and_upgrade_async(
        self,
        package: str | Path,
        *,
        overwrite_unmanaged_customizations: bool = False,
        publish_workflows: bool = True,
        convert_to_managed: bool | None = None,
        skip_product_update_dependencies: bool | None = None,
        settings: DeploymentSettings | None = None,
        import_job_id: uuid.UUID | None = None,
    ) -> ImportHandle:
        """Reference 6: ``StageAndUpgradeAsync`` (import as holding + apply upgrade in one job; never retried)."""
        sent_id = self._import_job_id(import_job_id)
        fields = self._import_fields(
            overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
            publish_workflows=publish_workflows,
            convert_to_managed=convert_to_managed,
            skip_product_update_dependencies=skip_product_update_dependencies,
            settings=settings,
            import_job_id=sent_id,
        )
        return self._submit_import("StageAndUpgradeAsync", Path(package), fields, sent_id)

    def stage_solution(self, package: str | Path) -> StageResult:
        """Reference 6: ``StageSolution`` — validate a package and list its missing dependencies, no install."""
        package = Path(package)
        if not package.is_file():
            raise FileNotFoundError(package)
        response = self._send(
            "POST",
            "StageSolution",
            body_factory=lambda: base64_json_body({}, "CustomizationFile", package),
            idempotent=True,
            read_timeout=self.timeouts.transfer_read,
        )
        payload = self._json(response)
        results = payload.get("StageSolutionResults") if isinstance(payload, Mapping) else None
        if not isinstance(results, Mapping):
            raise InvalidResponse("StageSolution returned no StageSolutionResults")
        validations = tuple(
            ValidationResult(
                result_type=_str(item.get("SolutionValidationResultType")),
                message=_str(item.get("Message")),
                error_code=normalize_error_code(item.get("ErrorCode")),
                additional_info=_str(item.get("AdditionalInfo")),
            )
            for item in results.get("SolutionValidationResults") or []
            if isinstance(item, Mapping)
        )
        details = results.get("SolutionDetails")
        return StageResult(
            upload_id=_uuid(results.get("StageSolutionUploadId")),
            status=_str(results.get("StageSolutionStatus")),
            solution_details=dict(details) if isinstance(details, Mapping) else {},
            missing_dependencies=tuple(
                dict(item) for item in results.get("MissingDependencies") or [] if isinstance(item, Mapping)
            ),
            validation_results=validations,
            component_details=tuple(
                dict(item) for item in results.get("SolutionComponentsDetails") or [] if isinstance(item, Mapping)
            ),
        )

    def delete_and_promote_async(self, unique_name: str) -> uuid.UUID:
        """Reference 6: ``DeleteAndPromoteAsync`` (apply the staged ``<name>_Upgrade``) → AsyncOperationId."""
        payload = self._post("DeleteAndPromoteAsync", {"UniqueName": unique_name}, idempotent=False)
        return _required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId")

    def uninstall_solution_async(self, unique_name: str) -> uuid.UUID:
        """Reference 6: ``UninstallSolutionAsync`` → AsyncOperationId (deletes the solution's tables and data)."""
        payload = self._post("UninstallSolutionAsync", {"SolutionUniqueName": unique_name}, idempotent=False)
        return _required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId")

    # -- dependencies (reference 10) --

    def retrieve_missing_dependencies(self, unique_name: str) -> list[Dependency]:
        """Reference 10: ``RetrieveMissingDependencies(SolutionUniqueName=@p)`` for a solution in this org."""
        resource = "RetrieveMissingDependencies(SolutionUniqueName=@p)?" + _query({"@p": _odata_string(unique_name)})
        return [
            Dependency(
                dependency_type=_int(r.get("dependencytype")),
                required_component_type=_int(r.get("requiredcomponenttype")),
                required_component_object_id=_uuid(r.get("requiredcomponentobjectid")),
                required_component_base_solution_id=_uuid(r.get("requiredcomponentbasesolutionid")),
                dependent_component_type=_int(r.get("dependentcomponenttype")),
                dependent_component_object_id=_uuid(r.get("dependentcomponentobjectid")),
                dependent_component_base_solution_id=_uuid(r.get("dependentcomponentbasesolutionid")),
                raw=r,
            )
            for r in self._get_all(resource)
        ]

    # -- system jobs (reference 7) --

    @staticmethod
    def _async_operation(record: Mapping[str, Any]) -> AsyncOperation:
        state = _int(record.get("statecode"))
        status = _int(record.get("statuscode"))
        if state is None or status is None:
            raise InvalidResponse("asyncoperation without statecode/statuscode")
        return AsyncOperation(
            async_operation_id=_required_uuid(record.get("asyncoperationid"), "asyncoperationid"),
            name=_str(record.get("name")),
            operation_type=_int(record.get("operationtype")),
            state_code=state,
            status_code=status,
            message=_str(record.get("message")),
            friendly_message=_str(record.get("friendlymessage")),
            error_code=normalize_error_code(record.get("errorcode")),
            created_on=_datetime(record.get("createdon")),
            started_on=_datetime(record.get("startedon")),
            completed_on=_datetime(record.get("completedon")),
        )

    def get_async_operation(self, async_operation_id: uuid.UUID | str) -> AsyncOperation:
        """Reference 7.1/7.2: ``GET asyncoperations(<id>)``; a 404 raises :class:`NotFound`."""
        return self._async_operation(self._get(f"asyncoperations({async_operation_id})?$select={_ASYNC_SELECT}"))

    def find_async_operations(
        self, operation_type: int, created_since: datetime, *, name_contains: str | None = None
    ) -> list[AsyncOperation]:
        """Reference 7.1: system jobs of one type created since a time, newest first (crash adoption,
        DESIGN section 4)."""
        filters = [f"operationtype eq {int(operation_type)}", f"createdon ge {_odata_datetime(created_since)}"]
        if name_contains:
            filters.append(f"contains(name,{_odata_string(name_contains)})")
        params = {"$select": _ASYNC_SELECT, "$filter": " and ".join(filters), "$orderby": "createdon desc"}
        return [self._async_operation(r) for r in self._get_all("asyncoperations?" + _query(params))]

    def poll_async_operation(
        self,
        async_operation_id: uuid.UUID | str,
        *,
        timeout: float,
        initial_interval: float = unconfirmed.POLL_INITIAL_INTERVAL_SECONDS,
        max_interval: float = unconfirmed.POLL_MAX_INTERVAL_SECONDS,
        backoff_factor: float = unconfirmed.POLL_BACKOFF_FACTOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[AsyncOperation]:
        """Reference 7.2: yield each observation of a system job until ``statecode == 3``.

        Waits grow from ``initial_interval`` to ``max_interval``; a throttled or failed read waits at least the
        server's ``Retry-After``. Raises :class:`PollDeadlineExceeded` when the next look would pass
        ``timeout`` seconds from now (the outcome is then unknown, not failed).
        """
        deadline = clock() + timeout
        interval = initial_interval
        last_status: int | None = None
        while True:
            wait = interval
            try:
                operation = self.get_async_operation(async_operation_id)
            except TransientError as exc:
                if isinstance(exc, Throttled):
                    wait = max(interval, exc.retry_after or 0.0)
                logger.info("poll of %s failed transiently (%s); next look in %.1fs", async_operation_id, exc, wait)
            else:
                last_status = operation.status_code
                yield operation
                if operation.is_completed:
                    return
            if clock() + wait > deadline:
                raise PollDeadlineExceeded(
                    f"system job {async_operation_id} not completed within {timeout:.0f}s",
                    last_status=last_status,
                    environment_url=self.environment_url,
                )
            self._sleep(wait)
            interval = min(max_interval, interval * backoff_factor)

    def wait_for_async_operation(
        self, async_operation_id: uuid.UUID | str, *, timeout: float, **poll: Any
    ) -> AsyncOperation:
        """Reference 7.2: poll until completed and return the final observation (check ``succeeded``)."""
        final: AsyncOperation | None = None
        for final in self.poll_async_operation(async_operation_id, timeout=timeout, **poll):  # noqa: B007
            pass
        assert final is not None
        return final

    # -- import jobs (reference 8) --

    def _import_job(self, record: Mapping[str, Any], *, parse_log: bool) -> ImportJob:
        data = record.get("data")
        text = data if isinstance(data, str) and data else None
        progress = record.get("progress")
        return ImportJob(
            import_job_id=_required_uuid(record.get("importjobid"), "importjobid"),
            solution_name=_str(record.get("solutionname")),
            progress=float(progress) if isinstance(progress, int | float) else None,
            created_on=_datetime(record.get("createdon")),
            started_on=_datetime(record.get("startedon")),
            completed_on=_datetime(record.get("completedon")),
            data=text,
            log=parse_import_log(text) if parse_log and text else None,
        )

    def get_import_job(self, import_job_id: uuid.UUID | str, *, with_log: bool = True) -> ImportJob:
        """Reference 8.1/8.3: ``GET importjobs(<id>)`` with ``data`` parsed into per-component results."""
        select = _IMPORT_JOB_SELECT + (",data" if with_log else "")
        return self._import_job(self._get(f"importjobs({import_job_id})?$select={select}"), parse_log=with_log)

    def find_import_jobs(self, solution_name: str, since: datetime) -> list[ImportJob]:
        """Reference 8.1: import jobs of a solution created since a time, newest first (without the log)."""
        params = {
            "$select": _IMPORT_JOB_SELECT,
            "$filter": f"solutionname eq {_odata_string(solution_name)} and createdon ge {_odata_datetime(since)}",
            "$orderby": "createdon desc",
        }
        return [self._import_job(r, parse_log=False) for r in self._get_all("importjobs?" + _query(params))]

    # -- history and counts --

    def list_solution_history(
        self, *, solution_name: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[SolutionHistoryEntry]:
        """Reference 9: ``msdyn_solutionhistories``, newest first."""
        filters = []
        if solution_name:
            filters.append(f"msdyn_name eq {_odata_string(solution_name)}")
        if since is not None:
            filters.append(f"msdyn_starttime ge {_odata_datetime(since)}")
        params = {"$select": _HISTORY_SELECT, "$orderby": "msdyn_starttime desc"}
        if filters:
            params["$filter"] = " and ".join(filters)
        return [
            SolutionHistoryEntry(
                history_id=_uuid(r.get("msdyn_solutionhistoryid")),
                solution_name=_str(r.get("msdyn_name")),
                solution_version=_str(r.get("msdyn_solutionversion")),
                operation=_int(r.get("msdyn_operation")),
                suboperation=_int(r.get("msdyn_suboperation")),
                status=_int(r.get("msdyn_status")),
                result=_bool(r.get("msdyn_result")),
                start_time=_datetime(r.get("msdyn_starttime")),
                end_time=_datetime(r.get("msdyn_endtime")),
                is_managed=_bool(r.get("msdyn_ismanaged")),
                error_code=_str(r.get("msdyn_errorcode")),
                exception_message=_str(r.get("msdyn_exceptionmessage")),
                publisher_name=_str(r.get("msdyn_publishername")),
            )
            for r in self._get_all("msdyn_solutionhistories?" + _query(params), limit=limit)
        ]

    def retrieve_total_record_count(self, entity_names: Sequence[str]) -> dict[str, int]:
        """``RetrieveTotalRecordCount(EntityNames=@p)`` → {entity: count} (not in the reference; UNCONFIRMED)."""
        if isinstance(entity_names, str):
            raise TypeError("entity_names must be a sequence of names, not one string")
        names = json.dumps(list(entity_names), separators=(",", ":"))
        resource = f"{unconfirmed.RETRIEVE_TOTAL_RECORD_COUNT_FUNCTION}(EntityNames=@p)?" + _query({"@p": names})
        payload = self._get(resource)
        collection = payload.get("EntityRecordCountCollection") if isinstance(payload, Mapping) else None
        if not isinstance(collection, Mapping):
            raise InvalidResponse("RetrieveTotalRecordCount returned no EntityRecordCountCollection")
        keys, values = collection.get("Keys"), collection.get("Values")
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
            raise InvalidResponse("EntityRecordCountCollection must have Keys and Values of equal length")
        return {str(k): int(v) for k, v in zip(keys, values, strict=True)}


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """True when the failure happened before a connection existed (DNS, refused), so nothing was sent."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
            continue
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = nested or current.__cause__ or current.__context__
    return False
