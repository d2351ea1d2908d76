"""OData literals, query strings and the ``$select`` lists the client asks for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from alm_portal.dataverse import unconfirmed


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

#: pac's ``--include`` names for ExportSolution's optional settings (docs/dataverse.md §4.1, §4.2).
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
