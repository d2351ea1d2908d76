"""What a promotion's status means, in one sentence per status: the one source of the words the
promotion page says about where a promotion is and what happens next.

The page renders these in its live part (templates/deployments/_promotion_progress.html), which the
page's first render, every poll and every reload share; nothing outside that part restates the status.
A finished job says how it ended, never its last progress message ("Refreshing the target's
inventory" is what it was doing, not what it is doing).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.utils import timezone

from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments.choices import ApprovalDecision, PreflightStatus, PromotionKind, PromotionStatus
from deployments.models import Promotion

_WHEN = "%Y-%m-%d %H:%M"


def _at(moment: Any) -> str:
    return f"{moment.astimezone(UTC).strftime(_WHEN)} UTC" if moment else ""


def _work(promotion: Promotion) -> str:
    return "rollback" if promotion.kind == PromotionKind.ROLLBACK else "import"


def _rejected_by(promotion: Promotion) -> str:
    rejections = [approval for approval in promotion.approvals.all() if approval.decision == ApprovalDecision.REJECT]
    return f" by {rejections[-1].approver.shown_name}" if rejections else ""


def _pending(promotion: Promotion) -> str:
    later = f", and not before {_at(promotion.scheduled_for)}" if promotion.scheduled_for else ""
    target = promotion.target_environment.name
    if promotion.preflight_status == PreflightStatus.PENDING:
        return (
            f"Waiting for the pre-flight checks, then for approval: the {_work(promotion)} into {target} "
            f"starts once approved{later}."
        )
    if promotion.preflight_status == PreflightStatus.BLOCKED:
        return (
            f"Waiting for approval, but blocked by the pre-flight checks: it cannot be approved as it stands, "
            f"so nothing goes into {target}."
        )
    return f"Waiting for approval: the {_work(promotion)} into {target} starts once approved{later}."


def _approved(promotion: Promotion) -> str:
    return f"Approved: the {_work(promotion)} is being queued."


def _scheduled(promotion: Promotion) -> str:
    if promotion.scheduled_for and promotion.scheduled_for > timezone.now():
        return f"Approved and scheduled: the {_work(promotion)} starts at {_at(promotion.scheduled_for)}."
    return f"Approved and waiting: the {_work(promotion)} starts when the stage's window opens or its freeze ends."


def _queued(promotion: Promotion) -> str:
    return f"Approved and queued: the {_work(promotion)} starts as soon as {promotion.target_environment.name} is free."


def _running(promotion: Promotion) -> str:
    since = f" since {_at(promotion.started_at)}" if promotion.started_at else ""
    return f"Running: importing {promotion.version.version_key} into {promotion.target_environment.name}{since}."


def _succeeded(promotion: Promotion) -> str:
    when = f" on {_at(promotion.finished_at)}" if promotion.finished_at else ""
    return f"Succeeded: {promotion.target_environment.name} has {promotion.version.version_key}{when}."


def _failed(promotion: Promotion) -> str:
    when = f" on {_at(promotion.finished_at)}" if promotion.finished_at else ""
    return (
        f"Failed{when}: {promotion.target_environment.name} did not get {promotion.version.version_key}. "
        "It runs again only if someone retries it."
    )


def _rejected(promotion: Promotion) -> str:
    return f"Rejected{_rejected_by(promotion)}: it will not run."


def _cancelled(promotion: Promotion) -> str:
    return "Cancelled: it will not run."


def _rolled_back(promotion: Promotion) -> str:
    by = f" by rollback {promotion.rolled_back_by_id}" if promotion.rolled_back_by_id else ""
    return f"Rolled back{by}: {promotion.target_environment.name} no longer has what this promotion installed."


SENTENCES = {
    PromotionStatus.PENDING_APPROVAL: _pending,
    PromotionStatus.APPROVED: _approved,
    PromotionStatus.SCHEDULED: _scheduled,
    PromotionStatus.QUEUED: _queued,
    PromotionStatus.RUNNING: _running,
    PromotionStatus.SUCCEEDED: _succeeded,
    PromotionStatus.FAILED: _failed,
    PromotionStatus.REJECTED: _rejected,
    PromotionStatus.CANCELLED: _cancelled,
    PromotionStatus.ROLLED_BACK: _rolled_back,
}


def promotion_status_sentence(promotion: Promotion) -> str:
    """Where the promotion is and what happens next, in one sentence."""
    return SENTENCES[PromotionStatus(promotion.status)](promotion)


def job_line(job: Job | None) -> str:
    """The run job in words: what it is doing while it runs, how it ended once it has."""
    if job is None:
        return ""
    name = f"{job.kind_label} job {job.pk}"
    if job.status == JobStatus.SUCCEEDED:
        return f"{name} finished{' at ' + _at(job.finished_at) if job.finished_at else ''}."
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.NEEDS_ATTENTION):
        return f"{name} ended: {job.get_status_display().lower()}."
    doing = f": {job.progress_message}" if job.progress_message else ""
    return f"{name} · {job.get_status_display().lower()}{doing}"
