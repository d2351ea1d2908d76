"""What a run records: the import log's summary and per-component results, flow activation, and the
inventory refresh after the operations."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.client import (
    ImportJob,
)

if TYPE_CHECKING:
    from deployments.models import Stage
    from environments.models import Environment


logger = logging.getLogger(__name__)

# The raw import log kept with a failed promotion (the parsed results are always kept).
MAX_KEPT_LOG_CHARS = 512 * 1024


def import_log_summary(import_job: ImportJob | None, *, keep_xml: bool) -> dict[str, Any]:
    """The parts of an import job people review: overall result, per-component results, missing dependencies;
    the raw XML too when `keep_xml` (a failure), truncated to MAX_KEPT_LOG_CHARS."""
    if import_job is None:
        return {"available": False}
    summary: dict[str, Any] = {
        "available": True,
        "import_job_id": str(import_job.import_job_id),
        "solution": import_job.solution_name,
        "progress": import_job.progress,
        "started_on": import_job.started_on.isoformat() if import_job.started_on else None,
        "completed_on": import_job.completed_on.isoformat() if import_job.completed_on else None,
    }
    log = import_job.log
    if log is not None:
        summary.update(
            {
                "version": log.solution_version,
                "managed": log.managed,
                "result": log.result,
                "error_code": log.error_code,
                "message": log.message[:4000],
                "failures": len(log.failures),
                "missing_dependencies": [
                    {
                        "required_type": entry.required_type,
                        "required_name": entry.required_name,
                        "required_solution": entry.required_solution,
                        "dependent_type": entry.dependent_type,
                        "dependent_name": entry.dependent_name,
                    }
                    for entry in log.missing_dependencies
                ],
            }
        )
    if keep_xml and import_job.data:
        summary["xml"] = import_job.data[:MAX_KEPT_LOG_CHARS]
        summary["xml_truncated"] = len(import_job.data) > MAX_KEPT_LOG_CHARS
    return summary


def import_log_components(import_job: ImportJob | None) -> list[dict[str, Any]]:
    """Per-component results of the import log."""
    if import_job is None or import_job.log is None:
        return []
    return [
        {
            "type": component.component_type,
            "name": component.name,
            "result": component.result,
            "error_code": component.error_code,
            "message": component.message[:1000],
        }
        for component in import_job.log.components
    ]


def flows_result(*, stage: Stage, imported: bool) -> dict[str, Any]:
    """Whether flows and plug-in steps were turned on.

    The client has no call to turn flows on one by one; PublishWorkflows on the import action activates
    processes and plug-in steps (docs/dataverse.md §5.1), so nothing is left to do after the import.
    """
    if not imported:
        return {"activation": "not_applicable", "reason": "Nothing was imported."}
    if stage.activate_flows_and_plugins:
        return {"activation": "not_needed", "reason": "PublishWorkflows=true was sent with the import."}
    return {"activation": "skipped", "reason": "The stage does not activate flows and plug-ins."}


def refresh_inventory(*, environment: Environment, context: AuditContext, job_id: int) -> dict[str, Any]:
    """Sync the target's inventory after the operations; a failure is recorded, never raised: the import is
    done whatever the inventory says, and the next scheduled sync catches up."""
    from environments.services import InventorySyncFailed, environment_sync_inventory

    try:
        report = environment_sync_inventory(environment=environment, context=context)
    except InventorySyncFailed as failure:
        return {"refreshed": False, "error_code": failure.code, "message": failure.message[:500]}
    except DatabaseError as failure:
        # E.g. a deadlock victim with a concurrent writer, rolled back.
        logger.warning("job %s: inventory refresh failed: %s", job_id, failure)
        return {"refreshed": False, "error_code": "database_error", "message": str(failure)[:500]}
    return {"refreshed": True, "changed": report.changed, "added": report.added, "removed": report.removed}
