"""The requester's and admins' actions on one promotion: cancel it, retry it."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState
from deployments import policy, selectors
from deployments.models import Promotion
from deployments.policy import raise_if_refused
from deployments.workflow.creation import duplicate_refused
from deployments.workflow.transitions import (
    Status,
    _advance_approved,
    _advance_facts,
    _approvals_facts,
    _audit,
    _cancel_job,
    _count,
    _current_settings,
    _job_ref,
    _live_approvals,
    _locked,
    _move,
    _now,
    _require_status,
    _restart_preflight,
    _void,
    _void_expired,
)
from solutions.models import SolutionVersion


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
    Refused with 409 duplicate_request while another open promotion of the same version into the same
    stage exists (requested after this one failed).
    """
    raise_if_refused(policy.comment_refusal(comment, required=False))
    with duplicate_refused(
        kind=promotion.kind, version_id=promotion.version_id, stage_id=promotion.stage_id, exclude_id=promotion.pk
    ):
        return _retry(promotion_id=promotion.pk, user=user, context=context, comment=comment)


def _retry(*, promotion_id: int, user: User, context: AuditContext, comment: str) -> Promotion:
    with transaction.atomic():
        now = _now()
        promotion = _locked(promotion_id)
        _require_status(promotion, (Status.FAILED,), "retried")
        raise_if_refused(policy.requester_or_admin_refusal(user=user, promotion=promotion, action="retry"))
        existing = selectors.open_duplicate_of(
            kind=promotion.kind, version_id=promotion.version_id, stage_id=promotion.stage_id, exclude_id=promotion.pk
        )
        raise_if_refused(policy.duplicate_refusal(existing=existing))
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
