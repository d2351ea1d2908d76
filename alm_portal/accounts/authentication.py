"""DRF authentication: our own hashed bearer tokens first, then the browser session with CSRF."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.request import Request

from alm_portal.accounts import services
from alm_portal.limits import throttling

# Names under which people put tokens into URLs; a token there ends up in proxy and server logs.
_QUERY_TOKEN_NAMES = ("access_token", "token", "api_key", "apikey", "bearer")


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer alm_<id>_<secret>`. Listed first so 401 answers carry WWW-Authenticate."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        if any(name in request.query_params for name in _QUERY_TOKEN_NAMES):
            message = "Tokens in the query string are refused; send them in the Authorization header."
            if self._revoke_exposed(request):
                message += " The token was revoked, because URLs are written to logs: create a new one."
            raise exceptions.AuthenticationFailed(message, code="not_authenticated")
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        # An address over its failed-authentication rate gets 429 before any token is looked up.
        verdict = throttling.over(throttling.FAILED_AUTHENTICATION, throttling.client_of(request))
        if not verdict.allowed:
            raise exceptions.Throttled(wait=verdict.wait)
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API token is malformed.") from None
        try:
            token = services.api_token_authenticate(raw)
        except services.TokenRejected as refusal:
            raise exceptions.AuthenticationFailed(refusal.message, code=refusal.code) from None
        return token.user, token

    @staticmethod
    def _revoke_exposed(request: Request) -> bool:
        """A live token in the URL is burnt: the URL is already in some log (a proxy's if not ours)."""
        revoked = False
        for name in _QUERY_TOKEN_NAMES:
            for value in request.query_params.getlist(name):
                exposed = services.api_token_revoke_exposed(
                    raw=value,
                    request_id=getattr(request, "request_id", ""),
                    client_ip=getattr(request, "client_ip", None),
                )
                revoked = revoked or exposed is not None
        return revoked

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="alm-portal"'


class CsrfSessionAuthentication(SessionAuthentication):
    """The browser session; DRF enforces CSRF on unsafe methods for it."""
