"""Thin API views of pipelines and stages (issue 6: `pipelines/` with admin writes, `stages/{id}/settings/`).

Every GET needs `read` and shows what deployments.selectors lets the caller see (404 otherwise);
every write needs `admin` (unsafe methods default to it, alm_portal.accounts.permissions) and calls one
service of deployments.services. Input serializers refuse fields they do not declare.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import NotFound, ValidationFailed
from deployments import selectors, services
from deployments.api.pipeline_serializers import (
    DeploymentSettingsDocumentSerializer,
    FreezeInputSerializer,
    FreezeSerializer,
    FreezeUpdateSerializer,
    PipelineCreateSerializer,
    PipelineSerializer,
    PipelineUpdateSerializer,
    SettingsCheckSerializer,
    StageCreateSerializer,
    StageReorderSerializer,
    StageReplaceSerializer,
    StageSerializer,
    StageUpdateSerializer,
    WindowInputSerializer,
    WindowSerializer,
    WindowUpdateSerializer,
)
from deployments.filtersets import PipelineFilterSet
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow
from deployments.settings_documents import settings_document_coverage
from environments.models import Environment
from solutions import services as solution_services
from solutions.api.serializers import SourceBindingSerializer, SourceBindInputSerializer
from solutions.models import SolutionVersion, SourceBinding

E = OpenApiResponse
CONFLICT = E(description="invalid_state (details: current, allowed): the object is in use (see the message)")
PRECONDITION_FAILED = E(description="precondition_failed (details.current_etag)")


def _context(request: Request) -> AuditContext:
    return AuditContext.from_request(request)


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


def _calendar(data: dict[str, Any]) -> dict[str, Any]:
    """The API's window and freeze fields → stage_calendar_replace's (None: leave that list alone)."""
    windows = data.get("windows")
    freezes = data.get("freezes")
    return {
        "windows": None
        if windows is None
        else [
            {"weekdays": w["days"], "start_time": w["start"], "end_time": w["end"], "time_zone": w["time_zone"]}
            for w in windows
        ],
        "freezes": None
        if freezes is None
        else [{"starts_at": f["start"], "ends_at": f["end"], "reason": f["reason"]} for f in freezes],
    }


def _stage_create(*, pipeline: Pipeline, data: dict[str, Any], request: Request) -> Stage:
    context = _context(request)
    stage = services.stage_add(pipeline=pipeline, context=context, **_stage_changes(data))
    services.stage_calendar_replace(
        stage=stage,
        context=context,
        created_by=request.user,
        **_calendar(data),  # type: ignore[arg-type]
    )
    return stage


# --- pipelines ---------------------------------------------------------------------------------------


class PipelineViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
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
        return selectors.pipelines_visible_to(user=portal_user(self.request)).order_by("name", "pk")

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

    def _change(self, request: Request, *, partial: bool) -> Response:
        pipeline = self.get_object()
        form = PipelineUpdateSerializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        if "team" in data:
            data["team"] = _one(Team, data["team"], "team")
        if "development_environment" in data:
            data["development_environment"] = _one(
                Environment, data["development_environment"], "development_environment"
            )
        services.pipeline_update(pipeline=pipeline, context=_context(request), **data)
        return self._fresh(pipeline.pk)

    @extend_schema(request=PipelineUpdateSerializer, responses={200: PipelineSerializer, 409: CONFLICT})
    def update(self, request: Request, pk: str) -> Response:
        """Replace the pipeline's own fields (its stages have their own endpoints). The team and the
        development environment cannot change while solutions are registered on it (409)."""
        return self._change(request, partial=False)

    @extend_schema(request=PipelineUpdateSerializer(partial=True), responses={200: PipelineSerializer, 409: CONFLICT})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some of the pipeline's own fields."""
        return self._change(request, partial=True)

    @extend_schema(request=None, responses={204: None, 409: CONFLICT})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete a pipeline nobody has used yet (409 once promotions went through it or solutions use it)."""
        services.pipeline_delete(pipeline=self.get_object(), context=_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        methods=["GET"],
        responses={200: SourceBindingSerializer, 404: OpenApiResponse(description="not_found (not bound)")},
    )
    @extend_schema(
        methods=["PUT"],
        request=SourceBindInputSerializer,
        responses={200: SourceBindingSerializer, 400: OpenApiResponse(description="validation_error")},
    )
    @extend_schema(methods=["DELETE"], responses={204: None})
    @action(detail=True, methods=["get", "put", "delete"])
    def source(self, request: Request, pk: str) -> Response:
        """The Git repository of the pipeline's solutions that have none of their own (docs/source-control.md)."""
        pipeline = self.get_object()
        if request.method == "PUT":
            form = SourceBindInputSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            data = dict(form.validated_data)
            if data.get("build_environment") is not None:
                data["build_environment"] = _one(Environment, data["build_environment"], "build_environment")
            binding = solution_services.source_bind_pipeline(
                pipeline=pipeline,
                choice=solution_services.RepositoryChoice(**data),
                user=portal_user(request),
                context=_context(request),
            )
            return Response(SourceBindingSerializer(binding).data)
        if request.method == "DELETE":
            solution_services.source_unbind_pipeline(
                pipeline=pipeline, user=portal_user(request), context=_context(request)
            )
            return Response(status=status.HTTP_204_NO_CONTENT)
        binding = SourceBinding.objects.filter(pipeline=pipeline).first()
        if binding is None:
            raise NotFound(f"Pipeline {pipeline.name} is not bound to a Git repository.")
        return Response(SourceBindingSerializer(binding).data)

    @extend_schema(request=StageCreateSerializer, responses={201: StageSerializer})
    @action(detail=True, methods=["post"])
    def stages(self, request: Request, pk: str) -> Response:
        """Append a stage (with its windows and freezes) to the pipeline."""
        pipeline = self.get_object()
        form = StageCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            stage = _stage_create(pipeline=pipeline, data=dict(form.validated_data), request=request)
        fresh = selectors.stages_visible_to(user=portal_user(request)).get(pk=stage.pk)
        response = Response(StageSerializer(fresh).data, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api:deployments:stage-detail", kwargs={"pk": stage.pk})
        return response

    @extend_schema(request=StageReorderSerializer, responses={200: PipelineSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def reorder(self, request: Request, pk: str) -> Response:
        """Put the stages in the given order (every stage id once). Gating follows the new order, so it
        waits until no promotion of the pipeline is in flight (409)."""
        pipeline = self.get_object()
        form = StageReorderSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.stage_reorder(pipeline=pipeline, stage_ids=form.validated_data["stages"], context=_context(request))
        return self._fresh(pipeline.pk)


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
        return selectors.stages_visible_to(user=portal_user(self.request))

    def _fresh(self, pk: int) -> Response:
        return Response(StageSerializer(self.get_queryset().get(pk=pk)).data)

    def _change(self, request: Request, serializer: type[StageUpdateSerializer]) -> Response:
        stage = self.get_object()
        form = serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        context = _context(request)
        with transaction.atomic():
            services.stage_update(stage=stage, context=context, **_stage_changes(data))
            services.stage_calendar_replace(
                stage=stage,
                context=context,
                created_by=request.user,
                **_calendar(data),  # type: ignore[arg-type]
            )
        return self._fresh(stage.pk)

    @extend_schema(request=StageReplaceSerializer, responses={200: StageSerializer, 409: CONFLICT})
    def update(self, request: Request, pk: str) -> Response:
        """Replace the stage's fields; `windows` / `freezes`, when given, replace its lists."""
        return self._change(request, StageReplaceSerializer)

    @extend_schema(request=StageUpdateSerializer, responses={200: StageSerializer, 409: CONFLICT})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change the stage's name, target, approvers or policy (a new target re-binds waiting promotions)."""
        return self._change(request, StageUpdateSerializer)

    @extend_schema(request=None, responses={204: None, 409: CONFLICT})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete a stage that never had a promotion; the stages after it move up (409 otherwise)."""
        services.stage_delete(stage=self.get_object(), context=_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _settings_response(self, stage: Stage) -> Response:
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
        responses={200: DeploymentSettingsDocumentSerializer, 412: PRECONDITION_FAILED},
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
            user=portal_user(request),
        )
        return self._settings_response(stage)

    @extend_schema(
        parameters=[OpenApiParameter("version", int, OpenApiParameter.QUERY, required=True)],
        responses={200: SettingsCheckSerializer},
        description="What a version of one of the pipeline's solutions needs that the stage's current "
        "settings lack, and what they set that the version does not have (the pre-flight's settings check, "
        "before a promotion exists).",
    )
    @action(detail=True, methods=["get"], url_path="settings/check")
    def settings_check(self, request: Request, pk: str) -> Response:

        stage = self.get_object()
        raw = request.query_params.get("version", "")
        version = (
            SolutionVersion.objects.filter(pk=int(raw), solution__pipeline_id=stage.pipeline_id)
            .select_related("solution")
            .first()
            if raw.isdigit()
            else None
        )
        if version is None:
            raise ValidationFailed(
                "Name a version of one of this pipeline's solutions.",
                details={"version": ["Give the id of a version of a solution of this stage's pipeline."]},
            )
        current = services.settings_current(stage=stage)
        document = current.document if current is not None else {}
        coverage = settings_document_coverage(document, version.managed_manifest or version.unmanaged_manifest)
        body = {
            "version": {"id": version.pk, "version": version.version_key, "solution": version.solution.unique_name},
            "settings_version": current.version if current is not None else None,
            **coverage,
        }
        return Response(SettingsCheckSerializer(body).data)

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

    def _window(self, window_id: str) -> StageWindow:
        window = self.get_object().windows.filter(pk=int(window_id)).first()
        if window is None:
            raise NotFound("No such window.")
        return window

    @extend_schema(
        parameters=[OpenApiParameter("window_id", int, OpenApiParameter.PATH)],
        request=WindowUpdateSerializer,
        responses={200: WindowSerializer},
    )
    @action(detail=True, methods=["patch"], url_path=r"windows/(?P<window_id>[0-9]+)")
    def window_update(self, request: Request, pk: str, window_id: str) -> Response:
        """Change a window; only the given fields change."""
        window = self._window(window_id)
        form = WindowUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        window = services.stage_window_update(
            window=window,
            weekdays=data.get("days"),
            start_time=data.get("start"),
            end_time=data.get("end"),
            time_zone=data.get("time_zone"),
            context=_context(request),
        )
        return Response(WindowSerializer(window).data)

    @extend_schema(
        parameters=[OpenApiParameter("window_id", int, OpenApiParameter.PATH)], request=None, responses={204: None}
    )
    @window_update.mapping.delete
    def window_remove(self, request: Request, pk: str, window_id: str) -> Response:
        services.stage_window_remove(window=self._window(window_id), context=_context(request))
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
            created_by=portal_user(request),
        )
        return Response(FreezeSerializer(freeze).data, status=status.HTTP_201_CREATED)

    def _freeze(self, freeze_id: str) -> StageFreeze:
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
