"""Sending one operation to Dataverse: the stored artifact checked against the approved hash, then the call.

The caller commits "maybe submitted" on the job row through `before_send`, just before the request
leaves: a crash from then on leaves a row that says the operation may have reached Dataverse.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient
from alm_portal.dataverse.settings_document import DeploymentSettings as SettingsDocument
from deployments.models import Promotion
from deployments.preflight import local_artifact
from deployments.runner.plan import UNINSTALL, PlannedOperation

logger = logging.getLogger(__name__)

# Called with the package's SHA-256 and the ImportJobId we send ("" = none); both None when nothing is uploaded.
BeforeSend = Callable[[str | None, str | None], None]


class ArtifactChanged(Exception):
    """The stored artifact is not the one the approvals were given for."""


def send_operation(
    *,
    client: DataverseClient,
    job_id: int,
    promotion: Promotion,
    operation: PlannedOperation,
    settings_document: Callable[[], SettingsDocument | None],
    before_send: BeforeSend,
) -> tuple[str, str]:
    """Start `operation` on the target; its handles (AsyncOperationId, ImportJobId or "")."""
    if not operation.is_import:
        before_send(None, None)
        if operation.kind == UNINSTALL:
            return str(client.uninstall_solution_async(operation.solution)), ""
        return str(client.delete_and_promote_async(operation.solution)), ""
    version = promotion.version
    with local_artifact(version=version) as artifact:
        if artifact.sha256 != promotion.artifact_sha256:
            raise ArtifactChanged(
                f"The stored artifact of {version} has SHA-256 {artifact.sha256}, not the "
                f"{promotion.artifact_sha256} the approvals were given for."
            )
        sent_id = uuid.uuid4() if client.import_job_id_mode else None
        before_send(artifact.sha256, str(sent_id) if sent_id else "")
        stage = promotion.stage
        options: dict[str, Any] = {
            "overwrite_unmanaged_customizations": stage.overwrite_unmanaged_customizations,
            "publish_workflows": stage.activate_flows_and_plugins,
            "settings": settings_document(),
            "import_job_id": sent_id,
        }
        if operation.is_upgrade:
            handle = client.stage_and_upgrade_async(artifact.path, **options)
        else:
            handle = client.import_solution_async(artifact.path, **options)
    if handle.package_sha256 and handle.package_sha256 != artifact.sha256:
        logger.warning("job %s: streamed %s, hashed %s", job_id, handle.package_sha256, artifact.sha256)
    return str(handle.async_operation_id), str(handle.import_job_id or "")


def is_duplicate_import_job_id(refusal: dv.DataverseError) -> bool:
    # "A duplicate import job id already exists" (https://github.com/WaelHamze/dyn365-ce-vsts-tasks/issues/113) is only
    # possible when we send our own ImportJobId; its code is not documented (the emulator answers the generic
    # 0x80048033), so the message decides.
    return "duplicate import job id" in refusal.message.lower()
