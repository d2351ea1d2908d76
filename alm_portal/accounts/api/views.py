from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alm_portal.accounts import policy, selectors, services
from alm_portal.accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    MeSerializer,
)
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken
from alm_portal.audit.context import AuditContext


class MeView(APIView):
    required_scopes = {"GET": Scope.READ}

    @extend_schema(responses={200: MeSerializer})
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user, context={"request": request}).data)


class ApiTokenListView(APIView):
    """The caller's own tokens. Creating one needs only `read`: a token never exceeds the role, and a
    token-authenticated caller may not mint scopes its own token lacks."""

    required_scopes = {"GET": Scope.READ, "POST": Scope.READ}

    @extend_schema(responses={200: ApiTokenSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ApiTokenSerializer(selectors.api_tokens_of(user=request.user), many=True).data)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        form = ApiTokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        scopes = form.validated_data.get("scopes") or [Scope.READ]
        if isinstance(request.auth, ApiToken):
            beyond = sorted(set(scopes) - policy.effective_scopes(user=request.user, token=request.auth))
            if beyond:
                raise services.ScopeNotAllowed(
                    f"This token cannot create a token with the scope(s): {', '.join(beyond)}.",
                    details={"scopes": beyond},
                )
        token, text = services.api_token_create(
            user=request.user,
            name=form.validated_data.get("name"),
            scopes=scopes,
            days=form.validated_data.get("days"),
            context=AuditContext.from_request(request),
        )
        data = ApiTokenSerializer(token).data | {"token": text}
        return Response(data, status=status.HTTP_201_CREATED)


class ApiTokenRevokeView(APIView):
    required_scopes = {"POST": Scope.READ}

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    def post(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(selectors.api_tokens_of(user=request.user), pk=pk)
        token = services.api_token_revoke(token=token, context=AuditContext.from_request(request))
        return Response(ApiTokenSerializer(token).data)
