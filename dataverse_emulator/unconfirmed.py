"""Every behaviour of the emulator that no source confirmed, in one place, so it is easy to correct.

Each constant says what was guessed and why. The facts and their sources are in docs/dataverse.md; its §15 lists what no
source confirms. When real Dataverse is observed to behave differently, change the value here (and the tests that pin
it), nowhere else.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Caller-chosen ImportJobId on ImportSolutionAsync / StageAndUpgradeAsync. The ImportSolutionAsync reference
# lists ImportJobId as a parameter (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/
# reference/importsolutionasync), so the default honours it. Against it: Microsoft's ServiceClient removes it
# before sending ("remove unsupported parameter") and one third-party test saw an on-premises server answer
# 400 "The parameter 'ImportJobId' in the request payload is not a valid parameter for the operation ...".
# ONE switch, per org (admin route POST /_emulator/orgs/<org>/settings), default below:
#   "honour"  – the importjob gets the caller's id; reusing an id fails "A duplicate import job id already exists"
#               (the default: what the ImportSolutionAsync reference page documents);
#   "reject"  – 400 as observed on-premises.
# The portal's own ALM_IMPORT_JOB_ID_ON_ASYNC stays off either way: it never relies on this.
IMPORT_JOB_ID_ON_ASYNC_DEFAULT = "honour"
IMPORT_JOB_ID_ON_ASYNC_CHOICES = ("reject", "honour")
DUPLICATE_IMPORT_JOB_ID_CODE = "0x80048033"  # ImportSolutionError wrapper; hex of the duplicate-id error unknown
# https://github.com/WaelHamze/dyn365-ce-vsts-tasks/issues/113
DUPLICATE_IMPORT_JOB_ID_MESSAGE = "A duplicate import job id already exists."

# Unknown action parameter (docs/dataverse.md §1.6: message observed on-prem, code unknown).
UNKNOWN_PARAMETER_STATUS = 400
UNKNOWN_PARAMETER_CODE = "0x80060888"
UNKNOWN_PARAMETER_MESSAGE = (
    "The parameter '{parameter}' in the request payload is not a valid parameter for the operation '{operation}'."
)
# A required (non-nullable) parameter missing: message shape guessed from the OData error family.
MISSING_PARAMETER_CODE = "0x80060888"
MISSING_PARAMETER_MESSAGE = "The parameter '{parameter}' is required for the operation '{operation}'."
# Booleans docs/dataverse.md §5.1 lists as non-nullable (OverwriteUnmanagedCustomizations, PublishWorkflows) are
# defaulted to false when absent instead of refused: Microsoft's own clients always send them, so either
# behaviour is invisible to them, and lenient is kinder to other clients.
LENIENT_NON_NULLABLE_BOOLEANS = True

# ---------------------------------------------------------------------------------------------
# One solution operation at a time (docs/dataverse.md §1.6): the 3P observation over the Web API is HTTP 429 with
# code 0x80071151; Microsoft's docs only give the CustomizationLockException text.
CUSTOMIZATION_LOCK_STATUS = 429
CUSTOMIZATION_LOCK_CODE = "0x80071151"
CUSTOMIZATION_LOCK_MESSAGE = (
    "Cannot start the requested operation [{requested}] because there is another [{running}] running at this "
    "moment. Use Solution History for more details."
)
# Operation names inside the brackets (Import, PublishAll are seen in the docs' text; others guessed).
LOCK_NAMES = {
    "import": "Import",
    "stage_and_upgrade": "Import",
    "export": "Export",
    "delete_and_promote": "DeleteAndPromote",
    "uninstall": "Uninstall",
    "publish_all": "PublishAll",
}

# HTTP status of a failed synchronous ImportSolution (docs/dataverse.md §1.6: "expected 400 – inferred").
SYNC_IMPORT_FAILURE_STATUS = 400

# Validation that happens before an async import is accepted. True: a package whose zip or XML cannot be
# read is refused by the request itself (the server must read solution.xml to name the import job).
# False: the request is accepted and the job fails (statuscode 31). Either way the solution rules
# (versions, modes, publisher, missing dependencies) fail inside the job.
STRUCTURAL_ERRORS_FAIL_REQUEST = True
# ExportSolutionAsync of a managed solution: True refuses the request with the export error; False accepts
# it and fails the export job (statuscode 31) with the same error. An unknown name is refused either way.
EXPORT_ASYNC_REFUSES_AT_REQUEST = True

# ---------------------------------------------------------------------------------------------
# Export errors (docs/dataverse.md §1.6: names/messages from the SDK message table; hex UNCONFIRMED).
EXPORT_MISSING_SOLUTION_STATUS = 404
EXPORT_MISSING_SOLUTION_CODE = "0x8004F02D"
EXPORT_MISSING_SOLUTION_MESSAGE = (
    "An error occurred while exporting a solution. The solution does not exist in this system."
)
EXPORT_MANAGED_SOLUTION_STATUS = 400
EXPORT_MANAGED_SOLUTION_CODE = "0x8004F02E"
EXPORT_MANAGED_SOLUTION_MESSAGE = "An error occurred while exporting a solution. Managed solutions cannot be exported."
# DownloadSolutionExportData before the export job finished, or for an unknown ExportJobId.
EXPORT_NOT_READY_CODE = "0x80040217"
EXPORT_NOT_READY_MESSAGE = "The export job {job} has not completed successfully, so there is no file to download."

# Holding solutions (MKR-UPD describes the behaviour; the error texts are guesses).
HOLDING_WITHOUT_BASE_MESSAGE = (
    "The solution {name} cannot be imported as a holding solution because the base solution is not installed "
    "as a managed solution."
)
HOLDING_ALREADY_EXISTS_MESSAGE = (
    "The solution {name} cannot be imported as a holding solution because a holding solution {holding} already "
    "exists. Apply or delete the pending upgrade first."
)
DELETE_AND_PROMOTE_NO_HOLDING_MESSAGE = "There is no holding solution {holding} to promote for the solution {name}."
SOLUTION_NOT_FOUND_STATUS = 404
SOLUTION_NOT_FOUND_CODE = "0x80040217"
SOLUTION_NOT_FOUND_MESSAGE = "Solution '{name}' was not found in the target system."
# StageAndUpgradeAsync of a solution that is not installed yet installs it (inferred from pac's
# --stage-and-upgrade being used for first deployments too). False: the job fails with
# SOLUTION_NOT_FOUND_MESSAGE.
STAGE_AND_UPGRADE_INSTALLS_NEW = True
# The promoted solution keeps the holding solution's id (REF-deleteandpromote: "unique identifier of the
# promoted solution"); a StageAndUpgrade therefore ends with a new solutionid as well.
UPGRADE_KEEPS_SOLUTION_ID = False

# Changing the version of a managed solution through PATCH solutions(<id>) (ENT-SOL lists Version as
# updatable; managed solutions are read-only layers, so the emulator refuses – message guessed).
PATCH_MANAGED_SOLUTION_STATUS = 400
PATCH_MANAGED_SOLUTION_CODE = "0x80048033"
PATCH_MANAGED_SOLUTION_MESSAGE = "Managed solution '{name}' cannot be modified."
PATCH_READ_ONLY_FIELD_MESSAGE = "The property '{field}' of solution cannot be updated."
# UninstallSolutionAsync of a system or platform solution.
UNINSTALL_SYSTEM_SOLUTION_CODE = "0x80048046"
UNINSTALL_SYSTEM_SOLUTION_MESSAGE = "System solution cannot be uninstalled."
# importjob.importcontext / name as the emulator fills them (the entity page lists the columns only).
IMPORT_JOB_CONTEXT = "ImportSolution"

# ---------------------------------------------------------------------------------------------
# Import log (docs/dataverse.md §8.3): the root attributes and the manifest-level error code of a missing-dependency
# failure come from a 3P fixture modelled on a real log (errorcode 0x80048033 wrapping the 0x8004801D text).
IMPORT_LOG_ROOT_ATTRIBUTES = True
IMPORT_LOG_MISSING_DEPENDENCY_ERRORCODE = "0x80048033"
IMPORT_LOG_MISSING_DEPENDENCY_TEXT = (
    "Solution manifest import: FAILURE: The following solution cannot be imported: {name}. Some dependencies are "
    "missing. The missing dependencies are : {xml} , ProductUpdatesOnly : False"
)
# The asyncoperation's message for the same failure: the 0x8004801D text followed by the dependency list.
MISSING_DEPENDENCIES_DETAIL = " The missing dependencies are : {xml}"

# StageSolution (docs/dataverse.md §6): StageSolutionStatus values and SolutionValidationResultType values.
STAGE_STATUS_PASSED = "Passed"
STAGE_STATUS_FAILED = "Failed"
VALIDATION_RESULT_ERROR = "Error"

# ---------------------------------------------------------------------------------------------
# Async operations (ENT-ASYNC): the share of the configured duration spent "Waiting For Resources"
# (statecode 0 / statuscode 0) before "In Progress" (2 / 20). A design choice; Dataverse gives no figure.
ASYNC_WAITING_SHARE = 0.2
# asyncoperation.name per operation type: the operationtype labels of ENT-ASYNC, used as names.
ASYNC_NAMES = {
    202: "Export Solution Async Operation",
    203: "Import Solution Async Operation",
    207: "DeleteAndPromote Async Operation",
    208: "UninstallSolution Async Operation",
    211: "StageAndUpgrade Async Operation",
}

# ---------------------------------------------------------------------------------------------
# Solution history (ENT-HIST, a 2021 page): which operation/suboperation each action records.
HISTORY_SUBOPERATION_FOR_HOLDING_IMPORT = 2  # Upgrade (staged)
HISTORY_OPERATION_FOR_DELETE_AND_PROMOTE = 0  # Import …
HISTORY_SUBOPERATION_FOR_DELETE_AND_PROMOTE = 2  # … Upgrade (the apply step completes the upgrade)
HISTORY_SUBOPERATION_FOR_UNINSTALL = 4  # Delete

# ---------------------------------------------------------------------------------------------
# What a new organisation holds. 3P tools consistently treat Default, Active and Basic as the system
# solutions every environment lists; "System" is the platform's managed base layer (hidden). Flags and
# friendly names are from memory of real environments.
SYSTEM_SOLUTIONS = (
    # uniquename, friendlyname, ismanaged, isvisible, publisher key
    ("System", "System Solution", True, False, "microsoft"),
    ("Active", "Active Solution", False, False, "microsoft"),
    ("Basic", "Basic Solution", True, False, "microsoft"),
    ("Default", "Common Data Services Default Solution", False, True, "default"),
)
# First-party managed solutions assumed installed in every new org, so the platform components that
# corpus packages list as MissingDependencies (docs/dataverse.md §11.2) resolve as they would in a real org.
# Versions are the ones the corpus packages name. Dynamics 365 apps (msdynce_*) are NOT included: a plain
# Dataverse environment lacks them, so packages that need them fail with 0x8004801D, as they would.
PLATFORM_SOLUTIONS = (
    ("AppModuleWebResources", "App Module Web Resources", "2.5"),
    ("MobileOfflineMembership", "Mobile Offline Membership", "1.0.0.3"),
    ("AppModule", "App Module", "9.1.23083.230816003"),
    ("BaseCustomControlsCore", "Base Custom Controls Core", "9.0.2401.4019"),
    ("ActivityFeedsCore", "Activity Feeds Core", "9.0.0.0005"),
    ("msdyn_PowerConnectors", "Power Connectors", "9.2.15.0"),
    ("msdyn_AppDeploymentMetadata", "App Deployment Metadata", "9.1.1.8"),
    ("PowerVirtualAgents", "Power Virtual Agents", "2.0.0.502"),
    ("MicrosoftFormsPro", "Microsoft Forms Pro", "2.0.0.43"),
    ("PowerPages_Core", "Power Pages Core", "1.0.2309.63"),
    ("PowerPages_RuntimeCore", "Power Pages Runtime Core", "1.0.2308.4"),
    ("PowerPages_AppResources", "Power Pages App Resources", "1.0.2308.1"),
    ("PowerPages_Apps", "Power Pages Apps", "1.0.2309.1"),
)
# Publishers of a new org: "MicrosoftCorporation" owns the platform; the default publisher is named
# DefaultPublisher<org> (the corpus' Contoso_sample shows "DefaultPublisherorg8a403877").
MICROSOFT_PUBLISHER = ("MicrosoftCorporation", "MicrosoftCorporation", "", 0)
DEFAULT_PUBLISHER_PREFIX = "new"
DEFAULT_PUBLISHER_OPTION_VALUE_PREFIX = 10000

# RetrieveVersion (REF RetrieveVersionResponse.Version, Edm.String): the value is the OrganizationVersion
# the newest corpus export carries (flow-excel … v1_0_0_7: 9.2.25093.134).
ORGANIZATION_VERSION = "9.2.25093.134"

# solutioncomponent.componenttype of connection references and bots: entity-based components whose type
# code is the table's object type code in that org (docs/dataverse.md §3.2). Values below are placeholders.
COMPONENT_TYPE_BY_NAME = {
    "connectionreference": 10469,
    "bot": 10470,
    "botcomponent": 10471,
}
# Object type code of msdyn_solutionhistory and solutionhistorydata (first-party tables; codes not documented).
SOLUTION_HISTORY_OBJECT_TYPE_CODE = 10035
SOLUTION_HISTORY_DATA_OBJECT_TYPE_CODE = 10036
# solutionhistories is RetrieveMultiple only (its table reference); what a read by key answers is not
# documented: 405 with the OData code.
RETRIEVE_MULTIPLE_ONLY_STATUS = 405
RETRIEVE_MULTIPLE_ONLY_MESSAGE = "The entity '{entity}' only supports RetrieveMultiple: query {entity_set} instead."
# Custom tables get object type codes from here on, in order of creation (>= 10000 is documented for
# custom entities; the exact numbering is the server's).
FIRST_CUSTOM_OBJECT_TYPE_CODE = 10600

# ---------------------------------------------------------------------------------------------
# Errors around authentication on the Web API. DOC-ERR names 401 codes (BadAuthTicket,
# ExpiredAuthTicket, InvalidAuthTicket) without hex or text; the body code is left empty, as the
# reference says codes frequently are.
UNAUTHORIZED_CODE = ""
UNAUTHORIZED_MESSAGES = {
    "missing": "BadAuthTicket: the request has no bearer token.",
    "invalid": "InvalidAuthTicket: the bearer token could not be validated.",
    "expired": "ExpiredAuthTicket: the bearer token has expired.",
    "audience": "InvalidAuthTicket: the bearer token was issued for a different resource.",
    "revoked": "InvalidAuthTicket: the bearer token has been revoked.",
    "tenant": "InvalidAuthTicket: the bearer token was issued by a different tenant.",
}
# A valid token whose application is not an application user of the org. The code and text are seen in
# many public issues; the HTTP status is assumed to be 403.
NOT_A_MEMBER_STATUS = 403
NOT_A_MEMBER_CODE = "0x80072560"
NOT_A_MEMBER_MESSAGE = "The user is not a member of the organization."

# OData errors other than the three "Troubleshoot Dataverse Web API client errors" documents (unknown
# segment, unknown property, wrong HTTP method: errors.py): a bad $filter, a bad key, an unsupported system
# query option. Code from memory of real responses and a third-party client's comment ("Error Code:
# 0x80060888 'The query parameter is not supported'" for $top/$skip on EntityDefinitions).
ODATA_ERROR_CODE = "0x80060888"
UNSUPPORTED_QUERY_OPTION_STATUS = 400
UNSUPPORTED_QUERY_OPTION_MESSAGE = "The query parameter {name} is not supported"
# ?sql= (an environment without the SQL preview): the text Microsoft's own Python client surfaced
# (microsoft/PowerPlatform-DataverseClient-Python issue 74: "sql query parameter is not supported."); the
# code is not given there.
SQL_QUERY_OPTION_MESSAGE = "sql query parameter is not supported."
# Custom query options (names without '$' or '@') that Dataverse does not know. OData lets a service ignore
# them; whether Dataverse does is not documented. True: refused like an unknown system query option (a
# client is never answered as if its option had been applied); False: ignored. ``sql`` is refused either way.
REFUSE_UNKNOWN_CUSTOM_QUERY_OPTIONS = True
METHOD_NOT_SUPPORTED_STATUS = 501
METHOD_NOT_SUPPORTED_MESSAGE = "The emulator does not implement {method} on '{path}'."
ENTITY_NAME_NOT_FOUND_MESSAGE = "Could not find entity with name '{name}'."
# Service errors injected by the 5xx fault.
SERVER_ERROR_CODE = "0x80040216"
SERVER_ERROR_MESSAGE = "An unexpected error occurred."

# ---------------------------------------------------------------------------------------------
# Entra ID error texts that docs/dataverse.md §13 and public docs do not spell out in full.
AADSTS_INVALID_SECRET = (
    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client "
    "secret value, not the client secret ID, for a secret added to app '{client_id}'."
)
AADSTS_UNKNOWN_CLIENT = (
    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
    "happen if the application has not been installed by the administrator of the tenant or consented to by any "
    "user in the tenant. You may have sent your authentication request to the wrong tenant."
)
AADSTS_UNKNOWN_TENANT = (
    "AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
    "into the correct cloud."
)
AADSTS_SCOPE_NOT_DEFAULT = (
    "AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope "
    "value with /.default suffixed to the resource identifier (application ID URI)."
)
AADSTS_UNKNOWN_RESOURCE = (
    "AADSTS500011: The resource principal named {resource} was not found in the tenant named {tenant}. This can "
    "happen if the application has not been installed by the administrator of the tenant or consented to by any "
    "user in the tenant. You might have sent your authentication request to the wrong tenant."
)
AADSTS_BAD_VERIFIER = (
    "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request."
)
AADSTS_BAD_CODE = "AADSTS70000: The provided value for the 'code' parameter is not valid."
AADSTS_CODE_REDEEMED = (
    "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
    "existing refresh token."
)
AADSTS_REDIRECT_MISMATCH = (
    "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
    "configured for the application '{client_id}'."
)
AADSTS_BAD_GRANT_TYPE = "AADSTS70003: The app requested an unsupported grant type '{grant_type}'."
AADSTS_BAD_REFRESH_TOKEN = "AADSTS9002313: Invalid request. Request is malformed or invalid."
AADSTS_BAD_RESPONSE_TYPE = "AADSTS900144: The request body must contain the following parameter: 'response_type'."
# Authorization codes live this long (Entra documents "about 10 minutes"; the exact figure is not fixed).
AUTH_CODE_LIFETIME_SECONDS = 600

# ---------------------------------------------------------------------------------------------
# FetchXML (fetchxml.py). "Use FetchXml with the Web API" documents requests and answers, not the errors:
# the code is the one commonly seen for a bad query (QueryBuilder errors), the texts are the emulator's own
# except the attribute one, which follows the wording of real answers.
FETCHXML_ERROR_CODE = "0x80041103"
FETCHXML_INVALID_MESSAGE = "The FetchXML is not valid: {detail}."
FETCHXML_NO_ATTRIBUTE_MESSAGE = (
    "'{entity}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'."
)
FETCHXML_ENTITY_MISMATCH_MESSAGE = (
    "The entity '{name}' of the FetchXML is not the table of the entity set '{entity_set}'."
)
FETCHXML_BAD_OPERATOR_MESSAGE = "The condition operator '{operator}' is not valid."
FETCHXML_VALUES_MESSAGE = "The condition operator '{operator}' needs {expected}."
FETCHXML_BAD_VALUE_MESSAGE = "The value '{value}' is not valid for the attribute '{name}' of type {type}."
FETCHXML_TOP_WITH_PAGING_MESSAGE = "The top attribute can't be specified with the paging attributes page and count."
# What the emulator does not implement is refused, never ignored (docs/emulator.md lists it).
FETCHXML_NOT_IMPLEMENTED_MESSAGE = "The emulator does not implement {what} in FetchXML."

# ---------------------------------------------------------------------------------------------
# Security roles and privileges (security.py). Documented: the privileges of the ImportSolution,
# ExportSolution and PublishAllXml messages, the 0x80040220 code of a missing privilege and the start of its
# message ("Principal user (Id=<user id>, type=8) is missing <privilegeName> privilege"); everything else here
# is assumed.
#
# https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8)
# "ImportSolution message privileges" ("The exact set of privileges needed depends on the entity types
# specified in the request."):
IMPORT_SOLUTION_PRIVILEGES = (
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
# https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg328430(v=crm.8)
# "ExportSolution message privileges" (same caveat):
EXPORT_SOLUTION_PRIVILEGES = (
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
# https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg309497(v=crm.8)
# "PublishAllXml message privileges":
PUBLISH_ALL_XML_PRIVILEGES = (
    "prvReadCustomization",
    "prvReadQuery",
    "prvReadSavedQueryVisualizations",
    "prvReadSystemForm",
    "prvReadWebResource",
    "prvWriteQuery",
)
# Which of the documented privileges a request needs "depends on the entity types specified in the request";
# which depend on which is not documented. False: the privileges every import / export needs (ALWAYS) plus
# those of the component types in the package (BY_COMPONENT, keyed by solutioncomponent componenttype);
# True: the whole documented list, whatever the package holds.
CHECK_EVERY_DOCUMENTED_PRIVILEGE = False
IMPORT_PRIVILEGES_ALWAYS = (
    "prvCreateCustomization",
    "prvReadCustomization",
    "prvWriteCustomization",
    "prvReadSolution",
    "prvWriteSolution",
    "prvWriteOrganization",
)
EXPORT_PRIVILEGES_ALWAYS = ("prvReadCustomization", "prvReadSolution", "prvReadPublisher", "prvReadOrganization")
IMPORT_PRIVILEGES_BY_COMPONENT: dict[str, tuple[str, ...]] = {
    "20": ("prvReadRole", "prvReadBusinessUnit"),  # security role
    "26": ("prvReadQuery", "prvWriteQuery"),  # view (savedquery)
    "31": ("prvReadReport",),
    "36": ("prvReadEmailTemplate",),
    "37": ("prvReadContractTemplate", "prvWriteContractTemplate"),
    "38": ("prvReadArticleTemplate", "prvWriteArticleTemplate"),
    "39": ("prvReadMailMergeTemplate",),
    "46": ("prvReadEntityMap",),
    "60": ("prvReadSystemForm", "prvWriteSystemForm"),  # form, dashboard
    "61": ("prvReadWebResource",),
    "63": ("prvReadConnectionRole", "prvWriteConnectionRole"),
    "70": ("prvReadFieldSecurityProfile",),
    "91": ("prvReadPluginAssembly",),
    "92": ("prvReadSdkMessageProcessingStep",),
}
EXPORT_PRIVILEGES_BY_COMPONENT: dict[str, tuple[str, ...]] = {
    "20": ("prvReadRole", "prvReadBusinessUnit"),
    "26": ("prvReadQuery",),
    "29": ("prvReadWorkflow",),  # process, cloud flow
    "31": ("prvReadReport",),
    "36": ("prvReadEmailTemplate",),
    "37": ("prvReadContractTemplate",),
    "38": ("prvReadArticleTemplate",),
    "39": ("prvReadMailMergeTemplate",),
    "46": ("prvReadEntityMap",),
    "47": ("prvReadAttributeMap",),
    "59": ("prvReadSavedQueryVisualizations",),
    "60": ("prvReadSystemForm",),
    "61": ("prvReadWebResource",),
    "63": ("prvReadConnectionRole",),
    "66": ("prvReadVisualizationModule",),
    "70": ("prvReadFieldSecurityProfile",),
    "91": ("prvReadPluginAssembly",),
    "92": ("prvReadSdkMessageProcessingStep",),
}
# The documentation gives no privilege list for these actions. The async and staged forms need what their
# documented message needs ("import" / "export" above) plus the privileges below; the others only these.
SAME_PRIVILEGES_AS = {
    "ImportSolution": "import",
    "ImportSolutionAsync": "import",
    "StageAndUpgradeAsync": "import",
    "ExportSolution": "export",
    "ExportSolutionAsync": "export",
    "DownloadSolutionExportData": "export",
}
ACTION_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "StageAndUpgradeAsync": ("prvDeleteSolution",),  # the upgrade deletes the previous version
    "StageSolution": ("prvReadSolution", "prvReadCustomization"),
    "DeleteAndPromote": ("prvReadSolution", "prvWriteSolution", "prvDeleteSolution", "prvWriteCustomization"),
    "DeleteAndPromoteAsync": ("prvReadSolution", "prvWriteSolution", "prvDeleteSolution", "prvWriteCustomization"),
    "UninstallSolutionAsync": ("prvReadSolution", "prvDeleteSolution", "prvWriteCustomization"),
    "PublishAllXml": PUBLISH_ALL_XML_PRIVILEGES,
}
# Functions: none documented. RetrieveUserPrivileges of oneself needs nothing; of another user prvReadUser.
FUNCTION_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "RetrieveMissingDependencies": ("prvReadSolution",),
    "RetrieveDependenciesForUninstall": ("prvReadSolution",),
    "RetrieveFormattedImportJobResults": ("prvReadImportJob",),
}
# Reading an entity set (collection, record, $count, FetchXML) needs the table's read privilege. solution and
# solutioncomponent share prvReadSolution (the "Solution entity privileges" page lists OTC 7100;7103);
# the others follow the prvRead<Entity> naming. None: readable by any user (the privilege list itself).
READ_PRIVILEGES: dict[str, str | None] = {
    "solutions": "prvReadSolution",
    "solutioncomponents": "prvReadSolution",
    "publishers": "prvReadPublisher",
    "asyncoperations": "prvReadAsyncOperation",
    "importjobs": "prvReadImportJob",
    "msdyn_solutionhistories": "prvReadmsdyn_solutionhistory",
    "solutionhistories": "prvReadSolution",
    "systemusers": "prvReadUser",
    "roles": "prvReadRole",
    "roleprivilegescollection": "prvReadRole",
    "systemuserrolescollection": "prvReadUser",
    "privileges": None,
}
WRITE_PRIVILEGES = {"solutions": "prvWriteSolution"}  # PATCH solutions(<id>)
# System Customizer holds every privilege above but this one (the "Organization entity privileges" page gives
# prvWriteOrganization to System Administrator and CEO-Business Manager only; the others are assumed).
SYSTEM_CUSTOMIZER_LACKS = ("prvWriteOrganization",)
# The roles a new application user (or person) gets: everything, as before the emulator had roles.
DEFAULT_APPLICATION_USER_ROLES = ("System Administrator",)
# The refusal: 403 ("Identify status codes" lists 403 for AccessDenied and PrivilegeDenied,
# https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors),
# code errors.PRIVILEGE_DENIED_CODE,
# the message as pipelines commonly log it; the "on OTC=… for entity" part only for entity privileges.
PRIVILEGE_DENIED_STATUS = 403
PRIVILEGE_DENIED_MESSAGE = (
    "Principal user (Id={user}, type=8, roleCount={roles}, privilegeCount={privileges}, accessMode={access_mode}), "
    "is missing {privilege} privilege (Id={privilege_id}){target}. context.Caller={user}"
)
PRIVILEGE_DENIED_ENTITY = " on OTC={otc} for entity '{entity}'"
# When an async solution action (ImportSolutionAsync, StageAndUpgradeAsync, ExportSolutionAsync,
# DeleteAndPromoteAsync, UninstallSolutionAsync) finds a privilege missing: ONE switch per org
# (POST /_emulator/orgs/<org>/settings {"privilege_check": ...}), default below:
#   "request" – the request itself is refused (403, 0x80040220);
#   "job"     – the request is accepted and the system job fails (statuscode 31, errorcode -2147220960).
PRIVILEGE_CHECK_DEFAULT = "request"
PRIVILEGE_CHECK_CHOICES = ("request", "job")
