"""Thin API views over the environments' selectors and services.

Scopes: every GET needs `read`, every write `admin` (the permission's default for unsafe methods).
Makers see their teams' environments only; any other id is a 404, never a 403.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.audit.context import AuditContext
from alm_portal.errors import ValidationFailed
from alm_portal.jobs.models import Job
from environments import selectors, services
from environments.api.serializers import (
    DriftFindingSerializer,
    EnvironmentSerializer,
    EnvironmentWriteSerializer,
    InventoryEntrySerializer,
    JobAcceptedSerializer,
    SolutionHistorySerializer,
)
from environments.filtersets import EnvironmentFilterSet
from environments.models import Environment

ERRORS = {
    401: OpenApiResponse(description="not_authenticated | token_expired | token_revoked"),
    403: OpenApiResponse(description="permission_denied | scope_insufficient"),
    404: OpenApiResponse(description="not_found (also for environments the caller may not see)"),
}
WRITE_ERRORS = {**ERRORS, 400: OpenApiResponse(description="validation_error, details per field")}

_CREDENTIAL_FIELDS = (
    "client_id",
    "credential_type",
    "client_secret",
    "certificate_pem",
    "private_key_pem",
    "credential_expires_at",
)


def job_location(job_id: int) -> str:
    try:
        return reverse("api:deployments:job-detail", kwargs={"pk": job_id})
    except NoReverseMatch:
        return f"/api/v1/jobs/{job_id}/"


def _accepted(job: Job) -> Response:
    body = JobAcceptedSerializer({"job": job}).data
    response = Response(body, status=status.HTTP_202_ACCEPTED)
    response["Location"] = job_location(job.pk)
    return response


class EnvironmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = EnvironmentSerializer
    filterset_class = EnvironmentFilterSet
    ordering_fields = ["name", "kind", "health_status", "created_at"]
    ordering = ["name"]
    required_scopes = {"GET": Scope.READ}

    def get_queryset(self) -> QuerySet[Environment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Environment.objects.none()
        return selectors.environments_visible_to(user=portal_user(self.request)).order_by("name", "pk")

    def _environment(self) -> Environment:
        return selectors.environment_visible_to(user=portal_user(self.request), pk=int(self.kwargs["pk"]))

    def _fresh(self, pk: int) -> Response:
        environment = selectors.environment_visible_to(user=portal_user(self.request), pk=pk)
        return Response(EnvironmentSerializer(environment).data)

    @extend_schema(request=EnvironmentWriteSerializer, responses={201: EnvironmentSerializer, **WRITE_ERRORS})
    @sensitive_variables()
    def create(self, request: Request) -> Response:
        form = EnvironmentWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)
        environment = services.environment_create(
            name=data["name"],
            url=data["url"],
            kind=data["kind"],
            tenant_id=data["tenant_id"],
            authority=data.get("authority") or None,
            team=data["team"],
            description=data.get("description", ""),
            is_active=data.get("is_active", True),
            client_id=data["client_id"],
            credential_type=data["credential_type"],
            client_secret=data.get("client_secret"),
            certificate_pem=data.get("certificate_pem"),
            private_key_pem=data.get("private_key_pem"),
            credential_expires_at=data.get("credential_expires_at"),
            context=AuditContext.from_request(request),
        )
        response = self._fresh(environment.pk)
        response.status_code = status.HTTP_201_CREATED
        response["Location"] = reverse("api:environments:environment-detail", kwargs={"pk": environment.pk})
        return response

    @extend_schema(request=EnvironmentWriteSerializer, responses={200: EnvironmentSerializer, **WRITE_ERRORS})
    @sensitive_variables()
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        environment = self._environment()
        form = EnvironmentWriteSerializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)
        if "authority" in data and not data["authority"]:
            raise ValidationFailed("The authority cannot be blank.", details={"authority": ["Required."]})
        services.environment_update(
            environment=environment,
            context=AuditContext.from_request(request),
            **{key: value for key, value in data.items() if key not in _CREDENTIAL_FIELDS},
            **{key: value for key, value in data.items() if key in _CREDENTIAL_FIELDS},
        )
        return self._fresh(environment.pk)

    @extend_schema(request=EnvironmentWriteSerializer, responses={200: EnvironmentSerializer, **WRITE_ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(request=None, responses={202: JobAcceptedSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def check(self, request: Request, pk: str) -> Response:
        """Queue a health check (WhoAmI + RetrieveVersion); 202 with the job."""
        job = services.environment_request_health_check(
            environment=self._environment(), context=AuditContext.from_request(request)
        )
        return _accepted(job)

    @extend_schema(
        request=None,
        responses={202: JobAcceptedSerializer, 409: OpenApiResponse(description="invalid_state"), **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str) -> Response:
        """Queue an inventory sync; 202 with the job."""
        job = services.environment_request_inventory_sync(
            environment=self._environment(), context=AuditContext.from_request(request)
        )
        return _accepted(job)

    @extend_schema(
        parameters=[
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="What was installed at this time (RFC 3339).")
        ],
        responses={200: InventoryEntrySerializer(many=True), **WRITE_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def inventory(self, request: Request, pk: str) -> Response:
        """The installed solutions (as of the last sync, or `?at=`)."""
        environment = self._environment()
        at = request.query_params.get("at")
        if at:
            when = parse_datetime(at)
            if when is None or when.tzinfo is None:
                raise ValidationFailed("`at` must be an RFC 3339 time with a zone.", details={"at": ["Invalid."]})
            rows = selectors.inventory_at(environment=environment, when=when)
        else:
            rows = selectors.inventory_current(environment=environment)
        return Response(InventoryEntrySerializer(rows, many=True).data)

    @extend_schema(responses={200: SolutionHistorySerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"], url_path="solution-history")
    def solution_history(self, request: Request, pk: str) -> Response:
        """The environment's own solution history (msdyn_solutionhistories), newest first, paginated."""
        rows = selectors.solution_history(environment=self._environment())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SolutionHistorySerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("include_resolved", OpenApiTypes.BOOL)],
        responses={200: DriftFindingSerializer(many=True), **ERRORS},
    )
    # Not paginated (the open findings of one environment are few): pagination_class=None also keeps the
    # schema from describing a paginated envelope the view never sends.
    @action(detail=True, methods=["get"], pagination_class=None)
    def drift(self, request: Request, pk: str) -> Response:
        """Open drift findings (and resolved ones with `?include_resolved=true`)."""
        include = request.query_params.get("include_resolved", "").lower() in ("1", "true", "yes")
        rows = selectors.drift_findings(environment=self._environment(), include_resolved=include)
        return Response(DriftFindingSerializer(rows, many=True).data)
