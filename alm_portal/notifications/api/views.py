"""Thin API views over the notifications selectors and services.

Webhooks are administration: admins create, change, delete and test them (`admin` scope); admins and
auditors read them and their delivery logs (`read` scope); everyone else gets 403. Each person
manages their own email opt-in at `me/notifications/` with the `read` scope, because it changes
nothing but their own mail.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.audit.context import AuditContext
from alm_portal.errors import ValidationFailed
from alm_portal.notifications import selectors, services
from alm_portal.notifications.api.serializers import (
    EmailSubscriptionSerializer,
    EmailSubscriptionWriteSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookEndpointWriteSerializer,
    WebhookTestAcceptedSerializer,
)
from alm_portal.notifications.choices import DeliveryStatus
from alm_portal.notifications.models import WebhookEndpoint

ERRORS = {
    401: OpenApiResponse(description="not_authenticated | token_expired | token_revoked"),
    403: OpenApiResponse(description="permission_denied | scope_insufficient"),
    404: OpenApiResponse(description="not_found"),
}
WRITE_ERRORS = {**ERRORS, 400: OpenApiResponse(description="validation_error, details per field")}


class WebhookViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = WebhookEndpointSerializer
    filterset_fields = ["team", "is_active"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    required_scopes = {"GET": Scope.READ}
    action_scopes = {"deliveries": Scope.READ, "test": Scope.ADMIN}

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return WebhookEndpoint.objects.none()
        return selectors.webhook_endpoints_visible_to(user=portal_user(self.request)).order_by("name", "pk")

    def _endpoint(self) -> WebhookEndpoint:
        return selectors.webhook_endpoint_visible_to(user=portal_user(self.request), pk=int(self.kwargs["pk"]))

    def _fresh(self, pk: int, status_code: int = status.HTTP_200_OK) -> Response:
        endpoint = selectors.webhook_endpoint_visible_to(user=portal_user(self.request), pk=pk)
        return Response(WebhookEndpointSerializer(endpoint).data, status=status_code)

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True), **ERRORS})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: WebhookEndpointSerializer, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WebhookEndpointSerializer(self._endpoint()).data)

    @extend_schema(request=WebhookEndpointWriteSerializer, responses={201: WebhookEndpointSerializer, **WRITE_ERRORS})
    @sensitive_variables()
    def create(self, request: Request) -> Response:
        form = WebhookEndpointWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)
        endpoint = services.webhook_endpoint_create(
            name=data["name"],
            url=data["url"],
            events=data["events"],
            secret=data.get("secret", ""),
            team=data.get("team"),
            is_active=data.get("is_active", True),
            context=AuditContext.from_request(request),
        )
        response = self._fresh(endpoint.pk, status.HTTP_201_CREATED)
        response["Location"] = reverse("api:notifications:webhook-detail", kwargs={"pk": endpoint.pk})
        return response

    @extend_schema(request=WebhookEndpointWriteSerializer, responses={200: WebhookEndpointSerializer, **WRITE_ERRORS})
    @sensitive_variables()
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        endpoint = self._endpoint()
        form = WebhookEndpointWriteSerializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)  # an omitted secret stays as it is
        services.webhook_endpoint_update(endpoint=endpoint, context=AuditContext.from_request(request), **data)
        return self._fresh(endpoint.pk)

    @extend_schema(request=WebhookEndpointWriteSerializer, responses={200: WebhookEndpointSerializer, **WRITE_ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(responses={204: None, **ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        services.webhook_endpoint_delete(endpoint=self._endpoint(), context=AuditContext.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=DeliveryStatus.values)],
        responses={200: WebhookDeliverySerializer(many=True), **WRITE_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        """The endpoint's delivery log, newest first, paginated (`?status=pending|delivered|failed`)."""
        wanted = request.query_params.get("status") or None
        if wanted is not None and wanted not in DeliveryStatus.values:
            raise ValidationFailed(
                "Unknown delivery status.", details={"status": [f"One of {', '.join(DeliveryStatus.values)}."]}
            )
        rows = selectors.webhook_deliveries_of(endpoint=self._endpoint(), status=wanted)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: WebhookTestAcceptedSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        """Queue a signed `webhook.test` ping to this endpoint; 202 with the delivery to watch."""
        delivery = services.webhook_endpoint_test(endpoint=self._endpoint(), context=AuditContext.from_request(request))
        response = Response({"delivery": WebhookDeliverySerializer(delivery).data}, status=status.HTTP_202_ACCEPTED)
        response["Location"] = reverse("api:notifications:webhook-deliveries", kwargs={"pk": delivery.endpoint_id})
        return response


class MyEmailNotificationsView(APIView):
    """The caller's email opt-in: which events (codes or prefixes) to be mailed about."""

    required_scopes = {"GET": Scope.READ, "PUT": Scope.READ}

    def _body(self, request: Request) -> dict[str, Any]:
        subscription = selectors.email_subscription_of(user=portal_user(request))
        if subscription is None:
            return {"events": [], "is_active": False, "email": request.user.email, "updated_at": None}
        return dict(EmailSubscriptionSerializer(subscription).data)

    @extend_schema(responses={200: EmailSubscriptionSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(self._body(request))

    @extend_schema(
        request=EmailSubscriptionWriteSerializer, responses={200: EmailSubscriptionSerializer, **WRITE_ERRORS}
    )
    def put(self, request: Request) -> Response:
        form = EmailSubscriptionWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.email_subscription_set(
            user=portal_user(request),
            events=form.validated_data["events"],
            is_active=form.validated_data.get("is_active", True),
            context=AuditContext.from_request(request),
        )
        return Response(self._body(request))
