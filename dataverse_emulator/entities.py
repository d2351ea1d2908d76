"""The tables the emulator serves over OData: their entity sets, columns and types.

Column names and choice values are the Web API names from the table references docs/dataverse.md cites:
solution (ENT-SOL, docs/dataverse.md §3.1), solutioncomponent (ENT-SOLCOMP, 3.2), publisher (3.3),
asyncoperation (ENT-ASYNC, 7.1), importjob (ENT-IMPJOB, 8.1), msdyn_solutionhistory (ENT-HIST, 9) and
systemuser (MicrosoftDocs/powerapps-docs reference/entities/systemuser.md: systemuserid, fullname,
domainname, applicationid, azureactivedirectoryobjectid, isdisabled, accessmode 4 = Non-interactive).
Object type codes of the first-party tables are the well-known ones (solution 7100, publisher 7101,
solutioncomponent 7103, asyncoperation 4700, importjob 4413, systemuser 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import unconfirmed


@dataclass(frozen=True)
class Field:
    """One column as the Web API exposes it. ``type`` drives $filter typing and formatted values."""

    name: str
    type: str  # guid | string | memo | int | double | bool | datetime | picklist | lookup
    labels: dict[int | bool, str] | None = None  # choice labels (formatted values)
    target: str | None = None  # lookups: the entity set the value points to
    navigation: str | None = None  # lookups: the single-valued navigation property name


@dataclass(frozen=True)
class EntitySet:
    """An entity set (``solutions``) and its entity type (``solution``)."""

    name: str
    logical_name: str
    primary_key: str
    primary_name: str
    object_type_code: int
    display_name: str
    display_collection_name: str
    fields: tuple[Field, ...]
    etag: bool = True
    ownership: str = "OrganizationOwned"
    _by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.name: f for f in self.fields})

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    def navigation(self, name: str) -> Field | None:
        for candidate in self.fields:
            if candidate.navigation == name:
                return candidate
        return None

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


YES_NO = {True: "Yes", False: "No"}


def _common(*extra: Field) -> tuple[Field, ...]:
    return (
        *extra,
        Field("createdon", "datetime"),
        Field("modifiedon", "datetime"),
        Field("versionnumber", "int"),
    )


SOLUTIONS = EntitySet(
    name="solutions",
    logical_name="solution",
    primary_key="solutionid",
    primary_name="friendlyname",
    object_type_code=7100,
    display_name="Solution",
    display_collection_name="Solutions",
    fields=_common(
        Field("solutionid", "guid"),
        Field("uniquename", "string"),
        Field("friendlyname", "string"),
        Field("version", "string"),
        Field("ismanaged", "bool", labels={True: "Managed", False: "Unmanaged"}),
        Field("isvisible", "bool", labels=YES_NO),
        Field("isapimanaged", "bool", labels=YES_NO),
        Field("installedon", "datetime"),
        Field("updatedon", "datetime"),
        Field("description", "string"),
        Field("solutionpackageversion", "string"),
        Field("solutiontype", "picklist", labels={0: "None", 1: "Snapshot", 2: "Internal"}),
        Field("_publisherid_value", "lookup", target="publishers", navigation="publisherid"),
        Field("_parentsolutionid_value", "lookup", target="solutions", navigation="parentsolutionid"),
        Field("_organizationid_value", "lookup", target="organizations"),
        Field("_createdby_value", "lookup", target="systemusers", navigation="createdby"),
        Field("_modifiedby_value", "lookup", target="systemusers", navigation="modifiedby"),
        Field("upgradeinfo", "string"),
        Field("templatesuffix", "string"),
    ),
)

PUBLISHERS = EntitySet(
    name="publishers",
    logical_name="publisher",
    primary_key="publisherid",
    primary_name="friendlyname",
    object_type_code=7101,
    display_name="Publisher",
    display_collection_name="Publishers",
    fields=_common(
        Field("publisherid", "guid"),
        Field("uniquename", "string"),
        Field("friendlyname", "string"),
        Field("customizationprefix", "string"),
        Field("customizationoptionvalueprefix", "int"),
        Field("description", "string"),
        Field("emailaddress", "string"),
        Field("supportingwebsiteurl", "string"),
        Field("isreadonly", "bool", labels=YES_NO),
    ),
)

SOLUTION_COMPONENTS = EntitySet(
    name="solutioncomponents",
    logical_name="solutioncomponent",
    primary_key="solutioncomponentid",
    primary_name="",
    object_type_code=7103,
    display_name="Solution Component",
    display_collection_name="Solution Components",
    fields=_common(
        Field("solutioncomponentid", "guid"),
        Field("_solutionid_value", "lookup", target="solutions", navigation="solutionid"),
        Field("componenttype", "picklist"),
        Field("objectid", "guid"),
        Field(
            "rootcomponentbehavior",
            "picklist",
            labels={0: "Include Subcomponents", 1: "Do not include subcomponents", 2: "Include As Shell Only"},
        ),
        Field("_rootsolutioncomponentid_value", "lookup", target="solutioncomponents"),
        Field("ismetadata", "bool", labels=YES_NO),
    ),
)

ASYNC_STATE_LABELS = {0: "Ready", 1: "Suspended", 2: "Locked", 3: "Completed"}
ASYNC_STATUS_LABELS = {
    0: "Waiting For Resources",
    10: "Waiting",
    20: "In Progress",
    21: "Pausing",
    22: "Canceling",
    30: "Succeeded",
    31: "Failed",
    32: "Canceled",
}
ASYNC_OPERATION_TYPES = {
    54: "Execute Async Request",
    93: "Import Solution Metadata",
    202: "Export Solution Async Operation",
    203: "Import Solution Async Operation",
    204: "PublishAll",
    207: "DeleteAndPromote Async Operation",
    208: "UninstallSolution Async Operation",
    211: "StageAndUpgrade Async Operation",
}

ASYNC_OPERATIONS = EntitySet(
    name="asyncoperations",
    logical_name="asyncoperation",
    primary_key="asyncoperationid",
    primary_name="name",
    object_type_code=4700,
    display_name="System Job",
    display_collection_name="System Jobs",
    ownership="UserOwned",
    fields=_common(
        Field("asyncoperationid", "guid"),
        Field("name", "string"),
        Field("operationtype", "picklist", labels=ASYNC_OPERATION_TYPES),
        Field("statecode", "picklist", labels=ASYNC_STATE_LABELS),
        Field("statuscode", "picklist", labels=ASYNC_STATUS_LABELS),
        Field("message", "memo"),
        Field("friendlymessage", "memo"),
        Field("errorcode", "int"),
        Field("startedon", "datetime"),
        Field("completedon", "datetime"),
        Field("executiontimespan", "double"),
        Field("correlationid", "guid"),
        Field("requestid", "guid"),
        Field("messagename", "string"),
        Field("primaryentitytype", "string"),
        Field("_regardingobjectid_value", "lookup", target="solutions"),
        Field("retrycount", "int"),
        Field("depth", "int"),
        Field("data", "memo"),
        Field("breadcrumbid", "guid"),
        Field("correlationupdatedtime", "datetime"),
        Field("_ownerid_value", "lookup", target="systemusers"),
    ),
)

IMPORT_JOBS = EntitySet(
    name="importjobs",
    logical_name="importjob",
    primary_key="importjobid",
    primary_name="name",
    object_type_code=4413,
    display_name="Import Job",
    display_collection_name="Import Jobs",
    fields=_common(
        Field("importjobid", "guid"),
        Field("name", "string"),
        Field("solutionname", "string"),
        Field("solutionid", "guid"),
        Field("progress", "double"),
        Field("data", "memo"),
        Field("startedon", "datetime"),
        Field("completedon", "datetime"),
        Field("importcontext", "string"),
        Field("operationcontext", "string"),
        Field("_createdby_value", "lookup", target="systemusers", navigation="createdby"),
    ),
)

HISTORY_OPERATIONS = {
    0: "Import",
    1: "Uninstall",
    2: "Export",
    3: "Publish",
    4: "PublishAll",
    5: "LanguageProvision",
    6: "ImportTranslation",
    7: "RibbonMetadataGeneration",
    8: "WorkflowSetState",
    9: "None",
}
HISTORY_SUBOPERATIONS = {0: "None", 1: "New", 2: "Upgrade", 3: "Update", 4: "Delete"}

SOLUTION_HISTORIES = EntitySet(
    name="msdyn_solutionhistories",
    logical_name="msdyn_solutionhistory",
    primary_key="msdyn_solutionhistoryid",
    primary_name="msdyn_name",
    object_type_code=unconfirmed.SOLUTION_HISTORY_OBJECT_TYPE_CODE,
    display_name="Solution History",
    display_collection_name="Solution History",
    fields=_common(
        Field("msdyn_solutionhistoryid", "guid"),
        Field("msdyn_name", "string"),
        Field("msdyn_solutionid", "string"),
        Field("msdyn_solutionversion", "string"),
        Field("msdyn_publisherid", "string"),
        Field("msdyn_publishername", "string"),
        Field("msdyn_packagename", "string"),
        Field("msdyn_packageversion", "string"),
        Field("msdyn_operation", "picklist", labels=HISTORY_OPERATIONS),
        Field("msdyn_suboperation", "picklist", labels=HISTORY_SUBOPERATIONS),
        Field("msdyn_status", "picklist", labels={0: "Started", 1: "Completed"}),
        Field("msdyn_result", "bool", labels={True: "Success", False: "Failure"}),
        Field("msdyn_starttime", "datetime"),
        Field("msdyn_endtime", "datetime"),
        Field("msdyn_totaltime", "int"),
        Field("msdyn_ismanaged", "bool", labels=YES_NO),
        Field("msdyn_ispatch", "bool", labels=YES_NO),
        Field("msdyn_isoverwritecustomizations", "bool", labels=YES_NO),
        Field("msdyn_errorcode", "string"),
        Field("msdyn_exceptionmessage", "memo"),
        Field("msdyn_exceptionstack", "memo"),
        Field("msdyn_activityid", "string"),
        Field("msdyn_correlationid", "string"),
        Field("msdyn_maxretries", "int"),
        Field("msdyn_retrycount", "int"),
    ),
)

# solutionhistorydata (entity set solutionhistories), the newer read-only record of solution operations
# beside msdyn_solutionhistories: RetrieveMultiple only, OwnershipType None, errorcode an Integer, result an
# Integer 0/1, operation 0 Import / 1 Uninstall / 2 Export, status 0 Start / 1 End
# (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/solutionhistorydata).
SOLUTION_HISTORY_DATA = EntitySet(
    name="solutionhistories",
    logical_name="solutionhistorydata",
    primary_key="solutionhistorydataid",
    primary_name="solutionname",
    object_type_code=unconfirmed.SOLUTION_HISTORY_DATA_OBJECT_TYPE_CODE,
    display_name="SolutionHistoryData",
    display_collection_name="SolutionHistoryDatas",
    etag=False,
    ownership="None",
    fields=(
        Field("solutionhistorydataid", "guid"),
        Field("solutionname", "string"),
        Field("solutionid", "guid"),
        Field("solutionversion", "string"),
        Field("publishername", "string"),
        Field("packagename", "string"),
        Field("packageversion", "string"),
        Field("operation", "picklist", labels={0: "Import", 1: "Uninstall", 2: "Export"}),
        Field("suboperation", "picklist", labels=HISTORY_SUBOPERATIONS),
        Field("status", "picklist", labels={0: "Start", 1: "End"}),
        Field("result", "int"),
        Field("starttime", "datetime"),
        Field("endtime", "datetime"),
        Field("ismanaged", "bool", labels=YES_NO),
        Field("ispatch", "bool", labels=YES_NO),
        Field("isoverwritecustomizations", "bool", labels=YES_NO),
        Field("ismicrosoftpublisher", "bool", labels=YES_NO),
        Field("errorcode", "int"),
        Field("exceptionmessage", "memo"),
        Field("exceptionstack", "memo"),
        Field("activityid", "guid"),
        Field("correlationid", "guid"),
        Field("description", "string"),
    ),
)

SYSTEM_USERS = EntitySet(
    name="systemusers",
    logical_name="systemuser",
    primary_key="systemuserid",
    primary_name="fullname",
    object_type_code=8,
    display_name="User",
    display_collection_name="Users",
    ownership="BusinessOwned",
    fields=_common(
        Field("systemuserid", "guid"),
        Field("fullname", "string"),
        Field("firstname", "string"),
        Field("lastname", "string"),
        Field("domainname", "string"),
        Field("internalemailaddress", "string"),
        Field("applicationid", "guid"),
        Field("azureactivedirectoryobjectid", "guid"),
        Field("isdisabled", "bool", labels={True: "Disabled", False: "Enabled"}),
        Field(
            "accessmode",
            "picklist",
            labels={
                0: "Read-Write",
                1: "Administrative",
                2: "Read",
                3: "Support User",
                4: "Non-interactive",
                5: "Delegated Admin",
            },
        ),
        Field("_businessunitid_value", "lookup", target="businessunits"),
    ),
)

# Security roles and privileges (security.py): role, privilege, roleprivileges (roleprivilegescollection) and
# systemuserroles (systemuserrolescollection) as the Web API reference pages name their columns
# (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/role, …/privilege,
# …/roleprivileges). Object type codes: role 1036, privilege 1023, roleprivileges 1037, systemuserroles 15.
ROLES = EntitySet(
    name="roles",
    logical_name="role",
    primary_key="roleid",
    primary_name="name",
    object_type_code=1036,
    display_name="Security Role",
    display_collection_name="Security Roles",
    ownership="BusinessOwned",
    fields=_common(
        Field("roleid", "guid"),
        Field("name", "string"),
        Field("description", "string"),
        Field("ismanaged", "bool", labels={True: "Managed", False: "Unmanaged"}),
        Field("_businessunitid_value", "lookup", target="businessunits"),
    ),
)

PRIVILEGES = EntitySet(
    name="privileges",
    logical_name="privilege",
    primary_key="privilegeid",
    primary_name="name",
    object_type_code=1023,
    display_name="Privilege",
    display_collection_name="Privileges",
    etag=False,
    ownership="None",
    fields=(
        Field("privilegeid", "guid"),
        Field("name", "string"),
        Field("accessright", "int"),
        Field("canbebasic", "bool", labels=YES_NO),
        Field("canbelocal", "bool", labels=YES_NO),
        Field("canbedeep", "bool", labels=YES_NO),
        Field("canbeglobal", "bool", labels=YES_NO),
    ),
)

ROLE_PRIVILEGES = EntitySet(
    name="roleprivilegescollection",
    logical_name="roleprivileges",
    primary_key="roleprivilegeid",
    primary_name="",
    object_type_code=1037,
    display_name="Role Privilege",
    display_collection_name="Role Privileges",
    etag=False,
    ownership="None",
    fields=(
        Field("roleprivilegeid", "guid"),
        Field("roleid", "guid"),
        Field("privilegeid", "guid"),
        Field("privilegedepthmask", "int"),
        Field("ismanaged", "bool", labels=YES_NO),
    ),
)

SYSTEM_USER_ROLES = EntitySet(
    name="systemuserrolescollection",
    logical_name="systemuserroles",
    primary_key="systemuserroleid",
    primary_name="",
    object_type_code=15,
    display_name="User Role",
    display_collection_name="User Roles",
    etag=False,
    ownership="None",
    fields=(
        Field("systemuserroleid", "guid"),
        Field("systemuserid", "guid"),
        Field("roleid", "guid"),
    ),
)

ENTITY_SETS: dict[str, EntitySet] = {
    es.name: es
    for es in (
        SOLUTIONS,
        PUBLISHERS,
        SOLUTION_COMPONENTS,
        ASYNC_OPERATIONS,
        IMPORT_JOBS,
        SOLUTION_HISTORIES,
        SOLUTION_HISTORY_DATA,
        SYSTEM_USERS,
        ROLES,
        PRIVILEGES,
        ROLE_PRIVILEGES,
        SYSTEM_USER_ROLES,
    )
}
# Collection-valued navigation properties the emulator serves: (entity set, name) -> target entity set.
COLLECTION_NAVIGATIONS = {
    ("systemusers", "systemuserroles_association"): "roles",
    ("roles", "roleprivileges_association"): "privileges",
}
BY_LOGICAL_NAME: dict[str, EntitySet] = {es.logical_name: es for es in ENTITY_SETS.values()}

# EntityDefinitions (EntityMetadata, query-metadata-web-api.md): the properties the emulator knows.
# Label-valued properties (DisplayName, …) are complex and cannot be filtered (same doc).
ENTITY_DEFINITIONS = EntitySet(
    name="EntityDefinitions",
    logical_name="EntityMetadata",
    primary_key="MetadataId",
    primary_name="LogicalName",
    object_type_code=0,
    display_name="Entity",
    display_collection_name="Entities",
    etag=False,
    fields=(
        Field("MetadataId", "guid"),
        Field("LogicalName", "string"),
        Field("SchemaName", "string"),
        Field("EntitySetName", "string"),
        Field("LogicalCollectionName", "string"),
        Field("CollectionSchemaName", "string"),
        Field("PrimaryIdAttribute", "string"),
        Field("PrimaryNameAttribute", "string"),
        Field("ObjectTypeCode", "int"),
        Field("IsCustomEntity", "bool"),
        Field("IsManaged", "bool"),
        Field("IsActivity", "bool"),
        Field("IsIntersect", "bool"),
        Field("IsPrivate", "bool"),
        Field("OwnershipType", "string"),
        Field("TableType", "string"),
        Field("IntroducedVersion", "string"),
        Field("DisplayName", "complex"),
        Field("DisplayCollectionName", "complex"),
        Field("Description", "complex"),
        Field("HasChanged", "bool"),
    ),
)

ATTRIBUTE_DEFINITIONS = EntitySet(
    name="Attributes",
    logical_name="AttributeMetadata",
    primary_key="MetadataId",
    primary_name="LogicalName",
    object_type_code=0,
    display_name="Attribute",
    display_collection_name="Attributes",
    etag=False,
    fields=(
        Field("MetadataId", "guid"),
        Field("LogicalName", "string"),
        Field("SchemaName", "string"),
        Field("EntityLogicalName", "string"),
        Field("AttributeType", "string"),
        Field("IsCustomAttribute", "bool"),
        Field("IsPrimaryId", "bool"),
        Field("IsPrimaryName", "bool"),
        Field("IsManaged", "bool"),
        Field("DisplayName", "complex"),
    ),
)
