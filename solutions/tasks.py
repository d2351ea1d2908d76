"""Job handlers of the solution registry: thin, each calls one service (docs/states.md §3)."""

from __future__ import annotations

from typing import Any

from alm_portal.audit.context import AuditContext
from deployments.choices import JobKind
from deployments.jobs import register_job_handler
from deployments.models import Job
from solutions import services


@register_job_handler(JobKind.EXPORT)
def export_handler(job: Job, context: AuditContext) -> dict[str, Any]:
    """Export the job's solution from its home development environment; safe to run twice."""
    return services.solution_export_run(job=job, context=context)
