"""What a run records: the import log's summary and per-component results, flow activation, and the
inventory refresh after the operations."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse.client import (
    DataverseClient,
    ImportJob,
)
from deployments.preflight import HOLDING_SUFFIX
from deployments.runner.plan import PlannedOperation
from deployments.runner.polling import read_import_job
from deployments.runner.state import CompletedOperation, Outcome, RunState
from environments import services as environment_services

if TYPE_CHECKING:
    from alm_portal.jobs.models import Job
    from deployments.models import Promotion, Stage
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

    try:
        report = environment_services.environment_sync_inventory(environment=environment, context=context)
    except environment_services.InventorySyncFailed as failure:
        return {"refreshed": False, "error_code": failure.code, "message": failure.message[:500]}
    except DatabaseError as failure:
        # E.g. a deadlock victim with a concurrent writer, rolled back.
        logger.warning("job %s: inventory refresh failed: %s", job_id, failure)
        return {"refreshed": False, "error_code": "database_error", "message": str(failure)[:500]}
    return {"refreshed": True, "changed": report.changed, "added": report.added, "removed": report.removed}


def run_result(
    *, state: RunState, job: Job, promotion: Promotion, client: DataverseClient, context: AuditContext
) -> dict[str, Any]:
    """What a run that ended well reports (the promotion's result): each operation's record, the last
    import's log and components, what the target has now, flows and the refreshed inventory."""
    name = promotion.solution.unique_name
    installed = client.get_solution(name)
    holding = client.get_solution(name + HOLDING_SUFFIX)
    imports = [done for done in state.done if done.operation.is_import]
    last_import = imports[-1] if imports else None
    return {
        "operations": state.done_json(with_log=False),
        "import_log": last_import.import_log
        if last_import is not None and last_import.import_log is not None
        else {"available": False},
        "components": (last_import.components if last_import is not None else None) or [],
        "previous_version": state.previous_version,
        "installed_version": installed.version if installed else None,
        "holding_solution": holding.version if holding else None,
        "async_operation_id": job.async_operation_id or None,
        "import_job_id": job.import_job_id or None,
        "adopted": next((done.adopted for done in state.done if done.adopted), None),
        "flows": flows_result(stage=promotion.stage, imported=bool(imports)),
        "inventory": refresh_inventory(environment=promotion.target_environment, context=context, job_id=job.pk),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def completed_record(
    *, client: DataverseClient, job: Job, operation: PlannedOperation, outcome: Outcome
) -> CompletedOperation:
    """The record of an operation that ended: its handles and times, and for an import its log."""
    record = CompletedOperation(
        operation=operation,
        async_operation_id=job.async_operation_id or None,
        import_job_id=job.import_job_id or None,
        submitted_at=_iso(job.submitted_at),
        completed_on=_iso(outcome.completed_on),
        # When the portal saw the end: next to completed_on it shows how late polling noticed.
        seen_at=timezone.now().isoformat(),
        succeeded=outcome.succeeded,
    )
    if operation.is_import:
        import_job = read_import_job(client=client, job=job, with_log=True)
        log_failed = import_job is not None and import_job.log is not None and not import_job.log.succeeded
        if outcome.succeeded and log_failed:
            record.log_warning = "The system job succeeded but the import log reports failures."
        record.import_log = import_log_summary(import_job, keep_xml=not outcome.succeeded)
        record.components = import_log_components(import_job)
    return record
