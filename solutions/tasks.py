"""Job handlers of the solution registry: thin, each calls one service (docs/states.md §3)."""

from __future__ import annotations

from typing import Any

from alm_portal.audit.context import AuditContext
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import register_job_handler, register_job_kind
from solutions import services
from solutions.choices import SolutionJobKind

# An export is a solution operation: it holds its environment's single slot while active.
register_job_kind(SolutionJobKind.EXPORT, uses_solution_slot=True)


@register_job_handler(SolutionJobKind.EXPORT)
def export_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Export the job's solution from its home development environment; safe to run twice."""
    return services.solution_export_run(job=job, context=context)


# A commit touches no environment. A build holds its build environment's slot (when the binding names one) while
# it imports and exports there; without one its environment is None and no slot is taken.
register_job_kind(SolutionJobKind.SOURCE_COMMIT)
register_job_kind(SolutionJobKind.SOURCE_BUILD, uses_solution_slot=True)


@register_job_handler(SolutionJobKind.SOURCE_COMMIT)
def source_commit_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Commit, tag and push a version to its solution's repository; a replay finds the commit pushed before."""
    return services.source_commit_run(job=job, context=context)


@register_job_handler(SolutionJobKind.SOURCE_BUILD)
def source_build_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Pack the solution's source at a ref into its unmanaged package and register it as a version."""
    return services.source_build_run(job=job, context=context)
