"""Read-only queries about an environment: identity, version, solution history, record counts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.client.odata import _HISTORY_SELECT, _odata_datetime, _odata_string, _query
from alm_portal.dataverse.client.results import (
    HeldPrivilege,
    SolutionHistoryEntry,
    WhoAmI,
    _bool,
    _datetime,
    _int,
    _required_uuid,
    _str,
    _uuid,
)
from alm_portal.dataverse.client.transport import DataverseTransport
from alm_portal.dataverse.errors import InvalidResponse


class EnvironmentQueries(DataverseTransport):
    """docs/dataverse.md §2 and §9, and two functions docs/dataverse.md does not describe: who we are, what runs, what
    happened."""

    # -- identity and version --

    def who_am_i(self) -> WhoAmI:
        """docs/dataverse.md §2: ``GET WhoAmI()``."""
        payload = self._get("WhoAmI()")
        return WhoAmI(
            user_id=_required_uuid(payload.get("UserId"), "UserId"),
            business_unit_id=_required_uuid(payload.get("BusinessUnitId"), "BusinessUnitId"),
            organization_id=_required_uuid(payload.get("OrganizationId"), "OrganizationId"),
        )

    def retrieve_user_privileges(self, user_id: uuid.UUID | str) -> list[HeldPrivilege]:
        """``GET systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()``: the privileges a user holds
        through its roles, deepest first per name (https://learn.microsoft.com/en-us/power-apps/developer/
        data-platform/webapi/reference/retrieveuserprivileges). The deploying identity reads its own with the
        ``UserId`` of WhoAmI."""
        user = uuid.UUID(str(user_id))
        payload = self._get(f"systemusers({user})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")
        rows = payload.get("RolePrivileges") if isinstance(payload, Mapping) else None
        if not isinstance(rows, list):
            raise InvalidResponse("RetrieveUserPrivileges returned no RolePrivileges")
        held: dict[str, HeldPrivilege] = {}
        for row in rows:
            if not isinstance(row, Mapping) or not row.get("PrivilegeName"):
                continue
            privilege = HeldPrivilege(
                name=_str(row.get("PrivilegeName")),
                depth=_str(row.get("Depth")),
                privilege_id=_uuid(row.get("PrivilegeId")),
                business_unit_id=_uuid(row.get("BusinessUnitId")),
            )
            held.setdefault(privilege.name, privilege)
        return sorted(held.values(), key=lambda p: p.name)

    def retrieve_version(self) -> str:
        """``GET RetrieveVersion()`` → the organization version (not in docs/dataverse.md; UNCONFIRMED shape)."""
        payload = self._get(unconfirmed.RETRIEVE_VERSION_FUNCTION)
        version = payload.get("Version") if isinstance(payload, Mapping) else None
        if not isinstance(version, str) or not version:
            raise InvalidResponse("RetrieveVersion returned no Version")
        return version

    # -- history and counts --

    def list_solution_history(
        self, *, solution_name: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[SolutionHistoryEntry]:
        """docs/dataverse.md §9: ``msdyn_solutionhistories``, newest first."""
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
        """``RetrieveTotalRecordCount(EntityNames=@p)`` → {entity: count} (not in docs/dataverse.md; UNCONFIRMED)."""
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
