"""Queueing a job: a pending row, audited in the caller's transaction, and a nudge to a worker after commit."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import job_kind_spec
from alm_portal.jobs.services.publishing import publish_run_job_on_commit
from alm_portal.jobs.services.transitions import _audited


def job_enqueue(
    *,
    kind: str,
    environment: Any,
    params: dict[str, Any],
    context: AuditContext,
    not_before: Any = None,
) -> Job:
    """Create a pending job and, after commit, nudge a worker. Call inside the caller's transaction."""
    if job_kind_spec(kind) is None:
        raise ValueError(f"unknown job kind {kind!r}")
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            environment=environment,
            uses_solution_slot=Job.kind_uses_solution_slot(kind),
            params=params,
            not_before=not_before,
            created_by_id=context.actor_id if context.actor_kind in ("user", "api_token") else None,
            request_id=context.request_id,
        )
        if _audited(job):
            record(
                context=context,
                action="job.enqueued",
                target=job,
                related=environment,
                after={"kind": kind, "params": params},
            )
        publish_run_job_on_commit(job.pk)
    return job
