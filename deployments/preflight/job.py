"""The PREFLIGHT job: check the promotion against its target and report the result to the workflow."""

from __future__ import annotations

from typing import Any

from django.db import OperationalError

from alm_portal.audit.context import AuditContext
from alm_portal.dataverse import errors as dv
from alm_portal.errors import DomainError
from alm_portal.jobs.errors import JobDeferred, JobFailed
from alm_portal.jobs.models import Job
from deployments import workflow
from deployments.choices import PreflightStatus, PromotionStatus
from deployments.preflight.checks import promotion_preflight
from deployments.preflight.inputs import ClientFactory, deployment_client_for, promotion_for_job
from deployments.preflight.report import BLOCKER, PreflightReport

# An unreachable target is looked at again this many times before pre-flight reports it as a blocker.
PREFLIGHT_TRANSIENT_ATTEMPTS = 5
PREFLIGHT_TRANSIENT_RETRY_SECONDS = 10.0


def _transient_wait(exc: dv.TransientError, attempt: int) -> float:
    if exc.retry_after:
        return float(exc.retry_after)
    return min(60.0, PREFLIGHT_TRANSIENT_RETRY_SECONDS * attempt)


def preflight_run(*, job: Job, context: AuditContext, client_factory: ClientFactory | None = None) -> dict[str, Any]:
    """Carry out a PREFLIGHT job: check the promotion against its target and report the result to the workflow
    (`promotion_preflight_finished`); a promotion another deployment has overtaken is cancelled as
    superseded instead. Safe to run again: a result already reported by this job is returned
    as it is, and an unreachable target is looked at again a few times before it becomes a blocker."""
    promotion = promotion_for_job(job=job)
    if promotion is None:
        raise JobFailed("promotion_not_found", "The promotion of this pre-flight job does not exist.")
    if promotion.preflight_job_id not in (None, job.pk):
        return {"superseded_by_job": promotion.preflight_job_id}
    if promotion.preflight_job_id == job.pk and promotion.preflight_status != PreflightStatus.PENDING:
        return dict(promotion.preflight_result or {})
    if promotion.status in (PromotionStatus.CANCELLED, PromotionStatus.REJECTED):
        return {"skipped": f"promotion is {promotion.status}"}
    # Another deployment made it stale since it was requested: the portal cancels it, nobody approves it.
    overtaken_by = workflow.promotion_cancel_if_overtaken(promotion=promotion, context=context)
    if overtaken_by is not None:
        return {"skipped": "promotion is cancelled", "superseded_by": overtaken_by.pk}

    try:
        client = (client_factory or deployment_client_for)(promotion.target_environment)
    except JobFailed as refusal:
        report = PreflightReport()
        report.add("target_unreachable", BLOCKER, refusal.message, error_code=refusal.code)
    else:
        try:
            with client:
                report = promotion_preflight(promotion=promotion, client=client)
        except dv.TransientError as exc:
            if job.attempts < PREFLIGHT_TRANSIENT_ATTEMPTS:
                raise JobDeferred(
                    _transient_wait(exc, job.attempts), status=job.status, message=f"Target busy or unreachable: {exc}"
                ) from exc
            report = PreflightReport()
            report.add(
                "target_unreachable",
                BLOCKER,
                f"{promotion.target_environment} did not answer after {job.attempts} attempts: {exc.message}",
                error_code=exc.code or type(exc).__name__,
            )
    result = report.to_dict()
    try:
        workflow.promotion_preflight_finished(
            promotion_id=promotion.pk, status=report.status, result=result, context=context
        )
    except OperationalError as exc:
        # A deadlock victim or a lost connection, rolled back: report again shortly rather than leave the
        # promotion waiting for a pre-flight that never comes.
        raise JobDeferred(PREFLIGHT_TRANSIENT_RETRY_SECONDS, status=job.status, message=str(exc)[:200]) from exc
    except DomainError as refusal:
        # The promotion ended meanwhile (cancelled, rejected, over): the result no longer matters to anyone.
        return {**result, "not_reported": refusal.message}
    return result
