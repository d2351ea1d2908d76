"""Dataverse error codes and the one exception type the Web API layer turns into an error body.

The error body shape is DOC-ERR "Parse errors from the response" (docs/dataverse.md §1.4):
``{"error": {"code": "0x…", "message": "…"}}``. Codes and messages of the solution
operations are from docs/dataverse.md §1.6 (the SDK ``ErrorCodes`` set, hex = value & 0xFFFFFFFF).
Codes no source confirms (docs/dataverse.md §15) live in ``unconfirmed.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataverseError(Exception):
    """An error the Web API returns as ``{"error": {"code", "message"}}`` with an HTTP status."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON body Dataverse sends for this error (docs/dataverse.md §1.4)."""
        return {"error": {"code": self.code, "message": self.message}}

    @property
    def code_int(self) -> int:
        """The signed 32-bit value of ``code`` as the SDK and ``asyncoperation.errorcode`` show it."""
        return hex_to_int(self.code)


def hex_to_int(code: str) -> int:
    """``"0x8004801D"`` → ``-2147188707`` (the conversion docs/dataverse.md §1.6 uses in reverse)."""
    if not code:
        return 0
    value = int(code, 16)
    return value - (1 << 32) if value >= (1 << 31) else value


# --- docs/dataverse.md §1.6: solution import/export error codes (int values from the SDK ErrorCodes set) ---
IMPORT_BAD_ZIP = "0x80048060"
IMPORT_BAD_ZIP_MESSAGE = (
    "The solution file is invalid. The compressed file must contain the following files at its root: "
    "solution.xml, customizations.xml, and [Content_Types].xml. Solution files that are created by Dynamics 365 "
    "contain these files. Please ensure that you use solution files that are created by Dynamics 365."
)
IMPORT_MISSING_DEPENDENCIES = "0x8004801D"
IMPORT_MISSING_DEPENDENCIES_MESSAGE = (
    "The following solution cannot be imported: {name}. Some dependencies are missing."
)
IMPORT_SOLUTION_ERROR = "0x80048033"
IMPORT_SOLUTION_ERROR_MESSAGE = "An error occurred while importing a Solution."
IMPORT_MANAGED_TO_UNMANAGED_MISMATCH = "0x80048040"
IMPORT_MANAGED_TO_UNMANAGED_MISMATCH_MESSAGE = (
    "The solution is already installed on this system as an unmanaged solution and the package supplied is "
    "attempting to install it in managed mode. Import can only update solutions when the modes match. Uninstall "
    "the current solution and try again."
)
IMPORT_UNMANAGED_TO_MANAGED_MISMATCH = "0x80048041"
IMPORT_UNMANAGED_TO_MANAGED_MISMATCH_MESSAGE = (
    "The solution is already installed on this system as a managed solution and the package supplied is "
    "attempting to install it in unmanaged mode. Import can only update solutions when the modes match. Uninstall "
    "the current solution and try again."
)
IMPORT_WRONG_PUBLISHER = "0x8004801C"
IMPORT_WRONG_PUBLISHER_MESSAGE = (
    "The following managed solution cannot be imported: {name}. The publisher name cannot be changed from "
    "{old} to {new}."
)
IMPORT_INVALID_XML = "0x8004802C"
IMPORT_INVALID_XML_MESSAGE = (
    "This solution package cannot be imported because it contains invalid XML. You can attempt to repair the file "
    "by manually editing the XML contents using the information found in the schema validation errors or you can "
    "contact the solution publisher."
)
IMPORT_XSD_VALIDATION = "0x8004801A"
IMPORT_XSD_VALIDATION_MESSAGE = (
    "The import file is invalid. XSD validation failed with the following error: '{detail}'."
)
IMPORT_SYSTEM_SOLUTION = "0x80048046"
IMPORT_SYSTEM_SOLUTION_MESSAGE = "System solution cannot be imported."
IMPORT_FILE_TOO_LARGE = "0x80040375"
IMPORT_FILE_TOO_LARGE_MESSAGE = "The import file is too large to upload."
# docs/dataverse.md §1.6 "Lower/same version upgrade" (MS support KB 4499878): the KB writes the code without "0x".
IMPORT_LOWER_VERSION = "0x80048541"
IMPORT_LOWER_VERSION_MESSAGE = (
    "The import solution must have a higher version than the existing solution it is upgrading"
)

# --- docs/dataverse.md §1.5 / DOC-LIMITS: service protection limits ---
THROTTLE_REQUESTS = "0x80072322"
THROTTLE_EXECUTION_TIME = "0x80072321"
THROTTLE_CONCURRENCY = "0x80072326"
THROTTLE_MESSAGES = {
    THROTTLE_REQUESTS: "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    THROTTLE_EXECUTION_TIME: (
        "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of "
        "300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
    ),
    THROTTLE_CONCURRENCY: "Number of concurrent requests exceeded the limit of 52.",
}
THROTTLE_ALIASES = {
    "requests": THROTTLE_REQUESTS,
    "execution_time": THROTTLE_EXECUTION_TIME,
    "concurrency": THROTTLE_CONCURRENCY,
}

# --- docs/dataverse.md §1.4: record not found ("Verified live" in 3P tests) ---
RECORD_NOT_FOUND = "0x80040217"


def record_not_found(logical_name: str, record_id: str) -> DataverseError:
    """404 for ``<set>(<guid>)`` of a missing row, e.g. "Entity 'solution' With Id = … Does Not Exist"."""
    return DataverseError(404, RECORD_NOT_FOUND, f"Entity '{logical_name}' With Id = {record_id} Does Not Exist")


# --- "Troubleshoot Dataverse Web API client errors" (three documented client errors) ---
# https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors
SEGMENT_NOT_FOUND_CODE = "0x8006088a"
SEGMENT_NOT_FOUND_MESSAGE = "Resource not found for the segment '{segment}'."
PROPERTY_NOT_FOUND_CODE = "0x0"
PROPERTY_NOT_FOUND_MESSAGE = "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
NO_HTTP_RESOURCE_CODE = ""
NO_HTTP_RESOURCE_MESSAGE = "No HTTP resource was found that matches the request URI '{uri}'."


def segment_not_found(segment: str) -> DataverseError:
    """404 for a name that is no entity set, function or action ("GET …/Account")."""
    return DataverseError(404, SEGMENT_NOT_FOUND_CODE, SEGMENT_NOT_FOUND_MESSAGE.format(segment=segment))


def property_not_found(name: str, entity: str) -> DataverseError:
    """400 for a property the entity type does not have ("$select=Name")."""
    return DataverseError(400, PROPERTY_NOT_FOUND_CODE, PROPERTY_NOT_FOUND_MESSAGE.format(name=name, entity=entity))


def no_http_resource(uri: str) -> DataverseError:
    """404 for a function or action called with the wrong HTTP method ("POST …/WhoAmI")."""
    return DataverseError(404, NO_HTTP_RESOURCE_CODE, NO_HTTP_RESOURCE_MESSAGE.format(uri=uri))


# --- "Troubleshoot Dataverse client errors": a missing privilege (-2147220960) ---
# https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/client-errors
PRIVILEGE_DENIED_CODE = "0x80040220"
