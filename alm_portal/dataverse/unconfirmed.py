"""Every client-side assumption about Dataverse that no Microsoft source confirms, in one place.

docs/dataverse.md marks facts no source confirms as UNCONFIRMED or
(inferred). Where the client depends on such a fact, the value lives here, with the reason, so that when
real behaviour is observed only this module changes. Nothing else in ``alm_portal.dataverse`` hard-codes
an unconfirmed code, message fragment or shape.
"""

from __future__ import annotations

# --- Errors (docs/dataverse.md §1.6) -------------------------------------------------------------------------------

#: "Another solution operation is running" (CustomizationLockException). Observed by third-party code over the
#: Web API as HTTP 429 with this code; Microsoft docs do not state the status or the code. docs/dataverse.md §1.6, §15.
CUSTOMIZATION_LOCK_CODES: frozenset[str] = frozenset({"0x80071151"})

#: Message fragments that identify the CustomizationLock when the code is absent or different (lower case).
CUSTOMIZATION_LOCK_MESSAGE_FRAGMENTS: tuple[str, ...] = (
    "customizationlock",
    "because there is another [",
    "installation or removal of another solution at the same time",
)

#: Upgrade with the same or a lower version: a support article gives "80048541" (no 0x) and the message
#: below; the Web API hex form and the HTTP status are not documented. docs/dataverse.md §1.6, §11.3.
VERSION_NOT_HIGHER_CODES: frozenset[str] = frozenset({"0x80048541"})
VERSION_NOT_HIGHER_MESSAGE_FRAGMENTS: tuple[str, ...] = ("must have a higher version",)

#: Export of an unknown / a managed solution: names and messages are known from the SDK table reproduced by
#: third-party code, the hex codes are not. Matched by message. docs/dataverse.md §1.6.
EXPORT_MISSING_SOLUTION_MESSAGE_FRAGMENTS: tuple[str, ...] = ("solution does not exist in this system",)
EXPORT_MANAGED_SOLUTION_MESSAGE_FRAGMENTS: tuple[str, ...] = ("managed solutions cannot be exported",)

#: The failed-async-import error surfaces in ``asyncoperation.errorcode`` (signed int) and/or ``message``;
#: which of the two carries the specific import code (e.g. 0x8004801D) is not documented. We read the code
#: field first, then look for a hex code in the message text. docs/dataverse.md §7.1 (errorcode "returned from a
#: canceled system job").
ASYNC_OPERATION_CODE_IN_MESSAGE = True

# --- Import parameters (docs/dataverse.md §5.2, docs/states.md §3) ----------------------------------------------------

#: Whether Dataverse honours a caller-chosen ImportJobId on ImportSolutionAsync / StageAndUpgradeAsync is
#: unknown (Microsoft's ServiceClient strips it; an on-prem server answered 400). Off by default; a
#: ``DataverseClient(import_job_id_mode=True)`` sends it.
IMPORT_JOB_ID_ON_ASYNC_ACTIONS_DEFAULT = False

#: ``ConvertToManaged`` is documented as obsolete; we send it only when the caller sets it explicitly.
SEND_CONVERT_TO_MANAGED_ONLY_WHEN_SET = True

#: Deployment-settings → ComponentParameters mapping is inferred (pac's own mapping is closed source):
#: ConnectionReferences[i] → connectionreference{connectionreferencelogicalname, connectionid, connectorid},
#: EnvironmentVariables[i] → environmentvariablevalue{schemaname, value}. docs/dataverse.md §12.
CONNECTION_REFERENCE_ODATA_TYPE = "Microsoft.Dynamics.CRM.connectionreference"
ENVIRONMENT_VARIABLE_VALUE_ODATA_TYPE = "Microsoft.Dynamics.CRM.environmentvariablevalue"

#: pac writes blank Value / ConnectionId placeholders; whether pac sends or skips blank entries is unknown.
#: We omit blank entries from ComponentParameters (so the target keeps its current value or the default)
#: and report them through ``DeploymentSettings.blank_entries()`` so a caller can refuse to deploy.
OMIT_BLANK_DEPLOYMENT_SETTINGS = True

# --- Staging (docs/dataverse.md §6) -----------------------------------------------------------------------------------

#: StageSolutionStatus enum values are not documented; Microsoft's sample only checks ``Failed``. We keep the
#: raw value and treat these (compared case-insensitively, also as numbers in string form) as failure.
STAGE_SOLUTION_FAILED_STATUSES: frozenset[str] = frozenset({"failed", "1"})

# --- Functions docs/dataverse.md does not describe -----------------------------------------------------------------

#: ``RetrieveVersion()`` → ``{"Version": "9.2.x"}``: standard Web API function, not covered by docs/dataverse.md.
RETRIEVE_VERSION_FUNCTION = "RetrieveVersion()"

#: ``RetrieveTotalRecordCount(EntityNames=@p)?@p=[...]`` →
#: ``{"EntityRecordCountCollection": {"Keys": [...], "Values": [...]}}``: not covered by docs/dataverse.md.
RETRIEVE_TOTAL_RECORD_COUNT_FUNCTION = "RetrieveTotalRecordCount"

# --- Polling (docs/dataverse.md §7.2) ---------------------------------------------------------------------------------

#: pac's poll interval is unknown; Microsoft's sample sleeps 10 s, PowerDataOps 5 s. We start at 5 s and back
#: off to 60 s.
POLL_INITIAL_INTERVAL_SECONDS = 5.0
POLL_MAX_INTERVAL_SECONDS = 60.0
POLL_BACKOFF_FACTOR = 1.5

# --- Throttling (docs/dataverse.md §1.5) ------------------------------------------------------------------------------

#: ``Retry-After`` is documented in seconds. An HTTP-date (RFC 9110 allows it) is accepted too, and a
#: service-protection 429 without the header is treated as this many seconds. A CustomizationLock 429 without the
#: header sets no "not before" (reads of the running operation must go on).
DEFAULT_RETRY_AFTER_SECONDS = 5.0

# --- Import log (docs/dataverse.md §8.3) ------------------------------------------------------------------------------

#: Root attributes of ``importjob.data`` (start/stop/progress/processed) are only seen in third-party fixtures.
IMPORT_LOG_ROOT_ATTRIBUTES: tuple[str, ...] = ("start", "stop", "progress", "processed")

#: Attributes tried, in order, for a component's display name in the import log (only ``LocalizedName`` on
#: ``optionSet`` is documented; the rest come from third-party fixtures).
IMPORT_LOG_NAME_ATTRIBUTES: tuple[str, ...] = ("LocalizedName", "name", "OriginalName", "id")

# --- Authorities (docs/dataverse.md §13) ------------------------------------------------------------------------------

#: Hosts for which msal's instance discovery is meaningful (Microsoft clouds). Anything else (the emulator, ADFS,
#: a test double) is built with ``instance_discovery=False``. List mirrors msal's WELL_KNOWN_AUTHORITY_HOSTS.
MICROSOFT_AUTHORITY_HOSTS: frozenset[str] = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)

#: Solution-version parts: format major.minor.build.revision is documented; 2-part versions exist in real
#: exports; per-part limits are not documented. We accept 2 to 4 non-negative integer parts. docs/dataverse.md §11.3.
VERSION_MIN_PARTS = 2
VERSION_MAX_PARTS = 4

# --- Privileges of the deploying identity (alm_portal/dataverse/privileges.py) ------------------------------

#: ImportSolution / ExportSolution need the documented privileges (privileges.py) but "the exact set ... depends
#: on the entity types specified in the request": these every request needs, the BY_COMPONENT ones only for
#: solutions holding components of that type (solutioncomponent componenttype). The split is ours.
IMPORT_PRIVILEGES_ALWAYS: tuple[str, ...] = (
    "prvCreateCustomization",
    "prvReadCustomization",
    "prvWriteCustomization",
    "prvReadSolution",
    "prvWriteSolution",
    "prvWriteOrganization",
)
EXPORT_PRIVILEGES_ALWAYS: tuple[str, ...] = (
    "prvReadCustomization",
    "prvReadSolution",
    "prvReadPublisher",
    "prvReadOrganization",
)
IMPORT_PRIVILEGES_BY_COMPONENT: dict[int, tuple[str, ...]] = {
    20: ("prvReadRole", "prvReadBusinessUnit"),
    26: ("prvReadQuery", "prvWriteQuery"),
    31: ("prvReadReport",),
    36: ("prvReadEmailTemplate",),
    37: ("prvReadContractTemplate", "prvWriteContractTemplate"),
    38: ("prvReadArticleTemplate", "prvWriteArticleTemplate"),
    39: ("prvReadMailMergeTemplate",),
    46: ("prvReadEntityMap",),
    60: ("prvReadSystemForm", "prvWriteSystemForm"),
    61: ("prvReadWebResource",),
    63: ("prvReadConnectionRole", "prvWriteConnectionRole"),
    70: ("prvReadFieldSecurityProfile",),
    91: ("prvReadPluginAssembly",),
    92: ("prvReadSdkMessageProcessingStep",),
}
EXPORT_PRIVILEGES_BY_COMPONENT: dict[int, tuple[str, ...]] = {
    20: ("prvReadRole", "prvReadBusinessUnit"),
    26: ("prvReadQuery",),
    29: ("prvReadWorkflow",),
    31: ("prvReadReport",),
    36: ("prvReadEmailTemplate",),
    37: ("prvReadContractTemplate",),
    38: ("prvReadArticleTemplate",),
    39: ("prvReadMailMergeTemplate",),
    46: ("prvReadEntityMap",),
    47: ("prvReadAttributeMap",),
    59: ("prvReadSavedQueryVisualizations",),
    60: ("prvReadSystemForm",),
    61: ("prvReadWebResource",),
    63: ("prvReadConnectionRole",),
    66: ("prvReadVisualizationModule",),
    70: ("prvReadFieldSecurityProfile",),
    91: ("prvReadPluginAssembly",),
    92: ("prvReadSdkMessageProcessingStep",),
}

#: The async actions the portal calls need what their documented message needs (assumed); no list is documented
#: for stage-and-upgrade's removal of the old version, delete-and-promote and uninstall: these are assumed.
OPERATION_MESSAGE: dict[str, str] = {"export": "export", "import": "import", "stage_and_upgrade": "import"}
OPERATION_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "stage_and_upgrade": ("prvDeleteSolution",),
    "delete_and_promote": ("prvReadSolution", "prvWriteSolution", "prvDeleteSolution", "prvWriteCustomization"),
    "uninstall": ("prvReadSolution", "prvDeleteSolution", "prvWriteCustomization"),
}
#: What the portal reads around each operation: the system job it polls, the import job and its log, the
#: solutions (with their publisher) it verifies. Read privileges named prvRead<Table> (assumed for these tables).
PORTAL_READ_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "export": ("prvReadAsyncOperation",),
    "import": ("prvReadAsyncOperation", "prvReadImportJob", "prvReadPublisher"),
    "stage_and_upgrade": ("prvReadAsyncOperation", "prvReadImportJob", "prvReadPublisher"),
    "delete_and_promote": ("prvReadAsyncOperation", "prvReadPublisher"),
    "uninstall": ("prvReadAsyncOperation", "prvReadPublisher"),
}
