"""Solutions, publishers, export, import, staging and dependencies (docs/dataverse.md §3-§6, §10)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.client.odata import (
    _PUBLISHER_EXPAND,
    _SOLUTION_SELECT,
    EXPORT_SETTINGS,
    _check_version,
    _odata_string,
    _query,
)
from alm_portal.dataverse.client.results import (
    Dependency,
    ExportedFile,
    ExportHandle,
    ImportHandle,
    Publisher,
    Solution,
    StageResult,
    ValidationResult,
    _bool,
    _datetime,
    _int,
    _required_uuid,
    _str,
    _uuid,
)
from alm_portal.dataverse.client.streaming import Base64JsonBody, _Base64FieldWriter, base64_json_body
from alm_portal.dataverse.client.transport import DataverseTransport
from alm_portal.dataverse.errors import ConnectionFailed, InvalidResponse, error_from_dataverse, normalize_error_code
from alm_portal.dataverse.settings_document import DeploymentSettings

_DOWNLOAD_CHUNK_SIZE = 1024 * 1024


class SolutionOperations(DataverseTransport):
    """docs/dataverse.md §3-§6 and §10: read and version solutions, move packages in and out, check dependencies."""

    # -- solutions and publishers (docs/dataverse.md §3) --

    @staticmethod
    def _solution(record: Mapping[str, Any]) -> Solution:
        publisher_id = _uuid(record.get("_publisherid_value"))
        expanded = record.get("publisherid")
        publisher = (
            Publisher(
                publisher_id=_uuid(expanded.get("publisherid")) or publisher_id,
                unique_name=_str(expanded.get("uniquename")),
                friendly_name=_str(expanded.get("friendlyname")),
                customization_prefix=_str(expanded.get("customizationprefix")),
            )
            if isinstance(expanded, Mapping)
            else None
        )
        return Solution(
            solution_id=_required_uuid(record.get("solutionid"), "solutionid"),
            unique_name=_str(record.get("uniquename")),
            friendly_name=_str(record.get("friendlyname")),
            version=_str(record.get("version")),
            is_managed=bool(_bool(record.get("ismanaged"))),
            is_visible=_bool(record.get("isvisible")),
            installed_on=_datetime(record.get("installedon")),
            modified_on=_datetime(record.get("modifiedon")),
            publisher_id=publisher_id,
            publisher=publisher,
            parent_solution_id=_uuid(record.get("_parentsolutionid_value")),
            description=_str(record.get("description")),
        )

    def list_solutions(self, *, managed: bool | None = None, visible_only: bool = True) -> list[Solution]:
        """docs/dataverse.md §3.1/§3.3: ``GET solutions`` (paged) with the publisher through ``$expand=publisherid``."""
        filters = []
        if managed is not None:
            filters.append(f"ismanaged eq {'true' if managed else 'false'}")
        if visible_only:
            filters.append("isvisible eq true")
        params = {"$select": _SOLUTION_SELECT, "$expand": _PUBLISHER_EXPAND, "$orderby": "uniquename asc"}
        if filters:
            params["$filter"] = " and ".join(filters)
        return [self._solution(record) for record in self._get_all("solutions?" + _query(params))]

    def get_solution(self, unique_name: str) -> Solution | None:
        """docs/dataverse.md §3.1/§3.3: the solution with this unique name and its publisher, or None (an unknown name
        is an empty collection, not a 404)."""
        params = {
            "$select": _SOLUTION_SELECT,
            "$expand": _PUBLISHER_EXPAND,
            "$filter": f"uniquename eq {_odata_string(unique_name)}",
        }
        records = self._get_all("solutions?" + _query(params), limit=1)
        return self._solution(records[0]) if records else None

    def update_solution_version(self, unique_name: str, version: str) -> Solution:
        """docs/dataverse.md §3.1: ``PATCH solutions(<id>) {"version": …}`` in the source (unmanaged) environment.

        ``If-Match: *`` keeps the PATCH from ever creating a record (Dataverse PATCH is an upsert).
        """
        new_version = _check_version(version)
        solution = self.get_solution(unique_name)
        if solution is None:
            raise error_from_dataverse(
                http_status=404, code="0x80040217", message=f"solution {unique_name!r} does not exist"
            )
        response = self._send(
            "PATCH",
            f"solutions({solution.solution_id})",
            json_body={"version": new_version},
            headers={"If-Match": "*"},
            idempotent=True,
        )
        response.close()
        updated = self.get_solution(unique_name)
        if updated is None:
            raise InvalidResponse(f"solution {unique_name!r} vanished after the version update")
        return updated

    # -- export (docs/dataverse.md §4) --

    @staticmethod
    def _export_parameters(unique_name: str, managed: bool, include: Iterable[str]) -> dict[str, Any]:
        parameters: dict[str, Any] = {"SolutionName": unique_name, "Managed": managed}
        for name in include:
            key = EXPORT_SETTINGS.get(name.lower())
            if key is None:
                raise ValueError(f"unknown export setting {name!r}; known: {', '.join(sorted(EXPORT_SETTINGS))}")
            parameters[key] = True
        return parameters

    def _stream_to_file(self, response: requests.Response, field_name: str, destination: Path) -> ExportedFile:
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = _Base64FieldWriter(field_name, out)
                try:
                    for chunk in response.iter_content(chunk_size=_DOWNLOAD_CHUNK_SIZE):
                        if chunk:
                            writer.feed(chunk)
                except requests.exceptions.RequestException as exc:
                    raise ConnectionFailed(
                        f"the download broke off: {exc}", environment_url=self.environment_url
                    ) from exc
                sha256 = writer.finish()
            os.replace(temp_name, destination)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return ExportedFile(path=destination, sha256=sha256, size=writer.size)

    def export_solution(
        self, unique_name: str, *, managed: bool, destination: str | Path, include: Iterable[str] = ()
    ) -> ExportedFile:
        """docs/dataverse.md §4.1: synchronous ``ExportSolution`` (small solutions), base64 decoded to
        ``destination``."""
        response = self._send(
            "POST",
            "ExportSolution",
            json_body=self._export_parameters(unique_name, managed, include),
            idempotent=True,
            stream=True,
            read_timeout=self.timeouts.transfer_read,
        )
        return self._stream_to_file(response, "ExportSolutionFile", Path(destination))

    def export_solution_async(self, unique_name: str, *, managed: bool, include: Iterable[str] = ()) -> ExportHandle:
        """docs/dataverse.md §4.2: ``ExportSolutionAsync`` → AsyncOperationId + ExportJobId (not retried: it starts a
        job)."""
        payload = self._post(
            "ExportSolutionAsync", self._export_parameters(unique_name, managed, include), idempotent=False
        )
        return ExportHandle(
            async_operation_id=_required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId"),
            export_job_id=_required_uuid(payload.get("ExportJobId"), "ExportJobId"),
        )

    def download_solution_export_data(self, export_job_id: uuid.UUID | str, destination: str | Path) -> ExportedFile:
        """docs/dataverse.md §4.2: ``DownloadSolutionExportData`` after the export job succeeded; streamed to a file."""
        response = self._send(
            "POST",
            "DownloadSolutionExportData",
            json_body={"ExportJobId": str(export_job_id)},
            idempotent=True,
            stream=True,
            read_timeout=self.timeouts.transfer_read,
        )
        return self._stream_to_file(response, "ExportSolutionFile", Path(destination))

    # -- import (docs/dataverse.md §5, §6) --

    def _import_fields(
        self,
        *,
        overwrite_unmanaged_customizations: bool,
        publish_workflows: bool,
        convert_to_managed: bool | None,
        skip_product_update_dependencies: bool | None,
        settings: DeploymentSettings | None,
        import_job_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "OverwriteUnmanagedCustomizations": overwrite_unmanaged_customizations,
            "PublishWorkflows": publish_workflows,
        }
        if convert_to_managed is not None or not unconfirmed.SEND_CONVERT_TO_MANAGED_ONLY_WHEN_SET:
            fields["ConvertToManaged"] = bool(convert_to_managed)
        if skip_product_update_dependencies is not None:
            fields["SkipProductUpdateDependencies"] = skip_product_update_dependencies
        if settings:
            parameters = settings.component_parameters()
            if parameters:
                fields["ComponentParameters"] = parameters
        if import_job_id is not None:
            fields["ImportJobId"] = str(import_job_id)
        return fields

    def _submit_import(
        self, action: str, package: Path, fields: dict[str, Any], sent_import_job_id: uuid.UUID | None
    ) -> ImportHandle:
        package = Path(package)
        if not package.is_file():
            raise FileNotFoundError(package)
        bodies: list[Base64JsonBody] = []

        def body() -> Base64JsonBody:
            bodies.append(base64_json_body(fields, "CustomizationFile", package))
            return bodies[-1]

        response = self._send(
            "POST",
            action,
            body_factory=body,
            idempotent=False,
            read_timeout=self.timeouts.transfer_read,
        )
        payload = self._json(response)
        sent = bodies[-1]
        if not isinstance(payload, Mapping):
            raise InvalidResponse(f"{action} returned no object")
        key = payload.get("ImportJobKey")
        key_text = key if isinstance(key, str) and key else None
        return ImportHandle(
            async_operation_id=_required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId"),
            import_job_id=_uuid(key_text) or sent_import_job_id,
            import_job_key=key_text,
            sent_import_job_id=sent_import_job_id,
            package_sha256=sent.sha256 or "",
            package_size=sent.bytes_read,
        )

    def _import_job_id(self, import_job_id: uuid.UUID | None) -> uuid.UUID | None:
        if not self.import_job_id_mode:
            if import_job_id is not None:
                raise ValueError("import_job_id is only sent with import_job_id_mode=True (docs/states.md §3)")
            return None
        return import_job_id or uuid.uuid4()

    def import_solution_async(
        self,
        package: str | Path,
        *,
        overwrite_unmanaged_customizations: bool = False,
        publish_workflows: bool = True,
        holding_solution: bool = False,
        convert_to_managed: bool | None = None,
        skip_product_update_dependencies: bool | None = None,
        settings: DeploymentSettings | None = None,
        import_job_id: uuid.UUID | None = None,
    ) -> ImportHandle:
        """docs/dataverse.md §5.2: ``ImportSolutionAsync`` with the package streamed as base64 (never retried).

        ``holding_solution=True`` stages the package as ``<name>_Upgrade`` (docs/dataverse.md §6, §11.3).
        ComponentParameters come from ``settings`` (docs/dataverse.md §12). A lost answer raises
        :class:`SubmissionOutcomeUnknown`; a busy environment :class:`EnvironmentBusy` (docs/states.md §3).
        """
        sent_id = self._import_job_id(import_job_id)
        fields = self._import_fields(
            overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
            publish_workflows=publish_workflows,
            convert_to_managed=convert_to_managed,
            skip_product_update_dependencies=skip_product_update_dependencies,
            settings=settings,
            import_job_id=sent_id,
        )
        if holding_solution:
            fields["HoldingSolution"] = True
        return self._submit_import("ImportSolutionAsync", Path(package), fields, sent_id)

    def stage_and_upgrade_async(
        self,
        package: str | Path,
        *,
        overwrite_unmanaged_customizations: bool = False,
        publish_workflows: bool = True,
        convert_to_managed: bool | None = None,
        skip_product_update_dependencies: bool | None = None,
        settings: DeploymentSettings | None = None,
        import_job_id: uuid.UUID | None = None,
    ) -> ImportHandle:
        """docs/dataverse.md §6: ``StageAndUpgradeAsync`` (import as holding + apply upgrade in one job; never
        retried)."""
        sent_id = self._import_job_id(import_job_id)
        fields = self._import_fields(
            overwrite_unmanaged_customizations=overwrite_unmanaged_customizations,
            publish_workflows=publish_workflows,
            convert_to_managed=convert_to_managed,
            skip_product_update_dependencies=skip_product_update_dependencies,
            settings=settings,
            import_job_id=sent_id,
        )
        return self._submit_import("StageAndUpgradeAsync", Path(package), fields, sent_id)

    def stage_solution(self, package: str | Path) -> StageResult:
        """docs/dataverse.md §6: ``StageSolution`` — validate a package and list its missing dependencies, no
        install."""
        package = Path(package)
        if not package.is_file():
            raise FileNotFoundError(package)
        response = self._send(
            "POST",
            "StageSolution",
            body_factory=lambda: base64_json_body({}, "CustomizationFile", package),
            idempotent=True,
            read_timeout=self.timeouts.transfer_read,
        )
        payload = self._json(response)
        results = payload.get("StageSolutionResults") if isinstance(payload, Mapping) else None
        if not isinstance(results, Mapping):
            raise InvalidResponse("StageSolution returned no StageSolutionResults")
        validations = tuple(
            ValidationResult(
                result_type=_str(item.get("SolutionValidationResultType")),
                message=_str(item.get("Message")),
                error_code=normalize_error_code(item.get("ErrorCode")),
                additional_info=_str(item.get("AdditionalInfo")),
            )
            for item in results.get("SolutionValidationResults") or []
            if isinstance(item, Mapping)
        )
        details = results.get("SolutionDetails")
        return StageResult(
            upload_id=_uuid(results.get("StageSolutionUploadId")),
            status=_str(results.get("StageSolutionStatus")),
            solution_details=dict(details) if isinstance(details, Mapping) else {},
            missing_dependencies=tuple(
                dict(item) for item in results.get("MissingDependencies") or [] if isinstance(item, Mapping)
            ),
            validation_results=validations,
            component_details=tuple(
                dict(item) for item in results.get("SolutionComponentsDetails") or [] if isinstance(item, Mapping)
            ),
        )

    def delete_and_promote_async(self, unique_name: str) -> uuid.UUID:
        """docs/dataverse.md §6: ``DeleteAndPromoteAsync`` (apply the staged ``<name>_Upgrade``) → AsyncOperationId."""
        payload = self._post("DeleteAndPromoteAsync", {"UniqueName": unique_name}, idempotent=False)
        return _required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId")

    def uninstall_solution_async(self, unique_name: str) -> uuid.UUID:
        """docs/dataverse.md §6: ``UninstallSolutionAsync`` → AsyncOperationId (deletes the solution's tables and
        data)."""
        payload = self._post("UninstallSolutionAsync", {"SolutionUniqueName": unique_name}, idempotent=False)
        return _required_uuid(payload.get("AsyncOperationId"), "AsyncOperationId")

    # -- dependencies (docs/dataverse.md §10) --

    def retrieve_missing_dependencies(self, unique_name: str) -> list[Dependency]:
        """docs/dataverse.md §10: ``RetrieveMissingDependencies(SolutionUniqueName=@p)`` for a solution in this org."""
        resource = "RetrieveMissingDependencies(SolutionUniqueName=@p)?" + _query({"@p": _odata_string(unique_name)})
        return [
            Dependency(
                dependency_type=_int(r.get("dependencytype")),
                required_component_type=_int(r.get("requiredcomponenttype")),
                required_component_object_id=_uuid(r.get("requiredcomponentobjectid")),
                required_component_base_solution_id=_uuid(r.get("requiredcomponentbasesolutionid")),
                dependent_component_type=_int(r.get("dependentcomponenttype")),
                dependent_component_object_id=_uuid(r.get("dependentcomponentobjectid")),
                dependent_component_base_solution_id=_uuid(r.get("dependentcomponentbasesolutionid")),
                raw=r,
            )
            for r in self._get_all(resource)
        ]
