"""Adoption: finding the Dataverse operation a submit that may have been sent started (docs/states.md §3).

A job found with no handle for an operation that may have reached Dataverse is never resubmitted blindly.
The operation it may have started is looked for among the system jobs of that type created since the
submit (minus ADOPTION_WINDOW, for clock skew) and, for an import, among the import jobs of the solution
(or by the ImportJobId we sent, when that setting is on); handles other jobs of the environment hold are
never taken. Resubmitting is safe only when nothing is found and the target still has what it had before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alm_portal.dataverse import errors as dv
from alm_portal.dataverse.client import DataverseClient, ImportJob
from alm_portal.jobs.models import Job
from deployments.preflight import HOLDING_SUFFIX
from deployments.runner.plan import UNINSTALL, PlannedOperation
from deployments.runner.state import CompletedOperation
from deployments.runner.timing import ADOPTION_WINDOW
from solutions import selectors as solution_selectors


@dataclass(frozen=True)
class Adoption:
    """The handles found, and how they were found (kept in the run's record)."""

    async_operation_id: str
    import_job_id: str
    facts: dict[str, Any]


def find_started_operation(
    *,
    client: DataverseClient,
    job: Job,
    operation: PlannedOperation,
    started: datetime,
    done: list[CompletedOperation],
) -> Adoption | None:
    """The operation (and import job) a submit of `operation` at `started` may have started, or None.

    The candidate created closest to `started` wins; `done` are this run's finished operations (whose
    handles are not candidates either).
    """
    since = started - ADOPTION_WINDOW
    others = Job.objects.filter(environment=job.environment).exclude(pk=job.pk)
    known_operations = set(others.exclude(async_operation_id="").values_list("async_operation_id", flat=True))
    known_operations |= {str(record.async_operation_id) for record in done}
    known_imports = set(others.exclude(import_job_id="").values_list("import_job_id", flat=True))
    candidates = [
        found
        for operation_type in operation.async_operation_types
        for found in client.find_async_operations(operation_type, since)
        if str(found.async_operation_id) not in known_operations
    ]
    chosen = min(candidates, key=lambda op: abs((op.created_on or started) - started), default=None)
    import_job: ImportJob | None = None
    import_jobs: list[ImportJob] = []
    if operation.is_import:
        if job.import_job_id:
            try:
                import_job = client.get_import_job(job.import_job_id, with_log=False)
            except dv.NotFound:
                import_job = None
        if import_job is None:
            import_jobs = [
                found
                for found in client.find_import_jobs(operation.solution, since)
                if str(found.import_job_id) not in known_imports
            ]
            near = chosen.created_on if chosen is not None and chosen.created_on else started
            import_job = min(import_jobs, key=lambda ij: abs((ij.created_on or near) - near), default=None)
    if chosen is None and import_job is None:
        return None
    async_id = str(chosen.async_operation_id) if chosen else ""
    import_id = str(import_job.import_job_id) if import_job else ""
    return Adoption(
        async_operation_id=async_id,
        import_job_id=import_id,
        facts={
            "async_operation_id": async_id or None,
            "import_job_id": import_id or None,
            "operation_candidates": len(candidates),
            "import_job_candidates": len(import_jobs),
            "searched_since": since.isoformat(),
        },
    )


def target_unchanged(*, client: DataverseClient, operation: PlannedOperation, expected_version: str) -> bool:
    """Whether the target still has what it had before `operation` ("" = the solution was absent)."""
    live = client.get_solution(operation.solution)
    if operation.is_import:
        if live is None or not expected_version:
            return live is None and not expected_version
        current = solution_selectors.parse_version(live.version)
        return current is not None and current == solution_selectors.parse_version(expected_version)
    if operation.kind == UNINSTALL:
        return live is not None
    return client.get_solution(operation.solution + HOLDING_SUFFIX) is not None
