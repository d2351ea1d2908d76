"""Security roles and the privileges they grant, and the privilege checks of the Web API.

In a real tenant the deploying identity is an application user with security roles, and a missing
privilege is refused with HTTP 403 and code 0x80040220 (-2147220960, "Principal user is missing privilege
on OTC for entity": https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/client-errors).

* Roles: "System Administrator" holds every privilege; "System Customizer" every modelled one but
  prvWriteOrganization (the "Organization entity privileges" page gives it to System Administrator and
  CEO-Business Manager only); custom roles hold the privileges they were given (admin API). Each user holds
  roles; a new application user gets System Administrator, as the emulator granted everything before roles
  existed (``unconfirmed.DEFAULT_APPLICATION_USER_ROLES``).
* ImportSolution / ExportSolution need the privileges Microsoft lists for the messages ("ImportSolution
  message privileges", "ExportSolution message privileges"), whose "exact set ... depends on the entity types
  specified in the request": the emulator requires the ones every request needs plus those of the component
  types the package holds (``unconfirmed`` says which is which). The documentation gives no list for the
  other solution actions: their sets are ``unconfirmed.ACTION_PRIVILEGES``. Reading an entity set needs its
  read privilege (``READ_PRIVILEGES``).
* ``RetrieveUserPrivileges`` and the entity sets roles, privileges, roleprivilegescollection and
  systemuserrolescollection read the same data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import errors, orgs, unconfirmed
from .errors import DataverseError
from .store import iso, now

# Web API privilege depth enum (PrivilegeDepth: Basic 0, Local 1, Deep 2, Global 3).
DEPTHS = ("Basic", "Local", "Deep", "Global")

# Privilege name -> (GUID, entity logical name or None, object type code or None, access right).
# GUIDs: from the Dynamics CRM 2015/2016 "entity privileges" pages where they are given (solution, publisher,
# organization, customization); the rest are the emulator's own, the same in every org.
_DOCUMENTED_IDS = {
    "prvCreateSolution": "14dd992d-2858-4547-91e9-139ca92d3932",
    "prvReadSolution": "b64e92c8-5d2a-4052-a026-1b73eff9cebf",
    "prvWriteSolution": "bfab24a8-3987-40ec-9828-8cfa938ee756",
    "prvDeleteSolution": "9ef73297-f404-4630-ad16-7340265c6d08",
    "prvCreatePublisher": "b4611d30-e2d5-4886-9929-48fde38dc4ee",
    "prvReadPublisher": "8cdebade-6187-440d-b041-5b3f3d84db53",
    "prvWritePublisher": "835da693-9268-4c1c-95e0-b2f4b802f142",
    "prvReadOrganization": "dbd3ad17-b6bd-46c8-8db7-179fec82c937",
    "prvWriteOrganization": "9f7b7e89-e5f6-41fd-8390-f06a7ec66d25",
    "prvCreateCustomization": "30713160-c5ed-43c2-9b66-5923cd7236b1",
    "prvReadCustomization": "7bb3b531-ac45-4977-89c8-b99768e55ab8",
    "prvWriteCustomization": "e7a46107-f750-47a0-add6-2ae60c3fe413",
    "prvDeleteCustomization": "10b166f6-2f94-42de-8049-1462d23a0e62",
}
# Entity of the entity-bound privileges (for the "on OTC=… for entity '…'" part of the message).
_ENTITIES = {
    "Solution": ("solution", 7100),
    "Publisher": ("publisher", 7101),
    "Organization": ("organization", 1019),
    "AsyncOperation": ("asyncoperation", 4700),
    "ImportJob": ("importjob", 4413),
    "User": ("systemuser", 8),
    "Role": ("role", 1036),
    "BusinessUnit": ("businessunit", 10),
    "Query": ("savedquery", 1039),
    "SystemForm": ("systemform", 1030),
    "WebResource": ("webresource", 9333),
    "Workflow": ("workflow", 4703),
    "PluginAssembly": ("pluginassembly", 4605),
    "SdkMessageProcessingStep": ("sdkmessageprocessingstep", 4608),
    "EmailTemplate": ("template", 2010),
    "Report": ("report", 9100),
    "ConnectionRole": ("connectionrole", 3231),
    "msdyn_solutionhistory": ("msdyn_solutionhistory", unconfirmed.SOLUTION_HISTORY_OBJECT_TYPE_CODE),
}


def _privilege_names() -> list[str]:
    names = set(_DOCUMENTED_IDS)
    names |= set(unconfirmed.IMPORT_SOLUTION_PRIVILEGES) | set(unconfirmed.EXPORT_SOLUTION_PRIVILEGES)
    names |= set(unconfirmed.PUBLISH_ALL_XML_PRIVILEGES)
    for action_set in unconfirmed.ACTION_PRIVILEGES.values():
        names |= set(action_set)
    for function_set in unconfirmed.FUNCTION_PRIVILEGES.values():
        names |= set(function_set)
    names |= {p for p in unconfirmed.READ_PRIVILEGES.values() if p}
    names |= set(unconfirmed.WRITE_PRIVILEGES.values())
    names |= {"prvReadUser", "prvReadRole", "prvWriteRole", "prvCreateRole", "prvAssignRole"}
    return sorted(names)


PRIVILEGES: dict[str, dict[str, Any]] = {}
for _name in _privilege_names():
    _access = next((a for a in ("Create", "Read", "Write", "Delete", "Assign") if _name.startswith("prv" + a)), "")
    _entity = _name[3 + len(_access) :]
    _logical, _otc = _ENTITIES.get(_entity, (None, None))
    PRIVILEGES[_name] = {
        "privilegeid": _DOCUMENTED_IDS.get(_name) or orgs.stable_id("privilege", _name),
        "name": _name,
        "accessright": {"Read": 1, "Write": 2, "Create": 32, "Delete": 65536, "Assign": 524288}.get(_access, 0),
        "canbebasic": _logical is not None,
        "canbelocal": _logical is not None,
        "canbedeep": _logical is not None,
        "canbeglobal": True,
        "emu_entity": _logical,
        "emu_otc": _otc,
    }
BY_ID = {row["privilegeid"]: name for name, row in PRIVILEGES.items()}

SYSTEM_ADMINISTRATOR = "System Administrator"
SYSTEM_CUSTOMIZER = "System Customizer"
BUILT_IN_ROLES: dict[str, set[str]] = {
    SYSTEM_ADMINISTRATOR: set(PRIVILEGES),
    SYSTEM_CUSTOMIZER: set(PRIVILEGES) - set(unconfirmed.SYSTEM_CUSTOMIZER_LACKS),
}


class UnknownPrivilege(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# Roles in an org
# --------------------------------------------------------------------------------------------------
def ensure_roles(org: dict) -> dict[str, dict]:
    """The org's roles, creating the built-in ones in an org saved before roles existed."""
    roles = org.setdefault("roles", {})
    if not roles:
        for name in BUILT_IN_ROLES:
            add_role(org, name, {p: "Global" for p in BUILT_IN_ROLES[name]}, managed=True)
    return roles


def add_role(org: dict, name: str, privileges: dict[str, str], *, managed: bool = False) -> dict:
    """A role with ``privileges`` ({name: depth}); names must be known, depths one of DEPTHS."""
    unknown = sorted(set(privileges) - set(PRIVILEGES))
    if unknown:
        raise UnknownPrivilege(f"unknown privileges {unknown}; known: {sorted(PRIVILEGES)}")
    for depth in privileges.values():
        if depth not in DEPTHS:
            raise UnknownPrivilege(f"privilege depth must be one of {DEPTHS}")
    roles = org.setdefault("roles", {})
    if any(role["name"].lower() == name.lower() for role in roles.values()):
        raise UnknownPrivilege(f"a role named {name!r} exists")
    t = now()
    role_id = orgs.stable_id("role", org["organization_id"], name.lower())
    row = {
        "roleid": role_id,
        "name": name,
        "_businessunitid_value": org["business_unit_id"],
        "ismanaged": managed,
        "iscustomizable": not managed,
        "description": None,
        "createdon": iso(t),
        "modifiedon": iso(t),
        "versionnumber": orgs.bump(org),
        "emu_privileges": dict(sorted(privileges.items())),
    }
    roles[role_id] = row
    return row


def find_role(org: dict, name_or_id: str) -> dict | None:
    roles = ensure_roles(org)
    wanted = name_or_id.strip().lower()
    return roles.get(wanted) or next((r for r in roles.values() if r["name"].lower() == wanted), None)


def user_roles(org: dict, user: dict) -> list[dict]:
    roles = ensure_roles(org)
    if "emu_roles" not in user:
        user["emu_roles"] = [find_role(org, name)["roleid"] for name in unconfirmed.DEFAULT_APPLICATION_USER_ROLES]  # type: ignore[index]
    return [roles[role_id] for role_id in user["emu_roles"] if role_id in roles]


def set_user_roles(org: dict, user: dict, names_or_ids: Iterable[str]) -> list[dict]:
    chosen = []
    for name in names_or_ids:
        role = find_role(org, str(name))
        if role is None:
            raise UnknownPrivilege(f"no role {name!r} in org {org['name']!r}")
        if role["roleid"] not in chosen:
            chosen.append(role["roleid"])
    user["emu_roles"] = chosen
    orgs.touch(org, user, now())
    return user_roles(org, user)


def held_privileges(org: dict, user: dict) -> dict[str, str]:
    """{privilege name: deepest depth} over the user's roles."""
    held: dict[str, str] = {}
    for role in user_roles(org, user):
        for name, depth in role["emu_privileges"].items():
            if name not in held or DEPTHS.index(depth) > DEPTHS.index(held[name]):
                held[name] = depth
    return held


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------
def privilege_denied(org: dict, user: dict, privilege: str) -> DataverseError:
    """403 / 0x80040220 naming the missing privilege, as Dataverse words it."""
    info = PRIVILEGES[privilege]
    roles = user_roles(org, user)
    target = (
        unconfirmed.PRIVILEGE_DENIED_ENTITY.format(otc=info["emu_otc"], entity=info["emu_entity"])
        if info["emu_entity"]
        else ""
    )
    message = unconfirmed.PRIVILEGE_DENIED_MESSAGE.format(
        user=user["systemuserid"],
        roles=len(roles),
        privileges=len(held_privileges(org, user)),
        access_mode=user.get("accessmode", 0),
        privilege=privilege,
        privilege_id=info["privilegeid"],
        target=target,
    )
    return DataverseError(unconfirmed.PRIVILEGE_DENIED_STATUS, errors.PRIVILEGE_DENIED_CODE, message)


def require(org: dict, user: dict, privileges: Iterable[str]) -> None:
    """Raise the 0x80040220 refusal for the first of ``privileges`` the user does not hold."""
    held = held_privileges(org, user)
    for privilege in privileges:
        if privilege not in held:
            raise privilege_denied(org, user, privilege)


def solution_message_privileges(message: str, component_types: Iterable[int | str]) -> list[str]:
    """What ImportSolution / ExportSolution (and their async forms) need for a package with these components."""
    documented = (
        unconfirmed.IMPORT_SOLUTION_PRIVILEGES if message == "import" else unconfirmed.EXPORT_SOLUTION_PRIVILEGES
    )
    if unconfirmed.CHECK_EVERY_DOCUMENTED_PRIVILEGE:
        return list(documented)
    always = unconfirmed.IMPORT_PRIVILEGES_ALWAYS if message == "import" else unconfirmed.EXPORT_PRIVILEGES_ALWAYS
    by_type = (
        unconfirmed.IMPORT_PRIVILEGES_BY_COMPONENT
        if message == "import"
        else unconfirmed.EXPORT_PRIVILEGES_BY_COMPONENT
    )
    needed = list(always)
    for component_type in sorted({str(t) for t in component_types}):
        for privilege in by_type.get(component_type, ()):
            if privilege not in needed:
                needed.append(privilege)
    return needed


def role_privileges_rows(org: dict) -> list[dict]:
    """roleprivileges rows (roleprivilegescollection)."""
    rows = []
    for role in ensure_roles(org).values():
        for name, depth in role["emu_privileges"].items():
            rows.append(
                {
                    "roleprivilegeid": orgs.stable_id("roleprivilege", role["roleid"], name),
                    "roleid": role["roleid"],
                    "privilegeid": PRIVILEGES[name]["privilegeid"],
                    "privilegedepthmask": 1 << DEPTHS.index(depth),
                    "ismanaged": role["ismanaged"],
                }
            )
    return rows


def user_role_rows(org: dict) -> list[dict]:
    """systemuserroles rows (systemuserrolescollection)."""
    rows = []
    for user in org["systemusers"].values():
        for role in user_roles(org, user):
            rows.append(
                {
                    "systemuserroleid": orgs.stable_id("systemuserrole", user["systemuserid"], role["roleid"]),
                    "systemuserid": user["systemuserid"],
                    "roleid": role["roleid"],
                }
            )
    return rows


def privilege_rows() -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("emu_")} for row in PRIVILEGES.values()]


def retrieve_user_privileges(org: dict, user: dict) -> list[dict]:
    """RolePrivilege complex types of RetrieveUserPrivilegesResponse (BusinessUnitId, Depth, PrivilegeId,
    PrivilegeName, RecordFilterId, RecordFilterUniqueName)."""
    return [
        {
            "BusinessUnitId": user.get("_businessunitid_value") or org["business_unit_id"],
            "Depth": depth,
            "PrivilegeId": PRIVILEGES[name]["privilegeid"],
            "PrivilegeName": name,
            "RecordFilterId": "00000000-0000-0000-0000-000000000000",
            "RecordFilterUniqueName": None,
        }
        for name, depth in sorted(held_privileges(org, user).items())
    ]
