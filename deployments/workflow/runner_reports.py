"""What the runner reports: pre-flight results, start, success, failure, attention, requeue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from alm_portal.jobs import services as jobs
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import policy, selectors
from deployments.choices import PreflightStatus
from deployments.models import Promotion
from deployments.policy import Refusal, raise_if_refused
from deployments.workflow.rollbacks import _mark_rolled_back_in_transaction
from deployments.workflow.transitions import (
    Status,
    _audit,
    _invalid_state,
    _locked,
    _move,
    _now,
    _require_status,
    _touch,
)

# After these, a pre-flight result no longer matters to anyone.
_PREFLIGHT_IGNORED = (Status.SUCCEEDED, Status.REJECTED, Status.CANCELLED, Status.ROLLED_BACK)


def promotion_preflight_finished(
    *, promotion_id: int, status: str, result: dict[str, Any], context: AuditContext
) -> Promotion:
    """Store a pre-flight result (passed | warnings | blocked); the promotion's status does not change.
    Refused (invalid_state) once the promotion is over. Event: promotion.preflight_finished."""
    if status not in PreflightStatus.values or status == PreflightStatus.PENDING:
        raise ValueError(f"pre-flight status must be passed, warnings or blocked, got {status!r}")
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        if promotion.status in _PREFLIGHT_IGNORED:
            allowed = [s for s in Status.values if s not in _PREFLIGHT_IGNORED]
            raise _invalid_state(promotion, allowed, "given a pre-flight result")
        before = {"preflight_status": promotion.preflight_status}
        _touch(promotion, now=now, preflight_status=status, preflight_result=result)
        checks = result.get("checks", []) if isinstance(result, dict) else []
        _audit(
            context,
            "promotion.preflight_finished",
            promotion,
            before=before,
            after={
                "preflight_status": status,
                "blockers": [c.get("code") for c in checks if isinstance(c, dict) and c.get("severity") == "blocker"],
                "warnings": [c.get("code") for c in checks if isinstance(c, dict) and c.get("severity") == "warning"],
            },
        )
    return promotion


def promotion_mark_running(
    *, promotion_id: int, job_id: int, previous_version: str, context: AuditContext
) -> Promotion:
    """queued → running, by the import job the promotion queued (and no other). Records the version
    the target had before: what a rollback goes back to. Event: promotion.started."""
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.QUEUED,), "started")
        if promotion.run_job_id != job_id:
            raise InvalidState(
                f"Job {job_id} is not this promotion's import job.",
                details={"current": promotion.status, "allowed": [Status.QUEUED], "run_job": promotion.run_job_id},
            )
        _move(
            promotion,
            to=Status.RUNNING,
            now=now,
            doing="started",
            started_at=now,
            previous_version=previous_version or "",
            attention_required=False,
        )
        _audit(
            context,
            "promotion.started",
            promotion,
            before={"status": Status.QUEUED},
            after={"status": Status.RUNNING, "run_job": job_id, "previous_version": previous_version or ""},
        )
    return promotion


def _finish_succeeded(
    promotion: Promotion,
    *,
    now: datetime,
    context: AuditContext,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    **fields: Any,
) -> None:
    original = _locked(promotion.rollback_of_id) if promotion.rollback_of_id else None
    _move(promotion, to=Status.SUCCEEDED, now=now, doing="marked succeeded", finished_at=now, **fields)
    rolled_back = _mark_rolled_back_in_transaction(original=original, rollback=promotion, now=now) if original else None
    # Both rows are written before either event, so no row lock is awaited while holding the chain lock.
    _audit(context, action, promotion, before=before, after=after)
    if original is not None and rolled_back is not None:
        _audit(context, "promotion.rolled_back", original, before={"status": Status.SUCCEEDED}, after=rolled_back)


def promotion_mark_succeeded(*, promotion_id: int, result: dict[str, Any], context: AuditContext) -> Promotion:
    """running → succeeded. A successful rollback also moves the promotion it rolled back to
    rolled_back (with its own promotion.rolled_back event), in the same transaction."""
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.RUNNING,), "marked succeeded")
        _finish_succeeded(
            promotion,
            now=now,
            context=context,
            action="promotion.succeeded",
            before={"status": Status.RUNNING},
            after={"status": Status.SUCCEEDED, "version": promotion.version.version},
            result=result,
            attention_required=False,
        )
    return promotion


def promotion_mark_failed(
    *, promotion_id: int, error_code: str, error_message: str, result: dict[str, Any], context: AuditContext
) -> Promotion:
    """running → failed, or queued → failed when the runner refuses before starting (e.g.
    checksum_mismatch, preflight_blocked). The Dataverse code and message are kept. Event:
    promotion.failed (outcome failed)."""
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.RUNNING, Status.QUEUED), "marked failed")
        before = {"status": promotion.status}
        _move(
            promotion,
            to=Status.FAILED,
            now=now,
            doing="marked failed",
            finished_at=now,
            error_code=error_code[:64],
            error_message=error_message,
            result=result,
            attention_required=False,
        )
        _audit(
            context,
            "promotion.failed",
            promotion,
            before=before,
            after={"status": Status.FAILED, "error_code": error_code[:64], "error_message": error_message[:2000]},
            outcome="failed",
        )
    return promotion


def promotion_set_attention(*, promotion_id: int, required: bool, message: str, context: AuditContext) -> Promotion:
    """Flag (or clear) a running promotion whose outcome is unknown; only an admin's resolve ends it.
    Events: promotion.attention_required / promotion.attention_cleared."""
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.RUNNING,), "flagged for attention")
        before = {"attention_required": promotion.attention_required}
        _touch(promotion, now=now, attention_required=required)
        _audit(
            context,
            "promotion.attention_required" if required else "promotion.attention_cleared",
            promotion,
            before=before,
            after={"attention_required": required, "message": message[:2000]},
        )
    return promotion


def promotion_resolve_attention(
    *, promotion: Promotion, succeeded: bool, note: str, context: AuditContext, user: User | None = None
) -> Promotion:
    """An admin settles a running promotion whose outcome was unknown (after checking the target):
    → succeeded (a rollback then also marks what it rolled back) or → failed. Settles the import job
    too when it waits in needs_attention. `user` defaults to the context's actor.
    Event: promotion.attention_resolved."""
    raise_if_refused(policy.comment_refusal(note, field_name="note"))
    if user is None:
        user = User.objects.filter(pk=context.actor_id).first() if context.actor_id else None
    if user is None:
        raise Refusal("permission_denied", "Only an admin may resolve a promotion.").error()
    raise_if_refused(policy.admin_refusal(user=user, action="resolve a promotion that needs attention"))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, (Status.RUNNING,), "resolved")
        before = {"status": Status.RUNNING, "attention_required": promotion.attention_required}
        job = Job.objects.filter(pk=promotion.run_job_id).first() if promotion.run_job_id else None
        if job is not None and job.status == JobStatus.NEEDS_ATTENTION:
            jobs.job_resolve_attention(job=job, succeeded=succeeded, note=note.strip(), context=context)
        after = {
            "status": Status.SUCCEEDED if succeeded else Status.FAILED,
            "attention_required": False,
            "note": note.strip(),
        }
        if succeeded:
            _finish_succeeded(
                promotion,
                now=now,
                context=context,
                action="promotion.attention_resolved",
                before=before,
                after=after,
                attention_required=False,
            )
        else:
            _move(
                promotion,
                to=Status.FAILED,
                now=now,
                doing="marked failed",
                finished_at=now,
                attention_required=False,
                error_code="resolved_as_failed",
                error_message=note.strip(),
            )
            _audit(context, "promotion.attention_resolved", promotion, before=before, after=after)
    return promotion


def job_resolve(*, job: Job, succeeded: bool, note: str, context: AuditContext, user: User) -> Job:
    """An admin settles a job that needs attention, after checking the target: the promotion it imports for,
    if any, is settled with it (promotion_resolve_attention, which settles the job too); any other job alone
    (job.attention_resolved). Refused (invalid_state) unless the job needs attention."""
    allowed = [JobStatus.NEEDS_ATTENTION]
    if job.status != JobStatus.NEEDS_ATTENTION:
        raise InvalidState(
            "Only a job that needs attention can be resolved.", details={"current": job.status, "allowed": allowed}
        )
    promotion = selectors.promotion_for_run_job(job=job)
    if promotion is not None:
        promotion_resolve_attention(promotion=promotion, succeeded=succeeded, note=note, context=context, user=user)
    elif not jobs.job_resolve_attention(job=job, succeeded=succeeded, note=note, context=context):
        raise InvalidState("The job changed meanwhile; reload it.", details={"current": None, "allowed": allowed})
    return job


def promotion_requeue(*, promotion_id: int, reason: str, context: AuditContext) -> Promotion:
    """queued → scheduled: the runner gives the promotion back before starting it (e.g. the window
    closed or a freeze began while it waited for the environment's slot); beat queues it again when
    it may start. Event: promotion.requeued."""
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.QUEUED,), "given back")
        run_job = promotion.run_job_id
        _move(promotion, to=Status.SCHEDULED, now=now, doing="given back", run_job=None)
        _audit(
            context,
            "promotion.requeued",
            promotion,
            before={"status": Status.QUEUED, "run_job": run_job},
            after={"status": Status.SCHEDULED, "reason": reason[:300]},
        )
    return promotion
