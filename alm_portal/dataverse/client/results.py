"""Typed results of the client's calls and the lenient parsers that build them from OData records."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.errors import (
    AsyncOperationFailed,
    DataverseError,
    EnvironmentBusy,
    InvalidResponse,
    TransientError,
    error_from_dataverse,
)
from alm_portal.dataverse.importlog import ImportLog


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
    """docs/dataverse.md §2: the calling application user and its organization."""

    user_id: uuid.UUID
    business_unit_id: uuid.UUID
    organization_id: uuid.UUID


@dataclass(frozen=True)
class HeldPrivilege:
    """One RolePrivilege of RetrieveUserPrivileges: a privilege the user holds through a role, and how deep."""

    name: str
    depth: str
    privilege_id: uuid.UUID | None
    business_unit_id: uuid.UUID | None


@dataclass(frozen=True)
class Publisher:
    """docs/dataverse.md §3.3."""

    publisher_id: uuid.UUID | None
    unique_name: str
    friendly_name: str
    customization_prefix: str


@dataclass(frozen=True)
class Solution:
    """docs/dataverse.md §3.1 (``solution``)."""

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
    """docs/dataverse.md §4.2: ExportSolutionAsync's answer."""

    async_operation_id: uuid.UUID
    export_job_id: uuid.UUID


@dataclass(frozen=True)
class ImportHandle:
    """docs/dataverse.md §5.2: the handles of record of an import (docs/states.md §3).

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
    """``asyncoperation.operationtype`` values used here (docs/dataverse.md §7.1)."""

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
    """docs/dataverse.md §7.1 (``asyncoperation``): state 0 Ready, 1 Suspended, 2 Locked, 3 Completed; status 30
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
    """docs/dataverse.md §8.1 (``importjob``) with the log of 8.3 parsed when it was read."""

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
    """docs/dataverse.md §6 (``SolutionValidationResult``)."""

    result_type: str
    message: str
    error_code: str | None
    additional_info: str


@dataclass(frozen=True)
class StageResult:
    """docs/dataverse.md §6 (``StageSolutionResults``): what a staged package lacks, without installing it."""

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
    """docs/dataverse.md §10 (``dependency``): a required component and the component that needs it."""

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
    """docs/dataverse.md §9 (``msdyn_solutionhistory``): operation 0 Import, 1 Uninstall, 2 Export, …; suboperation
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
