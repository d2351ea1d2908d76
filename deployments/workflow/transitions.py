"""What every transition is made of: the row lock, the conditional UPDATE allowed by
PROMOTION_TRANSITIONS, the audit event, approval counting and the moves several transitions share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import InvalidState, NotFound
from alm_portal.jobs import services as jobs
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import policy
from deployments.choices import PROMOTION_TRANSITIONS, DeploymentJobKind, PreflightStatus, PromotionStatus
from deployments.models import Approval, DeploymentSettings, Promotion, Stage
from deployments.policy import Refusal

Status = PromotionStatus
WAITING = policy.WAITING_STATUSES


# --- small pieces ----------------------------------------------------------------------------------


def _now() -> datetime:
    return timezone.now()


def _locked(promotion_id: int) -> Promotion:
    """The promotion, row-locked until the end of the caller's transaction (SQLite: the whole
    database already is, as its transactions begin IMMEDIATE)."""
    promotion = (
        Promotion.objects.select_for_update(of=("self",))
        .select_related("solution", "version", "stage", "stage__pipeline", "target_environment")
        .filter(pk=promotion_id)
        .first()
    )
    if promotion is None:
        raise NotFound(f"Promotion {promotion_id} does not exist.")
    return promotion


def _locked_many(promotion_ids: Iterable[int]) -> list[Promotion]:
    """Lock several promotions in id order before any audit write, so that a transaction never
    waits for a promotion row while holding the audit chain lock."""
    return list(
        Promotion.objects.select_for_update(of=("self",))
        .select_related("solution", "version", "stage", "stage__pipeline", "target_environment")
        .filter(pk__in=sorted(set(promotion_ids)))
        .order_by("pk")
    )


def _invalid_state(promotion: Promotion, allowed: Sequence[str], doing: str) -> InvalidState:
    return InvalidState(
        f"A promotion that is {promotion.get_status_display().lower()} cannot be {doing}.",
        details={"current": promotion.status, "allowed": [str(status) for status in allowed]},
    )


def _require_status(promotion: Promotion, allowed: Sequence[str], doing: str) -> None:
    if promotion.status not in allowed:
        raise _invalid_state(promotion, allowed, doing)


def _move(promotion: Promotion, *, to: str, now: datetime, doing: str, **fields: Any) -> None:
    """The one way a status changes: a conditional UPDATE from the status we read to `to`."""
    current = promotion.status
    if to not in PROMOTION_TRANSITIONS.get(current, ()):
        # A transition the map does not allow is a refusal, not a crash: the caller read a status
        # it did not expect (e.g. a runner acting on a promotion somebody just cancelled).
        allowed = [status for status, moves in PROMOTION_TRANSITIONS.items() if to in moves]
        raise _invalid_state(promotion, allowed, doing)
    changed = Promotion.objects.filter(pk=promotion.pk, status=current).update(status=to, updated_at=now, **fields)
    if changed != 1:
        actual = Promotion.objects.filter(pk=promotion.pk).values_list("status", flat=True).first()
        raise InvalidState(
            "The promotion changed meanwhile; reload it and try again.",
            details={"current": actual, "allowed": [current]},
        )
    promotion.status = to
    promotion.updated_at = now
    for name, value in fields.items():
        setattr(promotion, name, value)


def _touch(promotion: Promotion, *, now: datetime, **fields: Any) -> None:
    """Change fields but not the status, still only if the status is the one we read."""
    changed = Promotion.objects.filter(pk=promotion.pk, status=promotion.status).update(updated_at=now, **fields)
    if changed != 1:
        actual = Promotion.objects.filter(pk=promotion.pk).values_list("status", flat=True).first()
        raise InvalidState(
            "The promotion changed meanwhile; reload it and try again.",
            details={"current": actual, "allowed": [promotion.status]},
        )
    promotion.updated_at = now
    for name, value in fields.items():
        setattr(promotion, name, value)


def _audit(
    context: AuditContext,
    action: str,
    promotion: Promotion,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "success",
    message: str = "",
) -> None:
    record(
        context=context,
        action=action,
        target=promotion,
        related=promotion.target_environment,
        before=before,
        after=after,
        outcome=outcome,
        message=message,
    )


def _live_approvals(promotion: Promotion) -> list[Approval]:
    return list(Approval.objects.filter(promotion=promotion, voided_at__isnull=True).order_by("decided_at", "pk"))


def _void(approvals: Sequence[Approval], *, now: datetime, reason: str) -> list[int]:
    ids = [approval.pk for approval in approvals]
    if ids:
        Approval.objects.filter(pk__in=ids, voided_at__isnull=True).update(voided_at=now, void_reason=reason[:300])
    return ids


def _void_expired(promotion: Promotion, *, now: datetime) -> list[int]:
    """Expired approvals are voided, so their givers may decide again (one live decision each)."""
    expired = Approval.objects.filter(promotion=promotion, voided_at__isnull=True, expires_at__lte=now)
    return _void(list(expired), now=now, reason="expired")


def _count(promotion: Promotion, *, now: datetime, approvals: Sequence[Approval] | None = None) -> policy.ApprovalCount:
    live = _live_approvals(promotion) if approvals is None else approvals
    return policy.approvals_count(promotion=promotion, approvals=live, at=now)


def _current_settings(stage: Stage) -> DeploymentSettings | None:
    return DeploymentSettings.objects.filter(stage=stage).order_by("-version").first()


def _enqueue(kind: str, promotion: Promotion, context: AuditContext, **extra: Any) -> Job:
    return jobs.job_enqueue(
        kind=kind,
        environment=promotion.target_environment,
        params={"promotion_id": promotion.pk, **extra},
        context=context,
    )


def _restart_preflight(promotion: Promotion, *, context: AuditContext) -> dict[str, Any]:
    """Fields that start a fresh pre-flight (creation, retry, a changed target)."""
    job = _enqueue(DeploymentJobKind.PREFLIGHT, promotion, context)
    return {"preflight_job": job, "preflight_status": PreflightStatus.PENDING, "preflight_result": {}}


def _cancel_job(job_id: int | None, *, context: AuditContext, reason: str) -> bool:
    """Cancel a job nobody has started; True when there is nothing left that could run."""
    if job_id is None:
        return True
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status == JobStatus.CANCELLED:
        return True
    return jobs.job_cancel(job=job, context=context, reason=reason)


def _job_ref(job: Job | None) -> int | None:
    return job.pk if job is not None else None


@dataclass(frozen=True)
class _Advance:
    status: str
    reason: str
    run_job_id: int | None


def _start_refusal(promotion: Promotion, *, now: datetime, count: policy.ApprovalCount) -> Refusal | None:
    stage = promotion.stage
    return policy.start_refusal(
        windows=list(stage.windows.all()),
        freezes=list(stage.freezes.filter(ends_at__gt=now)),
        scheduled_for=promotion.scheduled_for,
        freeze_overridden=count.freeze_overridden,
        at=now,
    )


def _advance_approved(promotion: Promotion, *, now: datetime, context: AuditContext, **fields: Any) -> _Advance:
    """approved → queued (an import job is enqueued) or → scheduled, in the caller's transaction."""
    refusal = _start_refusal(promotion, now=now, count=_count(promotion, now=now))
    if refusal is not None:
        _move(promotion, to=Status.SCHEDULED, now=now, doing="scheduled", run_job=None, **fields)
        return _Advance(Status.SCHEDULED, refusal.code, None)
    job = _enqueue(DeploymentJobKind.IMPORT, promotion, context)
    _move(promotion, to=Status.QUEUED, now=now, doing="queued", run_job=job, **fields)
    return _Advance(Status.QUEUED, "", job.pk)


def _approvals_facts(count: policy.ApprovalCount) -> dict[str, Any]:
    facts: dict[str, Any] = {"approvals": len(count.ordinary), "required": count.required}
    if count.freeze_overrides:
        facts["freeze_overrides"] = len(count.freeze_overrides)
    return facts


def _advance_facts(advance: _Advance) -> dict[str, Any]:
    facts: dict[str, Any] = {"status": advance.status}
    if advance.run_job_id is not None:
        facts["run_job"] = advance.run_job_id
    if advance.reason:
        facts["scheduled_reason"] = advance.reason
    return facts


def _fall_back(
    promotion: Promotion, *, now: datetime, context: AuditContext, reason: str, count: policy.ApprovalCount
) -> bool:
    """approved/scheduled/queued → pending_approval when approvals no longer suffice.

    A queued promotion whose import job a worker has already claimed is left alone (its import may be
    starting; Dataverse cannot cancel it). Returns whether the status moved.
    """
    if promotion.status not in (Status.APPROVED, Status.SCHEDULED, Status.QUEUED) or count.complete:
        return False
    if promotion.status == Status.QUEUED and not _cancel_job(
        promotion.run_job_id, context=context, reason=f"approvals {reason}"
    ):
        return False
    _move(promotion, to=Status.PENDING_APPROVAL, now=now, doing="sent back for approval", run_job=None)
    return True


def _void_and_record(
    promotion: Promotion,
    *,
    approvals: Sequence[Approval],
    reason: str,
    now: datetime,
    context: AuditContext,
    extra_after: dict[str, Any] | None = None,
) -> bool:
    """Void `approvals`, fall back to pending_approval if the rest no longer suffice and write
    promotion.approvals_voided. Returns whether the status moved."""
    before: dict[str, Any] = {"status": promotion.status}
    voided = _void(approvals, now=now, reason=reason)
    moved = _fall_back(promotion, now=now, context=context, reason=reason, count=_count(promotion, now=now))
    if not voided and not moved:
        return False
    _audit(
        context,
        "promotion.approvals_voided",
        promotion,
        before=before,
        after={"status": promotion.status, "approvals_voided": voided, "reason": reason, **(extra_after or {})},
    )
    return moved
