"""The promotion state machine (DESIGN section 3): the only code that changes Promotion.status.

Every transition is one function that
- locks the promotion row first (so two people deciding at the same instant queue up instead of
  each counting only their own approval),
- checks policy (deployments/policy.py) and raises the refusal as a domain error,
- changes the status with a conditional UPDATE that must hit exactly one row, allowed by
  PROMOTION_TRANSITIONS (anything else raises InvalidState with details {current, allowed}),
- writes one audit event with before/after in the same transaction, last,
- leaves the broker publish to on_commit, through job_enqueue.

`approved` is transient: the transaction that reaches it moves on to `queued` (an import job is
enqueued) or to `scheduled` (window closed, stage frozen, or scheduled_for later), and
promotions_release_scheduled() (beat) moves due ones on.

The runner (deployments/runner.py) reports through promotion_preflight_finished,
promotion_mark_running, promotion_mark_succeeded, promotion_mark_failed, promotion_set_attention and
promotion_requeue; it is the only caller of those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import InvalidState, NotFound, ValidationFailed
from deployments import jobs, policy
from deployments.choices import (
    PROMOTION_TRANSITIONS,
    ApprovalDecision,
    JobKind,
    JobStatus,
    PreflightStatus,
    PromotionKind,
    PromotionStatus,
    RollbackStrategy,
)
from deployments.models import Approval, DeploymentSettings, Job, Promotion, Stage
from deployments.policy import Refusal, raise_if_refused
from environments.models import Environment
from solutions.models import SolutionVersion

logger = logging.getLogger(__name__)

Status = PromotionStatus
WAITING = policy.WAITING_STATUSES
# After these, a pre-flight result no longer matters to anyone.
_PREFLIGHT_IGNORED = (Status.SUCCEEDED, Status.REJECTED, Status.CANCELLED, Status.ROLLED_BACK)


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
    job = _enqueue(JobKind.PREFLIGHT, promotion, context)
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
    job = _enqueue(JobKind.IMPORT, promotion, context)
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


# --- creation --------------------------------------------------------------------------------------


def _previous_stage(stage: Stage) -> Stage | None:
    return Stage.objects.filter(pipeline_id=stage.pipeline_id, order__lt=stage.order).order_by("-order").first()


def _succeeded_in(version: SolutionVersion, stage: Stage | None) -> bool:
    if stage is None:
        return False
    return Promotion.objects.filter(version=version, stage=stage, status=Status.SUCCEEDED).exists()


def _checked_schedule(scheduled_for: datetime | None, *, now: datetime) -> datetime | None:
    if scheduled_for is None:
        return None
    if timezone.is_naive(scheduled_for):
        raise ValidationFailed(
            "scheduled_for needs a time zone.", details={"scheduled_for": ["Give the time with a UTC offset."]}
        )
    if scheduled_for <= now:
        raise ValidationFailed("scheduled_for is in the past.", details={"scheduled_for": ["Must be in the future."]})
    return scheduled_for


def _create(
    *,
    kind: str,
    version: SolutionVersion,
    stage: Stage,
    requested_by: User,
    context: AuditContext,
    now: datetime,
    comment: str = "",
    change_reference: str = "",
    backup_reference: str = "",
    scheduled_for: datetime | None = None,
    rollback_of: Promotion | None = None,
    rollback_strategy: str = "",
) -> Promotion:
    """Create a promotion waiting for approval, start its pre-flight and audit it; in the caller's
    transaction. With 0 approvals required it moves on at once (actor system)."""
    promotion = Promotion.objects.create(
        kind=kind,
        status=Status.PENDING_APPROVAL,
        solution=version.solution,
        version=version,
        stage=stage,
        target_environment=stage.target_environment,
        artifact_sha256=version.managed_sha256,
        requested_by=requested_by,
        requested_at=now,
        comment=comment.strip(),
        change_reference=change_reference.strip(),
        backup_reference=backup_reference.strip(),
        scheduled_for=scheduled_for,
        settings_version=_current_settings(stage),
        attempt=1,
        rollback_of=rollback_of,
        rollback_strategy=rollback_strategy,
        updated_at=now,
    )
    _touch(promotion, now=now, **_restart_preflight(promotion, context=context))
    after: dict[str, Any] = {
        "status": promotion.status,
        "kind": kind,
        "version": version.version,
        "stage": stage.name,
        "target_environment": promotion.target_environment_id,
        "artifact_sha256": promotion.artifact_sha256,
        "settings_version": promotion.settings_version.version if promotion.settings_version else None,
        "preflight_job": _job_ref(promotion.preflight_job),
        "required_approvals": policy.approvals_required(promotion=promotion),
    }
    for name in ("change_reference", "backup_reference", "comment"):
        if getattr(promotion, name):
            after[name] = getattr(promotion, name)
    if scheduled_for is not None:
        after["scheduled_for"] = scheduled_for
    if rollback_of is not None:
        after.update(rollback_of=rollback_of.pk, rollback_strategy=rollback_strategy)
    _audit(context, "promotion.requested", promotion, after=after)

    count = _count(promotion, now=now, approvals=[])
    if count.complete:
        # Nobody has to approve: the portal approves, so the record says who did (nobody, by rule).
        system = AuditContext.system(request_id=context.request_id)
        _move(promotion, to=Status.APPROVED, now=now, doing="approved")
        advance = _advance_approved(promotion, now=now, context=system)
        _audit(
            system,
            "promotion.auto_approved",
            promotion,
            before={"status": Status.PENDING_APPROVAL},
            after={**_advance_facts(advance), **_approvals_facts(count)},
        )
    return promotion


def promotion_request(
    *,
    version: SolutionVersion,
    stage: Stage,
    requested_by: User,
    context: AuditContext,
    comment: str = "",
    change_reference: str = "",
    backup_reference: str = "",
    scheduled_for: datetime | None = None,
) -> Promotion:
    """Ask for `version` to be installed into `stage`'s environment.

    Refused unless the requester may act on the solution (403 permission_denied), the stage belongs
    to the solution's pipeline (400 stage_not_in_pipeline), a managed artifact is stored (409
    artifact_missing), the stage's reference rules hold (400 validation_error) and the version
    succeeded in the previous stage (409 previous_stage_not_succeeded, unless the stage says no).
    Creates the promotion waiting for approval, snapshots the stage's deployment settings and
    enqueues a pre-flight job; with 0 required approvals the portal approves it at once.
    """
    solution = version.solution
    raise_if_refused(policy.request_refusal(user=requested_by, solution=solution))
    raise_if_refused(policy.stage_membership_refusal(solution=solution, stage=stage))
    raise_if_refused(policy.artifact_refusal(version=version))
    raise_if_refused(policy.comment_refusal(comment, required=False))
    raise_if_refused(
        policy.references_refusal(stage=stage, change_reference=change_reference, backup_reference=backup_reference)
    )
    now = _now()
    scheduled_for = _checked_schedule(scheduled_for, now=now)
    previous = _previous_stage(stage)
    raise_if_refused(
        policy.gating_refusal(
            kind=PromotionKind.PROMOTION,
            stage=stage,
            previous_stage=previous,
            succeeded_in_previous=_succeeded_in(version, previous),
        )
    )
    with transaction.atomic():
        return _create(
            kind=PromotionKind.PROMOTION,
            version=version,
            stage=stage,
            requested_by=requested_by,
            context=context,
            now=now,
            comment=comment,
            change_reference=change_reference,
            backup_reference=backup_reference,
            scheduled_for=scheduled_for,
        )


# --- decisions -------------------------------------------------------------------------------------


def promotion_approve(*, promotion: Promotion, user: User, context: AuditContext, comment: str = "") -> Promotion:
    """Record `user`'s approval; when the stage's count is reached the promotion is approved and moves
    on to queued (import job enqueued) or scheduled, in the same transaction.

    Refusals: 403 permission_denied (not named on the stage), self_approval_forbidden,
    uploader_approval_forbidden; 409 already_decided, preflight_pending, preflight_blocked,
    invalid_state. Events: promotion.approval_recorded (more approvals needed) or promotion.approved.
    """
    raise_if_refused(policy.comment_refusal(comment, required=False))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, (Status.PENDING_APPROVAL,), "approved")
        raise_if_refused(policy.decision_refusal(user=user, promotion=promotion))
        expired = _void_expired(promotion, now=now)
        live = _live_approvals(promotion)
        raise_if_refused(policy.already_decided_refusal(user=user, live_approvals=live))
        raise_if_refused(policy.preflight_refusal(promotion=promotion))
        before_count = _count(promotion, now=now, approvals=live)
        approval = Approval.objects.create(
            promotion=promotion,
            approver=user,
            decision=ApprovalDecision.APPROVE,
            comment=comment.strip(),
            decided_at=now,
            artifact_sha256=promotion.artifact_sha256,
            target_environment=promotion.target_environment,
            expires_at=now + policy.approval_ttl(),
        )
        count = _count(promotion, now=now, approvals=[*live, approval])
        after: dict[str, Any] = {"approval": approval.pk, **_approvals_facts(count)}
        if expired:
            after["expired_voided"] = expired
        if comment.strip():
            after["comment"] = comment.strip()
        if not count.complete:
            _touch(promotion, now=now)
            _audit(
                context, "promotion.approval_recorded", promotion, before=_approvals_facts(before_count), after=after
            )
            return promotion
        _move(promotion, to=Status.APPROVED, now=now, doing="approved")
        advance = _advance_approved(promotion, now=now, context=context)
        _audit(
            context,
            "promotion.approved",
            promotion,
            before={"status": Status.PENDING_APPROVAL, **_approvals_facts(before_count)},
            after={**after, **_advance_facts(advance)},
        )
    return promotion


def promotion_reject(*, promotion: Promotion, user: User, comment: str, context: AuditContext) -> Promotion:
    """An approver of the stage rejects the promotion, with a comment (1–2000 characters); final."""
    raise_if_refused(policy.comment_refusal(comment))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, (Status.PENDING_APPROVAL,), "rejected")
        raise_if_refused(policy.decision_refusal(user=user, promotion=promotion))
        _void_expired(promotion, now=now)
        raise_if_refused(policy.already_decided_refusal(user=user, live_approvals=_live_approvals(promotion)))
        approval = Approval.objects.create(
            promotion=promotion,
            approver=user,
            decision=ApprovalDecision.REJECT,
            comment=comment.strip(),
            decided_at=now,
            artifact_sha256=promotion.artifact_sha256,
            target_environment=promotion.target_environment,
            expires_at=now + policy.approval_ttl(),
        )
        _move(promotion, to=Status.REJECTED, now=now, doing="rejected", finished_at=now)
        _cancel_job(promotion.preflight_job_id, context=context, reason="promotion rejected")
        _audit(
            context,
            "promotion.rejected",
            promotion,
            before={"status": Status.PENDING_APPROVAL},
            after={"status": Status.REJECTED, "approval": approval.pk, "comment": comment.strip()},
        )
    return promotion


def promotion_override_freeze(*, promotion: Promotion, user: User, reason: str, context: AuditContext) -> Promotion:
    """An admin lets a promotion start during a freeze of its stage: one extra approval, with a reason.

    The override is recorded as an approval flagged `freeze_override` (bound to the artifact and
    target, expiring like any other), which does not count towards the stage's ordinary approvals.
    A scheduled promotion held only by the freeze moves on to queued at once. Refusals: 403
    permission_denied (not an admin), self/uploader rules; 409 not_frozen (no freeze at its start),
    already_decided, preflight_pending/blocked, invalid_state. Event: promotion.freeze_overridden.
    """
    raise_if_refused(policy.comment_refusal(reason, field_name="reason"))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        allowed = (Status.PENDING_APPROVAL, Status.SCHEDULED)
        _require_status(promotion, allowed, "given a freeze override")
        raise_if_refused(policy.freeze_override_refusal(user=user, promotion=promotion))
        starts_at = max(now, promotion.scheduled_for or now)
        freeze = policy.active_freeze(promotion.stage.freezes.filter(ends_at__gt=now), at=starts_at)
        if freeze is None:
            raise Refusal("not_frozen", "No freeze covers this promotion's start; nothing to override.").error()
        expired = _void_expired(promotion, now=now)
        live = _live_approvals(promotion)
        raise_if_refused(policy.already_decided_refusal(user=user, live_approvals=live))
        raise_if_refused(policy.preflight_refusal(promotion=promotion))
        approval = Approval.objects.create(
            promotion=promotion,
            approver=user,
            decision=ApprovalDecision.APPROVE,
            comment=reason.strip(),
            decided_at=now,
            artifact_sha256=promotion.artifact_sha256,
            target_environment=promotion.target_environment,
            expires_at=now + policy.approval_ttl(),
            freeze_override=True,
        )
        count = _count(promotion, now=now, approvals=[*live, approval])
        before: dict[str, Any] = {
            "status": promotion.status,
            "freeze_override_reason": promotion.freeze_override_reason,
        }
        after: dict[str, Any] = {
            "approval": approval.pk,
            "freeze_override_reason": reason.strip(),
            "freeze": {
                "id": freeze.pk,
                "starts_at": freeze.starts_at,
                "ends_at": freeze.ends_at,
                "reason": freeze.reason,
            },
            **_approvals_facts(count),
        }
        if expired:
            after["expired_voided"] = expired
        fields = {"freeze_override_reason": reason.strip()}
        if not count.complete:
            _touch(promotion, now=now, **fields)
            after["status"] = promotion.status
        elif promotion.status == Status.PENDING_APPROVAL:
            _move(promotion, to=Status.APPROVED, now=now, doing="approved", **fields)
            after.update(_advance_facts(_advance_approved(promotion, now=now, context=context)))
        else:
            refusal = _start_refusal(promotion, now=now, count=count)
            if refusal is None:
                job = _enqueue(JobKind.IMPORT, promotion, context)
                _move(promotion, to=Status.QUEUED, now=now, doing="queued", run_job=job, **fields)
                after.update(status=Status.QUEUED, run_job=job.pk)
            else:
                _touch(promotion, now=now, **fields)
                after.update(status=promotion.status, scheduled_reason=refusal.code)
        _audit(context, "promotion.freeze_overridden", promotion, before=before, after=after)
    return promotion


# --- requester and admin actions -------------------------------------------------------------------


def promotion_cancel(*, promotion: Promotion, user: User, comment: str, context: AuditContext) -> Promotion:
    """The requester or an admin cancels a promotion that has not started (a running import cannot be
    cancelled: Dataverse has no documented way to). Cancelling a queued promotion cancels its import
    job; if a worker already claimed that job the cancel is refused (invalid_state)."""
    raise_if_refused(policy.comment_refusal(comment))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, policy.CANCELLABLE_STATUSES, "cancelled")
        raise_if_refused(policy.requester_or_admin_refusal(user=user, promotion=promotion, action="cancel"))
        before: dict[str, Any] = {"status": promotion.status}
        if promotion.status == Status.QUEUED and not _cancel_job(
            promotion.run_job_id, context=context, reason="promotion cancelled"
        ):
            raise InvalidState(
                "The import has already been picked up by a worker; it can no longer be cancelled.",
                details={"current": Status.RUNNING, "allowed": [str(status) for status in policy.CANCELLABLE_STATUSES]},
            )
        _cancel_job(promotion.preflight_job_id, context=context, reason="promotion cancelled")
        _move(promotion, to=Status.CANCELLED, now=now, doing="cancelled", finished_at=now)
        after: dict[str, Any] = {"status": Status.CANCELLED, "comment": comment.strip()}
        if before["status"] == Status.QUEUED:
            after["run_job_cancelled"] = promotion.run_job_id
        _audit(context, "promotion.cancelled", promotion, before=before, after=after)
    return promotion


def promotion_retry(*, promotion: Promotion, user: User, context: AuditContext, comment: str = "") -> Promotion:
    """The requester or an admin tries a failed promotion again, with the same version.

    The promotion is bound again to the version's stored artifact and the stage's current target;
    approvals for another artifact or target are voided. Pre-flight runs again and the current
    deployment settings are snapshotted. Approvals still valid → approved → queued/scheduled; else
    back to pending_approval. The attempt number goes up either way. Event: promotion.retried.
    """
    raise_if_refused(policy.comment_refusal(comment, required=False))
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, (Status.FAILED,), "retried")
        raise_if_refused(policy.requester_or_admin_refusal(user=user, promotion=promotion, action="retry"))
        version = SolutionVersion.objects.get(pk=promotion.version_id)
        raise_if_refused(policy.artifact_refusal(version=version))
        stage = promotion.stage
        before: dict[str, Any] = {
            "status": Status.FAILED,
            "attempt": promotion.attempt,
            "error_code": promotion.error_code,
        }
        after: dict[str, Any] = {"attempt": promotion.attempt + 1}
        voided: list[int] = []
        rebind: dict[str, Any] = {}
        if version.managed_sha256 != promotion.artifact_sha256:
            before["artifact_sha256"] = promotion.artifact_sha256
            rebind["artifact_sha256"] = after["artifact_sha256"] = version.managed_sha256
        if stage.target_environment_id != promotion.target_environment_id:
            before["target_environment"] = promotion.target_environment_id
            rebind["target_environment"] = stage.target_environment
            after["target_environment"] = stage.target_environment_id
        if rebind:
            stale = [
                approval
                for approval in _live_approvals(promotion)
                if approval.artifact_sha256 != rebind.get("artifact_sha256", promotion.artifact_sha256)
                or approval.target_environment_id != stage.target_environment_id
            ]
            voided = _void(stale, now=now, reason="artifact or target changed")
            for name, value in rebind.items():
                setattr(promotion, name, value)
        voided += _void_expired(promotion, now=now)
        if voided:
            after["approvals_voided"] = voided
        settings_version = _current_settings(stage)
        fields: dict[str, Any] = {
            **rebind,
            "attempt": promotion.attempt + 1,
            "settings_version": settings_version,
            "error_code": "",
            "error_message": "",
            "result": {},
            "started_at": None,
            "finished_at": None,
            "attention_required": False,
            "run_job": None,
            **_restart_preflight(promotion, context=context),
        }
        after.update(
            preflight_job=_job_ref(fields["preflight_job"]),
            settings_version=settings_version.version if settings_version else None,
        )
        if comment.strip():
            after["comment"] = comment.strip()
        count = _count(promotion, now=now)
        after.update(_approvals_facts(count))
        if count.complete:
            _move(promotion, to=Status.APPROVED, now=now, doing="approved", **fields)
            after.update(_advance_facts(_advance_approved(promotion, now=now, context=context)))
        else:
            _move(promotion, to=Status.PENDING_APPROVAL, now=now, doing="sent back for approval", **fields)
            after["status"] = Status.PENDING_APPROVAL
        _audit(context, "promotion.retried", promotion, before=before, after=after)
    return promotion


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


def promotion_void_approvals(
    *, promotion: Promotion, reason: str, context: AuditContext, approver: User | None = None
) -> Promotion:
    """Void the live approvals of a waiting promotion (all, or one approver's); an approved, scheduled
    or queued promotion that no longer has enough goes back to pending_approval.
    Event: promotion.approvals_voided."""
    reason = (reason or "").strip() or "voided"
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion.pk)
        _require_status(promotion, WAITING, "have its approvals voided")
        live = [a for a in _live_approvals(promotion) if approver is None or a.approver_id == approver.pk]
        _void_and_record(promotion, approvals=live, reason=reason, now=now, context=context)
    return promotion


def approvals_void_for_user(*, user: User, context: AuditContext) -> int:
    """Void every live decision `user` gave on promotions that have not started (a disabled user's
    approvals no longer count, DESIGN section 5). Runs inside the caller's transaction when there is
    one (user_disable). Returns the number of promotions touched."""
    with transaction.atomic():
        now = _now()
        promotion_ids = Approval.objects.filter(
            approver=user, voided_at__isnull=True, promotion__status__in=WAITING
        ).values_list("promotion_id", flat=True)
        touched = 0
        for promotion in _locked_many(promotion_ids):
            if promotion.status not in WAITING:
                continue
            mine = [approval for approval in _live_approvals(promotion) if approval.approver_id == user.pk]
            if mine:
                _void_and_record(
                    promotion,
                    approvals=mine,
                    reason="approver disabled",
                    now=now,
                    context=context,
                    extra_after={"approver": user.pk},
                )
                touched += 1
    return touched


def promotions_retarget(*, stage: Stage, context: AuditContext) -> int:
    """The stage now targets another environment: every waiting promotion of it is bound to the new
    target, its approvals (bound to the old one) are voided and pre-flight runs again. Called by
    stage_update inside its transaction, after it locked the stage. Returns the number touched."""
    with transaction.atomic():
        now = _now()
        ids = Promotion.objects.filter(stage=stage, status__in=WAITING).values_list("pk", flat=True)
        promotions = _locked_many(ids)
        for promotion in promotions:
            if promotion.status == Status.QUEUED and not _cancel_job(
                promotion.run_job_id, context=context, reason="stage target changed"
            ):
                raise InvalidState(
                    "An import into the stage's current target is starting; change the target once it has finished.",
                    details={"current": Status.RUNNING, "allowed": [str(status) for status in WAITING]},
                )
        target = Environment.objects.get(pk=stage.target_environment_id)
        for promotion in promotions:
            old_target = promotion.target_environment_id
            promotion.target_environment = target
            fields = {"target_environment": target, **_restart_preflight(promotion, context=context)}
            if promotion.status == Status.QUEUED:
                # Its import job is cancelled above; the move back (or on) below decides what runs next.
                fields["run_job"] = None
            voided = _void(_live_approvals(promotion), now=now, reason="target changed")
            before = {"status": promotion.status, "target_environment": old_target}
            _touch(promotion, now=now, **fields)
            count = _count(promotion, now=now)
            if promotion.status in (Status.APPROVED, Status.SCHEDULED, Status.QUEUED) and not count.complete:
                _move(promotion, to=Status.PENDING_APPROVAL, now=now, doing="sent back for approval", run_job=None)
            elif promotion.status == Status.QUEUED:
                # Still approved (0 required): a fresh import job for the new target.
                job = _enqueue(JobKind.IMPORT, promotion, context)
                _touch(promotion, now=now, run_job=job)
            _audit(
                context,
                "promotion.approvals_voided",
                promotion,
                before=before,
                after={
                    "status": promotion.status,
                    "target_environment": target.pk,
                    "approvals_voided": voided,
                    "reason": "target changed",
                    "preflight_job": _job_ref(promotion.preflight_job),
                },
            )
    return len(promotions)


def promotions_release_scheduled(*, context: AuditContext | None = None) -> int:
    """Beat, every minute: move due scheduled promotions to queued; send those whose approvals
    expired meanwhile (scheduled, or queued with the import not yet picked up) back to
    pending_approval. Each promotion in its own short transaction. Returns how many were queued."""
    context = context or AuditContext.system()
    now = _now()
    scheduled = list(Promotion.objects.filter(status=Status.SCHEDULED).values_list("pk", flat=True))
    stale_queued = list(
        Promotion.objects.filter(
            status=Status.QUEUED,
            run_job__status=JobStatus.PENDING,
            approvals__voided_at__isnull=True,
            approvals__expires_at__lte=now,
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    released = 0
    for promotion_id in [*scheduled, *stale_queued]:
        try:
            if _release_one(promotion_id, now=now, context=context):
                released += 1
        except InvalidState:
            continue  # changed meanwhile (cancelled, picked up): nothing to release
    return released


def _release_one(promotion_id: int, *, now: datetime, context: AuditContext) -> bool:
    with transaction.atomic():
        promotion = _locked(promotion_id)
        if promotion.status not in (Status.SCHEDULED, Status.QUEUED):
            return False
        count = _count(promotion, now=now)
        if not count.complete:
            expired = list(Approval.objects.filter(promotion=promotion, voided_at__isnull=True, expires_at__lte=now))
            _void_and_record(promotion, approvals=expired, reason="expired", now=now, context=context)
            return False
        if promotion.status != Status.SCHEDULED:
            return False
        refusal = _start_refusal(promotion, now=now, count=count)
        if refusal is not None:
            return False
        job = _enqueue(JobKind.IMPORT, promotion, context)
        _move(promotion, to=Status.QUEUED, now=now, doing="queued", run_job=job)
        _audit(
            context,
            "promotion.queued",
            promotion,
            before={"status": Status.SCHEDULED},
            after={"status": Status.QUEUED, "run_job": job.pk, **_approvals_facts(count)},
        )
    return True


# --- what the runner reports -----------------------------------------------------------------------


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


def _mark_rolled_back_in_transaction(
    *, original: Promotion, rollback: Promotion, now: datetime
) -> dict[str, Any] | None:
    """succeeded → rolled_back for `original`; returns the audit after, or None if it was not succeeded."""
    if original.status != Status.SUCCEEDED:
        logger.warning(
            "rollback %s succeeded but promotion %s is %s, not succeeded", rollback.pk, original.pk, original.status
        )
        return None
    _move(original, to=Status.ROLLED_BACK, now=now, doing="rolled back", rolled_back_by=rollback)
    return {"status": Status.ROLLED_BACK, "rolled_back_by": rollback.pk, "strategy": rollback.rollback_strategy}


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


# --- rollback --------------------------------------------------------------------------------------


def _latest_succeeded(promotion: Promotion) -> Promotion | None:
    return (
        Promotion.objects.filter(
            solution_id=promotion.solution_id,
            target_environment_id=promotion.target_environment_id,
            status=Status.SUCCEEDED,
        )
        .select_related("version")
        .order_by("-finished_at", "-pk")
        .first()
    )


def rollback_request(
    *,
    promotion: Promotion,
    strategy: str,
    requested_by: User,
    context: AuditContext,
    confirm: str = "",
    comment: str = "",
) -> Promotion:
    """Ask to roll back `promotion` (the latest succeeded deployment of its solution on its target,
    else 409 not_latest_deployment) with `strategy`. Creates a promotion of kind rollback: exempt
    from gating, needing at least one approval from the stage's approvers. `uninstall_reinstall` is
    admin only and `confirm` must equal the solution's unique name. The version to install comes
    from deployments.rollback.rollback_artifact_for (which re-versions when needed).
    Event: promotion.requested (kind rollback)."""
    from deployments.rollback import rollback_artifact_for

    if strategy not in RollbackStrategy.values:
        raise ValidationFailed(
            "Unknown rollback strategy.",
            details={"strategy": [f"Must be one of {', '.join(RollbackStrategy.values)}."]},
        )
    raise_if_refused(policy.request_refusal(user=requested_by, solution=promotion.solution))
    raise_if_refused(policy.comment_refusal(comment, required=False))
    if strategy == RollbackStrategy.UNINSTALL_REINSTALL:
        raise_if_refused(policy.admin_refusal(user=requested_by, action="uninstall and reinstall a solution"))
        if confirm != promotion.solution.unique_name:
            raise ValidationFailed(
                "Uninstalling deletes the solution's tables and their data; confirm with its unique name.",
                details={"confirm": [f"Type {promotion.solution.unique_name} to confirm."]},
            )
    promotion.refresh_from_db()
    raise_if_refused(policy.latest_deployment_refusal(promotion=promotion, latest=_latest_succeeded(promotion)))
    _refuse_second_rollback(promotion)
    # Outside our transaction: it may store a re-versioned package (its own audited registration).
    version = rollback_artifact_for(promotion=promotion, strategy=strategy, context=context)
    raise_if_refused(policy.artifact_refusal(version=version))
    with transaction.atomic():
        now = _now()
        original = _locked(promotion.pk)
        raise_if_refused(policy.latest_deployment_refusal(promotion=original, latest=_latest_succeeded(original)))
        _refuse_second_rollback(original)
        return _create(
            kind=PromotionKind.ROLLBACK,
            version=version,
            stage=original.stage,
            requested_by=requested_by,
            context=context,
            now=now,
            comment=comment,
            rollback_of=original,
            rollback_strategy=strategy,
        )


def _refuse_second_rollback(promotion: Promotion) -> None:
    under_way = promotion.rollbacks.filter(status__in=(*WAITING, Status.RUNNING)).first()
    if under_way is not None:
        raise InvalidState(
            f"Rollback {under_way.pk} of this promotion is already under way.",
            details={"current": promotion.status, "allowed": [Status.SUCCEEDED], "rollback": under_way.pk},
        )


def promotion_mark_rolled_back(*, promotion: Promotion, rollback: Promotion, context: AuditContext) -> Promotion:
    """succeeded → rolled_back, linked to the rollback that replaced it (promotion_mark_succeeded does
    this itself for a successful rollback; this is for callers settling it separately).
    Event: promotion.rolled_back."""
    with transaction.atomic():
        now = _now()
        original = _locked(promotion.pk)
        _require_status(original, (Status.SUCCEEDED,), "rolled back")
        if rollback.rollback_of_id != original.pk or rollback.status != Status.SUCCEEDED:
            raise InvalidState(
                "Only a succeeded rollback of this promotion rolls it back.",
                details={"current": original.status, "allowed": [Status.SUCCEEDED], "rollback": rollback.pk},
            )
        after = _mark_rolled_back_in_transaction(original=original, rollback=rollback, now=now)
        _audit(context, "promotion.rolled_back", original, before={"status": Status.SUCCEEDED}, after=after)
    return original


__all__ = [
    "approvals_void_for_user",
    "promotion_approve",
    "promotion_cancel",
    "promotion_mark_failed",
    "promotion_mark_rolled_back",
    "promotion_mark_running",
    "promotion_mark_succeeded",
    "promotion_override_freeze",
    "promotion_preflight_finished",
    "promotion_reject",
    "promotion_request",
    "promotion_requeue",
    "promotion_resolve_attention",
    "promotion_retry",
    "promotion_set_attention",
    "promotion_void_approvals",
    "promotions_release_scheduled",
    "promotions_retarget",
    "rollback_request",
]
