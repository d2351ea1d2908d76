"""Solution operations with Dataverse's rules (docs/dataverse.md §4-§10) and the async job lifecycle.

Rules applied to every import (docs/dataverse.md §1.6, §11.3):
- the zip must hold solution.xml, customizations.xml and [Content_Types].xml (0x80048060, package.py);
- managed over unmanaged and unmanaged over managed are refused (0x80048040 / 0x80048041);
- a managed solution is only replaced by a strictly higher version (0x80048541) from the same
  publisher (0x8004801C);
- MissingDependencies the org cannot satisfy fail the import (0x8004801D; orgs.missing_dependencies);
- system solutions cannot be imported (0x80048046).
Import modes: *update* (ImportSolution[Async] without HoldingSolution) keeps components the new
version lacks; *holding* (HoldingSolution=true) installs ``<name>_Upgrade`` beside the base;
*upgrade* (StageAndUpgradeAsync, or holding + DeleteAndPromote) removes what the new version lacks
(MKR-UPD "Understanding version numbers", "Completing Solution Upgrade").

Async operations (ENT-ASYNC, docs/dataverse.md §7): state is derived from timestamps on every read: Waiting
For Resources (0/0) → In Progress (2/20) → Succeeded (3/30) / Failed (3/31) / Canceled (3/32). The
effect of an operation is applied once, at its due time, by whichever comes first: a request to that
org or the background finaliser thread. Timestamps come from the schedule, not from who finalised,
so the result is deterministic and survives restarts. Only one solution operation runs per org at a
time (docs/dataverse.md §1.6, CustomizationLock; status/code UNCONFIRMED).
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import TYPE_CHECKING, Any

from . import errors, faults, importlog, orgs, unconfirmed
from .errors import DataverseError
from .importlog import Outcome
from .package import SolutionPackage, build_package, parse_version, read_package, rewrite_manifest
from .store import iso, new_id, now

if TYPE_CHECKING:
    from .app import Emulator

SYSTEM_SOLUTION_NAMES = {name.lower() for name, *_ in unconfirmed.SYSTEM_SOLUTIONS}
OPERATION_TYPES = {
    "export": 202,
    "import": 203,
    "delete_and_promote": 207,
    "uninstall": 208,
    "stage_and_upgrade": 211,
}
MESSAGE_NAMES = {
    "export": "ExportSolutionAsync",
    "import": "ImportSolutionAsync",
    "delete_and_promote": "DeleteAndPromoteAsync",
    "uninstall": "UninstallSolutionAsync",
    "stage_and_upgrade": "StageAndUpgradeAsync",
}


class ImportFailure(Exception):
    """An import that fails inside Dataverse: carries the error and where the import log reports it."""

    def __init__(self, error: DataverseError, *, at_manifest: bool, missing_xml: str = "", log_code: str | None = None):
        super().__init__(str(error))
        self.error = error
        self.at_manifest = at_manifest
        self.missing_xml = missing_xml
        self.log_code = log_code or error.code
        self.log_text = error.message


class SolutionService:
    """All solution operations of all orgs. Callers hold ``store.lock`` and save afterwards."""

    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.store = app.store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------
    # Background finaliser
    # ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="async-finaliser", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.1):
            ticks += 1
            with self.store.lock:
                changed = [
                    org["name"] for org in list(self.store.data["orgs"].values()) if self.finalize_due(org, now())
                ]
                if changed:
                    self.store.save(orgs=changed)
                if ticks % 10 == 0:
                    self.store.flush()  # request counters and other minor changes, once a second

    # ------------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------------
    def duration(self, org: dict) -> float:
        return float(org["settings"].get("operation_duration", self.app.default_operation_duration))

    def running_operation(self, org: dict) -> dict | None:
        for op in org["asyncoperations"].values():
            if not op["emu_finalized"]:
                return op
        return None

    def check_lock(self, org: dict, requested: str) -> None:
        """One solution operation at a time per org (docs/dataverse.md §1.6; 429/0x80071151 UNCONFIRMED)."""
        self.finalize_due(org, now())
        running = self.running_operation(org)
        if running is None:
            return
        message = unconfirmed.CUSTOMIZATION_LOCK_MESSAGE.format(
            requested=unconfirmed.LOCK_NAMES.get(requested, requested),
            running=unconfirmed.LOCK_NAMES.get(running["emu_kind"], running["emu_kind"]),
        )
        raise DataverseError(unconfirmed.CUSTOMIZATION_LOCK_STATUS, unconfirmed.CUSTOMIZATION_LOCK_CODE, message)

    def count_import(self, org: dict, package: SolutionPackage) -> None:
        """Per (org, solution, version, package SHA-256): how many imports were accepted (crash tests)."""
        key = f"{org['name']}|{package.unique_name}|{package.version}|{package.sha256}"
        counters = self.store.data["counters"]["imports"]
        counters[key] = counters.get(key, 0) + 1

    def receive_package(self, org: dict, body: dict[str, Any], operation: str) -> tuple[bytes, SolutionPackage]:
        """The package of an import: ``CustomizationFile`` (base64) or a staged upload (docs/dataverse.md §5.2)."""
        encoded = body.get("CustomizationFile")
        if encoded:
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raise DataverseError(400, errors.IMPORT_BAD_ZIP, errors.IMPORT_BAD_ZIP_MESSAGE) from exc
        else:
            upload_id = ((body.get("SolutionParameters") or {}).get("StageSolutionUploadId") or "").lower()
            staged = org["staged"].get(upload_id)
            if staged is None:
                raise DataverseError(
                    400,
                    unconfirmed.MISSING_PARAMETER_CODE,
                    unconfirmed.MISSING_PARAMETER_MESSAGE.format(parameter="CustomizationFile", operation=operation),
                )
            data = self.store.get_blob(staged["sha256"])
        package = read_package(data)
        self.store.put_blob(package.sha256, data)
        return data, package

    def package_by_sha(self, sha256: str) -> SolutionPackage:
        return read_package(self.store.get_blob(sha256))

    # ------------------------------------------------------------------------------------------
    # Rules and effects
    # ------------------------------------------------------------------------------------------
    def check_rules(self, org: dict, package: SolutionPackage, mode: str) -> None:
        """Raise ImportFailure when Dataverse would refuse to apply ``package`` in ``mode``."""
        name = package.unique_name
        if name.lower() in SYSTEM_SOLUTION_NAMES:
            raise ImportFailure(
                DataverseError(400, errors.IMPORT_SYSTEM_SOLUTION, errors.IMPORT_SYSTEM_SOLUTION_MESSAGE),
                at_manifest=True,
            )
        existing = orgs.find_solution(org, name)
        holding_name = f"{name}_Upgrade"
        if mode == "holding":
            if existing is None or not existing["ismanaged"]:
                raise ImportFailure(
                    DataverseError(
                        400, errors.IMPORT_SOLUTION_ERROR, unconfirmed.HOLDING_WITHOUT_BASE_MESSAGE.format(name=name)
                    ),
                    at_manifest=True,
                )
            if not package.is_managed:
                raise ImportFailure(self._mismatch(managed_installed=True), at_manifest=True)
            if orgs.find_solution(org, holding_name) is not None:
                raise ImportFailure(
                    DataverseError(
                        400,
                        errors.IMPORT_SOLUTION_ERROR,
                        unconfirmed.HOLDING_ALREADY_EXISTS_MESSAGE.format(name=name, holding=holding_name),
                    ),
                    at_manifest=True,
                )
            self._check_managed_replacement(org, existing, package)
        elif existing is not None:
            if existing["ismanaged"] != package.is_managed:
                raise ImportFailure(self._mismatch(managed_installed=existing["ismanaged"]), at_manifest=True)
            if existing["ismanaged"]:
                if mode == "upgrade" and orgs.find_solution(org, holding_name) is not None:
                    raise ImportFailure(
                        DataverseError(
                            400,
                            errors.IMPORT_SOLUTION_ERROR,
                            unconfirmed.HOLDING_ALREADY_EXISTS_MESSAGE.format(name=name, holding=holding_name),
                        ),
                        at_manifest=True,
                    )
                self._check_managed_replacement(org, existing, package)
        missing = orgs.missing_dependencies(org, package)
        if missing:
            missing_package = SolutionPackage(**{**package.__dict__, "missing_dependencies": missing})
            xml = _missing_xml(missing_package)
            message = errors.IMPORT_MISSING_DEPENDENCIES_MESSAGE.format(name=name) + (
                unconfirmed.MISSING_DEPENDENCIES_DETAIL.format(xml=xml)
            )
            failure = ImportFailure(
                DataverseError(400, errors.IMPORT_MISSING_DEPENDENCIES, message),
                at_manifest=True,
                missing_xml=xml,
                log_code=unconfirmed.IMPORT_LOG_MISSING_DEPENDENCY_ERRORCODE,
            )
            failure.log_text = unconfirmed.IMPORT_LOG_MISSING_DEPENDENCY_TEXT.format(name=name, xml=xml)
            raise failure

    @staticmethod
    def _mismatch(*, managed_installed: bool) -> DataverseError:
        if managed_installed:
            return DataverseError(
                400, errors.IMPORT_UNMANAGED_TO_MANAGED_MISMATCH, errors.IMPORT_UNMANAGED_TO_MANAGED_MISMATCH_MESSAGE
            )
        return DataverseError(
            400, errors.IMPORT_MANAGED_TO_UNMANAGED_MISMATCH, errors.IMPORT_MANAGED_TO_UNMANAGED_MISMATCH_MESSAGE
        )

    @staticmethod
    def _check_managed_replacement(org: dict, existing: dict, package: SolutionPackage) -> None:
        publisher = org["publishers"].get(existing["_publisherid_value"]) or {}
        old = publisher.get("uniquename", "")
        if old.lower() != package.publisher.unique_name.lower():
            raise ImportFailure(
                DataverseError(
                    400,
                    errors.IMPORT_WRONG_PUBLISHER,
                    errors.IMPORT_WRONG_PUBLISHER_MESSAGE.format(
                        name=package.unique_name, old=old, new=package.publisher.unique_name
                    ),
                ),
                at_manifest=True,
            )
        if parse_version(package.version) <= parse_version(existing["version"]):
            raise ImportFailure(
                DataverseError(400, errors.IMPORT_LOWER_VERSION, errors.IMPORT_LOWER_VERSION_MESSAGE), at_manifest=True
            )

    def install(self, org: dict, package: SolutionPackage, mode: str, t: float, params: dict) -> tuple[dict, int]:
        """Apply a checked package. Returns the resulting solution row and the history sub-operation."""
        publisher = orgs.ensure_publisher(org, package, t)
        existing = orgs.find_solution(org, package.unique_name)
        if mode == "holding":
            row = orgs.add_solution(
                org,
                unique_name=f"{package.unique_name}_Upgrade",
                friendly_name=package.friendly_name,
                version=package.version,
                managed=True,
                visible=True,
                publisher_id=publisher["publisherid"],
                t=t,
                description=package.description or None,
                package_sha=package.sha256,
                solution_package_version=package.solution_package_version or None,
            )
            orgs.add_components(org, row["solutionid"], package, t)
            self._apply_parameters(org, params)
            return row, unconfirmed.HISTORY_SUBOPERATION_FOR_HOLDING_IMPORT
        if mode == "upgrade" and existing is not None:
            holding, _ = self.install(org, package, "holding", t, params)
            return self.promote(org, existing, holding, t), 2
        if existing is None:
            row = orgs.add_solution(
                org,
                unique_name=package.unique_name,
                friendly_name=package.friendly_name,
                version=package.version,
                managed=package.is_managed,
                visible=True,
                publisher_id=publisher["publisherid"],
                t=t,
                description=package.description or None,
                package_sha=package.sha256,
                solution_package_version=package.solution_package_version or None,
            )
            sub_operation = 1  # New
        else:
            row = existing
            row.update(
                {
                    "version": package.version,
                    "friendlyname": package.friendly_name,
                    "description": package.description or None,
                    "installedon": iso(t),
                    "updatedon": iso(t),
                    "solutionpackageversion": package.solution_package_version or None,
                    "emu_package_sha": package.sha256,
                }
            )
            orgs.touch(org, row, t)
            sub_operation = 3  # Update: components the new version lacks stay
        orgs.add_components(org, row["solutionid"], package, t)
        self._apply_parameters(org, params)
        return row, sub_operation

    @staticmethod
    def _apply_parameters(org: dict, params: dict) -> None:
        """ComponentParameters: environment variable values and connection references (docs/dataverse.md §5.2, §12)."""
        for entity in params.get("component_parameters") or []:
            kind = str(entity.get("@odata.type", "")).rsplit(".", 1)[-1]
            if kind == "environmentvariablevalue" and entity.get("schemaname"):
                org["environment_variable_values"][entity["schemaname"]] = entity.get("value")
            elif kind == "connectionreference" and entity.get("connectionreferencelogicalname"):
                org["connection_reference_bindings"][entity["connectionreferencelogicalname"]] = {
                    "connectionid": entity.get("connectionid"),
                    "connectorid": entity.get("connectorid"),
                }

    def promote(self, org: dict, base: dict, holding: dict, t: float) -> dict:
        """DeleteAndPromote: delete the base (components only it held go, tables with their rows) and
        rename the holding solution to the base name (REF-deleteandpromote, MKR-UPD)."""
        orgs.release_components(org, base["solutionid"])
        del org["solutions"][base["solutionid"]]
        if unconfirmed.UPGRADE_KEEPS_SOLUTION_ID:  # the promoted solution takes over the base's id
            holding_id, base_id = holding["solutionid"], base["solutionid"]
            del org["solutions"][holding_id]
            holding["solutionid"] = base_id
            org["solutions"][base_id] = holding
            for entry in org["components"].values():
                if holding_id in entry["solutions"]:
                    entry["solutions"][base_id] = entry["solutions"].pop(holding_id)
        holding["uniquename"] = base["uniquename"]
        holding["installedon"] = iso(t)
        holding["updatedon"] = iso(t)
        orgs.touch(org, holding, t)
        return holding

    def uninstall(self, org: dict, row: dict, t: float) -> None:
        """Remove a solution. Managed: its components and custom tables (and their rows) go.
        Unmanaged: only the container goes; its components stay in the org (Default)."""
        if row["ismanaged"]:
            orgs.release_components(org, row["solutionid"])
        else:
            default = orgs.find_solution(org, "Default")
            orgs.release_components(org, row["solutionid"], reassign_to=default["solutionid"] if default else None)
        del org["solutions"][row["solutionid"]]

    def export_bytes(self, org: dict, name: str, managed: bool) -> tuple[bytes, dict]:
        """The zip Dataverse would export for ``name`` (docs/dataverse.md §4.1)."""
        row = orgs.find_solution(org, name or "")
        if row is None:
            raise DataverseError(
                unconfirmed.EXPORT_MISSING_SOLUTION_STATUS,
                unconfirmed.EXPORT_MISSING_SOLUTION_CODE,
                unconfirmed.EXPORT_MISSING_SOLUTION_MESSAGE,
            )
        if row["ismanaged"]:
            raise DataverseError(
                unconfirmed.EXPORT_MANAGED_SOLUTION_STATUS,
                unconfirmed.EXPORT_MANAGED_SOLUTION_CODE,
                unconfirmed.EXPORT_MANAGED_SOLUTION_MESSAGE,
            )
        if row.get("emu_package_sha"):
            data = rewrite_manifest(
                self.store.get_blob(row["emu_package_sha"]), managed=managed, version=row["version"]
            )
        else:
            publisher_row = org["publishers"][row["_publisherid_value"]]
            from .package import Publisher

            data = build_package(
                unique_name=row["uniquename"],
                friendly_name=row["friendlyname"],
                version=row["version"],
                managed=managed,
                publisher=Publisher(
                    publisher_row["uniquename"],
                    publisher_row["friendlyname"],
                    publisher_row["customizationprefix"] or "",
                    publisher_row["customizationoptionvalueprefix"] or 10000,
                ),
            )
        return data, row

    # ------------------------------------------------------------------------------------------
    # Imports
    # ------------------------------------------------------------------------------------------
    def execute_import(
        self, org: dict, package: SolutionPackage, mode: str, t: float, params: dict
    ) -> tuple[Outcome, dict | None, int]:
        """Check and apply; never raises for solution errors, returns the outcome instead."""
        try:
            denied = params.get("privilege_error")
            if denied:  # the job runs as its caller, who lacks a privilege (PRIVILEGE_CHECK_DEFAULT "job")
                raise ImportFailure(
                    DataverseError(unconfirmed.PRIVILEGE_DENIED_STATUS, denied["code"], denied["message"]),
                    at_manifest=True,
                )
            self.check_rules(org, package, mode)
            if mode == "upgrade" and orgs.find_solution(org, package.unique_name) is None:
                if not unconfirmed.STAGE_AND_UPGRADE_INSTALLS_NEW:
                    raise ImportFailure(self._not_found(package.unique_name), at_manifest=True)
                mode = "update"  # StageAndUpgrade of a solution not installed yet installs it
            fail = params.get("fail")
            if fail:  # injected failure: the package is fine, a component fails to import
                raise ImportFailure(DataverseError(400, fail["code"], fail["message"]), at_manifest=False)
            row, sub_operation = self.install(org, package, mode, t, params)
            return Outcome(success=True), row, sub_operation
        except ImportFailure as failure:
            outcome = Outcome(
                success=False,
                error_code=failure.log_code,
                error_text=failure.log_text,
                at_manifest=failure.at_manifest,
                missing_dependencies_xml=failure.missing_xml,
                error=failure.error,
            )
            return outcome, None, {"holding": 2, "upgrade": 2}.get(mode, 1)

    def _new_importjob(
        self, org: dict, job_id: str, package: SolutionPackage | None, t: float, op_id: str | None
    ) -> dict:
        name = package.unique_name if package else ""
        row = {
            "importjobid": job_id,
            "name": name,
            "solutionname": name,
            "solutionid": None,
            "progress": 0.0,
            "data": None,
            "startedon": None,
            "completedon": None,
            "importcontext": unconfirmed.IMPORT_JOB_CONTEXT,
            "operationcontext": None,
            "_createdby_value": None,
            "createdon": iso(t),
            "modifiedon": iso(t),
            "versionnumber": orgs.bump(org),
            "emu_asyncoperationid": op_id,
            "emu_package_sha": package.sha256 if package else None,
        }
        org["importjobs"][job_id] = row
        return row

    def _caller_job_id(self, org: dict, body: dict, operation: str, is_async: bool) -> str:
        """ImportJobId handling; on async actions one switch decides (unconfirmed.IMPORT_JOB_ID_ON_ASYNC_*)."""
        requested = body.get("ImportJobId")
        if requested and is_async and org["settings"].get("import_job_id_on_async") != "honour":
            raise DataverseError(
                unconfirmed.UNKNOWN_PARAMETER_STATUS,
                unconfirmed.UNKNOWN_PARAMETER_CODE,
                unconfirmed.UNKNOWN_PARAMETER_MESSAGE.format(parameter="ImportJobId", operation=operation),
            )
        if not requested or requested == "00000000-0000-0000-0000-000000000000":
            return new_id()
        job_id = str(requested).lower()
        if job_id in org["importjobs"]:
            raise DataverseError(
                400, unconfirmed.DUPLICATE_IMPORT_JOB_ID_CODE, unconfirmed.DUPLICATE_IMPORT_JOB_ID_MESSAGE
            )
        return job_id

    @staticmethod
    def _import_params(org: dict, body: dict, t: float) -> dict:
        params = {
            "overwrite": bool(body.get("OverwriteUnmanagedCustomizations") or False),
            "publish_workflows": bool(body.get("PublishWorkflows") or False),
            "component_parameters": body.get("ComponentParameters") or [],
        }
        failure = faults.take_import_fault(org["faults"], "import_failure", t)
        if failure:
            params["fail"] = {"code": failure["code"], "message": failure["message"]}
        return params

    def import_solution(
        self, org: dict, body: dict, correlation_id: str, package: SolutionPackage | None = None
    ) -> None:
        """``ImportSolution`` (sync, docs/dataverse.md §5.1): 204 on success; the error otherwise (status UNCONFIRMED).
        ``package``: the one the privilege check already read from ``body``."""
        self.check_lock(org, "import")
        if package is None:
            _data, package = self.receive_package(org, body, "ImportSolution")
        job_id = self._caller_job_id(org, body, "ImportSolution", is_async=False)
        t = now()
        mode = "holding" if body.get("HoldingSolution") else "update"
        self.count_import(org, package)
        params = self._import_params(org, body, t)
        job = self._new_importjob(org, job_id, package, t, None)
        history = self._history_for_import(org, package, mode, t, params, correlation_id)
        outcome, row, sub_operation = self.execute_import(org, package, mode, t, params)
        self._complete_importjob(org, job, package, outcome, row, t, t)
        orgs.history_finish(
            org,
            history,
            t=t,
            success=outcome.success,
            error_code=None if outcome.success else outcome.error.code,
            message=None if outcome.success else outcome.error.message,
            solution_id=row["solutionid"] if row else None,
            suboperation=sub_operation,
        )
        if not outcome.success:
            error: DataverseError = outcome.error
            raise DataverseError(unconfirmed.SYNC_IMPORT_FAILURE_STATUS, error.code, error.message)

    def _history_for_import(
        self, org: dict, package: SolutionPackage, mode: str, t: float, params: dict, correlation_id: str
    ) -> dict:
        existing = orgs.find_solution(org, package.unique_name)
        publisher = next(
            (p for p in org["publishers"].values() if p["uniquename"].lower() == package.publisher.unique_name.lower()),
            None,
        )
        sub_operation = 2 if mode in ("holding", "upgrade") else (3 if existing is not None else 1)
        return orgs.history_start(
            org,
            name=package.unique_name,
            solution_id=existing["solutionid"] if existing else None,
            version=package.version,
            publisher=publisher,
            operation=0,
            suboperation=sub_operation,
            managed=package.is_managed,
            overwrite=params["overwrite"],
            t=t,
            correlation_id=correlation_id,
            package_name=package.unique_name,
            publisher_name=package.publisher.unique_name,
        )

    def _complete_importjob(
        self,
        org: dict,
        job: dict,
        package: SolutionPackage,
        outcome: Outcome,
        row: dict | None,
        started: float,
        t: float,
    ) -> None:
        job["startedon"] = iso(started)
        job["completedon"] = iso(t)
        job["progress"] = 100.0 if outcome.success or not outcome.at_manifest else 0.0
        job["data"] = importlog.build_log(package, outcome, started, t)
        job["solutionid"] = row["solutionid"] if row else None
        job["operationcontext"] = None
        orgs.touch(org, job, t)

    def submit_import_async(
        self,
        org: dict,
        body: dict,
        kind: str,
        correlation_id: str,
        package: SolutionPackage | None = None,
        denied: DataverseError | None = None,
    ) -> dict[str, str]:
        """``ImportSolutionAsync`` / ``StageAndUpgradeAsync`` (docs/dataverse.md §5.2, §6): returns the handles.

        ``package``: already read by the privilege check; ``denied``: a missing privilege the job fails with
        (``unconfirmed.PRIVILEGE_CHECK_DEFAULT`` "job")."""
        operation = MESSAGE_NAMES[kind]
        self.check_lock(org, kind)
        try:
            if package is None:
                _data, package = self.receive_package(org, body, operation)
        except DataverseError as error:
            if unconfirmed.STRUCTURAL_ERRORS_FAIL_REQUEST or error.code == unconfirmed.MISSING_PARAMETER_CODE:
                raise
            return self._accept_unreadable(org, body, kind, operation, error, correlation_id)
        job_id = self._caller_job_id(org, body, operation, is_async=True)
        t = now()
        mode = "holding" if body.get("HoldingSolution") else "update"
        if kind == "stage_and_upgrade":
            mode = "upgrade"
        self.count_import(org, package)
        params = self._import_params(org, body, t)
        params.update({"sha256": package.sha256, "mode": mode, "importjobid": job_id})
        if denied is not None:
            params["privilege_error"] = {"code": denied.code, "message": denied.message}
        never = faults.take_import_fault(org["faults"], "import_never_finishes", t)
        op = self._new_operation(org, kind, t, params, correlation_id, never_finishes=bool(never))
        self._new_importjob(org, job_id, package, t, op["asyncoperationid"])
        history = self._history_for_import(org, package, mode, t, params, correlation_id)
        op["emu_history_id"] = history["msdyn_solutionhistoryid"]
        return {"AsyncOperationId": op["asyncoperationid"], "ImportJobKey": job_id}

    def _accept_unreadable(
        self, org: dict, body: dict, kind: str, operation: str, error: DataverseError, correlation_id: str
    ) -> dict[str, str]:
        """STRUCTURAL_ERRORS_FAIL_REQUEST = False: accept an unreadable package; its job fails."""
        job_id = self._caller_job_id(org, body, operation, is_async=True)
        t = now()
        params = {"structural_error": {"code": error.code, "message": error.message}, "importjobid": job_id}
        op = self._new_operation(org, kind, t, params, correlation_id)
        self._new_importjob(org, job_id, None, t, op["asyncoperationid"])
        return {"AsyncOperationId": op["asyncoperationid"], "ImportJobKey": job_id}

    # ------------------------------------------------------------------------------------------
    # Async operations
    # ------------------------------------------------------------------------------------------
    def _new_operation(
        self, org: dict, kind: str, t: float, params: dict, correlation_id: str, never_finishes: bool = False
    ) -> dict:
        duration = self.duration(org)
        op_id = new_id()
        op = {
            "asyncoperationid": op_id,
            "name": unconfirmed.ASYNC_NAMES[OPERATION_TYPES[kind]],
            "operationtype": OPERATION_TYPES[kind],
            "statecode": 0,
            "statuscode": 0,
            "message": None,
            "friendlymessage": None,
            "errorcode": None,
            "startedon": None,
            "completedon": None,
            "executiontimespan": None,
            "correlationid": correlation_id,
            "requestid": new_id(),
            "messagename": MESSAGE_NAMES[kind],
            "primaryentitytype": "none",
            "_regardingobjectid_value": None,
            "retrycount": 0,
            "depth": 1,
            "data": None,
            "breadcrumbid": new_id(),
            "correlationupdatedtime": iso(t),
            "_ownerid_value": None,
            "createdon": iso(t),
            "modifiedon": iso(t),
            "versionnumber": orgs.bump(org),
            "emu_kind": kind,
            "emu_created": t,
            "emu_started": t + duration * unconfirmed.ASYNC_WAITING_SHARE,
            "emu_due": None if never_finishes else t + duration,
            "emu_finalized": False,
            "emu_params": params,
            "emu_history_id": None,
        }
        org["asyncoperations"][op_id] = op
        return op

    def operation_view(self, op: dict, t: float) -> dict:
        """The asyncoperation row as of ``t`` (statecode/statuscode derived from the schedule)."""
        row = dict(op)
        if not op["emu_finalized"]:
            if t < op["emu_started"]:
                row.update({"statecode": 0, "statuscode": 0})
            else:
                row.update({"statecode": 2, "statuscode": 20, "startedon": iso(op["emu_started"])})
                row["modifiedon"] = iso(op["emu_started"])
                row["versionnumber"] = op["versionnumber"] + 1
        return row

    def importjob_view(self, org: dict, job: dict, t: float) -> dict:
        row = dict(job)
        op = org["asyncoperations"].get(job.get("emu_asyncoperationid") or "")
        if op is not None and not op["emu_finalized"]:
            started = op["emu_started"]
            if t >= started:
                due = op["emu_due"]
                span = (due - started) if due else self.duration(org) * 4
                fraction = min(0.99, (t - started) / span) if span > 0 else 0.99
                if due is None:
                    fraction = min(fraction, 0.5)
                row["progress"] = round(fraction * 100, 2)
                row["startedon"] = iso(started)
                row["data"] = importlog.progress_log(job["solutionname"], row["progress"], started)
        return row

    def finalize_due(self, org: dict, t: float) -> bool:
        """Apply every operation whose due time has passed, in order. Returns whether anything changed."""
        due = sorted(
            (
                op
                for op in org["asyncoperations"].values()
                if not op["emu_finalized"] and op["emu_due"] is not None and op["emu_due"] <= t
            ),
            key=lambda op: op["emu_due"],
        )
        for op in due:
            self._finalize(org, op)
        return bool(due)

    def _finalize(self, org: dict, op: dict) -> None:
        t = op["emu_due"]
        kind = op["emu_kind"]
        params = op["emu_params"]
        error: DataverseError | None = None
        if kind in ("import", "stage_and_upgrade") and params.get("structural_error"):
            error = DataverseError(400, params["structural_error"]["code"], params["structural_error"]["message"])
            job = org["importjobs"].get(params["importjobid"])
            if job is not None:
                job.update({"startedon": iso(op["emu_started"]), "completedon": iso(t), "progress": 0.0})
                job["data"] = importlog.unreadable_log(error.code, error.message, op["emu_started"], t)
                orgs.touch(org, job, t)
        elif kind in ("import", "stage_and_upgrade"):
            package = self.package_by_sha(params["sha256"])
            outcome, row, sub_operation = self.execute_import(org, package, params["mode"], t, params)
            job = org["importjobs"].get(params["importjobid"])
            if job is not None:
                self._complete_importjob(org, job, package, outcome, row, op["emu_started"], t)
            history = org["history"].get(op.get("emu_history_id") or "")
            if not outcome.success:
                error = outcome.error
            if history is not None:
                orgs.history_finish(
                    org,
                    history,
                    t=t,
                    success=outcome.success,
                    error_code=error.code if error else None,
                    message=error.message if error else None,
                    solution_id=row["solutionid"] if row else None,
                    suboperation=sub_operation,
                )
            if row is not None:
                op["_regardingobjectid_value"] = row["solutionid"]
        else:
            try:
                self._finalize_other(org, op, t)
            except DataverseError as exc:
                error = exc
        self._complete_operation(org, op, t, error)

    def _complete_operation(
        self, org: dict, op: dict, t: float, error: DataverseError | None, canceled: bool = False
    ) -> None:
        op["emu_finalized"] = True
        op["statecode"] = 3
        op["startedon"] = iso(op["emu_started"])
        op["completedon"] = iso(t)
        op["executiontimespan"] = round(max(0.0, t - op["emu_started"]) / 60.0, 6)  # minutes
        if canceled:
            op["statuscode"] = 32
        elif error is None:
            op["statuscode"] = 30
        else:
            op["statuscode"] = 31
            op["message"] = error.message
            op["friendlymessage"] = error.message
            op["errorcode"] = error.code_int
        orgs.touch(org, op, t)

    def _finalize_other(self, org: dict, op: dict, t: float) -> None:
        kind, params = op["emu_kind"], op["emu_params"]
        history = org["history"].get(op.get("emu_history_id") or "")
        try:
            if params.get("privilege_error"):  # the job runs as its caller, who lacks a privilege
                denied = params["privilege_error"]
                raise DataverseError(unconfirmed.PRIVILEGE_DENIED_STATUS, denied["code"], denied["message"])
            if kind == "export":
                data, _row = self.export_bytes(org, params["name"], params["managed"])
                sha = orgs.stable_id("export", op["asyncoperationid"])
                self.store.put_blob(sha, data)
                org["exportjobs"][params["exportjobid"]]["sha256"] = sha
            elif kind == "delete_and_promote":
                self.delete_and_promote_now(org, params["name"], t)
            elif kind == "uninstall":
                row = orgs.find_solution(org, params["name"])
                if row is None:
                    raise self._not_found(params["name"])
                solution_id = row["solutionid"]
                self.uninstall(org, row, t)
                if history is not None:
                    history["msdyn_solutionid"] = solution_id
        except DataverseError as exc:
            if history is not None:
                orgs.history_finish(org, history, t=t, success=False, error_code=exc.code, message=exc.message)
            raise
        if history is not None:
            orgs.history_finish(org, history, t=t, success=True)

    def cancel(self, org: dict, op_id: str) -> dict:
        """Admin: cancel a running operation (statuscode 32). Dataverse has no documented cancel API."""
        op = org["asyncoperations"].get(op_id.lower())
        if op is None:
            raise DataverseError(404, errors.RECORD_NOT_FOUND, f"asyncoperation {op_id} not found")
        if not op["emu_finalized"]:
            t = now()
            self._complete_operation(org, op, t, None, canceled=True)
            history = org["history"].get(op.get("emu_history_id") or "")
            if history is not None:
                orgs.history_finish(org, history, t=t, success=False, error_code="", message="Canceled")
            job = org["importjobs"].get((op["emu_params"] or {}).get("importjobid") or "")
            if job is not None:
                job["completedon"] = iso(t)
                orgs.touch(org, job, t)
        return op

    # ------------------------------------------------------------------------------------------
    # Other actions
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _not_found(name: str) -> DataverseError:
        return DataverseError(
            unconfirmed.SOLUTION_NOT_FOUND_STATUS,
            unconfirmed.SOLUTION_NOT_FOUND_CODE,
            unconfirmed.SOLUTION_NOT_FOUND_MESSAGE.format(name=name),
        )

    def stage_solution(self, org: dict, body: dict) -> dict:
        """``StageSolution`` (docs/dataverse.md §6): validate without installing; keep the upload for a later import."""
        _data, package = self.receive_package(org, body, "StageSolution")
        upload_id = str(body.get("StageSolutionUploadId") or new_id()).lower()
        org["staged"][upload_id] = {"sha256": package.sha256, "created": now()}
        existing = orgs.find_solution(org, package.unique_name)
        mode = "update"
        if existing is not None and existing["ismanaged"] and package.is_managed:
            mode = "upgrade"
        validation: list[dict] = []
        missing_details: list[dict] = []
        try:
            self.check_rules(org, package, mode)
        except ImportFailure as failure:
            if failure.error.code == errors.IMPORT_MISSING_DEPENDENCIES:
                for dependency in orgs.missing_dependencies(org, package):
                    missing_details.append(_missing_dependency_ct(dependency))
            validation.append(
                {
                    "SolutionValidationResultType": unconfirmed.VALIDATION_RESULT_ERROR,
                    "Message": failure.error.message,
                    "ErrorCode": failure.error.code_int,
                    "AdditionalInfo": None,
                }
            )
        publisher = package.publisher
        return {
            "StageSolutionResults": {
                "StageSolutionUploadId": upload_id,
                "StageSolutionStatus": unconfirmed.STAGE_STATUS_FAILED
                if validation
                else unconfirmed.STAGE_STATUS_PASSED,
                "SolutionDetails": {
                    "SolutionUniqueName": package.unique_name,
                    "SolutionFriendlyName": package.friendly_name,
                    "SolutionVersion": package.version,
                    "SolutionDescription": package.description,
                    "IsManaged": package.is_managed,
                    "IsPatchSolution": False,
                    "PublisherUniqueName": publisher.unique_name,
                    "PublisherFriendlyName": publisher.friendly_name,
                    "PreviousSolutionUniqueName": existing["uniquename"] if existing else None,
                    "PreviousSolutionFriendlyName": existing["friendlyname"] if existing else None,
                    "PreviousSolutionVersion": existing["version"] if existing else None,
                    "PreviousIsManaged": existing["ismanaged"] if existing else None,
                    "HasPendingUpgrade": bool(orgs.find_solution(org, f"{package.unique_name}_Upgrade")),
                },
                "SolutionComponentsDetails": [
                    {
                        "ComponentName": component.name or component.id,
                        "ComponentTypeName": str(component.type),
                        "IsPresentInOrg": "Present" if component.key in org["components"] else "NotPresent",
                        "Attributes": [],
                    }
                    for component in package.components
                    if component.type != 2
                ],
                "MissingDependencies": missing_details,
                "SolutionValidationResults": validation,
            }
        }

    def export_solution(self, org: dict, body: dict, correlation_id: str) -> dict:
        """``ExportSolution`` (sync, docs/dataverse.md §4.1)."""
        self.check_lock(org, "export")
        name = str(body.get("SolutionName") or "")
        managed = bool(body.get("Managed"))
        t = now()
        data, row = self.export_bytes(org, name, managed)
        self._export_history(org, row, managed, t, correlation_id, finished=True)
        return {"ExportSolutionFile": base64.b64encode(data).decode("ascii")}

    def _export_history(
        self, org: dict, row: dict, managed: bool, t: float, correlation_id: str, finished: bool
    ) -> dict:
        history = orgs.history_start(
            org,
            name=row["uniquename"],
            solution_id=row["solutionid"],
            version=row["version"],
            publisher=org["publishers"].get(row["_publisherid_value"]),
            operation=2,
            suboperation=0,
            managed=managed,
            overwrite=False,
            t=t,
            correlation_id=correlation_id,
        )
        if finished:
            orgs.history_finish(org, history, t=t, success=True)
        return history

    def export_solution_async(
        self, org: dict, body: dict, correlation_id: str, denied: DataverseError | None = None
    ) -> dict:
        """``ExportSolutionAsync`` (docs/dataverse.md §4.2): refusals are immediate (UNCONFIRMED), the file comes
        later."""
        self.check_lock(org, "export")
        name = str(body.get("SolutionName") or "")
        managed = bool(body.get("Managed"))
        t = now()
        row = orgs.find_solution(org, name)
        if unconfirmed.EXPORT_ASYNC_REFUSES_AT_REQUEST or row is None:
            _data, row = self.export_bytes(org, name, managed)  # same refusals as the sync export
        export_job_id = new_id()
        params = {"name": name, "managed": managed, "exportjobid": export_job_id, **_denied(denied)}
        op = self._new_operation(org, "export", t, params, correlation_id)
        org["exportjobs"][export_job_id] = {"asyncoperationid": op["asyncoperationid"], "sha256": None}
        op["emu_history_id"] = self._export_history(org, row, managed, t, correlation_id, finished=False)[
            "msdyn_solutionhistoryid"
        ]
        op["_regardingobjectid_value"] = row["solutionid"]
        return {"AsyncOperationId": op["asyncoperationid"], "ExportJobId": export_job_id}

    def download_export(self, org: dict, body: dict) -> dict:
        """``DownloadSolutionExportData`` once the export job succeeded (docs/dataverse.md §4.2)."""
        job_id = str(body.get("ExportJobId") or "").lower()
        self.finalize_due(org, now())
        job = org["exportjobs"].get(job_id)
        if job is None or not job.get("sha256"):
            raise DataverseError(
                404 if job is None else 400,
                unconfirmed.EXPORT_NOT_READY_CODE,
                unconfirmed.EXPORT_NOT_READY_MESSAGE.format(job=job_id),
            )
        return {"ExportSolutionFile": base64.b64encode(self.store.get_blob(job["sha256"])).decode("ascii")}

    def delete_and_promote_now(self, org: dict, name: str, t: float) -> dict:
        base = orgs.find_solution(org, name)
        holding = orgs.find_solution(org, f"{name}_Upgrade")
        if base is None:
            raise self._not_found(name)
        if holding is None:
            raise DataverseError(
                400,
                errors.IMPORT_SOLUTION_ERROR,
                unconfirmed.DELETE_AND_PROMOTE_NO_HOLDING_MESSAGE.format(name=name, holding=f"{name}_Upgrade"),
            )
        return self.promote(org, base, holding, t)

    def _promote_history(self, org: dict, name: str, t: float, correlation_id: str) -> dict:
        holding = orgs.find_solution(org, f"{name}_Upgrade")
        return orgs.history_start(
            org,
            name=name,
            solution_id=holding["solutionid"] if holding else None,
            version=holding["version"] if holding else "",
            publisher=org["publishers"].get(holding["_publisherid_value"]) if holding else None,
            operation=unconfirmed.HISTORY_OPERATION_FOR_DELETE_AND_PROMOTE,
            suboperation=unconfirmed.HISTORY_SUBOPERATION_FOR_DELETE_AND_PROMOTE,
            managed=True,
            overwrite=False,
            t=t,
            correlation_id=correlation_id,
        )

    def delete_and_promote(self, org: dict, body: dict, correlation_id: str) -> dict:
        """``DeleteAndPromote`` (sync): returns the promoted solution's id (REF-deleteandpromoteresponse)."""
        self.check_lock(org, "delete_and_promote")
        name = str(body.get("UniqueName") or "")
        t = now()
        history = self._promote_history(org, name, t, correlation_id)
        try:
            promoted = self.delete_and_promote_now(org, name, t)
        except DataverseError as exc:
            orgs.history_finish(org, history, t=t, success=False, error_code=exc.code, message=exc.message)
            raise
        orgs.history_finish(org, history, t=t, success=True, solution_id=promoted["solutionid"])
        return {"SolutionId": promoted["solutionid"]}

    def delete_and_promote_async(
        self, org: dict, body: dict, correlation_id: str, denied: DataverseError | None = None
    ) -> dict:
        self.check_lock(org, "delete_and_promote")
        name = str(body.get("UniqueName") or "")
        if orgs.find_solution(org, name) is None:
            raise self._not_found(name)
        t = now()
        op = self._new_operation(org, "delete_and_promote", t, {"name": name, **_denied(denied)}, correlation_id)
        op["emu_history_id"] = self._promote_history(org, name, t, correlation_id)["msdyn_solutionhistoryid"]
        return {"AsyncOperationId": op["asyncoperationid"]}

    def uninstall_async(self, org: dict, body: dict, correlation_id: str, denied: DataverseError | None = None) -> dict:
        """``UninstallSolutionAsync`` (docs/dataverse.md §6): removes the solution when the job completes."""
        self.check_lock(org, "uninstall")
        name = str(body.get("SolutionUniqueName") or "")
        row = orgs.find_solution(org, name)
        if row is None:
            raise self._not_found(name)
        if name.lower() in SYSTEM_SOLUTION_NAMES or row.get("emu_system"):
            raise DataverseError(
                400, unconfirmed.UNINSTALL_SYSTEM_SOLUTION_CODE, unconfirmed.UNINSTALL_SYSTEM_SOLUTION_MESSAGE
            )
        t = now()
        op = self._new_operation(org, "uninstall", t, {"name": row["uniquename"], **_denied(denied)}, correlation_id)
        op["_regardingobjectid_value"] = row["solutionid"]
        history = orgs.history_start(
            org,
            name=row["uniquename"],
            solution_id=row["solutionid"],
            version=row["version"],
            publisher=org["publishers"].get(row["_publisherid_value"]),
            operation=1,
            suboperation=unconfirmed.HISTORY_SUBOPERATION_FOR_UNINSTALL,
            managed=row["ismanaged"],
            overwrite=False,
            t=t,
            correlation_id=correlation_id,
        )
        op["emu_history_id"] = history["msdyn_solutionhistoryid"]
        return {"AsyncOperationId": op["asyncoperationid"]}

    def publish_all(self, org: dict, correlation_id: str) -> None:
        """``PublishAllXml``: 204; counts as a solution operation (docs/dataverse.md §1.6) and writes history (op 4)."""
        self.check_lock(org, "publish_all")
        t = now()
        history = orgs.history_start(
            org,
            name="PublishAll",
            solution_id=None,
            version="",
            publisher=None,
            operation=4,
            suboperation=0,
            managed=False,
            overwrite=False,
            t=t,
            correlation_id=correlation_id,
        )
        orgs.history_finish(org, history, t=t, success=True)

    def update_solution(self, org: dict, solution_id: str, body: dict) -> dict:
        """``PATCH solutions(<id>)``: version, friendlyname, description of an unmanaged solution (ENT-SOL)."""
        row = org["solutions"].get(solution_id.lower())
        if row is None:
            raise errors.record_not_found("solution", solution_id)
        allowed = {"version", "friendlyname", "description"}
        for field_name in body:
            if field_name.startswith("@"):
                continue
            if field_name not in allowed:
                raise DataverseError(
                    400,
                    unconfirmed.PATCH_MANAGED_SOLUTION_CODE,
                    unconfirmed.PATCH_READ_ONLY_FIELD_MESSAGE.format(field=field_name),
                )
        if row["ismanaged"]:
            raise DataverseError(
                unconfirmed.PATCH_MANAGED_SOLUTION_STATUS,
                unconfirmed.PATCH_MANAGED_SOLUTION_CODE,
                unconfirmed.PATCH_MANAGED_SOLUTION_MESSAGE.format(name=row["uniquename"]),
            )
        if "version" in body:
            try:
                parse_version(str(body["version"]))
            except ValueError as exc:
                raise DataverseError(
                    400,
                    errors.IMPORT_XSD_VALIDATION,
                    f"'{body['version']}' is not a valid version: use major.minor.build.revision.",
                ) from exc
        t = now()
        for field_name in allowed & set(body):
            row[field_name] = body[field_name]
        orgs.touch(org, row, t)
        return row

    # ------------------------------------------------------------------------------------------
    # Dependency functions (docs/dataverse.md §10)
    # ------------------------------------------------------------------------------------------
    def missing_dependencies_of(self, org: dict, name: str) -> list[dict]:
        row = orgs.find_solution(org, name)
        if row is None:
            raise self._not_found(name)
        if not row.get("emu_package_sha"):
            return []
        package = self.package_by_sha(row["emu_package_sha"])
        return [_dependency_row(org, dependency, row) for dependency in orgs.missing_dependencies(org, package)]

    def dependencies_for_uninstall(self, org: dict, name: str) -> list[dict]:
        """Components of other installed solutions that require components of ``name``."""
        row = orgs.find_solution(org, name)
        if row is None:
            raise self._not_found(name)
        own = orgs.solution_component_keys(org, row["solutionid"])
        result = []
        for other in org["solutions"].values():
            if other["solutionid"] == row["solutionid"] or not other.get("emu_package_sha"):
                continue
            package = self.package_by_sha(other["emu_package_sha"])
            for dependency in package.missing_dependencies:
                if any(key in own for key in dependency.required_keys()):
                    result.append(_dependency_row(org, dependency, other, required_solution=row))
        return result


def _denied(denied: DataverseError | None) -> dict:
    """Operation parameters recording a privilege the job will fail with (PRIVILEGE_CHECK_DEFAULT "job")."""
    return {"privilege_error": {"code": denied.code, "message": denied.message}} if denied is not None else {}


def _missing_xml(package: SolutionPackage) -> str:
    from .package import _missing_dependencies_xml

    return _missing_dependencies_xml(package.missing_dependencies)


def _type_int(value: str | None) -> int:
    if value and value.isdigit():
        return int(value)
    return orgs.component_type_code(value or "")


def _missing_dependency_ct(dependency: Any) -> dict:
    """The MissingDependency complex type (Web API reference missingdependency)."""
    required, dependent = dependency.required, dependency.dependent
    return {
        "RequiredComponentSchemaName": required.get("schemaName"),
        "RequiredComponentDisplayName": required.get("displayName"),
        "RequiredComponentType": required.get("type"),
        "RequiredComponentId": (required.get("id") or "").strip("{}").lower() or None,
        "RequiredComponentParentSchemaName": required.get("parentSchemaName"),
        "RequiredComponentParentDisplayName": required.get("parentDisplayName"),
        "DependentComponentSchemaName": dependent.get("schemaName"),
        "DependentComponentDisplayName": dependent.get("displayName"),
        "DependentComponentType": dependent.get("type"),
        "DependentComponentId": (dependent.get("id") or "").strip("{}").lower() or None,
        "DependentComponentParentSchemaName": dependent.get("parentSchemaName"),
        "DependentComponentParentDisplayName": dependent.get("parentDisplayName"),
        "CanResolveMissingDependency": False,
        "MissingPackages": [],
    }


def _dependency_row(
    org: dict, dependency: Any, dependent_solution: dict, required_solution: dict | None = None
) -> dict:
    """A ``dependency`` row as RetrieveMissingDependencies / RetrieveDependenciesForUninstall return them."""
    required, dependent = dependency.required, dependency.dependent
    required_key = (dependency.required_keys() or [""])[0]
    dependent_id = (dependent.get("id") or "").strip("{}").lower() or orgs.stable_id(
        "component", f"{dependent.get('type')}:{(dependent.get('schemaName') or '').lower()}"
    )
    required_entry = org["components"].get(required_key)
    return {
        "dependencyid": orgs.stable_id("dependency", dependent_solution["solutionid"], required_key, dependent_id),
        "dependencytype": 2,
        "dependentcomponentobjectid": dependent_id,
        "dependentcomponenttype": _type_int(dependent.get("type")),
        "dependentcomponentbasesolutionid": dependent_solution["solutionid"],
        "requiredcomponentobjectid": required_entry["objectid"]
        if required_entry
        else ((required.get("id") or "").strip("{}").lower() or orgs.stable_id("component", required_key)),
        "requiredcomponenttype": _type_int(required.get("type")),
        "requiredcomponentbasesolutionid": required_solution["solutionid"] if required_solution else None,
        "requiredcomponentintroducedversion": None,
    }
