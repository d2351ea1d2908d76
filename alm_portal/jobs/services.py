"""The job engine: enqueue, claim, run, defer, finish. The only code that changes Job.status.

Guarantees (docs/architecture.md §1 and docs/states.md §3):
- The row is the record. The broker message only says "look at job N"; publishing is best effort
  after commit, and the dispatcher re-sends rows that nobody holds.
- A claim is a conditional UPDATE that must hit exactly one row, so a message delivered twice, or
  a job published twice, runs once. A worker holds a job through a lease it renews while working.
- Solution operations take the environment's single slot through a partial unique index; a job
  that loses the race stays pending and is retried shortly.
- Waiting is a `not_before` time plus a short follow-up task, never a long countdown.
- A worker that loses the database in the middle of a step gives its lease back as soon as the database
  answers again (within a bounded wait), instead of leaving the job to wait for the lease to run out.
"""

from __future__ import annotations

import contextlib
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
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JOB_TRANSITIONS, JobStatus, JobWaitingReason
from alm_portal.jobs.errors import JobDeferred, JobFailed, JobNeedsAttention
from alm_portal.jobs.models import Job
from alm_portal.jobs.registry import _HANDLERS, job_kind_spec, register_job_handler, register_job_kind
from alm_portal.logformat import job_log_context

logger = logging.getLogger(__name__)

# A job whose environment slot is taken waits this long before it tries again (or until the job
# holding the slot finishes and wakes it).
SLOT_BUSY_RETRY = timedelta(seconds=5)
# What a job waiting for the slot shows (its waiting_reason says why it waits).
WAITING_FOR_SLOT = JobWaitingReason.SOLUTION_SLOT.label
# The dispatcher re-sends rows that have waited longer than this without a live lease.
DISPATCH_AFTER = timedelta(seconds=30)
# Follow-up messages never wait longer than this in the broker (longer waits live in not_before).
MAX_COUNTDOWN_SECONDS = 60
# What a lost (or refused, or reset) database connection raises; a deadlock victim is an OperationalError too.
DATABASE_CONNECTION_ERRORS = (OperationalError, InterfaceError)
# A job whose step lost the database is picked up again this long after its lease is given back.
DATABASE_LOST_RETRY = timedelta(seconds=2)
# Waits between attempts to write the end of a step while the database is away, and the longest wait.
LEASE_WRITE_FIRST_WAIT = 0.5
LEASE_WRITE_MAX_WAIT = 8.0

_Written = TypeVar("_Written")


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


def _publish_on_commit(job_id: int, countdown: float = 0) -> None:
    from alm_portal.celery import publish_best_effort
    from alm_portal.jobs.tasks import run_job

    def send() -> None:
        publish_best_effort(run_job, args=(job_id,), countdown=min(countdown, MAX_COUNTDOWN_SECONDS))

    transaction.on_commit(send)


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
        _publish_on_commit(job.pk)
    return job


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
        _publish_on_commit(job_id, countdown=SLOT_BUSY_RETRY.total_seconds())
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


def _audited(job: Job) -> bool:
    """Routine kinds (scheduled health checks and syncs, every few minutes for every environment): the job row
    is their record, and only their failures (and any job a person asked for) get an audit row."""
    spec = job_kind_spec(job.kind)
    return job.created_by_id is not None or spec is None or not spec.routine


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
        _publish_on_commit(waiting)


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


def _lease_write_budget() -> float:
    """How long a worker keeps trying to write the end of a step while the database is away: well below the
    task's soft time limit (the step itself has used part of it), and never more than a minute."""
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT or settings.CELERY_TASK_TIME_LIMIT
    return min(60.0, soft_limit / 4)


def _drop_database_connection() -> None:
    """Close this thread's connection, which a lost database leaves broken, so the next query opens a new one.

    Inside a transaction (a test's, or a caller's) closing it would end that transaction: leave it alone."""
    if connection.in_atomic_block:
        return
    # Closing a dead connection may itself fail; it is discarded all the same.
    with contextlib.suppress(DatabaseError):
        connection.close()


def _write_despite_lost_database(write: Callable[[], _Written], *, job: Job, owner: str, what: str) -> _Written | None:
    """Run `write`, the end of a step, which is conditional on `owner` still holding the job's lease.

    If the database connection is lost, close it and try again with a growing wait, for at most
    `_lease_write_budget()` seconds. Retrying is safe: a write that did commit before its answer was lost no
    longer matches its own condition, and neither does one after another worker claimed the job, so nothing
    is written twice and no other worker's claim is overwritten. Returns None when it gave up: the lease then
    runs out as it would have without this, and the dispatcher hands the job to a worker after that."""
    deadline = time.monotonic() + _lease_write_budget()
    wait = LEASE_WRITE_FIRST_WAIT
    attempt = 1
    status_read = job.status
    while True:
        # A write whose commit failed may have changed the job in memory already; each attempt starts from
        # the status this worker read, which is what its conditional UPDATE expects to find.
        job.status = status_read
        try:
            written = write()
        except DATABASE_CONNECTION_ERRORS as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or connection.in_atomic_block:
                logger.warning(
                    "job %s: could not %s after %d attempts (%s: %s); its lease (%s) runs out at %s and the "
                    "dispatcher takes it up then",
                    job.pk,
                    what,
                    attempt,
                    type(exc).__name__,
                    str(exc).strip()[:200],
                    owner,
                    job.lease_expires_at,
                )
                return None
            logger.info("job %s: could not %s (%s); trying again", job.pk, what, type(exc).__name__)
            _drop_database_connection()
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, LEASE_WRITE_MAX_WAIT)
            attempt += 1
            continue
        if attempt > 1:
            logger.warning("job %s: %s on attempt %d, after the database came back", job.pk, what, attempt)
        return written


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
                _publish_on_commit(job.pk, countdown=DATABASE_LOST_RETRY.total_seconds())
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
            _publish_on_commit(job.pk, countdown=deferral.seconds)
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


def job_cancel(*, job: Job, context: AuditContext, reason: str) -> bool:
    """Cancel a job nobody has started. Started work runs to its end (Dataverse cannot cancel an import)."""
    with transaction.atomic():
        now = timezone.now()
        changed = _move(
            job.pk,
            current=JobStatus.PENDING,
            to=JobStatus.CANCELLED,
            finished_at=now,
            updated_at=now,
            error_message=reason,
        )
        if changed:
            job.status = JobStatus.CANCELLED
            record(context=context, action="job.cancelled", target=job, after={"reason": reason})
    return bool(changed)


def jobs_dispatch(*, limit: int = 500) -> int:
    """Re-send jobs that are due and held by nobody (lost message, dead worker). Beat runs this."""
    from alm_portal.celery import publish_best_effort
    from alm_portal.jobs.tasks import run_job

    now = timezone.now()
    due = (
        Job.objects.filter(Q(status=JobStatus.PENDING) | Q(status__in=ACTIVE_JOB_STATUSES))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .filter(updated_at__lt=now - DISPATCH_AFTER)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for job_id in due:
        if publish_best_effort(run_job, args=(job_id,)):
            sent += 1
    return sent


def job_resolve_attention(*, job: Job, succeeded: bool, note: str, context: AuditContext) -> bool:
    """An admin settles a job whose outcome was unknown; audited with their note."""
    with transaction.atomic():
        status = JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED
        now = timezone.now()
        changed = _move(job.pk, current=JobStatus.NEEDS_ATTENTION, to=status, finished_at=now, updated_at=now)
        if changed:
            record(
                context=context,
                action="job.attention_resolved",
                target=job,
                before={"status": JobStatus.NEEDS_ATTENTION},
                after={"status": status, "note": note},
            )
            job.status = status
    return bool(changed)


__all__ = [
    "JobDeferred",
    "JobFailed",
    "JobNeedsAttention",
    "RunOutcome",
    "crash_point",
    "job_cancel",
    "job_enqueue",
    "job_mark_step",
    "job_progress",
    "job_resolve_attention",
    "job_run",
    "job_run_now",
    "jobs_dispatch",
    "register_job_handler",
    "register_job_kind",
]
