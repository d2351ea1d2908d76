"""Thin API views over the registry's selectors and services (scopes: GET read; upload, export, register request)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import NoReverseMatch, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import Team
from alm_portal.audit.context import AuditContext
from alm_portal.errors import NotFound, ValidationFailed
from environments.models import Environment
from solutions import selectors, services
from solutions.api.serializers import (
    ExportAcceptedSerializer,
    ExportJobSerializer,
    ExportRequestSerializer,
    SolutionRegisterSerializer,
    SolutionSerializer,
    SolutionVersionDetailSerializer,
    SolutionVersionSerializer,
    SourceBindingSerializer,
    SourceBindInputSerializer,
    SourceBuildInputSerializer,
    VersionUploadResultSerializer,
    VersionUploadSerializer,
)
from solutions.choices import Flavour
from solutions.errors import PayloadTooLarge
from solutions.filtersets import SolutionFilterSet, SolutionVersionFilterSet
from solutions.models import Solution, SolutionVersion
from solutions.storage import artifact_storage

# Multipart boundaries and the small text fields around the file.
_MULTIPART_ALLOWANCE = 1024 * 1024

ERRORS = {
    401: OpenApiResponse(description="not_authenticated | token_expired | token_revoked"),
    403: OpenApiResponse(description="permission_denied | scope_insufficient"),
    404: OpenApiResponse(description="not_found (also for objects the caller may not see)"),
}


def _visible_team(user: Any, team_id: int | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(pk=team_id).first()
    visible = policy.team_ids_visible_to(user)
    if team is None or (visible is not None and team.pk not in visible):
        raise ValidationFailed("Unknown team.", details={"team": ["No such team among yours."]})
    return team


def _visible_environment(
    user: Any, environment_id: int | None, *, field: str = "home_environment"
) -> Environment | None:
    if environment_id is None:
        return None
    environment = Environment.objects.filter(pk=environment_id).first()
    visible = policy.team_ids_visible_to(user)
    if environment is None or (visible is not None and environment.team_id not in visible):
        raise ValidationFailed("Unknown environment.", details={field: ["No such environment among your teams'."]})
    return environment


def job_location(job_id: int) -> str:
    """Where a client follows a queued job (the jobs API belongs to deployments)."""
    try:
        return reverse("api:deployments:job-detail", kwargs={"pk": job_id})
    except NoReverseMatch:
        return f"/api/v1/jobs/{job_id}/"


class SolutionViewSet(viewsets.ReadOnlyModelViewSet):
    """Solutions of the caller's teams (all of them for admins and auditors); others answer 404."""

    serializer_class = SolutionSerializer
    filterset_class = SolutionFilterSet
    ordering_fields = ["unique_name", "display_name", "created_at"]
    ordering = ["unique_name"]
    required_scopes = {"GET": Scope.READ, "POST": Scope.REQUEST, "PUT": Scope.REQUEST, "DELETE": Scope.REQUEST}

    def get_queryset(self) -> QuerySet[Solution]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Solution.objects.none()
        return selectors.solutions_visible_to(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(request=SolutionRegisterSerializer, responses={201: SolutionSerializer, 400: None, **ERRORS})
    def create(self, request: Request) -> Response:
        form = SolutionRegisterSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = _visible_team(request.user, data["team"])
        assert team is not None
        solution = services.solution_register(
            unique_name=data["unique_name"],
            display_name=data.get("display_name", ""),
            team=team,
            home_environment=_visible_environment(request.user, data.get("home_environment")),
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
        solution = self.get_queryset().get(pk=solution.pk)
        return Response(SolutionSerializer(solution).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: SolutionVersionSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str) -> Response:
        solution = self.get_object()
        page = self.paginate_queryset(selectors.solution_versions(solution=solution))
        return self.get_paginated_response(SolutionVersionSerializer(page, many=True).data)

    @extend_schema(
        request=ExportRequestSerializer,
        responses={
            202: ExportAcceptedSerializer,
            400: None,
            409: OpenApiResponse(description="version_exists (details.next_allowed)"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def export(self, request: Request, pk: str) -> Response:
        solution = self.get_object()
        form = ExportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = services.solution_export_request(
            solution=solution,
            bump=form.validated_data["bump"],
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
        response = Response({"job": ExportJobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)
        response["Location"] = job_location(job.pk)
        return response

    @extend_schema(
        methods=["GET"],
        responses={200: SourceBindingSerializer, 404: OpenApiResponse(description="not_found (not bound)"), **ERRORS},
    )
    @extend_schema(
        methods=["PUT"],
        request=SourceBindInputSerializer,
        responses={200: SourceBindingSerializer, 400: OpenApiResponse(description="validation_error"), **ERRORS},
    )
    @extend_schema(methods=["DELETE"], responses={204: None, **ERRORS})
    @action(detail=True, methods=["get", "put", "delete"])
    def source(self, request: Request, pk: str) -> Response:
        """The Git repository the solution's versions are committed to (docs/source-control.md)."""
        solution = self.get_object()
        context = AuditContext.from_request(request)
        if request.method == "PUT":
            form = SourceBindInputSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            data = dict(form.validated_data)
            data["build_environment"] = _visible_environment(
                request.user, data.get("build_environment"), field="build_environment"
            )
            binding = services.source_bind(solution=solution, user=request.user, context=context, **data)  # type: ignore[arg-type]
            return Response(SourceBindingSerializer(binding, context={"solution": solution}).data)
        if request.method == "DELETE":
            services.source_unbind(solution=solution, user=request.user, context=context)  # type: ignore[arg-type]
            return Response(status=status.HTTP_204_NO_CONTENT)
        binding = services.binding_for(solution)
        if binding is None:
            raise NotFound(f"{solution.unique_name} is not bound to a Git repository.")
        return Response(SourceBindingSerializer(binding, context={"solution": solution}).data)

    @extend_schema(
        request=SourceBuildInputSerializer,
        responses={202: ExportAcceptedSerializer, 400: OpenApiResponse(description="validation_error"), **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="source/builds")
    def source_build(self, request: Request, pk: str) -> Response:
        """Build a version from a branch, tag or commit of the bound repository (a job; follow Location)."""
        solution = self.get_object()
        form = SourceBuildInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = services.source_build_request(
            solution=solution,
            ref=form.validated_data["ref"],
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
        response = Response({"job": ExportJobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)
        response["Location"] = job_location(job.pk)
        return response


class SolutionVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Versions of visible solutions; upload (multipart), download and diff."""

    serializer_class = SolutionVersionSerializer
    filterset_class = SolutionVersionFilterSet
    ordering_fields = ["created_at", "major", "minor", "build", "revision"]
    required_scopes = {"GET": Scope.READ, "POST": Scope.REQUEST}
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self) -> QuerySet[SolutionVersion]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return SolutionVersion.objects.none()
        return selectors.versions_visible_to(user=self.request.user)  # type: ignore[arg-type]

    def get_serializer_class(self) -> type[SolutionVersionSerializer]:
        return SolutionVersionDetailSerializer if self.action == "retrieve" else SolutionVersionSerializer

    @extend_schema(
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionUploadResultSerializer,
            200: VersionUploadResultSerializer,
            400: OpenApiResponse(description="validation_error, with the package reader's message for a bad zip"),
            409: OpenApiResponse(description="version_exists (details.next_allowed)"),
            413: OpenApiResponse(description="payload_too_large"),
            **ERRORS,
        },
    )
    def create(self, request: Request) -> Response:
        limit = services.max_upload_bytes()
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > limit + _MULTIPART_ALLOWANCE:  # refuse before reading (and spooling) the body
            raise PayloadTooLarge(
                f"The file is larger than the upload limit of {limit} bytes.", details={"limit": limit}
            )
        form = VersionUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        solution = None
        if data.get("solution") is not None:
            solution = selectors.solutions_visible_to(user=request.user).filter(pk=data["solution"]).first()  # type: ignore[arg-type]
            if solution is None:
                raise NotFound("No such solution.")
        outcome = services.solution_version_upload(
            file=data["file"],
            release_notes=data.get("release_notes", ""),
            solution=solution,
            team=_visible_team(request.user, data.get("team")),
            home_environment=_visible_environment(request.user, data.get("home_environment")),
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
        version = self.get_queryset().get(pk=outcome.version.pk)
        body = SolutionVersionSerializer(version).data
        result = "created" if outcome.created else "added" if outcome.added else "identical"
        body["upload"] = {"flavour": outcome.flavour, "outcome": result}
        return Response(body, status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)

    @extend_schema(
        request={"multipart/form-data": VersionUploadSerializer},
        responses={201: VersionUploadResultSerializer, 200: VersionUploadResultSerializer, **ERRORS},
    )
    @action(detail=False, methods=["post"])
    def upload(self, request: Request) -> Response:
        """The same as POST versions/ (kept for clients written against the first draft)."""
        return self.create(request)

    @extend_schema(
        parameters=[
            OpenApiParameter("flavour", str, enum=Flavour.values, description="managed (default) or unmanaged"),
            OpenApiParameter("flavor", str, enum=Flavour.values, description="Alias of flavour."),
        ],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="artifact_missing"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        version = self.get_object()
        flavour = request.query_params.get("flavour") or request.query_params.get("flavor") or Flavour.MANAGED
        slot = selectors.artifact_for_download(version=version, flavour=flavour)
        storage = artifact_storage()
        if not storage.exists(slot.path):
            raise NotFound(f"The {flavour} artifact of {version} is missing from storage.")
        suffix = "_managed" if flavour == Flavour.MANAGED else ""
        filename = f"{version.solution.unique_name}_{version.version_key.replace('.', '_')}{suffix}.zip"
        response = FileResponse(
            storage.open(slot.path, "rb"), as_attachment=True, filename=filename, content_type="application/zip"
        )
        response["ETag"] = f'"{slot.sha256}"'
        response["X-Checksum-SHA256"] = slot.sha256
        return response

    def _diff(self, request: Request, other_id: Any) -> Response:
        version = self.get_object()
        try:
            other = self.get_queryset().get(pk=int(other_id))
        except (SolutionVersion.DoesNotExist, TypeError, ValueError):
            raise NotFound("No such version.") from None
        return Response(services.version_diff(old=other, new=version))

    @extend_schema(
        parameters=[OpenApiParameter("against", int, required=True, description="The older version's id.")],
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="artifact_missing"), **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str) -> Response:
        """What changes from version `against` to this one (added, removed, changed, data_loss)."""
        against = request.query_params.get("against")
        if not against:
            raise ValidationFailed("Say which version to compare with.", details={"against": ["Required."]})
        return self._diff(request, against)

    @extend_schema(
        operation_id="v1_versions_diff_with",
        parameters=[OpenApiParameter("other_id", int, OpenApiParameter.PATH, description="The older version's id.")],
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="artifact_missing"), **ERRORS},
    )
    @action(detail=True, methods=["get"], url_path=r"diff/(?P<other_id>[0-9]+)")
    def diff_with(self, request: Request, pk: str, other_id: str) -> Response:
        """The same as diff/?against=<other_id>."""
        return self._diff(request, other_id)
