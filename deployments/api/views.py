"""Thin API views over the deployments selectors, the promotion workflow and the stage services.

Scopes: every GET needs `read`; promotions need `request` to create, cancel, retry and roll back and
`approve` to approve or reject; a freeze override and the admin-only rollback strategies need
`admin` too; pipelines, stages, windows, freezes, settings and resolving a job need `admin`.
Objects the caller may not see answer 404 (never a 403 that confirms they exist). Every action on
a promotion answers 200 (rollback: 201) with the full promotion as GET returns it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken, Team, User
from alm_portal.accounts.permissions import ScopeInsufficient
from alm_portal.audit.context import AuditContext
from alm_portal.errors import InvalidState, NotFound, ValidationFailed
from deployments import jobs, selectors, services, workflow
from deployments.api.serializers import (
    ApproveSerializer,
    CommentRequiredSerializer,
    DeploymentSettingsDocumentSerializer,
    FreezeInputSerializer,
    FreezeSerializer,
    FreezeUpdateSerializer,
    JobDetailSerializer,
    JobResolveSerializer,
    JobSerializer,
    PipelineCreateSerializer,
    PipelineSerializer,
    PromotionCreateSerializer,
    PromotionSerializer,
    RetrySerializer,
    RollbackPlanSerializer,
    RollbackSerializer,
    StageCreateSerializer,
    StageSerializer,
    StageUpdateSerializer,
    WindowInputSerializer,
    WindowSerializer,
)
from deployments.choices import JobStatus, RollbackStrategy
from deployments.filtersets import JobFilterSet, PipelineFilterSet, PromotionFilterSet
from deployments.models import Job, Pipeline, Promotion, Stage
from deployments.rollback import rollback_plan
from environments.models import Environment
from solutions import selectors as solution_selectors

E = OpenApiResponse
CONFLICT = E(description="invalid_state (details: current, allowed) or another 409 code of the action")
FORBIDDEN = E(
    description="permission_denied | scope_insufficient | self_approval_forbidden | uploader_approval_forbidden"
)
# Strategies the rollback plan marks requires_admin: an admin-scoped caller only.
ADMIN_ROLLBACKS = (
    RollbackStrategy.UNINSTALL_REINSTALL,
    RollbackStrategy.HOLDING_APPLY,
    RollbackStrategy.HOLDING_REMOVE,
)


def _context(request: Request) -> AuditContext:
    return AuditContext.from_request(request)


def require_scope(request: Request, scope: str) -> None:
    """A second scope an action needs for one of its options (the view's own scope is already checked)."""
    token = request.auth if isinstance(request.auth, ApiToken) else None
    user: User = request.user  # type: ignore[assignment]
    if scope in account_policy.effective_scopes(user=user, token=token):
        return
    if token is not None and scope in account_policy.role_scopes(user.role):
        raise ScopeInsufficient(f"This token lacks the '{scope}' scope.")
    raise exceptions.PermissionDenied(f"The {user.role} role may not do this (needs '{scope}').")


def _one(model: type[Model], pk: Any, field: str) -> Any:
    found = model._default_manager.filter(pk=pk).first()
    if found is None:
        raise ValidationFailed(f"Unknown {field}.", details={field: [f"No {model._meta.verbose_name} with id {pk}."]})
    return found


def _many(model: type[Model], pks: list[int], field: str) -> list[Any]:
    found = list(model._default_manager.filter(pk__in=set(pks)))
    missing = sorted(set(pks) - {row.pk for row in found})
    if missing:
        raise ValidationFailed(f"Unknown {field}.", details={field: [f"Unknown ids: {missing}."]})
    return found


def _stage_changes(data: dict[str, Any]) -> dict[str, Any]:
    """Input field names → stage_add/stage_update keyword arguments, ids resolved to rows."""
    changes = {key: value for key, value in data.items() if key not in ("environment", "windows", "freezes")}
    if "environment" in data:
        changes["target_environment"] = _one(Environment, data["environment"], "environment")
    if "approver_users" in data:
        changes["approver_users"] = _many(User, data["approver_users"], "approver_users")
    if "approver_teams" in data:
        changes["approver_teams"] = _many(Team, data["approver_teams"], "approver_teams")
    return changes


def _stage_create(*, pipeline: Pipeline, data: dict[str, Any], request: Request) -> Stage:
    context = _context(request)
    stage = services.stage_add(pipeline=pipeline, context=context, **_stage_changes(data))
    for window in data.get("windows", []):
        services.stage_window_add(
            stage=stage,
            weekdays=window["days"],
            start_time=window["start"],
            end_time=window["end"],
            time_zone=window["time_zone"],
            context=context,
        )
    for freeze in data.get("freezes", []):
        services.stage_freeze_add(
            stage=stage,
            starts_at=freeze["start"],
            ends_at=freeze["end"],
            reason=freeze["reason"],
            context=context,
            created_by=request.user,  # type: ignore[arg-type]
        )
    return stage


# --- pipelines ---------------------------------------------------------------------------------------


class PipelineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipelines with their stages. Admins write; people read their teams' pipelines and those with a
    stage naming them; admins and auditors read all."""

    serializer_class = PipelineSerializer
    filterset_class = PipelineFilterSet
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    required_scopes = {"GET": Scope.READ}

    def get_queryset(self) -> QuerySet[Pipeline]:
        if getattr(self, "swagger_fake_view", False):
            return Pipeline.objects.none()
        return selectors.pipelines_visible_to(user=self.request.user).order_by("name", "pk")  # type: ignore[arg-type]

    def _fresh(self, pk: int, code: int = status.HTTP_200_OK) -> Response:
        return Response(PipelineSerializer(self.get_queryset().get(pk=pk)).data, status=code)

    @extend_schema(request=PipelineCreateSerializer, responses={201: PipelineSerializer})
    def create(self, request: Request) -> Response:
        """Create a pipeline, optionally with its stages (each with windows and freezes), all or nothing."""
        form = PipelineCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with transaction.atomic():
            pipeline = services.pipeline_create(
                name=data["name"],
                team=_one(Team, data["team"], "team"),
                development_environment=_one(Environment, data["development_environment"], "development_environment"),
                description=data.get("description", ""),
                context=_context(request),
            )
            for stage in data.get("stages", []):
                _stage_create(pipeline=pipeline, data=stage, request=request)
        response = self._fresh(pipeline.pk, status.HTTP_201_CREATED)
        response["Location"] = reverse("api:deployments:pipeline-detail", kwargs={"pk": pipeline.pk})
        return response

    @extend_schema(request=StageCreateSerializer, responses={201: StageSerializer})
    @action(detail=True, methods=["post"])
    def stages(self, request: Request, pk: str) -> Response:
        """Append a stage (with its windows and freezes) to the pipeline."""
        pipeline = self.get_object()
        form = StageCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            stage = _stage_create(pipeline=pipeline, data=dict(form.validated_data), request=request)
        fresh = selectors.stages_visible_to(user=request.user).get(pk=stage.pk)  # type: ignore[arg-type]
        response = Response(StageSerializer(fresh).data, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api:deployments:stage-detail", kwargs={"pk": stage.pk})
        return response


# --- stages ------------------------------------------------------------------------------------------


class StageViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A stage, its windows and freezes, and its deployment settings (ETag / If-Match)."""

    serializer_class = StageSerializer
    required_scopes = {"GET": Scope.READ}
    filterset_class = None
    filter_backends: list[Any] = []
    pagination_class = None

    def get_queryset(self) -> QuerySet[Stage]:
        if getattr(self, "swagger_fake_view", False):
            return Stage.objects.none()
        return selectors.stages_visible_to(user=self.request.user)  # type: ignore[arg-type]

    def _fresh(self, pk: int) -> Response:
        return Response(StageSerializer(self.get_queryset().get(pk=pk)).data)

    @extend_schema(request=StageUpdateSerializer, responses={200: StageSerializer, 409: CONFLICT})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change the stage's name, target, approvers or policy (a new target re-binds waiting promotions)."""
        stage = self.get_object()
        form = StageUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.stage_update(stage=stage, context=_context(request), **_stage_changes(dict(form.validated_data)))
        return self._fresh(stage.pk)

    def _settings_response(self, stage: Stage) -> Response:
        import json

        content, etag = services.settings_export(stage=stage)
        response = Response(json.loads(content))
        response["ETag"] = f'"{etag}"'
        return response

    @extend_schema(
        responses={200: DeploymentSettingsDocumentSerializer},
        description="The stage's deployment settings in the `pac solution create-settings` shape; "
        "the ETag header is what PUT's If-Match must carry.",
    )
    @action(detail=True, methods=["get"], url_path="settings")
    def deployment_settings(self, request: Request, pk: str) -> Response:
        return self._settings_response(self.get_object())

    @extend_schema(
        request=DeploymentSettingsDocumentSerializer,
        parameters=[
            OpenApiParameter(
                "If-Match", str, OpenApiParameter.HEADER, description='The ETag of GET ("" before the first version).'
            )
        ],
        responses={
            200: DeploymentSettingsDocumentSerializer,
            412: E(description="precondition_failed (details.current_etag)"),
        },
    )
    @deployment_settings.mapping.put
    def deployment_settings_put(self, request: Request, pk: str) -> Response:
        """Save the next settings version if If-Match is the current ETag (412 precondition_failed otherwise)."""
        stage = self.get_object()
        services.settings_update(
            stage=stage,
            document=request.data,
            if_match=request.headers.get("If-Match"),
            context=_context(request),
            user=request.user,  # type: ignore[arg-type]
        )
        return self._settings_response(stage)

    @extend_schema(request=WindowInputSerializer, responses={201: WindowSerializer})
    @action(detail=True, methods=["post"])
    def windows(self, request: Request, pk: str) -> Response:
        """Add a weekly window in which imports into the stage may start."""
        stage = self.get_object()
        form = WindowInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        window = services.stage_window_add(
            stage=stage,
            weekdays=data["days"],
            start_time=data["start"],
            end_time=data["end"],
            time_zone=data["time_zone"],
            context=_context(request),
        )
        return Response(WindowSerializer(window).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("window_id", int, OpenApiParameter.PATH)], request=None, responses={204: None}
    )
    @action(detail=True, methods=["delete"], url_path=r"windows/(?P<window_id>[0-9]+)")
    def window_remove(self, request: Request, pk: str, window_id: str) -> Response:
        window = self.get_object().windows.filter(pk=int(window_id)).first()
        if window is None:
            raise NotFound("No such window.")
        services.stage_window_remove(window=window, context=_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=FreezeInputSerializer, responses={201: FreezeSerializer})
    @action(detail=True, methods=["post"])
    def freezes(self, request: Request, pk: str) -> Response:
        """Freeze the stage for a period: nothing starts importing unless an admin overrides."""
        stage = self.get_object()
        form = FreezeInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        freeze = services.stage_freeze_add(
            stage=stage,
            starts_at=data["start"],
            ends_at=data["end"],
            reason=data["reason"],
            context=_context(request),
            created_by=request.user,  # type: ignore[arg-type]
        )
        return Response(FreezeSerializer(freeze).data, status=status.HTTP_201_CREATED)

    def _freeze(self, freeze_id: str) -> Any:
        freeze = self.get_object().freezes.filter(pk=int(freeze_id)).first()
        if freeze is None:
            raise NotFound("No such freeze.")
        return freeze

    @extend_schema(
        parameters=[OpenApiParameter("freeze_id", int, OpenApiParameter.PATH)],
        request=FreezeUpdateSerializer,
        responses={200: FreezeSerializer},
    )
    @action(detail=True, methods=["patch"], url_path=r"freezes/(?P<freeze_id>[0-9]+)")
    def freeze_update(self, request: Request, pk: str, freeze_id: str) -> Response:
        """Change a freeze, e.g. end it early."""
        freeze = self._freeze(freeze_id)
        form = FreezeUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        freeze = services.stage_freeze_update(
            freeze=freeze,
            starts_at=data.get("start"),
            ends_at=data.get("end"),
            reason=data.get("reason"),
            context=_context(request),
        )
        return Response(FreezeSerializer(freeze).data)

    @extend_schema(
        parameters=[OpenApiParameter("freeze_id", int, OpenApiParameter.PATH)], request=None, responses={204: None}
    )
    @freeze_update.mapping.delete
    def freeze_remove(self, request: Request, pk: str, freeze_id: str) -> Response:
        services.stage_freeze_remove(freeze=self._freeze(freeze_id), context=_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- promotions --------------------------------------------------------------------------------------


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
        return selectors.promotions_visible_to(user=self.request.user).order_by("-requested_at", "-id")  # type: ignore[arg-type]

    def _promotion(self) -> Promotion:
        found = self.get_queryset().filter(pk=int(self.kwargs["pk"])).first()
        if found is None:
            raise NotFound("No such promotion.")
        return found

    def _fresh(self, pk: int, code: int = status.HTTP_200_OK) -> Response:
        promotion = selectors.promotions_visible_to(user=self.request.user).get(pk=pk)  # type: ignore[arg-type]
        return Response(PromotionSerializer(promotion).data, status=code)

    @extend_schema(
        request=PromotionCreateSerializer,
        responses={
            201: PromotionSerializer,
            400: E(description="validation_error | stage_not_in_pipeline"),
            403: E(description="permission_denied | scope_insufficient"),
            409: E(description="artifact_missing | previous_stage_not_succeeded"),
        },
    )
    def create(self, request: Request) -> Response:
        """Request a promotion of a version into a stage of its solution's pipeline."""
        form = PromotionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        version = solution_selectors.versions_visible_to(user=request.user).filter(pk=data["version"]).first()  # type: ignore[arg-type]
        if version is None:
            raise ValidationFailed("Unknown version.", details={"version": ["No such version among yours."]})
        stage = Stage.objects.select_related("pipeline", "target_environment").filter(pk=data["stage"]).first()
        if stage is None:
            raise ValidationFailed("Unknown stage.", details={"stage": ["No such stage."]})
        promotion = workflow.promotion_request(
            version=version,
            stage=stage,
            requested_by=request.user,  # type: ignore[arg-type]
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
        if data["override_freeze"]:
            require_scope(request, Scope.ADMIN)
            workflow.promotion_override_freeze(
                promotion=promotion,
                user=request.user,  # type: ignore[arg-type]
                reason=data.get("reason", ""),
                context=_context(request),
            )
        else:
            workflow.promotion_approve(
                promotion=promotion,
                user=request.user,  # type: ignore[arg-type]
                comment=data.get("comment", ""),
                context=_context(request),
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
        workflow.promotion_reject(
            promotion=promotion,
            user=request.user,  # type: ignore[arg-type]
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
        workflow.promotion_cancel(
            promotion=promotion,
            user=request.user,  # type: ignore[arg-type]
            comment=form.validated_data["comment"],
            context=_context(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(request=RetrySerializer, responses={200: PromotionSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Try a failed promotion again (approvals, window and pre-flight are checked again)."""
        promotion = self._promotion()
        form = RetrySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        workflow.promotion_retry(
            promotion=promotion,
            user=request.user,  # type: ignore[arg-type]
            comment=form.validated_data.get("comment", ""),
            context=_context(request),
        )
        return self._fresh(promotion.pk)

    @extend_schema(responses={200: RollbackPlanSerializer})
    @action(detail=True, methods=["get"], url_path="rollback-plan")
    def rollback_plan(self, request: Request, pk: str) -> Response:
        """Every rollback strategy with whether it is available and what it costs."""
        return Response({"strategies": rollback_plan(promotion=self._promotion())})

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
        if data["strategy"] in ADMIN_ROLLBACKS:
            require_scope(request, Scope.ADMIN)
        created = workflow.rollback_request(
            promotion=promotion,
            strategy=data["strategy"],
            requested_by=request.user,  # type: ignore[arg-type]
            context=_context(request),
            confirm=data.get("confirm", ""),
            comment=data["justification"],
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
        if job.status != JobStatus.NEEDS_ATTENTION:
            raise InvalidState(
                "Only a job that needs attention can be resolved.",
                details={"current": job.status, "allowed": [JobStatus.NEEDS_ATTENTION]},
            )
        promotion = selectors.promotion_for_run_job(job=job)
        if promotion is not None:
            workflow.promotion_resolve_attention(
                promotion=promotion,
                succeeded=data["succeeded"],
                note=data["note"],
                context=_context(request),
                user=request.user,  # type: ignore[arg-type]
            )
        elif not jobs.job_resolve_attention(
            job=job, succeeded=data["succeeded"], note=data["note"], context=_context(request)
        ):
            raise InvalidState(
                "The job changed meanwhile; reload it.",
                details={"current": None, "allowed": [JobStatus.NEEDS_ATTENTION]},
            )
        return Response(JobDetailSerializer(self._job()).data)
