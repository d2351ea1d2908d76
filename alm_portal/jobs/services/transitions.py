"""The one way a job's status changes: a move the transition table (alm_portal.jobs.choices) allows, as a
conditional UPDATE from the status that was read; and which jobs get an audit row."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from alm_portal.jobs.choices import JOB_TRANSITIONS
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import job_kind_spec


def _require_move(current: str, to: str, *, job_id: int) -> None:
    if to not in JOB_TRANSITIONS.get(current, ()):
        raise ValueError(f"job {job_id}: {current} → {to} is not an allowed transition")


def _move(job_id: int, *, current: str, to: str, where: Q | None = None, **fields: Any) -> int:
    """The one way a job's status changes: a move the transition table allows (staying in a status too), as a
    conditional UPDATE from the status that was read (and `where`). Returns the number of rows moved, 0 or 1."""
    _require_move(current, to, job_id=job_id)
    rows = Job.objects.filter(pk=job_id, status=current)
    if where is not None:
        rows = rows.filter(where)
    return rows.update(status=to, updated_at=fields.pop("updated_at", timezone.now()), **fields)


def _transition(job: Job, *, to: str, owner: str, **fields: Any) -> bool:
    """Move `job` to status `to` if it is still in the status we read and held by `owner`."""
    now = timezone.now()
    if _move(job.pk, current=job.status, to=to, where=Q(lease_owner=owner), updated_at=now, **fields) == 1:
        job.status = to
        job.updated_at = now
        for name, value in fields.items():
            setattr(job, name, value)
        return True
    return False


def _audited(job: Job) -> bool:
    """Routine kinds (scheduled health checks and syncs, every few minutes for every environment): the job row
    is their record, and only their failures (and any job a person asked for) get an audit row."""
    spec = job_kind_spec(job.kind)
    return job.created_by_id is not None or spec is None or not spec.routine
