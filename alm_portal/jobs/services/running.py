"""Running a job: claim it (a conditional UPDATE exactly one claimant wins, the environment's solution slot
taken through a unique index), carry out its next step with the handler its app registered, and end the
step (finish, defer, hand to an admin, or give the lease back after losing the database)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus, JobWaitingReason
from alm_portal.jobs.errors import JobDeferred, JobFailed, JobNeedsAttention
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import _HANDLERS
from alm_portal.jobs.services.lost_database import DATABASE_CONNECTION_ERRORS, _write_despite_lost_database
from alm_portal.jobs.services.publishing import publish_run_job_on_commit
from alm_portal.jobs.services.transitions import _audited, _move, _transition
from alm_portal.logformat import job_log_context

logger = logging.getLogger(__name__)

# A job whose environment slot is taken waits this long before it tries again (or until the job
# holding the slot finishes and wakes it).
SLOT_BUSY_RETRY = timedelta(seconds=5)
# What a job waiting for the slot shows (its waiting_reason says why it waits).
WAITING_FOR_SLOT = JobWaitingReason.SOLUTION_SLOT.label
# A job whose step lost the database is picked up again this long after its lease is given back.
DATABASE_LOST_RETRY = timedelta(seconds=2)


@dataclass(frozen=True)
class RunOutcome:
    job_id: int
    ran: bool
    status: str
    reason: str = ""


def _handler_for(kind: str) -> Callable[[Job, AuditContext], dict[str, Any]]:
    # Each app registers its handlers from its AppConfig.ready, so every process knows them all.
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise JobFailed("no_handler", f"No handler is registered for {kind} jobs.")
    return handler


def _lease_length() -> timedelta:
    # Longer than a task may run between two renewals, so a live worker never loses its lease.
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def crash_point(name: str) -> None:
    """Deterministic crash tests: ALM_TEST_CRASH_AT=<name> kills this worker's process group here."""
    if settings.ALM_TEST_CRASH_AT and name == settings.ALM_TEST_CRASH_AT:
        logger.warning("ALM_TEST_CRASH_AT=%s reached; killing the process group", name)
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _claim(job_id: int, owner: str) -> Job | None:
    """Take the job if it is due and nobody holds a live lease on it. Exactly one claimant wins: a pending job
    moves to claimed, an active one whose worker's lease ran out stays in its status (the table allows both)."""
    now = timezone.now()
    claimable = (
        Q(pk=job_id)
        & (Q(status=JobStatus.PENDING) | Q(status__in=ACTIVE_JOB_STATUSES))
        & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    )
    current = Job.objects.filter(claimable).values_list("status", flat=True).first()
    if current is None:
        return None
    new_status = JobStatus.CLAIMED if current == JobStatus.PENDING else current
    try:
        with transaction.atomic():
            changed = _move(
                job_id,
                current=current,
                to=new_status,
                where=claimable,
                lease_owner=owner,
                lease_expires_at=now + _lease_length(),
                claimed_at=now,
                waiting_reason="",
                attempts=F("attempts") + 1,
                updated_at=now,
            )
    except IntegrityError:
        # The environment's solution-operation slot is taken: stay pending, try again shortly.
        Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
            not_before=now + SLOT_BUSY_RETRY,
            updated_at=now,
            waiting_reason=JobWaitingReason.SOLUTION_SLOT,
            progress_message=WAITING_FOR_SLOT,
        )
        publish_run_job_on_commit(job_id, countdown=SLOT_BUSY_RETRY.total_seconds())
        return None
    if changed != 1:
        return None
    return Job.objects.select_related("environment").get(pk=job_id)


def job_progress(job: Job, percent: int, message: str = "") -> None:
    """Report progress and renew the lease (a handler calls this while it works)."""
    now = timezone.now()
    percent = max(0, min(100, int(percent)))
    Job.objects.filter(pk=job.pk, lease_owner=job.lease_owner).update(
        progress=percent,
        progress_message=message[:300],
        lease_expires_at=now + _lease_length(),
        updated_at=now,
    )
    job.progress = percent
    job.progress_message = message[:300]


def job_mark_step(job: Job, *, status: str, step: str = "", **fields: Any) -> None:
    """Record that a handler reached a step (e.g. `submitting` before calling Dataverse), committed now."""
    with transaction.atomic():
        if not _transition(job, to=status, owner=job.lease_owner, step=step, **fields):
            raise JobFailed("lease_lost", "Another worker took over this job.")


def _worker_context(job: Job) -> AuditContext:
    return AuditContext.worker(request_id=job.request_id)


def _publish_next_for_environment(job: Job) -> None:
    """The slot is free: wake the oldest job waiting for it now rather than after SLOT_BUSY_RETRY."""
    if job.environment_id is None:
        return
    waiting = (
        Job.objects.filter(
            environment_id=job.environment_id,
            uses_solution_slot=True,
            status=JobStatus.PENDING,
            waiting_reason=JobWaitingReason.SOLUTION_SLOT,
        )
        .exclude(pk=job.pk)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting is not None:
        # Only the slot wait is cut short; a start time someone chose (not_before at enqueue) is kept.
        Job.objects.filter(pk=waiting).update(not_before=None)
        publish_run_job_on_commit(waiting)


def _finish(job: Job, owner: str, *, status: str, **fields: Any) -> bool:
    now = timezone.now()
    with transaction.atomic():
        done = _transition(
            job, to=status, owner=owner, finished_at=now, lease_owner="", lease_expires_at=None, **fields
        )
        if done and job.uses_solution_slot:
            _publish_next_for_environment(job)
        if done and (status != JobStatus.SUCCEEDED or _audited(job)):
            record(
                context=_worker_context(job),
                action=f"job.{status}",
                target=job,
                related=job.environment,
                after={key: fields[key] for key in ("error_code", "error_message") if fields.get(key)},
                outcome="success" if status == JobStatus.SUCCEEDED else "failed",
            )
    return done


def job_run(job_id: int, *, owner: str | None = None) -> RunOutcome:
    """Claim job `job_id` and carry out its next step. Safe to call any number of times."""
    owner = owner or worker_identity()
    job = _claim(job_id, owner)
    if job is None:
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        return RunOutcome(job_id, ran=False, status=current or "missing", reason="not claimable")
    # Every log record of this step carries the job's id and the id of the request that queued it.
    with job_log_context(job_id=job.pk, request_id=job.request_id):
        return _run_claimed(job, owner)


def _release_after_lost_database(job: Job, owner: str, error: Exception) -> RunOutcome:
    """The step lost the database: give the lease back once it answers again, keeping the job's status and
    step (every step is safe to repeat), so a worker continues it shortly instead of after the lease expiry."""

    def release() -> bool:
        now = timezone.now()
        with transaction.atomic():
            # Conditional on the lease alone: what this worker believes the status is may not have been written.
            released = Job.objects.filter(pk=job.pk, lease_owner=owner).update(
                lease_owner="",
                lease_expires_at=None,
                not_before=now + DATABASE_LOST_RETRY,
                updated_at=now,
                progress_message=f"Lost the database ({type(error).__name__}); continuing shortly."[:300],
            )
            if released:
                publish_run_job_on_commit(job.pk, countdown=DATABASE_LOST_RETRY.total_seconds())
        return released == 1

    logger.warning(
        "job %s (%s) lost the database during its step (%s: %s)", job.pk, job.kind, type(error).__name__, error
    )
    released = _write_despite_lost_database(release, job=job, owner=owner, what="give its lease back")
    if released:
        logger.warning("job %s: lease of %s given back after losing the database; it continues shortly", job.pk, owner)
    status = job.status if released is not None else "unknown"
    return RunOutcome(job.pk, ran=True, status=status, reason="database_lost")


def _run_claimed(job: Job, owner: str) -> RunOutcome:
    job_id = job.pk
    crash_point("after_claim")
    context = _worker_context(job)
    try:
        handler = _handler_for(job.kind)
        result = handler(job, context)
    except DATABASE_CONNECTION_ERRORS as lost:
        # Not a failure of the job: the step is repeated once the database is back.
        return _release_after_lost_database(job, owner, lost)
    except JobDeferred as deferral:
        _write_despite_lost_database(partial(_defer, job, owner, deferral), job=job, owner=owner, what="defer it")
        return RunOutcome(job_id, ran=True, status=job.status, reason="deferred")
    except JobNeedsAttention as attention:
        _write_despite_lost_database(
            partial(_hand_to_admin, job, owner, attention, context),
            job=job,
            owner=owner,
            what="mark it as needing attention",
        )
        return RunOutcome(job_id, ran=True, status=job.status, reason="needs attention")
    except JobFailed as failure:
        _finish_despite_lost_database(
            job, owner, status=JobStatus.FAILED, error_code=failure.code, error_message=failure.message
        )
        return RunOutcome(job_id, ran=True, status=job.status, reason=failure.code)
    except Exception as exc:
        # Unexpected: record it on the job (the record is the row), then let the task log it.
        logger.exception("job %s (%s) crashed", job.pk, job.kind)
        _finish_despite_lost_database(
            job,
            owner,
            status=JobStatus.FAILED,
            error_code="internal_error",
            error_message=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return RunOutcome(job_id, ran=True, status=job.status, reason="internal_error")
    _finish_despite_lost_database(job, owner, status=JobStatus.SUCCEEDED, result=result or {}, progress=100)
    return RunOutcome(job_id, ran=True, status=job.status)


def _defer(job: Job, owner: str, deferral: JobDeferred) -> bool:
    due = timezone.now() + timedelta(seconds=deferral.seconds)
    with transaction.atomic():
        target = deferral.status if deferral.status != job.status else job.status
        moved = _transition(
            job,
            to=target,
            owner=owner,
            step=deferral.step or job.step,
            not_before=due,
            lease_owner="",
            lease_expires_at=None,
            progress_message=(deferral.message or job.progress_message)[:300],
        )
        if moved:
            publish_run_job_on_commit(job.pk, countdown=deferral.seconds)
    return moved


def _hand_to_admin(job: Job, owner: str, attention: JobNeedsAttention, context: AuditContext) -> bool:
    with transaction.atomic():
        moved = _transition(
            job,
            to=JobStatus.NEEDS_ATTENTION,
            owner=owner,
            error_code="needs_attention",
            error_message=attention.message,
            lease_owner="",
            lease_expires_at=None,
        )
        record(
            context=context,
            action="job.needs_attention",
            target=job,
            related=job.environment,
            after={"message": attention.message},
            outcome="failed",
        )
    return moved


def _finish_despite_lost_database(job: Job, owner: str, *, status: str, **fields: Any) -> bool | None:
    return _write_despite_lost_database(
        lambda: _finish(job, owner, status=status, **fields), job=job, owner=owner, what=f"record it as {status}"
    )


def job_run_now(job: Job) -> Job:
    """Run a job in this process until it is terminal (tests, and commands run without a worker)."""
    for _ in range(10_000):
        job.refresh_from_db()
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.NEEDS_ATTENTION):
            return job
        if job.not_before and job.not_before > timezone.now():
            time.sleep(min(1.0, (job.not_before - timezone.now()).total_seconds()))
        outcome = job_run(job.pk)
        if not outcome.ran and outcome.reason == "not claimable":
            job.refresh_from_db()
            if job.not_before is None or job.not_before <= timezone.now():
                time.sleep(0.05)
    job.refresh_from_db()
    return job
