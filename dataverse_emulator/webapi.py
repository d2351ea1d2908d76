"""The Dataverse Web API of one org: ``<org url>/api/data/v9.2/…`` (its own origin, or a path of the main port).

Every request: bearer token check (401 + ``WWW-Authenticate: Bearer authorization_uri=…``), application
user check (403 0x80072560), fault injection (faults.py), then the route. Responses carry
``OData-Version: 4.0`` and ``Content-Type: application/json; odata.metadata=minimal`` (DOC-ERR example
responses); errors are ``{"error": {"code", "message"}}`` (docs/dataverse.md §1.4).

Served: WhoAmI() (docs/dataverse.md §2), RetrieveVersion(), RetrieveTotalRecordCount (EntityRecordCountCollection:
Count, IsReadOnly, Keys, Values — Web API reference entityrecordcountcollection), RetrieveMissingDependencies,
RetrieveDependenciesForUninstall, RetrieveFormattedImportJobResults, the solution actions (solutions.py),
the entity sets of entities.py with OData queries (odata.py), ``PATCH solutions(<id>)`` and
EntityDefinitions (query-metadata-web-api.md: ``EntityDefinitions(LogicalName='x')``, ``MetadataId`` always
returned, no paging).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from . import entities, errors, faults, fetchxml, importlog, odata, orgs, security, unconfirmed
from .entities import ENTITY_SETS, EntitySet
from .errors import DataverseError
from .package import SolutionPackage
from .store import iso, new_id, now
from .wire import Request, Response, query_pairs

if TYPE_CHECKING:
    from .app import Emulator

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SEGMENT_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?:\((?P<key>.*)\))?$")
NON_NULLABLE = object()

# Action parameters per the action references (docs/dataverse.md §4.1, §5.1, §5.2, §6). name -> required?
_IMPORT_PARAMETERS = {
    "OverwriteUnmanagedCustomizations": False,
    "PublishWorkflows": False,
    "CustomizationFile": True,
    "ImportJobId": False,
    "ConvertToManaged": False,
    "SkipProductUpdateDependencies": False,
    "HoldingSolution": False,
    "SkipQueueRibbonJob": False,
    "LayerDesiredOrder": False,
    "AsyncRibbonProcessing": False,
    "ComponentParameters": False,
    "SolutionParameters": False,
    "IsTemplateMode": False,
    "TemplateSuffix": False,
    "TemplateDisplayNamePrefix": False,
}
_EXPORT_PARAMETERS = {
    "SolutionName": True,
    "Managed": True,
    "TargetVersion": False,
    "ExportAutoNumberingSettings": False,
    "ExportCalendarSettings": False,
    "ExportCustomizationSettings": False,
    "ExportEmailTrackingSettings": False,
    "ExportGeneralSettings": False,
    "ExportMarketingSettings": False,
    "ExportOutlookSynchronizationSettings": False,
    "ExportRelationshipRoles": False,
    "ExportIsvConfig": False,
    "ExportSales": False,
    "ExportExternalApplications": False,
    "ExportComponentsParams": False,
}
ACTION_PARAMETERS: dict[str, dict[str, bool]] = {
    "ImportSolution": _IMPORT_PARAMETERS,
    "ImportSolutionAsync": {**_IMPORT_PARAMETERS, "CustomizationFile": False},
    "StageAndUpgradeAsync": {
        "OverwriteUnmanagedCustomizations": False,
        "PublishWorkflows": False,
        "CustomizationFile": True,
        "ImportJobId": False,
        "ConvertToManaged": False,
        "SkipProductUpdateDependencies": False,
        "SkipQueueRibbonJob": False,
        "AsyncRibbonProcessing": False,
        "ComponentParameters": False,
    },
    "StageSolution": {"CustomizationFile": True, "StageSolutionUploadId": False},
    "ExportSolution": _EXPORT_PARAMETERS,
    "ExportSolutionAsync": _EXPORT_PARAMETERS,
    "DownloadSolutionExportData": {"ExportJobId": True},
    "DeleteAndPromote": {"UniqueName": True},
    "DeleteAndPromoteAsync": {"UniqueName": True},
    "UninstallSolutionAsync": {"SolutionUniqueName": True},
    "PublishAllXml": {},
}
IMPORT_ACTIONS = {"ImportSolution", "ImportSolutionAsync", "StageAndUpgradeAsync"}
ASYNC_ACTIONS = {
    "ImportSolutionAsync",
    "StageAndUpgradeAsync",
    "ExportSolutionAsync",
    "DeleteAndPromoteAsync",
    "UninstallSolutionAsync",
}
PARAMETERLESS_FUNCTIONS = {"WhoAmI", "RetrieveVersion"}
FUNCTIONS = {
    *PARAMETERLESS_FUNCTIONS,
    "RetrieveTotalRecordCount",
    "RetrieveMissingDependencies",
    "RetrieveDependenciesForUninstall",
    "RetrieveFormattedImportJobResults",
}


class Related:
    """Finds the rows that lookups point to (``$expand``, ``publisherid/uniquename`` in ``$filter``),
    reading each target entity set at most once per request."""

    def __init__(self, api: WebApi, org: dict, t: float) -> None:
        self.api = api
        self.org = org
        self.t = t
        self.cache: dict[str, dict[str, dict]] = {}

    def resolver(self, entity: EntitySet) -> odata.Resolver:
        return lambda navigation, record: self.lookup(entity, navigation, record)

    def lookup(self, entity: EntitySet, navigation: str, record: dict) -> dict | None:
        nav_field = entity.navigation(navigation)
        if nav_field is None or nav_field.target not in ENTITY_SETS:
            return None
        target = ENTITY_SETS[nav_field.target]
        if target.name not in self.cache:
            rows = self.api.records(self.org, target.name, self.t)
            self.cache[target.name] = {row[target.primary_key]: row for row in rows}
        value = record.get(nav_field.name)
        return self.cache[target.name].get(value) if value else None


class WebApi:
    """Dispatches ``/<org>/api/data/v9.x/…`` requests."""

    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.store = app.store

    # ------------------------------------------------------------------------------------------
    def handle(self, request: Request, org_name: str, version: str, resource: str) -> Response:
        request_id = new_id()
        correlation_id = request.header("x-ms-correlation-request-id") or new_id()
        try:
            with self.store.lock:
                org = self.store.org(org_name)
                if org is None:
                    raise DataverseError(404, "", f"Organization '{org_name}' does not exist.")
                org["requests"] = org.get("requests", 0) + 1
                claims, reason = self.app.entra.validate_for_org(request.header("authorization"), org)
                if claims is None:
                    assert reason is not None
                    tenant = org["tenant_id"]
                    challenge = (
                        f"Bearer authorization_uri={self.app.entra.authority(tenant)}/oauth2/authorize, "
                        f"resource_id={self.app.org_url(org_name)}/"
                    )
                    raise DataverseError(
                        401,
                        unconfirmed.UNAUTHORIZED_CODE,
                        unconfirmed.UNAUTHORIZED_MESSAGES[reason],
                        headers={"WWW-Authenticate": challenge},
                    )
                caller = self._caller(org, claims)
                faults_before = len(org["faults"])
                decision = faults.for_request(org["faults"], now())
                if decision.error is not None or decision.delay or len(org["faults"]) != faults_before:
                    self.store.save(orgs=[org_name])  # a consumed fault must stay consumed after a restart
                else:
                    self.store.mark_dirty(org_name)
            if decision.delay:
                time.sleep(decision.delay)
            if decision.error is not None:
                raise decision.error
            with self.store.lock:
                org = self.store.org(org_name)
                if org is None:
                    raise DataverseError(404, "", f"Organization '{org_name}' does not exist.")
                changed = self.app.solutions.finalize_due(org, now())
                version_before = org["row_version"]
                response = self._route(request, org, version, resource, caller, correlation_id)
                if changed or request.method != "GET" or org["row_version"] != version_before:
                    self.store.save(orgs=[org_name])
        except DataverseError as error:
            response = Response.json(error.status, error.body(), list(error.headers.items()))
            response.headers = [(k, v) for k, v in response.headers if k != "Content-Type"]
            response.headers.append(("Content-Type", "application/json; odata.metadata=minimal"))
        response.headers += [
            ("OData-Version", "4.0"),
            ("x-ms-service-request-id", request_id),
            ("REQ_ID", request_id),
        ]
        return response

    def _caller(self, org: dict, claims: dict) -> dict:
        """The systemuser behind a token; 403 when the app is not an application user of the org."""
        tenant = self.store.tenant(org["tenant_id"]) or {}
        if claims.get("idtyp") == "app":
            client_id = claims.get("appid")
            client = tenant.get("clients", {}).get(client_id)
            if client is None or client_id not in org["allowed_clients"]:
                raise DataverseError(
                    unconfirmed.NOT_A_MEMBER_STATUS, unconfirmed.NOT_A_MEMBER_CODE, unconfirmed.NOT_A_MEMBER_MESSAGE
                )
            return orgs.ensure_application_user(
                org, client_id, client["object_id"], client.get("display_name", client_id)
            )
        identity = next((i for i in tenant.get("identities", []) if i["object_id"] == claims.get("oid")), None)
        if identity is None:
            raise DataverseError(
                unconfirmed.NOT_A_MEMBER_STATUS, unconfirmed.NOT_A_MEMBER_CODE, unconfirmed.NOT_A_MEMBER_MESSAGE
            )
        return orgs.ensure_person_user(org, identity)

    def api_url(self, org: dict, version: str = "v9.2") -> str:
        return f"{self.app.org_url(org['name'])}/api/data/{version}"

    # ------------------------------------------------------------------------------------------
    def _route(
        self, request: Request, org: dict, version: str, resource: str, caller: dict, correlation_id: str
    ) -> Response:
        api = self.api_url(org, version)
        segments = [s for s in resource.split("/") if s]
        if not segments:
            if request.method != "GET":
                raise _not_implemented(request)
            return _ok(
                {
                    "@odata.context": f"{api}/$metadata",
                    "value": [
                        {"name": name, "kind": "EntitySet", "url": name} for name in [*ENTITY_SETS, "EntityDefinitions"]
                    ],
                }
            )
        first = segments[0]
        match = SEGMENT_RE.match(first)
        if match is None:
            raise _segment_not_found(first)
        name, key = match.group("name"), match.group("key")
        name = name.removeprefix("Microsoft.Dynamics.CRM.")
        if name in ENTITY_SETS:
            return self._entity_set(request, org, api, ENTITY_SETS[name], key, segments[1:], caller)
        if name == "EntityDefinitions":
            return self._entity_definitions(request, org, api, key, segments[1:])
        if len(segments) == 1 and (name in FUNCTIONS or name in ACTION_PARAMETERS):
            if request.method == "GET" and name in FUNCTIONS and (key is not None or name in PARAMETERLESS_FUNCTIONS):
                # The quick starts call "WhoAmI" without parentheses; Dataverse answers both forms.
                return self._function(request, org, api, name, key or "", caller)
            if request.method == "POST" and name in ACTION_PARAMETERS:
                return self._action(request, org, api, name, correlation_id, caller)
            # A function called with POST, an action with GET ("Troubleshoot Dataverse Web API client errors").
            raise errors.no_http_resource(f"{api}/{resource.strip('/')}")
        raise _segment_not_found(name)

    # ------------------------------------------------------------------------------------------
    # Functions (GET)
    # ------------------------------------------------------------------------------------------
    def _function(self, request: Request, org: dict, api: str, name: str, key: str, caller: dict) -> Response:
        security.require(org, caller, unconfirmed.FUNCTION_PRIVILEGES.get(name, ()))
        args = _function_args(key, request.query())
        if name == "WhoAmI":
            return _ok(
                {
                    "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": org["business_unit_id"],
                    "UserId": caller["systemuserid"],
                    "OrganizationId": org["organization_id"],
                }
            )
        if name == "RetrieveVersion":
            return _ok(
                {
                    "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.RetrieveVersionResponse",
                    "Version": unconfirmed.ORGANIZATION_VERSION,
                }
            )
        if name == "RetrieveTotalRecordCount":
            names = args.get("EntityNames")
            if not isinstance(names, list):
                raise _missing_parameter("EntityNames", name)
            values = [self._record_count(org, str(entity_name)) for entity_name in names]
            return _ok(
                {
                    "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse",
                    "EntityRecordCountCollection": {
                        "Count": len(names),
                        "IsReadOnly": False,
                        "Keys": names,
                        "Values": values,
                    },
                }
            )
        if name in ("RetrieveMissingDependencies", "RetrieveDependenciesForUninstall"):
            solution_name = args.get("SolutionUniqueName")
            if not isinstance(solution_name, str):
                raise _missing_parameter("SolutionUniqueName", name)
            service = self.app.solutions
            rows = (
                service.missing_dependencies_of(org, solution_name)
                if name == "RetrieveMissingDependencies"
                else service.dependencies_for_uninstall(org, solution_name)
            )
            return _ok({"@odata.context": f"{api}/$metadata#dependencies", "value": rows})
        if name == "RetrieveFormattedImportJobResults":
            job_id = str(args.get("ImportJobId") or "").lower()
            job = org["importjobs"].get(job_id)
            if job is None:
                raise errors.record_not_found("importjob", job_id)
            view = self.app.solutions.importjob_view(org, job, now())
            context = f"{api}/$metadata#Microsoft.Dynamics.CRM.RetrieveFormattedImportJobResultsResponse"
            return _ok(
                {
                    "@odata.context": context,
                    "FormattedResults": importlog.formatted_results(view.get("data") or "", job["solutionname"]),
                }
            )
        raise _segment_not_found(name)

    def _record_count(self, org: dict, logical_name: str) -> int:
        table = org["tables"].get(logical_name.lower())
        if table is not None:
            return int(table["rows"])
        entity = entities.BY_LOGICAL_NAME.get(logical_name.lower())
        if entity is not None:
            return len(self.records(org, entity.name, now()))
        raise DataverseError(
            404, errors.RECORD_NOT_FOUND, unconfirmed.ENTITY_NAME_NOT_FOUND_MESSAGE.format(name=logical_name)
        )

    # ------------------------------------------------------------------------------------------
    # Actions (POST)
    # ------------------------------------------------------------------------------------------
    def _action_privileges(self, org: dict, name: str, body: dict) -> tuple[list[str], SolutionPackage | None]:
        """What the action needs (security.py), and the package of an import, read once for the check."""
        package = None
        component_types: list[int | str] = []
        if name in IMPORT_ACTIONS:
            try:
                _data, package = self.app.solutions.receive_package(org, body, name)
            except DataverseError:
                package = None  # refused (or failed) by the action itself, after the check
            if package is not None:
                component_types = [c.type for c in package.components]
        elif name in ("ExportSolution", "ExportSolutionAsync"):
            row = orgs.find_solution(org, str(body.get("SolutionName") or ""))
            if row is not None and row.get("emu_package_sha"):
                component_types = [c.type for c in self.app.solutions.package_by_sha(row["emu_package_sha"]).components]
        needed: list[str] = []
        message = unconfirmed.SAME_PRIVILEGES_AS.get(name)
        if message is not None:
            needed = security.solution_message_privileges(message, component_types)
        needed += [p for p in unconfirmed.ACTION_PRIVILEGES.get(name, ()) if p not in needed]
        return needed, package

    def _authorize_action(self, org: dict, caller: dict, name: str, body: dict) -> tuple[DataverseError | None, Any]:
        """Refuse (403, 0x80040220) an action the caller lacks a privilege for; for an async action of an org
        whose ``privilege_check`` is "job", return the refusal instead so the system job fails with it."""
        needed, package = self._action_privileges(org, name, body)
        try:
            security.require(org, caller, needed)
        except DataverseError as refusal:
            choice = org["settings"].get("privilege_check", unconfirmed.PRIVILEGE_CHECK_DEFAULT)
            if name in ASYNC_ACTIONS and choice == "job":
                return refusal, package
            raise
        return None, package

    def _action(self, request: Request, org: dict, api: str, name: str, correlation_id: str, caller: dict) -> Response:
        try:
            body = request.json() or {}
        except (ValueError, LookupError) as exc:
            raise DataverseError(400, unconfirmed.ODATA_ERROR_CODE, "The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise DataverseError(400, unconfirmed.ODATA_ERROR_CODE, "The request body must be a JSON object.")
        known = ACTION_PARAMETERS[name]
        for parameter in body:
            if parameter.startswith("@odata."):
                continue
            if parameter not in known:
                raise DataverseError(
                    unconfirmed.UNKNOWN_PARAMETER_STATUS,
                    unconfirmed.UNKNOWN_PARAMETER_CODE,
                    unconfirmed.UNKNOWN_PARAMETER_MESSAGE.format(parameter=parameter, operation=name),
                )
        for parameter, required in known.items():
            if required and body.get(parameter) in (None, "") and parameter != "Managed":
                raise _missing_parameter(parameter, name)
        if "Managed" in known and known["Managed"] and "Managed" not in body:
            raise _missing_parameter("Managed", name)
        if not unconfirmed.LENIENT_NON_NULLABLE_BOOLEANS and name in IMPORT_ACTIONS:
            for parameter in ("OverwriteUnmanagedCustomizations", "PublishWorkflows"):
                if parameter not in body:
                    raise _missing_parameter(parameter, name)

        denied, package = self._authorize_action(org, caller, name, body)
        service = self.app.solutions
        context = f"{api}/$metadata#Microsoft.Dynamics.CRM.{name}Response"
        response: Response
        if name == "ImportSolution":
            service.import_solution(org, body, correlation_id, package=package)
            response = Response(204)
        elif name in ("ImportSolutionAsync", "StageAndUpgradeAsync"):
            kind = "import" if name == "ImportSolutionAsync" else "stage_and_upgrade"
            handles = service.submit_import_async(org, body, kind, correlation_id, package=package, denied=denied)
            response = _ok({"@odata.context": context, **handles})
        elif name == "StageSolution":
            response = _ok({"@odata.context": context, **service.stage_solution(org, body)})
        elif name == "ExportSolution":
            response = _ok({"@odata.context": context, **service.export_solution(org, body, correlation_id)})
        elif name == "ExportSolutionAsync":
            handles = service.export_solution_async(org, body, correlation_id, denied=denied)
            response = _ok({"@odata.context": context, **handles})
        elif name == "DownloadSolutionExportData":
            response = _ok({"@odata.context": context, **service.download_export(org, body)})
        elif name == "DeleteAndPromote":
            response = _ok({"@odata.context": context, **service.delete_and_promote(org, body, correlation_id)})
        elif name == "DeleteAndPromoteAsync":
            handles = service.delete_and_promote_async(org, body, correlation_id, denied=denied)
            response = _ok({"@odata.context": context, **handles})
        elif name == "UninstallSolutionAsync":
            response = _ok(
                {"@odata.context": context, **service.uninstall_async(org, body, correlation_id, denied=denied)}
            )
        else:  # PublishAllXml
            service.publish_all(org, correlation_id)
            response = Response(204)
        if name in IMPORT_ACTIONS and faults.take_import_fault(org["faults"], "drop_after_import", now()):
            response.drop_connection = True  # the import was accepted and proceeds; the client sees a reset
        return response

    # ------------------------------------------------------------------------------------------
    # Entity sets
    # ------------------------------------------------------------------------------------------
    def records(self, org: dict, set_name: str, t: float) -> list[dict]:
        """Current rows of an entity set (async operations and import jobs evaluated as of ``t``)."""
        service = self.app.solutions
        if set_name == "solutions":
            return list(org["solutions"].values())
        if set_name == "publishers":
            return list(org["publishers"].values())
        if set_name == "systemusers":
            return list(org["systemusers"].values())
        if set_name == "msdyn_solutionhistories":
            return list(org["history"].values())
        if set_name == "solutionhistories":
            return [_history_data(org, row) for row in org["history"].values() if row["msdyn_operation"] in (0, 1, 2)]
        if set_name == "asyncoperations":
            return [service.operation_view(op, t) for op in org["asyncoperations"].values()]
        if set_name == "importjobs":
            return [service.importjob_view(org, job, t) for job in org["importjobs"].values()]
        if set_name == "solutioncomponents":
            return self._solution_components(org)
        if set_name == "roles":
            return list(security.ensure_roles(org).values())
        if set_name == "privileges":
            return security.privilege_rows()
        if set_name == "roleprivilegescollection":
            return security.role_privileges_rows(org)
        if set_name == "systemuserrolescollection":
            return security.user_role_rows(org)
        raise _segment_not_found(set_name)

    @staticmethod
    def _solution_components(org: dict) -> list[dict]:
        """solutioncomponent rows: one per (component, solution) membership (ENT-SOLCOMP)."""
        rows = []
        table_rows: dict[tuple[str, str], str] = {}
        for key, entry in org["components"].items():
            component = entry["component"]
            for solution_id, membership in entry["solutions"].items():
                row_id = orgs.stable_id("solutioncomponent", org["organization_id"], solution_id, key)
                if component["type"] == 1:
                    table_rows[(solution_id, component["name"].lower())] = row_id
                rows.append(
                    {
                        "solutioncomponentid": row_id,
                        "_solutionid_value": solution_id,
                        "componenttype": orgs.component_type_code(component["type"]),
                        "objectid": entry["objectid"],
                        "rootcomponentbehavior": 0 if membership.get("root") else None,
                        "_rootsolutioncomponentid_value": None,
                        "ismetadata": orgs.component_type_code(component["type"]) in orgs.METADATA_TYPES,
                        "createdon": iso(membership["added"]),
                        "modifiedon": iso(membership.get("modified", membership["added"])),
                        "versionnumber": int(membership.get("modified", membership["added"]) * 1000) % 10**9,
                        "emu_parent": (solution_id, (component.get("parent") or "").lower()),
                    }
                )
        for row in rows:  # columns point to their table's row (rootsolutioncomponentid)
            parent = row.pop("emu_parent")
            if parent[1]:
                row["_rootsolutioncomponentid_value"] = table_rows.get(parent)
        return rows

    def _entity_set(
        self, request: Request, org: dict, api: str, entity: EntitySet, key: str | None, rest: list[str], caller: dict
    ) -> Response:
        t = now()
        related = Related(self, org, t)
        if request.method == "GET" and not (
            key is not None and rest and _bound_function(rest) == "RetrieveUserPrivileges"
        ):
            self._require_read(org, caller, entity)
        if key is None:
            if rest == ["$count"] and request.method == "GET":
                odata.check_options(request.query(), frozenset())
                count = len(self.records(org, entity.name, t))
                return Response(200, str(min(count, odata.MAX_COUNT)).encode(), [("Content-Type", "text/plain")])
            if rest or request.method != "GET":
                raise _not_implemented(request)
            return self._collection(request, org, api, entity, related, caller)
        if entity.name == "solutionhistories":
            raise DataverseError(
                unconfirmed.RETRIEVE_MULTIPLE_ONLY_STATUS,
                unconfirmed.ODATA_ERROR_CODE,
                unconfirmed.RETRIEVE_MULTIPLE_ONLY_MESSAGE.format(entity=entity.logical_name, entity_set=entity.name),
            )
        record_id = key.strip()
        if not GUID_RE.match(record_id):
            raise DataverseError(
                400, unconfirmed.ODATA_ERROR_CODE, f"Bad Request - Error in query syntax: '{entity.name}({key})'."
            )
        record_id = record_id.lower()
        records = {r[entity.primary_key]: r for r in self.records(org, entity.name, t)}
        record = records.get(record_id)
        if rest:
            return self._bound(request, org, api, entity, record_id, record, rest, related, caller)
        if request.method == "PATCH" and entity.name == "solutions":
            security.require(org, caller, [unconfirmed.WRITE_PRIVILEGES[entity.name]])
            return self._patch_solution(request, org, api, record_id, record, related)
        if request.method != "GET":
            raise _not_implemented(request)
        if record is None:
            raise errors.record_not_found(entity.logical_name, record_id)
        options = request.query()
        odata.check_options(options, SINGLE_RECORD_OPTIONS)
        query = odata.parse_query(options, entity, ENTITY_SETS)
        annotations = _annotations(request)
        payload = {
            "@odata.context": _context(api, entity, query, single=True),
            **self._project(org, entity, record, query.select, query.expand, related, annotations),
        }
        return _ok(payload, _preference_headers(annotations, None))

    def _require_read(self, org: dict, caller: dict, entity: EntitySet) -> None:
        privilege = unconfirmed.READ_PRIVILEGES.get(entity.name)
        if privilege:
            security.require(org, caller, [privilege])

    def _bound(
        self,
        request: Request,
        org: dict,
        api: str,
        entity: EntitySet,
        record_id: str,
        record: dict | None,
        rest: list[str],
        related: Related,
        caller: dict,
    ) -> Response:
        """``systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`` and the collection-valued
        navigation properties ``systemusers(<id>)/systemuserroles_association`` and
        ``roles(<id>)/roleprivileges_association``."""
        if len(rest) != 1:
            raise _not_implemented(request)
        function = _bound_function(rest)
        if function is not None:
            if function != "RetrieveUserPrivileges" or entity.name != "systemusers":
                raise _segment_not_found(rest[0])
            if request.method != "GET":
                raise errors.no_http_resource(f"{api}/{entity.name}({record_id})/{rest[0]}")
            if record is None:
                raise errors.record_not_found(entity.logical_name, record_id)
            if record_id != caller["systemuserid"]:
                security.require(org, caller, ["prvReadUser"])
            return _ok(
                {
                    "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse",
                    "RolePrivileges": security.retrieve_user_privileges(org, record),
                }
            )
        target_name = entities.COLLECTION_NAVIGATIONS.get((entity.name, rest[0]))
        if target_name is None:
            raise errors.property_not_found(rest[0], entity.logical_name)
        if request.method != "GET":
            raise _not_implemented(request)
        if record is None:
            raise errors.record_not_found(entity.logical_name, record_id)
        target = ENTITY_SETS[target_name]
        self._require_read(org, caller, target)
        if target_name == "roles":
            rows = security.user_roles(org, org["systemusers"][record_id])
        else:
            held = set(org["roles"][record_id]["emu_privileges"])
            rows = [row for row in security.privilege_rows() if row["name"] in held]
        context = f"{api}/$metadata#{target.name}"
        path = f"{entity.name}({record_id})/{rest[0]}"
        return self._collection(request, org, api, target, related, caller, records=rows, context=context, path=path)

    def _collection(
        self,
        request: Request,
        org: dict,
        api: str,
        entity: EntitySet,
        related: Related,
        caller: dict,
        *,
        records: list[dict] | None = None,
        context: str | None = None,
        path: str | None = None,
    ) -> Response:
        options = request.query()
        odata.check_options(options, odata.SUPPORTED_OPTIONS, custom=("fetchXml",) if records is None else ())
        if "fetchXml" in options:
            return self._fetch(request, org, api, entity, related, options, caller)
        query = odata.parse_query(options, entity, ENTITY_SETS)
        navigations = [item.navigation for item in query.expand] + _filter_navigations(query.filter)
        for navigation in navigations:  # $expand=publisherid(…) and $filter=publisherid/uniquename read publishers
            nav_field = entity.navigation(navigation)
            if nav_field is not None and nav_field.target in ENTITY_SETS:
                self._require_read(org, caller, ENTITY_SETS[nav_field.target])
        prefer = odata.parse_prefer(request.header_values("prefer"))
        max_page_size = None
        if prefer.get("odata.maxpagesize", "").isdigit():
            max_page_size = int(prefer["odata.maxpagesize"])
        if records is None:
            records = self.records(org, entity.name, now())
        page = odata.run_query(records, query, entity, related.resolver(entity), ENTITY_SETS, max_page_size)
        annotations = _annotations(request)
        payload: dict[str, Any] = {"@odata.context": context or _context(api, entity, query, single=False)}
        if page.count is not None:
            payload["@odata.count"] = page.count
            if annotations is not None and (
                "*" in annotations
                or any("totalrecordcount" in a.lower() or a.startswith("Microsoft.Dynamics.CRM.") for a in annotations)
            ):
                payload["@Microsoft.Dynamics.CRM.totalrecordcount"] = page.count
                payload["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = len(records) > odata.MAX_COUNT
        payload["value"] = [
            self._project(org, entity, row, query.select, query.expand, related, annotations) for row in page.rows
        ]
        if page.next_page is not None and page.rows:
            token = odata.make_skiptoken(
                page.next_page, page.rows[0][entity.primary_key], page.rows[-1][entity.primary_key], entity.primary_key
            )
            params = [(k, v) for k, v in query_pairs(request.query_string) if k != "$skiptoken"]
            params.append(("$skiptoken", token))
            encoded = "&".join(f"{k}={urllib.parse.quote(v, safe=_SAFE)}" for k, v in params)
            payload["@odata.nextLink"] = f"{api}/{path or entity.name}?{encoded}"
        return _ok(payload, _preference_headers(annotations, page.page_size_applied))

    def _fetch(
        self,
        request: Request,
        org: dict,
        api: str,
        entity: EntitySet,
        related: Related,
        options: dict[str, str],
        caller: dict,
    ) -> Response:
        """``?fetchXml=`` ("Use FetchXml with the Web API"): only ``$count`` may come with it."""
        for name in options:
            if name not in ("fetchXml", "$count") and not name.startswith("@"):
                raise odata.unsupported_option(name)
        count_requested = False
        if "$count" in options:
            if options["$count"].lower() not in ("true", "false"):
                raise odata.odata_error(f"'{options['$count']}' is not a valid count option.")
            count_requested = options["$count"].lower() == "true"
        query = fetchxml.parse(options["fetchXml"], entity)
        page = fetchxml.run(self.records(org, entity.name, now()), query, caller["systemuserid"])
        annotations = _annotations(request)
        columns = query.column_names
        shown = [*columns, *([entity.primary_key] if entity.primary_key not in columns else [])]
        payload: dict[str, Any] = {"@odata.context": f"{api}/$metadata#{entity.name}({','.join(shown)})"}
        if count_requested:
            payload["@odata.count"] = min(page.total, odata.MAX_COUNT)
        if (count_requested or query.total_count) and _wants(annotations, "Microsoft.Dynamics.CRM.totalrecordcount"):
            payload["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(page.total, odata.MAX_COUNT)
            payload["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = page.total > odata.MAX_COUNT
        if page.more and _wants(annotations, "Microsoft.Dynamics.CRM.fetchxmlpagingcookie"):
            payload["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"] = page.cookie
        if page.more and _wants(annotations, "Microsoft.Dynamics.CRM.morerecords"):
            payload["@Microsoft.Dynamics.CRM.morerecords"] = True
        payload["value"] = [
            {  # "data returned from FetchXML will not return properties with null values"
                key: value
                for key, value in self._project(org, entity, row, columns, [], related, annotations).items()
                if value is not None
            }
            for row in page.rows
        ]
        return _ok(payload, _preference_headers(annotations, None))

    def _project(
        self,
        org: dict,
        entity: EntitySet,
        record: dict,
        select: list[str] | None,
        expand: list[odata.Expand],
        related: Related,
        annotations: list[str] | None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if entity.etag:
            out["@odata.etag"] = f'W/"{record.get("versionnumber") or 0}"'
        names = select or entity.field_names
        for name in names:
            field = entity.field(name)
            value = record.get(name)
            if field is not None and annotations is not None and value is not None:
                self._annotate(org, out, field, value, annotations)
            out[name] = value
        out[entity.primary_key] = record.get(entity.primary_key)
        for item in expand:
            nav_field = entity.navigation(item.navigation)
            assert nav_field is not None and nav_field.target is not None
            target = ENTITY_SETS[nav_field.target]
            row = related.lookup(entity, item.navigation, record)
            out[item.navigation] = (
                self._project(org, target, row, item.select, [], related, annotations) if row is not None else None
            )
        return out

    def _annotate(self, org: dict, out: dict, field: entities.Field, value: Any, annotations: list[str]) -> None:
        """``Prefer: odata.include-annotations`` (DOC-ERR "Prefer Headers"): formatted values and lookup metadata."""
        wants_all = "*" in annotations
        formatted = wants_all or any("FormattedValue" in a for a in annotations)
        lookup_meta = wants_all or any(a.startswith("Microsoft.Dynamics.CRM") for a in annotations)
        key = f"{field.name}@OData.Community.Display.V1.FormattedValue"
        if field.labels and formatted and value in field.labels:
            out[key] = field.labels[value]
        elif field.type == "datetime" and formatted and isinstance(value, str):
            moment = odata._parse_datetime(value)
            out[key] = moment.strftime("%-m/%-d/%Y %-I:%M %p")
        elif field.type in ("int", "double") and formatted:
            out[key] = f"{value:,}"
        elif field.type == "lookup" and field.target in ENTITY_SETS:
            target = ENTITY_SETS[field.target]
            related = next((r for r in self.records(org, target.name, now()) if r[target.primary_key] == value), None)
            if formatted and related is not None and target.primary_name:
                out[key] = related.get(target.primary_name)
            if lookup_meta:
                if field.navigation:
                    out[f"{field.name}@Microsoft.Dynamics.CRM.associatednavigationproperty"] = field.navigation
                out[f"{field.name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = target.logical_name

    def _patch_solution(
        self, request: Request, org: dict, api: str, record_id: str, record: dict | None, related: Related
    ) -> Response:
        if record is None:
            raise errors.record_not_found("solution", record_id)
        if_match = request.header("if-match")
        if if_match and if_match != "*" and if_match != f'W/"{record.get("versionnumber")}"':
            raise DataverseError(
                412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
            )
        try:
            body = request.json() or {}
        except (ValueError, LookupError) as exc:
            raise DataverseError(400, unconfirmed.ODATA_ERROR_CODE, "The request body is not valid JSON.") from exc
        row = self.app.solutions.update_solution(org, record_id, body)
        prefer = odata.parse_prefer(request.header_values("prefer"))
        if prefer.get("return") == "representation":
            payload = {
                "@odata.context": f"{api}/$metadata#solutions/$entity",
                **self._project(org, entities.SOLUTIONS, row, None, [], related, None),
            }
            return _ok(payload, [("Preference-Applied", "return=representation")])
        return Response(204, b"", [("OData-EntityId", f"{api}/solutions({record_id})")])

    # ------------------------------------------------------------------------------------------
    # EntityDefinitions
    # ------------------------------------------------------------------------------------------
    def _entity_definitions(self, request: Request, org: dict, api: str, key: str | None, rest: list[str]) -> Response:
        if request.method != "GET":
            raise _not_implemented(request)
        definitions = self._definitions(org)
        options = request.query()
        if key is None:
            odata.check_options(options, DEFINITION_OPTIONS)
        elif not rest:
            odata.check_options(options, SINGLE_RECORD_OPTIONS)
        else:
            odata.check_options(options, ATTRIBUTE_OPTIONS if "(" not in rest[0] else frozenset({"$select"}))
        expand_attributes = None
        if options.get("$expand"):
            expand = options.pop("$expand")
            navigation, _, inner = expand.partition("(")
            if navigation.strip() != "Attributes":
                raise errors.property_not_found(navigation.strip(), "EntityMetadata")
            expand_attributes = {}
            for part in inner.rstrip(")").split(";"):
                if "=" in part:
                    name, _, value = part.partition("=")
                    expand_attributes[name.strip()] = value
        if key is None:
            if rest:
                raise _not_implemented(request)
            query = odata.parse_query(options, entities.ENTITY_DEFINITIONS, ENTITY_SETS)
            page = odata.run_query(
                definitions, query, entities.ENTITY_DEFINITIONS, lambda n, r: None, ENTITY_SETS, None
            )
            rows = [self._definition_out(row, query.select, expand_attributes) for row in page.rows]
            payload: dict[str, Any] = {
                "@odata.context": _context(api, entities.ENTITY_DEFINITIONS, query, single=False)
            }
            if page.count is not None:
                payload["@odata.count"] = page.count
            payload["value"] = rows
            return _ok(payload)
        definition = _find_by_key(definitions, key, "LogicalName")
        if definition is None:
            raise DataverseError(
                404,
                errors.RECORD_NOT_FOUND,
                unconfirmed.ENTITY_NAME_NOT_FOUND_MESSAGE.format(name=key.split("=")[-1].strip("'")),
            )
        if not rest:
            query = odata.parse_query(
                {k: v for k, v in options.items() if k == "$select"}, entities.ENTITY_DEFINITIONS, ENTITY_SETS
            )
            payload = {
                "@odata.context": _context(api, entities.ENTITY_DEFINITIONS, query, single=True),
                **self._definition_out(definition, query.select, expand_attributes),
            }
            return _ok(payload)
        attribute_segment = SEGMENT_RE.match(rest[0])
        if attribute_segment is None or attribute_segment.group("name") != "Attributes" or len(rest) > 1:
            raise _segment_not_found(rest[0])
        attributes = definition["emu_attributes"]
        attribute_key = attribute_segment.group("key")
        context_base = f"{api}/$metadata#EntityDefinitions({definition['MetadataId']})/Attributes"
        if attribute_key is None:
            query = odata.parse_query(options, entities.ATTRIBUTE_DEFINITIONS, ENTITY_SETS)
            page = odata.run_query(
                attributes, query, entities.ATTRIBUTE_DEFINITIONS, lambda n, r: None, ENTITY_SETS, None
            )
            columns = f"({','.join(query.select)})" if query.select else ""
            return _ok(
                {
                    "@odata.context": f"{context_base}{columns}",
                    "value": [_attribute_out(a, query.select) for a in page.rows],
                }
            )
        attribute = _find_by_key(attributes, attribute_key, "LogicalName")
        if attribute is None:
            raise DataverseError(404, errors.RECORD_NOT_FOUND, f"Could not find attribute '{attribute_key}'.")
        query = odata.parse_query(
            {k: v for k, v in options.items() if k == "$select"}, entities.ATTRIBUTE_DEFINITIONS, ENTITY_SETS
        )
        return _ok({"@odata.context": f"{context_base}/$entity", **_attribute_out(attribute, query.select)})

    def _definitions(self, org: dict) -> list[dict]:
        """EntityMetadata rows: the first-party tables the emulator serves plus the org's tables."""
        rows = []
        for entity in [*ENTITY_SETS.values()]:
            columns = [(f.name, f.type) for f in entity.fields if not f.name.startswith("_")]
            rows.append(
                _definition(
                    logical_name=entity.logical_name,
                    schema_name=_schema_name(entity.logical_name),
                    entity_set=entity.name,
                    primary_id=entity.primary_key,
                    primary_name=entity.primary_name or None,
                    object_type_code=entity.object_type_code,
                    display=entity.display_name,
                    display_collection=entity.display_collection_name,
                    custom=False,
                    managed=True,
                    ownership=entity.ownership,
                    columns=columns,
                )
            )
        for table in org["tables"].values():
            if table["logical_name"] in entities.BY_LOGICAL_NAME:
                continue
            managed = any(
                org["solutions"].get(sid, {}).get("ismanaged")
                for sid in org["components"].get(f"1:{table['logical_name']}", {}).get("solutions", {})
            )
            prefix = table["logical_name"].split("_", 1)[0] + "_" if "_" in table["logical_name"] else ""
            rows.append(
                _definition(
                    logical_name=table["logical_name"],
                    schema_name=table["schema_name"],
                    entity_set=table["entity_set_name"],
                    primary_id=f"{table['logical_name']}id",
                    primary_name=f"{prefix}name" if table["custom"] else "name",
                    object_type_code=table["object_type_code"],
                    display=table["display_name"],
                    display_collection=table["collection_name"],
                    custom=bool(table["custom"]),
                    managed=managed,
                    ownership="UserOwned",
                    columns=[tuple(c) for c in table["columns"]],
                    metadata_id=table["metadata_id"],
                )
            )
        return rows

    def _definition_out(self, row: dict, select: list[str] | None, expand_attributes: dict | None) -> dict:
        names = select or [f.name for f in entities.ENTITY_DEFINITIONS.fields]
        out = {name: row.get(name) for name in names}
        out["MetadataId"] = row["MetadataId"]  # "The MetadataId property value is always returned."
        if expand_attributes is not None:
            attribute_select = None
            if expand_attributes.get("$select"):
                attribute_select = [s.strip() for s in expand_attributes["$select"].split(",")]
            attributes = row["emu_attributes"]
            if expand_attributes.get("$filter"):
                query = odata.parse_query(
                    {"$filter": expand_attributes["$filter"]}, entities.ATTRIBUTE_DEFINITIONS, ENTITY_SETS
                )
                attributes = odata.run_query(
                    attributes, query, entities.ATTRIBUTE_DEFINITIONS, lambda n, r: None, ENTITY_SETS, None
                ).rows
            out["Attributes"] = [_attribute_out(a, attribute_select) for a in attributes]
        return out


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
_SAFE = "$,()'=:@/"
SINGLE_RECORD_OPTIONS = frozenset({"$select", "$expand"})
# query-metadata-web-api.md: $select and $filter on EntityDefinitions, $expand=Attributes; "There is no paging".
# $top and $skip are refused there (a third-party client's comment, unconfirmed.ODATA_ERROR_CODE); $count is kept.
DEFINITION_OPTIONS = frozenset({"$select", "$filter", "$expand", "$count"})
ATTRIBUTE_OPTIONS = frozenset({"$select", "$filter"})
_ATTRIBUTE_TYPES = {
    "guid": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    "string": ("String", "StringAttributeMetadata"),
    "memo": ("Memo", "MemoAttributeMetadata"),
    "int": ("Integer", "IntegerAttributeMetadata"),
    "double": ("Double", "DoubleAttributeMetadata"),
    "bool": ("Boolean", "BooleanAttributeMetadata"),
    "datetime": ("DateTime", "DateTimeAttributeMetadata"),
    "picklist": ("Picklist", "PicklistAttributeMetadata"),
    "lookup": ("Lookup", "LookupAttributeMetadata"),
    "primarykey": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    "nvarchar": ("String", "StringAttributeMetadata"),
    "ntext": ("Memo", "MemoAttributeMetadata"),
    "bit": ("Boolean", "BooleanAttributeMetadata"),
    "owner": ("Owner", "LookupAttributeMetadata"),
    "state": ("State", "StateAttributeMetadata"),
    "status": ("Status", "StatusAttributeMetadata"),
    "decimal": ("Decimal", "DecimalAttributeMetadata"),
    "money": ("Money", "MoneyAttributeMetadata"),
    "float": ("Double", "DoubleAttributeMetadata"),
    "uniqueidentifier": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    "customer": ("Customer", "LookupAttributeMetadata"),
    "partylist": ("PartyList", "LookupAttributeMetadata"),
}


def _ok(payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        200,
        json.dumps(payload).encode("utf-8"),
        [("Content-Type", "application/json; odata.metadata=minimal"), *(headers or [])],
    )


def _segment_not_found(segment: str) -> DataverseError:
    return errors.segment_not_found(segment)


def _not_implemented(request: Request) -> DataverseError:
    return DataverseError(
        unconfirmed.METHOD_NOT_SUPPORTED_STATUS,
        unconfirmed.ODATA_ERROR_CODE,
        unconfirmed.METHOD_NOT_SUPPORTED_MESSAGE.format(method=request.method, path=request.path),
    )


def _missing_parameter(parameter: str, operation: str) -> DataverseError:
    return DataverseError(
        400,
        unconfirmed.MISSING_PARAMETER_CODE,
        unconfirmed.MISSING_PARAMETER_MESSAGE.format(parameter=parameter, operation=operation),
    )


def _annotations(request: Request) -> list[str] | None:
    prefer = odata.parse_prefer(request.header_values("prefer"))
    value = prefer.get("odata.include-annotations")
    if value is None:
        return None
    return [part.strip() for part in value.strip('"').split(",") if part.strip()]


def _filter_navigations(node: tuple | None) -> list[str]:
    """The lookups a parsed $filter follows (``publisherid/uniquename eq 'x'`` → ["publisherid"])."""
    if node is None:
        return []
    if node[0] == "path":
        return [node[1][0]] if len(node[1]) > 1 else []
    found: list[str] = []
    for part in node[1:]:
        if isinstance(part, tuple) and part and isinstance(part[0], str):
            found += _filter_navigations(part)
        elif isinstance(part, tuple):
            for item in part:
                if isinstance(item, tuple):
                    found += _filter_navigations(item)
    return found


def _bound_function(rest: list[str]) -> str | None:
    """``Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`` (or without the namespace) → its name."""
    segment = rest[0] if len(rest) == 1 else ""
    if not segment.endswith(")") or "(" not in segment:
        return None
    return segment.split("(", 1)[0].removeprefix("Microsoft.Dynamics.CRM.")


def _wants(annotations: list[str] | None, name: str) -> bool:
    """Whether ``Prefer: odata.include-annotations`` asked for the annotation ``name`` ("*", a prefix*, itself)."""
    return annotations is not None and any(
        a == "*" or a == name or (a.endswith("*") and name.startswith(a[:-1])) for a in annotations
    )


def _preference_headers(annotations: list[str] | None, page_size: int | None) -> list[tuple[str, str]]:
    headers = []
    if page_size is not None:
        headers.append(("Preference-Applied", f"odata.maxpagesize={page_size}"))
    if annotations is not None:
        headers.append(("Preference-Applied", f'odata.include-annotations="{",".join(annotations)}"'))
    return headers


def _context(api: str, entity: EntitySet, query: odata.Query, single: bool) -> str:
    """``@odata.context`` as in the docs: ``$metadata#contacts(fullname)`` / ``…/$entity`` for one row."""
    columns = list(query.select or [])
    for item in query.expand:
        inner = ",".join(item.select or [])
        columns.append(f"{item.navigation}({inner})")
    suffix = f"({','.join(columns)})" if columns else ""
    return f"{api}/$metadata#{entity.name}{suffix}{'/$entity' if single else ''}"


def _function_args(key: str, query: dict[str, str]) -> dict[str, Any]:
    """``Fn(A=@p1,B='x')?@p1=…`` → {A: value, B: 'x'} (DOC-FUNC "Passing parameters to a function")."""
    args: dict[str, Any] = {}
    for part in _split_args(key):
        name, _, raw = part.partition("=")
        raw = raw.strip()
        if raw.startswith("@"):
            raw = query.get(raw, "")
        args[name.strip()] = _literal(raw)
    return args


def _split_args(text: str) -> list[str]:
    parts, current, quoted, depth = [], [], False, 0
    for char in text:
        if char == "'":
            quoted = not quoted
        elif char in "[(" and not quoted:
            depth += 1
        elif char in "])" and not quoted:
            depth -= 1
        if char == "," and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    if raw.startswith("["):
        try:
            return json.loads(raw.replace("'", '"'))
        except ValueError:
            return raw
    if raw in ("true", "false"):
        return raw == "true"
    return raw


def _find_by_key(rows: list[dict], key: str, alternate: str) -> dict | None:
    key = key.strip()
    if GUID_RE.match(key):
        return next((r for r in rows if r["MetadataId"] == key.lower()), None)
    name, _, value = key.partition("=")
    if name.strip() != alternate:
        return None
    wanted = _literal(value)
    return next((r for r in rows if str(r.get(alternate, "")).lower() == str(wanted).lower()), None)


def _schema_name(logical_name: str) -> str:
    return (
        "".join(part.capitalize() for part in logical_name.split("_"))
        if "_" in logical_name
        else logical_name.capitalize()
    )


def _label(text: str, metadata_id: str) -> dict:
    label = {"Label": text, "LanguageCode": 1033, "IsManaged": True, "MetadataId": metadata_id, "HasChanged": None}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def _definition(
    *,
    logical_name: str,
    schema_name: str,
    entity_set: str,
    primary_id: str,
    primary_name: str | None,
    object_type_code: int,
    display: str,
    display_collection: str,
    custom: bool,
    managed: bool,
    ownership: str,
    columns: list,
    metadata_id: str | None = None,
) -> dict:
    metadata_id = metadata_id or orgs.stable_id("table", logical_name)
    attributes = []
    for column, kind in columns:
        attribute_type, odata_type = _ATTRIBUTE_TYPES.get(str(kind).lower(), ("String", "StringAttributeMetadata"))
        attributes.append(
            {
                "@odata.type": f"#Microsoft.Dynamics.CRM.{odata_type}",
                "MetadataId": orgs.stable_id("attribute", logical_name, column),
                "LogicalName": column,
                "SchemaName": column,
                "EntityLogicalName": logical_name,
                "AttributeType": attribute_type,
                "IsCustomAttribute": custom and column.startswith(logical_name.split("_")[0] + "_"),
                "IsPrimaryId": column == primary_id,
                "IsPrimaryName": column == primary_name,
                "IsManaged": managed,
                "DisplayName": _label(column, orgs.stable_id("label", logical_name, column)),
            }
        )
    return {
        "MetadataId": metadata_id,
        "LogicalName": logical_name,
        "SchemaName": schema_name,
        "EntitySetName": entity_set,
        "LogicalCollectionName": entity_set,
        "CollectionSchemaName": schema_name + "s",
        "PrimaryIdAttribute": primary_id,
        "PrimaryNameAttribute": primary_name,
        "ObjectTypeCode": object_type_code,
        "IsCustomEntity": custom,
        "IsManaged": managed,
        "IsActivity": False,
        "IsIntersect": False,
        "IsPrivate": False,
        "OwnershipType": ownership,
        "TableType": "Standard",
        "IntroducedVersion": "1.0.0.0",
        "DisplayName": _label(display, orgs.stable_id("label", logical_name, "display")),
        "DisplayCollectionName": _label(display_collection, orgs.stable_id("label", logical_name, "collection")),
        "Description": {"LocalizedLabels": [], "UserLocalizedLabel": None},
        "HasChanged": None,
        "emu_attributes": attributes,
    }


def _history_data(org: dict, row: dict) -> dict:
    """A msdyn_solutionhistory row as the newer solutionhistorydata shows it (its table reference)."""
    publisher = org["publishers"].get(row.get("msdyn_publisherid") or "") or {}
    code = row.get("msdyn_errorcode")
    return {
        "solutionhistorydataid": orgs.stable_id("solutionhistorydata", row["msdyn_solutionhistoryid"]),
        "solutionname": row["msdyn_name"],
        "solutionid": row.get("msdyn_solutionid"),
        "solutionversion": row.get("msdyn_solutionversion"),
        "publishername": row.get("msdyn_publishername"),
        "packagename": row.get("msdyn_packagename"),
        "packageversion": row.get("msdyn_packageversion"),
        "operation": row["msdyn_operation"],
        "suboperation": row["msdyn_suboperation"],
        "status": row["msdyn_status"],
        "result": None if row.get("msdyn_result") is None else int(bool(row["msdyn_result"])),
        "starttime": row.get("msdyn_starttime"),
        "endtime": row.get("msdyn_endtime"),
        "ismanaged": bool(row.get("msdyn_ismanaged")),
        "ispatch": bool(row.get("msdyn_ispatch")),
        "isoverwritecustomizations": bool(row.get("msdyn_isoverwritecustomizations")),
        "ismicrosoftpublisher": publisher.get("uniquename") == unconfirmed.MICROSOFT_PUBLISHER[0],
        "errorcode": errors.hex_to_int(code) if code else None,
        "exceptionmessage": row.get("msdyn_exceptionmessage"),
        "exceptionstack": row.get("msdyn_exceptionstack"),
        "activityid": row.get("msdyn_activityid"),
        "correlationid": row.get("msdyn_correlationid"),
        "description": None,
    }


def _attribute_out(attribute: dict, select: list[str] | None) -> dict:
    names = select or [f.name for f in entities.ATTRIBUTE_DEFINITIONS.fields]
    out = {"@odata.type": attribute["@odata.type"]}
    out.update({name: attribute.get(name) for name in names})
    out["MetadataId"] = attribute["MetadataId"]
    return out


__all__ = ["WebApi", "iso"]
