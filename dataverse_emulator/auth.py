"""Entra ID (Azure AD v2.0 endpoints) as far as the portal and msal use it.

Routes (all under the identity provider's own origin ``https://127.0.0.1:IDP_PORT``, as
``login.microsoftonline.com`` is a host of its own):
    GET  /{tenant}/v2.0/.well-known/openid-configuration   discovery (msal's Entra mode, docs/dataverse.md §13.2)
    GET  /{tenant}/.well-known/openid-configuration        discovery (msal's ``oidc_authority`` mode)
    GET  /{tenant}/discovery/v2.0/keys                     JWKS (RS256 signing key)
    POST /{tenant}/oauth2/v2.0/token                       client_credentials, authorization_code (+PKCE), refresh_token
    GET  /{tenant}/oauth2/v2.0/authorize                   sign-in page listing the tenant's identities
    POST /{tenant}/oauth2/v2.0/authorize                   the page's choice → 302 to redirect_uri?code&state
    GET  /common/discovery/instance                        instance discovery answer ``{"metadata": []}`` (13.2.2)

Token and error shapes: v2-oauth2-client-creds-grant-flow.md (MicrosoftDocs/azure-docs, commit 0148ba27):
success ``{"token_type": "Bearer", "expires_in", "access_token"}``, errors ``{"error", "error_description",
"error_codes", "timestamp", "trace_id", "correlation_id"}`` with the trace/correlation/timestamp lines
appended to ``error_description``. Access tokens are v1.0-shaped app tokens (``appid``, ``idtyp: app``,
``tid``, ``oid``, ``aud`` = the org URL, which is what Dataverse accepts); id_tokens are v2.0 (``iss`` =
the discovery ``issuer``, ``aud`` = client id, ``nonce``, ``oid``, ``tid``, ``preferred_username``,
``name``, ``roles``). One claim is the emulator's own: ``xms_emu_gen``, the token generation that the
admin "revoke all tokens" call bumps (Dataverse rejects older generations with 401).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import unconfirmed
from .store import Store, now
from .wire import Request, Response

if TYPE_CHECKING:
    from .app import Emulator

DEFAULT_TOKEN_LIFETIME = 3599  # the docs' example "expires_in": 3599; >= 10 minutes as msal expects
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """The RSA key every token is signed with; generated once and kept in the state file."""

    def __init__(self, store: Store) -> None:
        with store.lock:
            pem = store.data.get("signing_key_pem")
            if not pem:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode("ascii")
                store.data["signing_key_pem"] = pem
                store.save(orgs=[])
        self.private_key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        assert isinstance(self.private_key, rsa.RSAPrivateKey)
        self.public_key = self.private_key.public_key()
        der = self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = b64url(hashlib.sha1(der).digest())  # noqa: S324 - a key id (x5t-like), not security

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """Signature and expiry check; raises ``jwt.PyJWTError``. Audience is checked by the caller."""
        return jwt.decode(
            token,
            self.public_key,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "iat"]},
        )

    def jwk(self, issuer: str) -> dict[str, Any]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
            "alg": "RS256",
            "issuer": issuer,
        }


@dataclass
class AuthCode:
    code: str
    tenant_id: str
    client_id: str
    redirect_uri: str
    identity: dict[str, Any]
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float
    redeemed: bool = False


def aad_error(
    status: int, error: str, description: str, codes: list[int], headers: list[tuple[str, str]] | None = None
) -> Response:
    """The Entra error body (docs/dataverse.md §13; client-creds grant doc "Error response")."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {
        "error": error,
        "error_description": (
            f"{description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": codes,
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={codes[0]}" if codes else None,
    }
    return Response.json(
        status, payload, [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"), *(headers or [])]
    )


class Entra:
    """The identity provider: discovery, JWKS, token endpoint, sign-in page; and token validation for Dataverse."""

    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.store = app.store
        self.key = SigningKey(app.store)
        self._codes: dict[str, AuthCode] = {}
        self._refresh_tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # --- URLs ---------------------------------------------------------------------------------------
    def authority(self, tenant_id: str) -> str:
        return f"{self.app.idp_url}/{tenant_id}"

    def issuer_v2(self, tenant_id: str) -> str:
        return f"{self.app.idp_url}/{tenant_id}/v2.0"

    def issuer_v1(self, tenant_id: str) -> str:
        return f"{self.app.idp_url}/{tenant_id}/"

    def token_lifetime(self) -> int:
        return int(self.store.data["settings"].get("token_lifetime", DEFAULT_TOKEN_LIFETIME))

    # --- routing ------------------------------------------------------------------------------------
    def handle(self, request: Request, tenant_id: str, rest: str) -> Response | None:
        """Serve ``/{tenant}/{rest}``; ``None`` when the path is not an Entra route."""
        rest = rest.lstrip("/")  # msal tolerates a trailing slash on the authority: "//v2.0/…" (13.2.3)
        routes = {
            ("GET", "v2.0/.well-known/openid-configuration"): self.discovery,
            ("GET", ".well-known/openid-configuration"): self.discovery,
            ("GET", "discovery/v2.0/keys"): self.jwks,
            ("GET", "discovery/keys"): self.jwks,
            ("POST", "oauth2/v2.0/token"): self.token,
            ("GET", "oauth2/v2.0/authorize"): self.authorize_page,
            ("POST", "oauth2/v2.0/authorize"): self.authorize_submit,
            ("GET", "oauth2/authorize"): self.authorize_page,
            ("GET", "oauth2/v2.0/logout"): self.logout,
        }
        handler = routes.get((request.method, rest))
        if handler is None:
            return None
        if self.store.tenant(tenant_id) is None:
            return aad_error(400, "invalid_tenant", unconfirmed.AADSTS_UNKNOWN_TENANT.format(tenant=tenant_id), [90002])
        return handler(request, tenant_id)

    def instance_discovery(self, request: Request) -> Response:
        """``/common/discovery/instance``: an empty alias list, so msal's fallback lookup works (13.2.2)."""
        endpoint = request.query().get("authorization_endpoint", "")
        return Response.json(
            200,
            {
                "tenant_discovery_endpoint": endpoint.replace(
                    "/oauth2/v2.0/authorize", "/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [],
            },
        )

    # --- discovery and keys --------------------------------------------------------------------------
    def discovery(self, request: Request, tenant_id: str) -> Response:
        base = self.authority(tenant_id)
        issuer = self.issuer_v2(tenant_id)
        return Response.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "nonce",
                    "oid",
                    "preferred_username",
                    "roles",
                    "tid",
                    "ver",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "emulator.local",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def jwks(self, request: Request, tenant_id: str) -> Response:
        return Response.json(200, {"keys": [self.key.jwk(self.issuer_v2(tenant_id))]})

    def logout(self, request: Request, tenant_id: str) -> Response:
        target = request.query().get("post_logout_redirect_uri")
        if target:
            return Response.redirect(target)
        return Response.text(200, "<html><body>Signed out.</body></html>", "text/html; charset=utf-8")

    # --- token endpoint ----------------------------------------------------------------------------
    def token(self, request: Request, tenant_id: str) -> Response:
        form = request.form()
        grant_type = form.get("grant_type", "")
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = request.header("authorization", "") or ""
        if basic.lower().startswith("basic "):  # client_secret_basic
            decoded = base64.b64decode(basic[6:]).decode("utf-8")
            client_id, _, secret = (urllib.parse.unquote(p) for p in decoded.partition(":"))
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            return aad_error(
                400, "unsupported_grant_type", unconfirmed.AADSTS_BAD_GRANT_TYPE.format(grant_type=grant_type), [70003]
            )
        tenant = self.store.tenant(tenant_id)
        assert tenant is not None
        client = tenant["clients"].get(client_id)
        if client is None:
            return aad_error(
                400,
                "unauthorized_client",
                unconfirmed.AADSTS_UNKNOWN_CLIENT.format(client_id=client_id, tenant=tenant.get("name", tenant_id)),
                [700016],
            )
        if not secret or not secrets.compare_digest(secret, client["secret"]):
            return aad_error(
                401, "invalid_client", unconfirmed.AADSTS_INVALID_SECRET.format(client_id=client_id), [7000215]
            )
        if grant_type == "client_credentials":
            return self._client_credentials(form, tenant_id, client_id, client)
        if grant_type == "authorization_code":
            return self._authorization_code(form, tenant_id, client_id)
        return self._refresh(form, tenant_id, client_id)

    def _resource_for_scopes(self, scopes: list[str], tenant_id: str) -> tuple[str | None, Response | None]:
        """Map ``<org url>/.default`` (or ``/user_impersonation``) scopes to the org URL they name."""
        resources = []
        for scope in scopes:
            if scope in ("openid", "profile", "offline_access", "email"):
                continue
            resource = scope.rsplit("/", 1)[0].rstrip("/") if "/" in scope else scope
            resources.append((scope, resource))
        if not resources:
            return None, None
        scope, resource = resources[0]
        if len({r for _, r in resources}) > 1:
            return None, aad_error(
                400,
                "invalid_scope",
                f"AADSTS70011: The provided request must include a 'scope' input parameter. The provided value for the "
                f"input parameter 'scope' is not valid. The scope {' '.join(scopes)} is not valid.",
                [70011],
            )
        if self.app.org_for_resource(resource) is None:
            return None, aad_error(
                400,
                "invalid_resource",
                unconfirmed.AADSTS_UNKNOWN_RESOURCE.format(resource=resource, tenant=tenant_id),
                [500011],
            )
        return self.app.org_url(self.app.org_for_resource(resource) or ""), None

    def _client_credentials(self, form: dict[str, str], tenant_id: str, client_id: str, client: dict) -> Response:
        scopes = form.get("scope", "").split()
        default_scopes = [s for s in scopes if s.endswith("/.default")]
        if not default_scopes:
            return aad_error(
                400,
                "invalid_scope",
                unconfirmed.AADSTS_SCOPE_NOT_DEFAULT.format(scope=form.get("scope", "")),
                [1002012],
            )
        resource, error = self._resource_for_scopes(default_scopes, tenant_id)
        if error is not None:
            return error
        assert resource is not None
        lifetime = self.token_lifetime()
        token = self.access_token(
            tenant_id=tenant_id,
            audience=resource,
            app_id=client_id,
            object_id=client["object_id"],
            lifetime=lifetime,
            extra={"app_displayname": client.get("display_name", client_id), "idtyp": "app"},
        )
        return Response.json(
            200,
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token},
            [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")],
        )

    def access_token(
        self,
        *,
        tenant_id: str,
        audience: str,
        app_id: str,
        object_id: str,
        lifetime: int,
        extra: dict[str, Any] | None = None,
    ) -> str:
        issued = int(now())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer_v1(tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "aio": b64url(secrets.token_bytes(24)),
            "appid": app_id,
            "appidacr": "1",
            "azp": app_id,
            "idp": self.issuer_v1(tenant_id),
            "oid": object_id,
            "rh": b64url(secrets.token_bytes(16)),
            "sub": object_id,
            "tid": tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
            "xms_emu_gen": self.store.data.get("token_generation", 0),
        }
        claims.update(extra or {})
        return self.key.sign(claims)

    def _authorization_code(self, form: dict[str, str], tenant_id: str, client_id: str) -> Response:
        code_value = form.get("code", "")
        with self._lock:
            code = self._codes.get(code_value)
            if code is None or code.tenant_id != tenant_id or code.client_id != client_id or code.expires_at < now():
                return aad_error(400, "invalid_grant", unconfirmed.AADSTS_BAD_CODE, [70000])
            if code.redeemed:
                return aad_error(400, "invalid_grant", unconfirmed.AADSTS_CODE_REDEEMED, [54005])
            if form.get("redirect_uri") and form["redirect_uri"] != code.redirect_uri:
                return aad_error(
                    400,
                    "invalid_grant",
                    unconfirmed.AADSTS_REDIRECT_MISMATCH.format(redirect_uri=form["redirect_uri"], client_id=client_id),
                    [50011],
                )
            if code.code_challenge is not None:
                verifier = form.get("code_verifier", "")
                if code.code_challenge_method.upper() == "S256":
                    computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                else:
                    computed = verifier
                if not verifier or not secrets.compare_digest(computed, code.code_challenge):
                    return aad_error(400, "invalid_grant", unconfirmed.AADSTS_BAD_VERIFIER, [501481])
            code.redeemed = True
        return self._user_tokens(tenant_id, client_id, code.identity, form.get("scope") or code.scope, code.nonce)

    def _refresh(self, form: dict[str, str], tenant_id: str, client_id: str) -> Response:
        with self._lock:
            grant = self._refresh_tokens.get(form.get("refresh_token", ""))
        if grant is None or grant["client_id"] != client_id or grant["tenant_id"] != tenant_id:
            return aad_error(400, "invalid_grant", unconfirmed.AADSTS_BAD_REFRESH_TOKEN, [9002313])
        return self._user_tokens(tenant_id, client_id, grant["identity"], form.get("scope") or grant["scope"], None)

    def _user_tokens(
        self, tenant_id: str, client_id: str, identity: dict[str, Any], scope: str, nonce: str | None
    ) -> Response:
        scopes = scope.split()
        resource, error = self._resource_for_scopes(scopes, tenant_id)
        if error is not None:
            return error
        lifetime = self.token_lifetime()
        issued = int(now())
        access = self.access_token(
            tenant_id=tenant_id,
            audience=resource or GRAPH_APP_ID,
            app_id=client_id,
            object_id=identity["object_id"],
            lifetime=lifetime,
            extra={
                "idtyp": "user",
                "name": identity["display_name"],
                "upn": identity["username"],
                "unique_name": identity["username"],
                "scp": "user_impersonation",
                **({"roles": identity["roles"]} if identity.get("roles") else {}),
            },
        )
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer_v2(tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 3600,
            "aio": b64url(secrets.token_bytes(24)),
            "name": identity["display_name"],
            "oid": identity["object_id"],
            "preferred_username": identity["username"],
            "rh": b64url(secrets.token_bytes(16)),
            "sub": b64url(hashlib.sha256(f"{identity['object_id']}:{client_id}".encode()).digest()),
            "tid": tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if identity.get("roles"):  # Entra omits the claim when the user has no app role assignment
            claims["roles"] = list(identity["roles"])
        if nonce:
            claims["nonce"] = nonce
        refresh = secrets.token_urlsafe(48)
        with self._lock:
            self._refresh_tokens[refresh] = {
                "client_id": client_id,
                "tenant_id": tenant_id,
                "identity": identity,
                "scope": scope,
            }
        client_info = b64url(json.dumps({"uid": identity["object_id"], "utid": tenant_id}).encode())
        granted = " ".join(s for s in scopes if s not in ("offline_access",)) or "openid profile"
        return Response.json(
            200,
            {
                "token_type": "Bearer",
                "scope": granted,
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access,
                "refresh_token": refresh,
                "id_token": self.key.sign(claims),
                "client_info": client_info,
            },
            [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")],
        )

    # --- authorize (sign-in page) ------------------------------------------------------------------
    def _check_authorize(self, params: dict[str, str], tenant_id: str) -> tuple[dict | None, Response | None]:
        tenant = self.store.tenant(tenant_id)
        assert tenant is not None
        client_id = params.get("client_id", "")
        client = tenant["clients"].get(client_id)
        if client is None:
            return None, _error_page(
                unconfirmed.AADSTS_UNKNOWN_CLIENT.format(client_id=client_id, tenant=tenant.get("name", tenant_id))
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.get("redirect_uris", []):
            return None, _error_page(
                unconfirmed.AADSTS_REDIRECT_MISMATCH.format(redirect_uri=redirect_uri, client_id=client_id)
            )
        if params.get("response_type") != "code":
            return None, _error_page(unconfirmed.AADSTS_BAD_RESPONSE_TYPE)
        return client, None

    def authorize_page(self, request: Request, tenant_id: str) -> Response:
        params = request.query()
        _client, error = self._check_authorize(params, tenant_id)
        if error is not None:
            return error
        tenant = self.store.tenant(tenant_id)
        assert tenant is not None
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        buttons = []
        for identity in tenant.get("identities", []):
            roles = ", ".join(identity.get("roles", [])) or "no app role"
            buttons.append(
                f'<li><button type="submit" name="username" value="{html.escape(identity["username"])}" '
                f'data-testid="signin-{html.escape(identity["username"].split("@")[0])}">'
                f"{html.escape(identity['display_name'])}</button> "
                f"<code>{html.escape(identity['username'])}</code> <small>({html.escape(roles)})</small></li>"
            )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Dataverse emulator</title>
<style>body{{font-family:sans-serif;max-width:40rem;margin:3rem auto}}li{{margin:.5rem 0}}
button{{min-width:12rem;padding:.4rem}}</style></head>
<body><h1>Sign in</h1><p>Emulated Entra ID tenant <code>{html.escape(tenant.get("name", tenant_id))}</code>.
Pick an account:</p>
<form method="post" action="{html.escape(request.path)}">{hidden}<ul>{"".join(buttons)}</ul></form>
</body></html>"""
        return Response.text(200, page, "text/html; charset=utf-8")

    def authorize_submit(self, request: Request, tenant_id: str) -> Response:
        params = request.form()
        for key, value in request.query().items():
            params.setdefault(key, value)
        _client, error = self._check_authorize(params, tenant_id)
        if error is not None:
            return error
        tenant = self.store.tenant(tenant_id)
        assert tenant is not None
        username = params.get("username", "")
        identity = next((i for i in tenant.get("identities", []) if i["username"] == username), None)
        if identity is None:
            return _error_page(f"AADSTS50034: The user account {username} does not exist in the directory.")
        challenge = params.get("code_challenge")
        code = AuthCode(
            code=secrets.token_urlsafe(48),
            tenant_id=tenant_id,
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            identity=dict(identity),
            scope=params.get("scope", "openid profile"),
            nonce=params.get("nonce"),
            code_challenge=challenge,
            code_challenge_method=params.get("code_challenge_method", "plain") if challenge else "plain",
            expires_at=now() + unconfirmed.AUTH_CODE_LIFETIME_SECONDS,
        )
        with self._lock:
            self._codes[code.code] = code
        answer = {"code": code.code, "session_state": str(uuid.uuid4())}
        if params.get("state") is not None:
            answer["state"] = params["state"]
        if params.get("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in answer.items()
            )
            page = (
                '<!doctype html><html><body onload="document.forms[0].submit()">'
                f'<form method="post" action="{html.escape(code.redirect_uri)}">{fields}'
                "<noscript><button type=submit>Continue</button></noscript></form></body></html>"
            )
            return Response.text(200, page, "text/html; charset=utf-8")
        separator = "&" if "?" in code.redirect_uri else "?"
        return Response.redirect(f"{code.redirect_uri}{separator}{urllib.parse.urlencode(answer)}")

    # --- validation of bearer tokens for Dataverse ---------------------------------------------------
    def validate_for_org(self, authorization: str | None, org: dict[str, Any]) -> tuple[dict | None, str | None]:
        """Return (claims, None) for a token Dataverse would accept for ``org``, else (None, reason)."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            return None, "missing"
        token = authorization[7:].strip()
        try:
            claims = jwt.decode(
                token,
                self.key.public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "require": ["exp", "iat"]},
            )
        except jwt.PyJWTError:
            return None, "invalid"
        if claims.get("exp", 0) <= now():
            return None, "expired"
        if str(claims.get("aud", "")).rstrip("/") != self.app.org_url(org["name"]):
            return None, "audience"
        if claims.get("tid") != org["tenant_id"]:
            return None, "tenant"
        if claims.get("xms_emu_gen") != self.store.data.get("token_generation", 0):
            return None, "revoked"
        return claims, None

    def revoke_all(self) -> int:
        with self.store.lock:
            self.store.data["token_generation"] = self.store.data.get("token_generation", 0) + 1
            self.store.save(orgs=[])
            return self.store.data["token_generation"]


def _error_page(message: str) -> Response:
    page = f"<!doctype html><html><body><h1>Sign in failed</h1><p>{html.escape(message)}</p></body></html>"
    return Response.text(400, page, "text/html; charset=utf-8")
