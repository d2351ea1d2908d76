from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alm_portal.accounts import selectors, services
from alm_portal.accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    MeSerializer,
)
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken
from alm_portal.api.idempotency import REPLAY_INSTEAD_ATTRIBUTE
from alm_portal.audit.context import AuditContext


class MeView(APIView):
    required_scopes = {"GET": Scope.READ}

    @extend_schema(responses={200: MeSerializer})
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user, context={"request": request}).data)


def _token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


class ApiTokenListView(APIView):
    """The caller's own tokens. Creating one needs only `read`: a token never exceeds the role, and a
    token-authenticated caller's new token has no scope its own token lacks, expires no later than it
    and is revoked with it (accounts.services.api_token_create)."""

    required_scopes = {"GET": Scope.READ, "POST": Scope.READ}

    @extend_schema(responses={200: ApiTokenSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ApiTokenSerializer(selectors.api_tokens_of(user=request.user), many=True).data)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        form = ApiTokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        token, text = services.api_token_create(
            user=request.user,
            name=form.validated_data.get("name"),
            scopes=form.validated_data.get("scopes") or [Scope.READ],
            days=form.validated_data.get("days"),
            context=AuditContext.from_request(request),
            parent=_token(request),
        )
        data = ApiTokenSerializer(token).data | {"token": text}
        response = Response(data, status=status.HTTP_201_CREATED)
        # The text is shown once: a replay of this request says the token exists and cannot be shown.
        not_again = {
            "code": "token_not_shown_again",
            "message": (
                f"The token {token.name!r} was created by the first request with this Idempotency-Key; its text "
                "was shown once and cannot be shown again. If it was lost, revoke it and create a new one."
            ),
            "details": {"id": token.pk, "name": token.name},
        }
        setattr(response, REPLAY_INSTEAD_ATTRIBUTE, (status.HTTP_409_CONFLICT, {"error": not_again}))
        return response


class ApiTokenRevokeView(APIView):
    """Revoke one of the caller's tokens (and every token it minted); a token revoking needs every
    scope of the token it revokes."""

    required_scopes = {"POST": Scope.READ}

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    def post(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(selectors.api_tokens_of(user=request.user), pk=pk)
        token = services.api_token_revoke(
            token=token,
            context=AuditContext.from_request(request),
            revoked_by=request.user,
            acting_token=_token(request),
        )
        return Response(ApiTokenSerializer(token).data)
