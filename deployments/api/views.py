"""Thin API views over the deployments selectors and the promotion workflow (pipelines and stages:
deployments/api/pipelines.py).

Scopes: every GET needs `read`; promotions need `request` to create, cancel, retry and roll back and
`approve` to approve or reject; a freeze override and the admin-only rollback strategies need
`admin` too; resolving a job needs `admin`.
Objects the caller may not see answer 404 (never a 403 that confirms they exist). Every action on
a promotion answers 200 (rollback: 201) with the full promotion as GET returns it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import ApiToken, User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import NotFound, ValidationFailed
from alm_portal.jobs.models import Job
from deployments import selectors, workflow
from deployments.api.serializers import (
    ApproveSerializer,
    CommentRequiredSerializer,
    JobDetailSerializer,
    JobResolveSerializer,
    JobSerializer,
    PromotionCreateSerializer,
    PromotionSerializer,
    PromotionSourceDiffSerializer,
    RetrySerializer,
    RollbackPlanSerializer,
    RollbackSerializer,
)
from deployments.filtersets import JobFilterSet, PromotionFilterSet
from deployments.models import Promotion, Stage
from deployments.rollback import rollback_plan
from deployments.services.promotions import promotion_act, promotion_approve_as_asked
from deployments.source import promotion_source_diff
from solutions import selectors as solution_selectors
from solutions.models import SolutionVersion

E = OpenApiResponse
CONFLICT = E(description="invalid_state (details: current, allowed) or another 409 code of the action")
FORBIDDEN = E(
    description="permission_denied | scope_insufficient | self_approval_forbidden | uploader_approval_forbidden"
)


def _context(request: Request) -> AuditContext:
    return AuditContext.from_request(request)


def _token(request: Request) -> ApiToken | None:
    """The API token of the request, for the services' scope checks (None for a session)."""
    return request.auth if isinstance(request.auth, ApiToken) else None


# --- promotions --------------------------------------------------------------------------------------


def _version_of(user: User, data: dict[str, Any]) -> SolutionVersion:
    """The version a request names: by id, or by `solution` unique name and version string."""
    versions = solution_selectors.versions_visible_to(user=user)
    named_solution = data.get("solution")
    if isinstance(data["version"], int):
        version = versions.filter(pk=data["version"]).first()
        if version is None:
            raise ValidationFailed("Unknown version.", details={"version": ["No such version among yours."]})
        if named_solution and version.solution.unique_name.casefold() != named_solution.casefold():
            raise ValidationFailed(
                "The version is of another solution.",
                details={
                    "solution": [f"Version {version.pk} is of {version.solution.unique_name}, not {named_solution}."]
                },
            )
        return version
    if not named_solution:
        raise ValidationFailed(
            "A version string needs the solution's unique name.",
            details={"solution": ["Required when `version` is a version string (or give the version's id)."]},
        )
    solution = solution_selectors.solutions_visible_to(user=user).filter(unique_name__iexact=named_solution).first()
    if solution is None:
        raise ValidationFailed(
            "Unknown solution.", details={"solution": [f"No solution {named_solution!r} among yours."]}
        )
    parsed = solution_selectors.parse_version(str(data["version"]))
    version = versions.filter(solution=solution, version_key=parsed.canonical).first() if parsed else None
    if version is None:
        raise ValidationFailed(
            "Unknown version.",
            details={"version": [f"{solution.unique_name} has no version {data['version']} in the registry."]},
        )
    return version


def _stage_of(user: User, data: dict[str, Any], version: SolutionVersion) -> Stage:
    """The stage a request names: by id, or by name in `pipeline` (default: the solution's pipeline)."""
    stages = Stage.objects.select_related("pipeline", "target_environment")
    named_pipeline = data.get("pipeline")
    if isinstance(data["stage"], int):
        stage = stages.filter(pk=data["stage"]).first()
        if stage is None:
            raise ValidationFailed("Unknown stage.", details={"stage": ["No such stage."]})
        if named_pipeline and stage.pipeline.name.casefold() != named_pipeline.casefold():
            raise ValidationFailed(
                "The stage is of another pipeline.",
                details={"pipeline": [f"Stage {stage.pk} is of {stage.pipeline.name}, not {named_pipeline}."]},
            )
        return stage
    if named_pipeline:
        pipeline = selectors.pipelines_visible_to(user=user).filter(name__iexact=named_pipeline).first()
        if pipeline is None:
            raise ValidationFailed(
                "Unknown pipeline.", details={"pipeline": [f"No pipeline {named_pipeline!r} among yours."]}
            )
        pipeline_id = pipeline.pk
    elif version.solution.pipeline_id is not None:
        pipeline_id = version.solution.pipeline_id
    else:
        raise ValidationFailed(
            "The solution is on no pipeline.",
            details={"stage": [f"{version.solution.unique_name} is on no pipeline; give the stage's id."]},
        )
    candidates = list(stages.filter(pipeline_id=pipeline_id).order_by("order"))
    stage = next((row for row in candidates if row.name.casefold() == str(data["stage"]).casefold()), None)
    if stage is None:
        names = ", ".join(row.name for row in candidates) or "none"
        raise ValidationFailed(
            "Unknown stage.", details={"stage": [f"No stage {data['stage']!r} in this pipeline (stages: {names})."]}
        )
    return stage


class PromotionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PromotionSerializer
    filterset_class = PromotionFilterSet
    ordering_fields = ["requested_at", "id", "status", "finished_at"]
    ordering = ["-requested_at", "-id"]
    required_scopes = {"GET": Scope.READ, "POST": Scope.REQUEST}
    action_scopes = {"approve": Scope.APPROVE, "reject": Scope.APPROVE}

    def get_queryset(self) -> QuerySet[Promotion]:
        if getattr(self, "swagger_fake_view", False):
            return Promotion.objects.none()
        return selectors.promotions_visible_to(user=portal_user(self.request)).order_by("-requested_at", "-id")

    def _promotion(self) -> Promotion:
        found = self.get_queryset().filter(pk=int(self.kwargs["pk"])).first()
        if found is None:
            raise NotFound("No such promotion.")
        return found

    def _fresh(self, pk: int, code: int = status.HTTP_200_OK) -> Response:
        promotion = selectors.promotions_visible_to(user=portal_user(self.request)).get(pk=pk)
        return Response(PromotionSerializer(promotion).data, status=code)

    @extend_schema(
        request=PromotionCreateSerializer,
        responses={
            201: PromotionSerializer,
            400: E(description="validation_error | stage_not_in_pipeline"),
            403: E(description="permission_denied | scope_insufficient"),
            409: E(
                description="artifact_missing | previous_stage_not_succeeded | duplicate_request: the version "
                "already has an open promotion into the stage (pending approval, approved, scheduled, queued or "
                "running); `details.existing` names it (id, kind, status, solution, version, stage, requested_by, "
                "requested_at, url)"
            ),
        },
    )
    def create(self, request: Request) -> Response:
        """Request a promotion of a version into a stage of its solution's pipeline.

        Name the version by id, or by `solution` (unique name) and version string; the stage by id, or by
        name (in `pipeline`, by default the solution's pipeline): `{"solution": "IncidentReporting",
        "version": "1.0.0.6", "stage": "test", "justification": "…"}`."""
        form = PromotionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user: User = portal_user(request)
        version = _version_of(user, data)
        stage = _stage_of(user, data, version)
        promotion = workflow.promotion_request(
            version=version,
            stage=stage,
            requested_by=portal_user(request),
            context=_context(request),
            comment=data["justification"],
            change_reference=data.get("change_reference", ""),
            backup_reference=data.get("backup_reference", ""),
            scheduled_for=data.get("scheduled_for"),
        )
        response = self._fresh(promotion.pk, status.HTTP_201_CREATED)
        response["Location"] = reverse("api:deployments:promotion-detail", kwargs={"pk": promotion.pk})
        return response

    @extend_schema(
        request=ApproveSerializer,
        responses={200: PromotionSerializer, 403: FORBIDDEN, 409: CONFLICT},
        description="Approve (comment optional). `override_freeze` (admin scope, with `reason`) records an "
        "admin's freeze override instead: one extra approval that lets the promotion start during a freeze.",
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        promotion = self._promotion()
        form = ApproveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        promotion_approve_as_asked(
            promotion=promotion,
            user=portal_user(request),
            context=_context(request),
            comment=data.get("comment", ""),
            override_freeze=data["override_freeze"],
            reason=data.get("reason", ""),
            token=_token(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(
        request=CommentRequiredSerializer, responses={200: PromotionSerializer, 403: FORBIDDEN, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """Reject with a comment (1–2000 characters); final."""
        promotion = self._promotion()
        form = CommentRequiredSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        promotion_act(
            action="reject",
            promotion=promotion,
            user=portal_user(request),
            comment=form.validated_data["comment"],
            context=_context(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(request=CommentRequiredSerializer, responses={200: PromotionSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """The requester or an admin cancels a promotion that has not started, with a comment."""
        promotion = self._promotion()
        form = CommentRequiredSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        promotion_act(
            action="cancel",
            promotion=promotion,
            user=portal_user(request),
            comment=form.validated_data["comment"],
            context=_context(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(
        request=RetrySerializer,
        responses={
            200: PromotionSerializer,
            409: E(
                description="invalid_state | duplicate_request (another open promotion of the same version "
                "and stage; `details.existing` names it)"
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Try a failed promotion again (approvals, window and pre-flight are checked again)."""
        promotion = self._promotion()
        form = RetrySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        promotion_act(
            action="retry",
            promotion=promotion,
            user=portal_user(request),
            comment=form.validated_data.get("comment", ""),
            context=_context(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(responses={200: RollbackPlanSerializer})
    @action(detail=True, methods=["get"], url_path="rollback-plan")
    def rollback_plan(self, request: Request, pk: str) -> Response:
        """Every rollback strategy with whether it is available and what it costs."""
        return Response({"strategies": rollback_plan(promotion=self._promotion())})

    @extend_schema(responses={200: PromotionSourceDiffSerializer})
    @action(detail=True, methods=["get"], url_path="source-diff")
    def source_diff(self, request: Request, pk: str) -> Response:
        """The version's commit and the per-file diff of the solution's folder against the commit of the version the
        target has; `message` says why there is none (Git unreachable included: still 200)."""
        diff = promotion_source_diff(promotion=self._promotion())
        return Response(PromotionSourceDiffSerializer.of(diff))

    @extend_schema(
        request=RollbackSerializer,
        responses={
            201: PromotionSerializer,
            409: E(description="not_latest_deployment | artifact_missing | invalid_state"),
        },
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str) -> Response:
        """Roll this (latest succeeded) deployment back with a strategy of its plan: 201 with the new
        rollback promotion, which then needs an approval like any other."""
        promotion = self._promotion()
        form = RollbackSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        created = workflow.rollback_request(
            promotion=promotion,
            strategy=data["strategy"],
            requested_by=portal_user(request),
            context=_context(request),
            confirm=data.get("confirm", ""),
            comment=data["justification"],
            token=_token(request),
        )
        response = self._fresh(created.pk, status.HTTP_201_CREATED)
        response["Location"] = reverse("api:deployments:promotion-detail", kwargs={"pk": created.pk})
        return response


# --- jobs --------------------------------------------------------------------------------------------


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs the caller may see, newest first (export, check, sync, pre-flight and import work)."""

    serializer_class = JobSerializer
    filterset_class = JobFilterSet
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    required_scopes = {"GET": Scope.READ}

    def get_queryset(self) -> QuerySet[Job]:
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        return selectors.jobs_visible_to(user=self.request.user).order_by("-created_at", "-id")  # type: ignore[arg-type]

    def get_serializer_class(self) -> type[JobSerializer]:
        return JobDetailSerializer if self.action != "list" else JobSerializer

    def _job(self) -> Job:
        found = self.get_queryset().filter(pk=int(self.kwargs["pk"])).first()
        if found is None:
            raise NotFound("No such job.")
        return found

    @extend_schema(responses={200: JobDetailSerializer})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(JobDetailSerializer(self._job()).data)

    @extend_schema(
        request=JobResolveSerializer,
        responses={200: JobDetailSerializer, 409: E(description="invalid_state: the job does not need attention")},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        """An admin settles a job whose outcome was unknown (needs_attention), after checking the target;
        its promotion is settled with it."""
        job = self._job()
        form = JobResolveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        workflow.job_resolve(
            job=job,
            succeeded=data["succeeded"],
            note=data["note"],
            context=_context(request),
            user=request.user,  # type: ignore[arg-type]
        )
        return Response(JobDetailSerializer(self._job()).data)
