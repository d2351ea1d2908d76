"""Entra ID single sign-on: MSAL's authorization-code flow (state, nonce and PKCE are msal's) and the
mapping of id_token claims to our users.

- Users are keyed by the `oid` claim (User.entra_object_id). A first sign-in links a local account
  whose username is the claim's `preferred_username` (or its part before "@") and that has no object
  id yet; otherwise it creates the user.
- App roles map to our roles (ALM.Admin → admin, ALM.Approver → approver, ALM.Maker → maker,
  ALM.Auditor → auditor; with several, the first of that order). A sign-in without any of them
  disables the account (accounts.services.user_disable: sessions, tokens, approvals) and is refused.
- A disabled account is refused; single sign-on never re-enables one (an admin does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.db import transaction

from alm_portal.accounts import services
from alm_portal.accounts.choices import Role
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record, record_outcome

APP_ROLES: tuple[tuple[str, str], ...] = (
    ("ALM.Admin", Role.ADMIN),
    ("ALM.Approver", Role.APPROVER),
    ("ALM.Maker", Role.MAKER),
    ("ALM.Auditor", Role.AUDITOR),
)
NO_APP_ROLE = "Your Entra ID account has no ALM Portal app role; ask an admin to assign one."
DISABLED = "Your ALM Portal account is disabled; ask an admin."


class SignInRefused(Exception):
    """Single sign-on ended without a user: a sentence for the sign-in page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sso_configured() -> bool:
    return bool(settings.ALM_SSO_AUTHORITY and settings.ALM_SSO_CLIENT_ID and settings.ALM_SSO_CLIENT_SECRET)


def _http_client() -> requests.Session:
    session = requests.Session()
    if settings.ALM_DATAVERSE_CA_BUNDLE:
        session.verify = settings.ALM_DATAVERSE_CA_BUNDLE
        session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify otherwise
    return session


def msal_app() -> Any:
    """A fresh confidential client per request: msal caches error answers per app object."""
    import msal

    authority = str(settings.ALM_SSO_AUTHORITY)
    host = urlparse(authority).hostname or ""
    return msal.ConfidentialClientApplication(
        settings.ALM_SSO_CLIENT_ID,
        client_credential=settings.ALM_SSO_CLIENT_SECRET,
        authority=authority,
        instance_discovery=host.endswith(".microsoftonline.com"),
        http_client=_http_client(),
    )


def flow_start(*, redirect_uri: str) -> dict[str, Any]:
    """Begin the flow: msal makes state, nonce and the PKCE verifier; the caller keeps the dict in the session."""
    return msal_app().initiate_auth_code_flow(scopes=[], redirect_uri=redirect_uri)


def flow_finish(*, flow: dict[str, Any], answer: dict[str, str]) -> dict[str, Any]:
    """Redeem the code; msal checks state, nonce and the id_token. Returns the id_token claims."""
    result = msal_app().acquire_token_by_auth_code_flow(flow, answer)
    if "error" in result:
        raise SignInRefused(f"Entra ID sign-in failed: {result.get('error_description') or result['error']}")
    return dict(result.get("id_token_claims") or {})


def role_for(roles: Any) -> str | None:
    granted = set(roles) if isinstance(roles, list | tuple) else set()
    return next((role for app_role, role in APP_ROLES if app_role in granted), None)


@dataclass(frozen=True)
class _Identity:
    oid: str
    username: str
    display_name: str
    email: str


def _identity(claims: dict[str, Any]) -> _Identity:
    oid = str(claims.get("oid") or "")
    if not oid:
        raise SignInRefused("Entra ID sent no object id (oid); the portal cannot tell who you are.")
    preferred = str(claims.get("preferred_username") or oid)
    return _Identity(oid=oid, username=preferred[:150], display_name=str(claims.get("name") or "")[:150], email="")


def _find(identity: _Identity) -> User | None:
    user = User.objects.filter(entra_object_id=identity.oid).first()
    if user is not None:
        return user
    local = identity.username.split("@", 1)[0]
    return (
        User.objects.filter(entra_object_id__isnull=True, username__in={identity.username, local})
        .order_by("pk")
        .first()
    )


def user_from_claims(*, claims: dict[str, Any], context: AuditContext) -> User:
    """The user these id_token claims sign in (created, linked or updated), or SignInRefused."""
    identity = _identity(claims)
    role = role_for(claims.get("roles"))
    user = _find(identity)
    subject = ObjectRef(type="accounts.user", id=str(user.pk) if user else "", repr=identity.username)
    if role is None:
        if user is not None and user.is_active:
            services.user_disable(user=user, context=context, reason="Entra ID sign-in without an app role")
        record_outcome(
            context=context,
            action="auth.sso_refused",
            outcome="denied",
            message="no app role",
            target=subject,
            after={"oid": identity.oid},
        )
        raise SignInRefused(NO_APP_ROLE)
    if user is not None and not user.is_active:
        record_outcome(
            context=context,
            action="auth.sso_refused",
            outcome="denied",
            message="account disabled",
            target=subject,
            after={"oid": identity.oid},
        )
        raise SignInRefused(DISABLED)
    if user is None:
        user = services.user_create(
            username=identity.username, role=role, display_name=identity.display_name, context=context
        )
    with transaction.atomic():
        changed: dict[str, Any] = {}
        if user.entra_object_id != identity.oid:
            changed["entra_object_id"] = identity.oid
        if identity.display_name and not user.display_name:
            changed["display_name"] = identity.display_name
        if changed:
            User.objects.filter(pk=user.pk).update(**changed)
            for field, value in changed.items():
                setattr(user, field, value)
            record(context=context, action="user.sso_linked", target=user, after=changed)
    if user.role != role:
        user = services.user_set_role(user=user, role=role, context=context)
    return user
