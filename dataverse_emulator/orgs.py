"""An organisation's data: what a new org holds, and the bookkeeping every solution operation shares.

An org is a plain dict inside the state (store.py). Rows are kept under the Web API column names of
the tables they belong to (entities.py); the emulator's own bookkeeping uses keys starting ``emu_``,
which are never served.

Components: ``org["components"][key]`` is one component (package.Component) with the solutions that
contain it (``solutions: {solutionid: {...}}``). A component is deleted when its last solution lets go
of it; deleting a table component drops the table and its rows (uninstalling a managed solution deletes its tables and
their data: docs/dataverse.md §11.4).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from . import unconfirmed
from .package import Component, SolutionPackage, TableDef
from .store import iso, new_id, now

NAMESPACE = uuid.UUID("8c1a61f2-5d8e-4f55-9f0f-3f5b2f2d7a10")  # the emulator's uuid5 namespace
ORG_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
METADATA_TYPES = {1, 2, 3, 9, 10, 14}  # tables, columns, relationships, choices: ismetadata (ENT-SOLCOMP)
# Object type codes of system tables that packages extend (the well-known SDK values); other system
# tables get codes from the custom range.
SYSTEM_OBJECT_TYPE_CODES = {
    "account": 1,
    "contact": 2,
    "opportunity": 3,
    "systemuser": 8,
    "team": 9,
    "businessunit": 10,
    "quote": 1084,
    "quotedetail": 1085,
}


def stable_id(*parts: str) -> str:
    """A GUID derived from its inputs: the same component gets the same id in every org, like
    metadata ids that travel inside managed solutions."""
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def seeded_row_count(logical_name: str) -> int:
    """Rows a custom table holds, deterministic from its name (admin can override)."""
    digest = hashlib.sha256(logical_name.encode("utf-8")).digest()
    return 10 + int.from_bytes(digest[:4], "big") % 4990


def component_type_code(component_type: int | str) -> int:
    if isinstance(component_type, int):
        return component_type
    return unconfirmed.COMPONENT_TYPE_BY_NAME.get(component_type, 0)


# --------------------------------------------------------------------------------------------------
# Creating an org
# --------------------------------------------------------------------------------------------------
def new_org(name: str, tenant_id: str, *, operation_duration: float, import_job_id_on_async: str | None = None) -> dict:
    """An org as a new Dataverse environment lists it: system solutions, publishers, platform solutions."""
    t = now()
    org: dict[str, Any] = {
        "name": name,
        "organization_id": new_id(),
        "business_unit_id": new_id(),
        "tenant_id": tenant_id,
        "created_at": t,
        "settings": {
            "operation_duration": operation_duration,
            "import_job_id_on_async": import_job_id_on_async or unconfirmed.IMPORT_JOB_ID_ON_ASYNC_DEFAULT,
            "privilege_check": unconfirmed.PRIVILEGE_CHECK_DEFAULT,
        },
        "faults": {},
        "allowed_clients": [],
        "row_version": 1000000,
        "next_object_type_code": unconfirmed.FIRST_CUSTOM_OBJECT_TYPE_CODE,
        "publishers": {},
        "solutions": {},
        "components": {},
        "tables": {},
        "asyncoperations": {},
        "importjobs": {},
        "exportjobs": {},
        "history": {},
        "systemusers": {},
        "staged": {},
        "environment_variable_values": {},
        "connection_reference_bindings": {},
        "requests": 0,
    }
    unique, friendly, prefix, option_prefix = unconfirmed.MICROSOFT_PUBLISHER
    microsoft = add_publisher(org, unique, friendly, prefix, option_prefix, t, read_only=True)
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    default = add_publisher(
        org,
        f"DefaultPublisher{compact}",
        f"Default Publisher for {name}",
        unconfirmed.DEFAULT_PUBLISHER_PREFIX,
        unconfirmed.DEFAULT_PUBLISHER_OPTION_VALUE_PREFIX,
        t,
    )
    publishers = {"microsoft": microsoft["publisherid"], "default": default["publisherid"]}
    for unique_name, friendly_name, managed, visible, publisher_key in unconfirmed.SYSTEM_SOLUTIONS:
        add_solution(
            org,
            unique_name=unique_name,
            friendly_name=friendly_name,
            version="1.0",
            managed=managed,
            visible=visible,
            publisher_id=publishers[publisher_key],
            t=t,
            system=True,
        )
    for unique_name, friendly_name, version in unconfirmed.PLATFORM_SOLUTIONS:
        add_solution(
            org,
            unique_name=unique_name,
            friendly_name=friendly_name,
            version=version,
            managed=True,
            visible=True,
            publisher_id=microsoft["publisherid"],
            t=t,
            system=True,
        )
    return org


def add_publisher(
    org: dict, unique_name: str, friendly_name: str, prefix: str, option_prefix: int, t: float, read_only: bool = False
) -> dict:
    publisher_id = new_id()
    row = {
        "publisherid": publisher_id,
        "uniquename": unique_name,
        "friendlyname": friendly_name,
        "customizationprefix": prefix,
        "customizationoptionvalueprefix": option_prefix,
        "description": None,
        "emailaddress": None,
        "supportingwebsiteurl": None,
        "isreadonly": read_only,
        "createdon": iso(t),
        "modifiedon": iso(t),
        "versionnumber": bump(org),
    }
    org["publishers"][publisher_id] = row
    return row


def ensure_publisher(org: dict, package: SolutionPackage, t: float) -> dict:
    for row in org["publishers"].values():
        if row["uniquename"].lower() == package.publisher.unique_name.lower():
            return row
    publisher = package.publisher
    return add_publisher(
        org, publisher.unique_name, publisher.friendly_name, publisher.prefix, publisher.option_value_prefix, t
    )


def add_solution(
    org: dict,
    *,
    unique_name: str,
    friendly_name: str,
    version: str,
    managed: bool,
    visible: bool,
    publisher_id: str,
    t: float,
    description: str | None = None,
    package_sha: str | None = None,
    solution_package_version: str | None = None,
    system: bool = False,
    solution_id: str | None = None,
) -> dict:
    solution_id = solution_id or new_id()
    row = {
        "solutionid": solution_id,
        "uniquename": unique_name,
        "friendlyname": friendly_name,
        "version": version,
        "ismanaged": managed,
        "isvisible": visible,
        "isapimanaged": False,
        "installedon": iso(t),
        "updatedon": iso(t),
        "createdon": iso(t),
        "modifiedon": iso(t),
        "description": description,
        "solutionpackageversion": solution_package_version,
        "solutiontype": 0,
        "_publisherid_value": publisher_id,
        "_parentsolutionid_value": None,
        "_organizationid_value": org["organization_id"],
        "_createdby_value": None,
        "_modifiedby_value": None,
        "upgradeinfo": None,
        "templatesuffix": None,
        "versionnumber": bump(org),
        "emu_package_sha": package_sha,
        "emu_system": system,
    }
    org["solutions"][solution_id] = row
    return row


def bump(org: dict) -> int:
    """Next row version of the org (``@odata.etag`` W/"n")."""
    org["row_version"] = org.get("row_version", 1000000) + 1
    return org["row_version"]


def find_solution(org: dict, unique_name: str) -> dict | None:
    wanted = unique_name.lower()
    for row in org["solutions"].values():
        if row["uniquename"].lower() == wanted:
            return row
    return None


def touch(org: dict, row: dict, t: float) -> None:
    row["modifiedon"] = iso(t)
    row["versionnumber"] = bump(org)


# --------------------------------------------------------------------------------------------------
# Components and tables
# --------------------------------------------------------------------------------------------------
def solution_component_keys(org: dict, solution_id: str) -> set[str]:
    return {key for key, entry in org["components"].items() if solution_id in entry["solutions"]}


def add_components(org: dict, solution_id: str, package: SolutionPackage, t: float) -> None:
    """Attach every component of ``package`` to the solution (creating components the org lacks)."""
    roots = package.root_components
    tables = {table.logical_name: table for table in package.tables}
    for component in package.components:
        entry = org["components"].get(component.key)
        if entry is None:
            entry = {
                "component": component.to_dict(),
                "objectid": component.id or stable_id("component", component.key),
                "solutions": {},
            }
            org["components"][component.key] = entry
        is_root = any(
            root.type == component.type
            and (
                (root.schema_name and root.schema_name.lower() == component.name.lower())
                or (root.id and root.id == component.id)
            )
            for root in roots
        )
        membership = entry["solutions"].get(solution_id)
        if membership is None:
            entry["solutions"][solution_id] = {"added": t, "root": is_root, "modified": t}
        else:
            membership["modified"] = t
        if component.type == 1:
            ensure_table(org, tables.get(component.name.lower()), component, solution_id, t)


def ensure_table(org: dict, definition: TableDef | None, component: Component, solution_id: str, t: float) -> None:
    logical = component.name.lower()
    table = org["tables"].get(logical)
    if table is None:
        table = {
            "logical_name": logical,
            "schema_name": definition.schema_name if definition else component.name,
            "display_name": definition.display_name if definition else component.name,
            "collection_name": definition.collection_name if definition else component.name,
            "entity_set_name": definition.entity_set_name if definition else logical + "s",
            "columns": [list(c) for c in definition.columns] if definition else [],
            "custom": definition.custom if definition else False,
            "rows": seeded_row_count(logical),
            "metadata_id": stable_id("table", logical),
            "object_type_code": SYSTEM_OBJECT_TYPE_CODES.get(logical, org["next_object_type_code"]),
            "created_on": t,
        }
        if logical not in SYSTEM_OBJECT_TYPE_CODES:
            org["next_object_type_code"] += 1
        org["tables"][logical] = table
    elif definition is not None:
        known = {c[0] for c in table["columns"]}
        table["columns"].extend([list(c) for c in definition.columns if c[0] not in known])


def release_components(
    org: dict, solution_id: str, keep: set[str] | None = None, reassign_to: str | None = None
) -> list[dict]:
    """Detach the solution from its components except ``keep``; delete the ones nobody holds any more.

    With ``reassign_to`` (unmanaged uninstall) the components move to that solution instead of being
    deleted: unmanaged components stay in the org when their solution container goes away.
    Returns the deleted components.
    """
    deleted = []
    for key in list(org["components"]):
        entry = org["components"][key]
        if solution_id not in entry["solutions"] or (keep is not None and key in keep):
            continue
        membership = entry["solutions"].pop(solution_id)
        if entry["solutions"]:
            continue
        if reassign_to is not None:
            entry["solutions"][reassign_to] = membership
            continue
        del org["components"][key]
        deleted.append(entry)
        component = entry["component"]
        if component["type"] == 1:
            table = org["tables"].get(component["name"].lower())
            if table is not None and table.get("custom"):
                del org["tables"][component["name"].lower()]  # the table goes, and its rows with it
    return deleted


def missing_dependencies(org: dict, package: SolutionPackage) -> list:
    """The package's MissingDependencies that this org cannot satisfy (docs/dataverse.md §11.2, §1.6).

    A required component is present when the org holds it (any solution brought it), when the package
    itself brings it, or when its ``solution="Name (version)"`` names a *managed* solution installed
    here (platform components are not modelled one by one; see unconfirmed.PLATFORM_SOLUTIONS). A
    component the source org only had unmanaged (``solution="Active"``) must already exist here.
    """
    managed_installed = {row["uniquename"].lower() for row in org["solutions"].values() if row["ismanaged"]}
    own = {component.key for component in package.components}
    missing = []
    for dependency in package.missing_dependencies:
        keys = dependency.required_keys()
        if any(key in org["components"] or key in own for key in keys):
            continue
        required_solution = dependency.required_solution
        if required_solution and required_solution.lower() in managed_installed:
            continue
        missing.append(dependency)
    return missing


# --------------------------------------------------------------------------------------------------
# Solution history (ENT-HIST, docs/dataverse.md §9)
# --------------------------------------------------------------------------------------------------
def history_start(
    org: dict,
    *,
    name: str,
    solution_id: str | None,
    version: str,
    publisher: dict | None,
    operation: int,
    suboperation: int,
    managed: bool,
    overwrite: bool,
    t: float,
    correlation_id: str,
    package_name: str | None = None,
    publisher_name: str | None = None,
) -> dict:
    history_id = new_id()
    row = {
        "msdyn_solutionhistoryid": history_id,
        "msdyn_name": name,
        "msdyn_solutionid": solution_id,
        "msdyn_solutionversion": version,
        "msdyn_publisherid": publisher["publisherid"] if publisher else None,
        "msdyn_publishername": publisher["uniquename"] if publisher else publisher_name,
        "msdyn_packagename": package_name or name,
        "msdyn_packageversion": version,
        "msdyn_operation": operation,
        "msdyn_suboperation": suboperation,
        "msdyn_status": 0,
        "msdyn_result": None,
        "msdyn_starttime": iso(t),
        "msdyn_endtime": None,
        "msdyn_totaltime": None,
        "msdyn_ismanaged": managed,
        "msdyn_ispatch": False,
        "msdyn_isoverwritecustomizations": overwrite,
        "msdyn_errorcode": None,
        "msdyn_exceptionmessage": None,
        "msdyn_exceptionstack": None,
        "msdyn_activityid": new_id(),
        "msdyn_correlationid": correlation_id,
        "msdyn_maxretries": 0,
        "msdyn_retrycount": 0,
        "createdon": iso(t),
        "modifiedon": iso(t),
        "versionnumber": bump(org),
        "emu_start": t,
    }
    org["history"][history_id] = row
    return row


def history_finish(
    org: dict,
    row: dict,
    *,
    t: float,
    success: bool,
    error_code: str | None = None,
    message: str | None = None,
    solution_id: str | None = None,
    suboperation: int | None = None,
) -> None:
    row["msdyn_status"] = 1
    row["msdyn_result"] = success
    row["msdyn_endtime"] = iso(t)
    row["msdyn_totaltime"] = max(0, round(t - row["emu_start"]))
    if solution_id:
        row["msdyn_solutionid"] = solution_id
        solution = org["solutions"].get(solution_id)
        if solution is not None and not row["msdyn_publisherid"]:
            row["msdyn_publisherid"] = solution["_publisherid_value"]
    if suboperation is not None:
        row["msdyn_suboperation"] = suboperation
    if not success:
        row["msdyn_errorcode"] = error_code
        row["msdyn_exceptionmessage"] = (message or "")[:10000]
    touch(org, row, t)


# --------------------------------------------------------------------------------------------------
# System users (WhoAmI, systemusers)
# --------------------------------------------------------------------------------------------------
def ensure_application_user(org: dict, client_id: str, object_id: str, display_name: str) -> dict:
    """The application user a registered client maps to (docs/glossary.md: service principal / application user)."""
    for row in org["systemusers"].values():
        if row["applicationid"] == client_id:
            return row
    t = now()
    user_id = stable_id("systemuser", org["organization_id"], client_id)
    row = {
        "systemuserid": user_id,
        "fullname": f"# {display_name}",
        "firstname": "#",
        "lastname": display_name,
        "domainname": f"{client_id}@emulator.local",
        "internalemailaddress": f"{client_id}@emulator.local",
        "applicationid": client_id,
        "azureactivedirectoryobjectid": object_id,
        "isdisabled": False,
        "accessmode": 4,  # Non-interactive (systemuser.md AccessMode choices)
        "_businessunitid_value": org["business_unit_id"],
        "createdon": iso(t),
        "modifiedon": iso(t),
        "versionnumber": bump(org),
    }
    org["systemusers"][user_id] = row
    return row


def ensure_person_user(org: dict, identity: dict) -> dict:
    for row in org["systemusers"].values():
        if row["azureactivedirectoryobjectid"] == identity["object_id"]:
            return row
    t = now()
    user_id = stable_id("systemuser", org["organization_id"], identity["object_id"])
    first, _, last = identity["display_name"].partition(" ")
    row = {
        "systemuserid": user_id,
        "fullname": identity["display_name"],
        "firstname": first,
        "lastname": last or first,
        "domainname": identity["username"],
        "internalemailaddress": identity["username"],
        "applicationid": None,
        "azureactivedirectoryobjectid": identity["object_id"],
        "isdisabled": False,
        "accessmode": 0,
        "_businessunitid_value": org["business_unit_id"],
        "createdon": iso(t),
        "modifiedon": iso(t),
        "versionnumber": bump(org),
    }
    org["systemusers"][user_id] = row
    return row
