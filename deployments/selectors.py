"""Reads for deployments: what a user may see."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.audit.models import AuditEvent
from deployments.models import Approval, Job, Pipeline, Promotion, Stage


def jobs_visible_to(*, user: User) -> QuerySet[Job]:
    """Admins and auditors see every job; others the jobs of their teams' environments and their own."""
    jobs = Job.objects.select_related("environment", "created_by")
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return jobs
    return jobs.filter(Q(environment__team_id__in=team_ids) | Q(created_by=user))


def _stage_ids_naming(user: User) -> QuerySet[Stage]:
    """Stages that name `user` as an approver, directly or through one of their teams."""
    return Stage.objects.filter(Q(approver_users=user) | Q(approver_teams__memberships__user=user)).values("pk")  # type: ignore[return-value]


def pipelines_visible_to(*, user: User) -> QuerySet[Pipeline]:
    """Pipelines of the user's teams and those with a stage naming them (all for admins and auditors),
    with their stages and everything the API shows of them prefetched (a fixed number of queries)."""
    stages = Stage.objects.select_related("target_environment").prefetch_related(
        "approver_users", "approver_teams", "windows", "freezes"
    )
    pipelines = Pipeline.objects.select_related("team", "development_environment").prefetch_related(
        Prefetch("stages", queryset=stages.order_by("order", "pk"))
    )
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return pipelines
    named = Stage.objects.filter(pk__in=_stage_ids_naming(user)).values("pipeline_id")
    return pipelines.filter(Q(team_id__in=team_ids) | Q(pk__in=named))


def stages_visible_to(*, user: User) -> QuerySet[Stage]:
    """Stages of the pipelines the user may see."""
    return (
        Stage.objects.filter(pipeline__in=pipelines_visible_to(user=user).values("pk"))
        .select_related("pipeline", "target_environment")
        .prefetch_related("approver_users", "approver_teams", "windows", "freezes")
    )


def promotions_visible_to(*, user: User) -> QuerySet[Promotion]:
    """Makers and approvers: the promotions of their teams' solutions, and approvers also those of
    stages naming them; admins and auditors: all. Everything the API shows is joined or prefetched."""
    approvals = Approval.objects.select_related("approver").order_by("decided_at", "pk")
    promotions = Promotion.objects.select_related(
        "solution",
        "version",
        "stage",
        "target_environment",
        "requested_by",
        "preflight_job",
        "run_job",
    ).prefetch_related(Prefetch("approvals", queryset=approvals))
    promotions = promotions.defer("version__managed_manifest", "version__unmanaged_manifest")
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return promotions
    return promotions.filter(Q(solution__team_id__in=team_ids) | Q(stage_id__in=_stage_ids_naming(user)))


def promotion_for_run_job(*, job: Job) -> Promotion | None:
    """The promotion a job imports for (its run job), if any."""
    return Promotion.objects.filter(run_job=job).first()


def job_log(*, job: Job) -> QuerySet[AuditEvent]:
    """What happened to a job, oldest first: its audit events."""
    return AuditEvent.objects.filter(object_type="deployments.job", object_id=str(job.pk)).order_by("seq")


def settings_check_versions(*, pipeline: Pipeline, limit: int = 100) -> QuerySet[Any]:
    """Versions of the pipeline's solutions that have a parsed manifest, newest first: what a stage's
    deployment settings can be checked against."""
    from solutions.models import SolutionVersion

    return (
        SolutionVersion.objects.filter(solution__pipeline=pipeline)
        .filter(Q(managed_manifest__isnull=False) | Q(unmanaged_manifest__isnull=False))
        .select_related("solution")
        .defer("managed_manifest", "unmanaged_manifest")
        .order_by("-created_at", "-pk")[:limit]
    )


def pipeline_history(*, pipeline: Pipeline, limit: int = 50) -> list[AuditEvent]:
    """The newest audit events about the pipeline and its stages (their windows, freezes and settings
    name the stage as related object), newest first."""
    stage_ids = [str(pk) for pk in pipeline.stages.values_list("pk", flat=True)]
    pipeline_id = str(pipeline.pk)
    about = (
        Q(object_type="deployments.pipeline", object_id=pipeline_id)
        | Q(related_type="deployments.pipeline", related_id=pipeline_id)
        | Q(object_type="deployments.stage", object_id__in=stage_ids)
        | Q(related_type="deployments.stage", related_id__in=stage_ids)
    )
    return list(AuditEvent.objects.filter(about).order_by("-seq")[:limit])
