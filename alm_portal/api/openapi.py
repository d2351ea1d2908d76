"""The OpenAPI generator of the API: every operation declares the error answers it can give.

drf-spectacular documents what a view declares; the answers that come from the framework around
the view (authentication, scopes, the Idempotency-Key middleware, filters, pagination, parsers)
are added here, once, with the one error envelope {"error": {code, message, details}}, so that the
schema lists every status an endpoint can return (issue 6) without repeating them on every view.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from alm_portal.accounts.permissions import ScopedRolePermission

_GENERIC_ERRORS: dict[str, str] = {
    "400": "validation_error (details: {field: [messages]}) or another 400 code of docs/api.md §2",
    "401": "not_authenticated | token_expired | token_revoked (with WWW-Authenticate: Bearer)",
    "403": "permission_denied | scope_insufficient",
    "404": "not_found (also for objects the caller may not see, and pages past the end)",
    "409": "idempotency_key_reused | idempotency_in_progress, or the endpoint's own conflict codes",
    "415": "unsupported_media_type",
    "429": (
        "throttled (details.retry_after and header Retry-After: the caller's rate, ALM_THROTTLE_*), or on exports "
        "exports_busy (every export slot is in use)"
    ),
}


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, documented code (docs/api.md §2).")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.JSONField(help_text="Per-field messages or facts about the refusal.")


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    error = ErrorBodySerializer()


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key with the same body within 24 h answers the first response again "
        "(header Idempotent-Replayed: true); another body → 409 idempotency_key_reused; while the first is "
        "still running → 409 idempotency_in_progress. Scoped to the caller, method and path."
    ),
    pattern=r"^[\x21-\x7e]{1,255}$",
)


class ApiAutoSchema(AutoSchema):
    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(IDEMPOTENCY_KEY)
        return parameters

    def _generic_error_codes(self) -> set[str]:
        codes: set[str] = set()
        view = self.view
        if any(issubclass(permission, ScopedRolePermission) for permission in getattr(view, "permission_classes", [])):
            codes |= {"401", "403"}
        if "{" in self.path or self._is_list_view():
            codes.add("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes |= {"400", "415"}
        elif any(parameter.get("in") == "query" for parameter in self._get_parameters()):
            codes.add("400")  # filters and query parameters are validated
        if self.method == "POST":
            codes.add("409")
        if getattr(view, "throttle_classes", None):
            codes.add("429")  # alm_portal.limits.throttling; refusals (401/403) are counted too
        return codes

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:  # type: ignore[override]
        responses: dict[str, Any] = super()._get_response_bodies(direction)  # type: ignore[arg-type]
        envelope = self._get_response_for_code(ErrorSerializer, "400", direction=direction)  # type: ignore[arg-type]
        for code, answer in list(responses.items()):
            if code >= "400" and "content" not in answer:
                responses[code] = {**answer, "content": envelope["content"]}
        for code in sorted(self._generic_error_codes() - set(responses)):
            responses[code] = {"description": _GENERIC_ERRORS[code], "content": envelope["content"]}
        return dict(sorted(responses.items()))


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "alm_portal.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")


class CsrfSessionScheme(OpenApiAuthenticationExtension):
    target_class = "alm_portal.accounts.authentication.CsrfSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        # The cookie's name follows the settings (production prefixes it with __Host-).
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
