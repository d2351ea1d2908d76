"""Reads for deployments: what a user may see, and the privileges each pipeline stage's identity lacks."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.audit.models import AuditEvent
from alm_portal.audit_verification.choices import AuditJobKind
from alm_portal.dataverse import privileges
from alm_portal.jobs.choices import TERMINAL_JOB_STATUSES
from alm_portal.jobs.models import Job
from deployments import policy as deployment_policy
from deployments.choices import OPEN_PROMOTION_STATUSES, ImportMode, PromotionKind, PromotionStatus
from deployments.models import Approval, Pipeline, Promotion, Stage
from environments.choices import EnvironmentJobKind
from environments.models import Environment
from environments.selectors import environment_privileges
from solutions import selectors as solution_selectors
from solutions.models import Solution, SolutionVersion


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


def _approvals_prefetch() -> Prefetch:
    """A promotion's approvals, oldest decision first, with their approvers."""
    return Prefetch("approvals", queryset=Approval.objects.select_related("approver").order_by("decided_at", "pk"))


def _promotions_visible(promotions: QuerySet[Promotion], *, user: User) -> QuerySet[Promotion]:
    """Makers and approvers: the promotions of their teams' solutions, and approvers also those of
    stages naming them; admins and auditors: all."""
    promotions = promotions.defer("version__managed_manifest", "version__unmanaged_manifest")
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return promotions
    return promotions.filter(Q(solution__team_id__in=team_ids) | Q(stage_id__in=_stage_ids_naming(user)))


def promotion_rows_visible_to(*, user: User) -> QuerySet[Promotion]:
    """The promotions `user` may see with what a row of a page shows (solution, version, stage, target
    environment, requester) joined: one query, nothing prefetched."""
    promotions = Promotion.objects.select_related("solution", "version", "stage", "target_environment", "requested_by")
    return _promotions_visible(promotions, user=user)


def promotions_visible_to(*, user: User) -> QuerySet[Promotion]:
    """The promotions `user` may see (as promotion_rows_visible_to) with everything the API shows, in a
    fixed number of queries per page: solution, version, stage and both jobs joined; target environment,
    requester and approvals prefetched.

    Joining all seven references made PostgreSQL spend 25-40 ms *planning* every page (it searches the
    join orders of all 8 tables) for 3 ms of execution; with 6 tables planning takes ~3 ms. The two
    prefetched references are never null, so each is exactly one query for any non-empty page (a
    prefetch of a nullable job would be skipped on pages without jobs).
    """
    promotions = Promotion.objects.select_related(
        "solution", "version", "stage", "preflight_job", "run_job"
    ).prefetch_related("target_environment", "requested_by", _approvals_prefetch())
    return _promotions_visible(promotions, user=user)


def open_duplicate_of(*, kind: str, version_id: int, stage_id: int, exclude_id: int | None = None) -> Promotion | None:
    """The open promotion of `kind` of this version into this stage, if there is one (at most one: the
    partial unique index one_open_promotion_per_version_and_stage)."""
    rows = Promotion.objects.filter(
        kind=kind, version_id=version_id, stage_id=stage_id, status__in=OPEN_PROMOTION_STATUSES
    ).select_related("solution", "version", "stage", "requested_by")
    if exclude_id is not None:
        rows = rows.exclude(pk=exclude_id)
    return rows.order_by("requested_at", "pk").first()


def installed_version_after(promotion: Promotion) -> str:
    """The version a succeeded promotion left on its target: what the runner saw installed, else the
    version it deployed."""
    result = promotion.result if isinstance(promotion.result, dict) else {}
    return str(result.get("installed_version") or promotion.version.version_key)


def promotion_overtaken_by(*, promotion: Promotion) -> Promotion | None:
    """The deployment that made `promotion` stale, or None.

    A promotion is overtaken when the newest deployment of its solution into its target that succeeded
    after it was requested left the same or a higher version there (running it would only fail with
    already_installed or version_lower), or, for a rollback, when anything was deployed there since it
    was requested (what it rolls back is no longer what is installed). A rolled-back deployment counts
    through its rollback, which is the newer success.
    """
    newest = (
        Promotion.objects.filter(
            solution_id=promotion.solution_id,
            target_environment_id=promotion.target_environment_id,
            status=PromotionStatus.SUCCEEDED,
            finished_at__gt=promotion.requested_at,
        )
        .exclude(pk=promotion.pk)
        .select_related("solution", "version", "stage", "requested_by")
        .order_by("-finished_at", "-pk")
        .first()
    )
    if newest is None:
        return None
    if promotion.kind == PromotionKind.ROLLBACK:
        return newest
    left = solution_selectors.parse_version(installed_version_after(newest))
    wanted = solution_selectors.parse_version(promotion.version.version_key)
    if left is None or wanted is None:
        return None
    return newest if left >= wanted else None


def promotion_for_run_job(*, job: Job) -> Promotion | None:
    """The promotion a job imports for (its run job), if any."""
    return Promotion.objects.filter(run_job=job).first()


def job_log(*, job: Job) -> QuerySet[AuditEvent]:
    """What happened to a job, oldest first: its audit events."""
    return AuditEvent.objects.filter(object_type="deployments.job", object_id=str(job.pk)).order_by("seq")


def promotions_awaiting_decision_by(*, user: User) -> list[Promotion]:
    """Promotions waiting for a decision `user` may make now, oldest first, in a fixed number of queries.

    The stage naming the user is a database filter (the same rule as policy.decision_refusal's); the
    four-eyes and already-decided rules are asked of deployments.policy over prefetched rows, so the
    inbox shows exactly what approving would allow.
    """
    if not policy.decides_promotions(user):
        return []
    waiting = (
        promotion_rows_visible_to(user=user)
        .prefetch_related(_approvals_prefetch())
        .filter(status=PromotionStatus.PENDING_APPROVAL, stage_id__in=_stage_ids_naming(user))
        .order_by("requested_at", "pk")
    )
    result = []
    for promotion in waiting:
        live = [approval for approval in promotion.approvals.all() if approval.voided_at is None]
        if deployment_policy.four_eyes_refusal(user=user, promotion=promotion) is not None:
            continue
        if deployment_policy.already_decided_refusal(user=user, live_approvals=live) is not None:
            continue
        result.append(promotion)
    return result


def approvals_waiting_for(*, user: User) -> list[Promotion]:
    """Promotions waiting for a decision `user` may make, oldest first (auditors and makers: none).

    What the approvals inbox lists and the home page counts."""
    if not policy.changes_anything(user):
        return []
    return promotions_awaiting_decision_by(user=user)


def settings_check_versions(*, pipeline: Pipeline, limit: int = 100) -> QuerySet[Any]:
    """Versions of the pipeline's solutions that have a parsed manifest, newest first: what a stage's
    deployment settings can be checked against."""
    return (
        SolutionVersion.objects.filter(solution__pipeline=pipeline)
        .filter(Q(managed_manifest__isnull=False) | Q(unmanaged_manifest__isnull=False))
        .select_related("solution")
        .defer("managed_manifest", "unmanaged_manifest")
        .order_by("-created_at", "-pk")[:limit]
    )


def stage_operation(*, stage: Stage) -> str:
    """The Dataverse operation a promotion into ``stage`` runs (alm_portal.dataverse.privileges names)."""
    return privileges.STAGE_AND_UPGRADE if stage.import_mode == ImportMode.UPGRADE else privileges.IMPORT


def pipeline_privileges(*, pipeline: Pipeline) -> list[dict[str, Any]]:
    """Per place in the pipeline, what its environment's deploying identity lacks for the operation done
    there: exporting from the development environment, importing (as the stage's import mode says) into
    each stage's target. From the environments' last health checks."""
    rows: list[dict[str, Any]] = [
        {
            "where": "source",
            "stage": None,
            "environment": pipeline.development_environment,
            "check": environment_privileges(
                environment=pipeline.development_environment, operations=(privileges.EXPORT,)
            ),
        }
    ]
    for stage in pipeline.stages.all():
        rows.append(
            {
                "where": "stage",
                "stage": stage,
                "environment": stage.target_environment,
                "check": environment_privileges(
                    environment=stage.target_environment, operations=(stage_operation(stage=stage),)
                ),
            }
        )
    return rows


def stage_before(*, pipeline_id: int, order: int | None = None) -> Stage | None:
    """The stage a stage at `order` comes after (None for the first); without `order`, the pipeline's
    last stage, which a new stage would come after."""
    stages = Stage.objects.filter(pipeline_id=pipeline_id)
    if order is not None:
        stages = stages.filter(order__lt=order)
    return stages.order_by("-order").first()


# Jobs whose end changes nothing the dashboard shows (health, the audit chain): they never reload it.
DASHBOARD_QUIET_JOB_KINDS = (EnvironmentJobKind.HEALTH_CHECK, AuditJobKind.AUDIT_VERIFY)


def jobs_newest_id(*, user: User) -> int:
    """The id of the newest job `user` may see (0 for none): where a dashboard starts watching."""
    newest = jobs_visible_to(user=user).order_by("-pk").values_list("pk", flat=True).first()
    return int(newest or 0)


def jobs_ended(*, user: User, job_ids: set[int], after_id: int) -> bool:
    """Whether a job `user` may see has ended among `job_ids` (shown running) or among those newer than
    `after_id` (started since, perhaps ended before anyone looked), leaving out the quiet kinds."""
    watched = Q(pk__in=job_ids) | Q(pk__gt=after_id)
    return (
        jobs_visible_to(user=user)
        .filter(watched, status__in=TERMINAL_JOB_STATUSES)
        .exclude(kind__in=DASHBOARD_QUIET_JOB_KINDS)
        .exists()
    )


# --- what solutions reads from deployments (registered at start-up, solutions.providers) ----------------


def _succeeded_promotions() -> QuerySet[Promotion]:
    return (
        Promotion.objects.filter(status=PromotionStatus.SUCCEEDED)
        .select_related("target_environment", "version")
        .order_by("-finished_at", "-id")
    )


def solution_deployments_prefetch() -> Prefetch:
    """Succeeded promotions, newest first, fetched in one query for a whole page of solutions."""
    return Prefetch("promotions", queryset=_succeeded_promotions(), to_attr="succeeded_promotions")


def solution_deployed(solution: Solution) -> list[dict[str, Any]]:
    """[{environment: {id, name}, version: {id, version}}]: the newest successful deployment per environment
    (read from the prefetch above when the solution came with it, else in one query)."""
    promotions = getattr(solution, "succeeded_promotions", None)
    if promotions is None:
        promotions = list(_succeeded_promotions().filter(solution=solution))
    seen: dict[int, dict[str, Any]] = {}
    for promotion in promotions:
        environment = promotion.target_environment
        if environment.pk not in seen:
            seen[environment.pk] = {
                "environment": {"id": environment.pk, "name": environment.name},
                "version": {"id": promotion.version_id, "version": promotion.version.version_key},
            }
    return sorted(seen.values(), key=lambda row: row["environment"]["name"])


def pipelines_developing_in(environment: Environment) -> list[Pipeline]:
    """The pipelines whose development environment is `environment`, by name."""
    return list(Pipeline.objects.filter(development_environment=environment).order_by("name"))
