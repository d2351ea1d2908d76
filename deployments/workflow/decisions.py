"""Approvers' decisions: approve, reject, and an admin's override of a freeze."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken, User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from deployments import policy
from deployments.choices import ApprovalDecision, DeploymentJobKind
from deployments.models import Approval, Promotion
from deployments.policy import Refusal, raise_if_refused
from deployments.workflow.superseding import promotion_cancel_if_overtaken
from deployments.workflow.transitions import (
    Status,
    _advance_approved,
    _advance_facts,
    _approvals_facts,
    _audit,
    _cancel_job,
    _count,
    _enqueue,
    _live_approvals,
    _locked,
    _move,
    _now,
    _require_status,
    _start_refusal,
    _touch,
    _void_expired,
)


def promotion_approve(*, promotion: Promotion, user: User, context: AuditContext, comment: str = "") -> Promotion:
    """Record `user`'s approval; when the stage's count is reached the promotion is approved and moves
    on to queued (import job enqueued) or scheduled, in the same transaction.

    Refusals: 403 permission_denied (not named on the stage), self_approval_forbidden,
    uploader_approval_forbidden; 409 already_decided, preflight_pending, preflight_blocked,
    invalid_state. Events: promotion.approval_recorded (more approvals needed) or promotion.approved.
    A promotion overtaken by another deployment of its solution to its target is cancelled by the system
    as superseded instead (promotion.cancelled) and the approval refused with invalid_state, details
    {current: cancelled, superseded_by}.
    """
    raise_if_refused(policy.comment_refusal(comment, required=False))
    _refuse_if_overtaken(promotion, context=context)
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


def _refuse_if_overtaken(promotion: Promotion, *, context: AuditContext) -> None:
    """Approving a stale promotion would run it into a failure (already_installed, version_lower): the
    portal cancels it as superseded (committed) and tells the approver why nothing was approved."""
    overtaken_by = promotion_cancel_if_overtaken(promotion=promotion, context=context)
    if overtaken_by is None:
        return
    raise InvalidState(
        f"Promotion #{promotion.pk} was overtaken by promotion #{overtaken_by.pk} "
        f"({overtaken_by.version.version_key}, succeeded in {overtaken_by.target_environment}); the portal "
        "cancelled it as superseded, so there is nothing to approve.",
        details={"current": Status.CANCELLED, "allowed": [Status.PENDING_APPROVAL], "superseded_by": overtaken_by.pk},
    )


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


def promotion_override_freeze(
    *, promotion: Promotion, user: User, reason: str, context: AuditContext, token: ApiToken | None = None
) -> Promotion:
    """An admin lets a promotion start during a freeze of its stage: one extra approval, with a reason.

    The override is recorded as an approval flagged `freeze_override` (bound to the artifact and
    target, expiring like any other), which does not count towards the stage's ordinary approvals.
    A scheduled promotion held only by the freeze moves on to queued at once. Refusals: 403
    permission_denied (not an admin), self/uploader rules; 409 not_frozen (no freeze at its start),
    already_decided, preflight_pending/blocked, invalid_state. Needs the admin scope (`token`: the API
    token of the request, None for a session). Event: promotion.freeze_overridden.
    """
    account_policy.require_scope(user=user, token=token, scope=Scope.ADMIN, doing="override a freeze")
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
                job = _enqueue(DeploymentJobKind.IMPORT, promotion, context)
                _move(promotion, to=Status.QUEUED, now=now, doing="queued", run_job=job, **fields)
                after.update(status=Status.QUEUED, run_job=job.pk)
            else:
                _touch(promotion, now=now, **fields)
                after.update(status=promotion.status, scheduled_reason=refusal.code)
        _audit(context, "promotion.freeze_overridden", promotion, before=before, after=after)
    return promotion
