"""Which Dataverse privileges the portal's deploying identity needs, per operation, and which it lacks.

Documented: the privileges of the ImportSolution and ExportSolution messages
(https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8) and
https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg328430(v=crm.8)),
"the exact set of privileges needed depends on the entity types specified in the request". Which of them
every request needs and which depend on the solution's components, and what the async, stage-and-upgrade,
delete-and-promote and uninstall actions need (no list is documented), are the portal's assumptions in
``alm_portal.dataverse.unconfirmed``. Besides the actions, the portal reads what it submitted
(``asyncoperations``, ``importjobs``, ``solutions`` with their ``publisherid``), which needs those tables'
read privileges.

A check compares these needs with what ``RetrieveUserPrivileges`` says the identity holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alm_portal.dataverse import unconfirmed

IMPORT_SOLUTION_PRIVILEGES_URL = (
    "https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8)"
)
EXPORT_SOLUTION_PRIVILEGES_URL = (
    "https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg328430(v=crm.8)"
)

# "ImportSolution message privileges" and "ExportSolution message privileges", as listed there.
IMPORT_SOLUTION_PRIVILEGES: tuple[str, ...] = (
    "prvCreateCustomization",
    "prvReadArticleTemplate",
    "prvReadBusinessUnit",
    "prvReadConnectionRole",
    "prvReadContractTemplate",
    "prvReadCustomization",
    "prvReadEmailTemplate",
    "prvReadEntityMap",
    "prvReadFieldSecurityProfile",
    "prvReadMailMergeTemplate",
    "prvReadPluginAssembly",
    "prvReadQuery",
    "prvReadReport",
    "prvReadRole",
    "prvReadSdkMessageProcessingStep",
    "prvReadSolution",
    "prvReadSystemForm",
    "prvReadWebResource",
    "prvWriteArticleTemplate",
    "prvWriteConnectionRole",
    "prvWriteContractTemplate",
    "prvWriteCustomization",
    "prvWriteOrganization",
    "prvWriteQuery",
    "prvWriteSolution",
    "prvWriteSystemForm",
)
EXPORT_SOLUTION_PRIVILEGES: tuple[str, ...] = (
    "prvReadArticleTemplate",
    "prvReadAttributeMap",
    "prvReadBusinessUnit",
    "prvReadConnectionRole",
    "prvReadContractTemplate",
    "prvReadCustomization",
    "prvReadEmailTemplate",
    "prvReadEntityMap",
    "prvReadFieldSecurityProfile",
    "prvReadMailMergeTemplate",
    "prvReadOrganization",
    "prvReadPluginAssembly",
    "prvReadPublisher",
    "prvReadQuery",
    "prvReadReport",
    "prvReadRole",
    "prvReadSavedQueryVisualizations",
    "prvReadSdkMessageProcessingStep",
    "prvReadSolution",
    "prvReadSystemForm",
    "prvReadVisualizationModule",
    "prvReadWebResource",
    "prvReadWorkflow",
)

EXPORT, IMPORT, STAGE_AND_UPGRADE, DELETE_AND_PROMOTE, UNINSTALL = (
    "export",
    "import",
    "stage_and_upgrade",
    "delete_and_promote",
    "uninstall",
)
OPERATION_LABELS: Mapping[str, str] = {
    EXPORT: "ExportSolutionAsync",
    IMPORT: "ImportSolutionAsync",
    STAGE_AND_UPGRADE: "StageAndUpgradeAsync",
    DELETE_AND_PROMOTE: "DeleteAndPromoteAsync",
    UNINSTALL: "UninstallSolutionAsync",
}

# Component type codes (solutioncomponent componenttype) of the groups of a parsed solution manifest.
MANIFEST_GROUP_TYPES: Mapping[str, int] = {
    "tables": 1,
    "option_sets": 9,
    "security_roles": 20,
    "workflows": 29,
    "web_resources": 61,
    "site_maps": 62,
    "model_driven_apps": 80,
    "plugin_assemblies": 91,
    "plugin_steps": 92,
    "canvas_apps": 300,
    "custom_connectors": 372,
    "environment_variables": 380,
}


@dataclass(frozen=True)
class PrivilegeNeed:
    """One privilege an operation needs, and why; ``component_types`` non-empty: only for solutions holding
    components of one of those types."""

    privilege: str
    source: str  # "documented", "assumed" or "portal" (a read the portal makes after submitting)
    component_types: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"privilege": self.privilege, "source": self.source, "component_types": list(self.component_types)}


def needs(operation: str) -> list[PrivilegeNeed]:
    """Every privilege ``operation`` may need, the always-needed ones first."""
    if operation not in OPERATION_LABELS:
        raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATION_LABELS)}")
    result: dict[str, PrivilegeNeed] = {}

    def add(privilege: str, source: str, component_types: tuple[int, ...] = ()) -> None:
        existing = result.get(privilege)
        if existing is None:
            result[privilege] = PrivilegeNeed(privilege, source, component_types)
        elif existing.component_types and not component_types:
            result[privilege] = PrivilegeNeed(privilege, existing.source, ())
        elif existing.component_types and component_types:
            merged = tuple(sorted(set(existing.component_types) | set(component_types)))
            result[privilege] = PrivilegeNeed(privilege, existing.source, merged)

    message = unconfirmed.OPERATION_MESSAGE.get(operation)
    if message is not None:
        always = unconfirmed.IMPORT_PRIVILEGES_ALWAYS if message == IMPORT else unconfirmed.EXPORT_PRIVILEGES_ALWAYS
        by_type = (
            unconfirmed.IMPORT_PRIVILEGES_BY_COMPONENT
            if message == IMPORT
            else unconfirmed.EXPORT_PRIVILEGES_BY_COMPONENT
        )
        for privilege in always:
            add(privilege, "documented")
        for component_type, privileges in sorted(by_type.items()):
            for privilege in privileges:
                add(privilege, "documented", (component_type,))
    for privilege in unconfirmed.OPERATION_PRIVILEGES.get(operation, ()):
        add(privilege, "assumed")
    for privilege in unconfirmed.PORTAL_READ_PRIVILEGES.get(operation, ()):
        add(privilege, "portal")
    return sorted(result.values(), key=lambda need: (bool(need.component_types), need.privilege))


def missing(held: Collection[str], operation: str, component_types: Iterable[int] | None = None) -> list[PrivilegeNeed]:
    """The needs of ``operation`` that ``held`` lacks. With ``component_types`` (a solution's), only those
    this solution needs; without, every one that some solution may need."""
    present = set(held)
    types = None if component_types is None else set(component_types)
    return [
        need
        for need in needs(operation)
        if need.privilege not in present
        and (types is None or not need.component_types or types.intersection(need.component_types))
    ]


def manifest_component_types(manifest: Mapping[str, Any]) -> set[int]:
    """Component type codes of a parsed solution manifest (``SolutionManifest.to_dict()``)."""
    types = {code for group, code in MANIFEST_GROUP_TYPES.items() if manifest.get(group)}
    for root in manifest.get("root_components") or []:
        if isinstance(root, Mapping) and isinstance(root.get("type_code"), int):
            types.add(int(root["type_code"]))
    return types


def grant_hint(privileges: Iterable[str]) -> str:
    names = ", ".join(sorted(set(privileges)))
    return f"give the application user a security role that holds {names} (System Administrator holds every privilege)"
