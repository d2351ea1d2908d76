"""Entra ID single sign-on: MSAL's authorization-code flow (state, nonce and PKCE are msal's) and the
mapping of id_token claims to our users.

- Users are keyed by the `oid` claim (User.entra_object_id). With ALM_SSO_LINK_BY_USERNAME (off by
  default, on in the demo) a first sign-in links an unlinked local account whose username is the
  claim's `preferred_username` or its part before "@"; otherwise it creates the user, and refuses
  when that username is already taken by an unlinked account (an admin decides who that is).
- ALM_SSO_ROLE_MAP maps app roles (`roles` claim) or group object ids (`groups` claim) to our roles;
  with several, the most powerful wins (admin, approver, maker, auditor). A sign-in without any
  mapped value disables the account (accounts.services.user_disable: sessions, tokens, approvals)
  and is refused.
- ALM_SSO_GROUP_TEAM_MAP maps app roles or group ids to team slugs; each sign-in adds and removes
  memberships of the mapped teams to match the claims and leaves other teams alone.
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

# When the claims map to several roles, the first of these wins.
ROLE_PRECEDENCE: tuple[str, ...] = (Role.ADMIN, Role.APPROVER, Role.MAKER, Role.AUDITOR)
NO_APP_ROLE = "Your Entra ID account has no ALM Portal app role; ask an admin to assign one."
DISABLED = "Your ALM Portal account is disabled; ask an admin."
GROUPS_LEFT_OUT = (
    "Entra ID did not list your groups (you are in too many), so the portal cannot tell your role; "
    "ask an admin to assign you an ALM Portal app role, or to limit the groups sent to this app."
)
USERNAME_TAKEN = (
    "An ALM Portal account named {username} already exists and is not linked to your Entra ID identity; "
    "ask an admin to link it."
)


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


STALE_FLOW = "The sign-in took too long or was started elsewhere; please try again."
MISMATCH = "The answer from Entra ID did not match this sign-in; please try again."


def sign_in_from_answer(*, flow: dict[str, Any] | None, answer: dict[str, str], context: AuditContext) -> User:
    """The callback's whole use case: redeem Entra ID's answer for the flow this browser started, then
    map the claims to a user. Every way it can end without a user raises SignInRefused and is audited."""
    if not flow:
        raise _failed(context=context, reason="no sign-in in progress for this browser", message=STALE_FLOW)
    try:
        claims = flow_finish(flow=flow, answer=answer)
    except ValueError as problem:  # msal: state mismatch and other protocol errors
        raise _failed(context=context, reason=f"answer did not match the flow: {problem}", message=MISMATCH) from None
    except SignInRefused as refusal:  # Entra ID answered with an error
        raise _failed(context=context, reason=refusal.message, message=refusal.message) from None
    return user_from_claims(claims=claims, context=context)


def _failed(*, context: AuditContext, reason: str, message: str) -> SignInRefused:
    record_outcome(context=context, action="auth.sso_failed", outcome="failed", message=reason[:500])
    return SignInRefused(message)


def _claim_values(claims: dict[str, Any]) -> set[str]:
    """App role names and group object ids: the two claims the maps may name."""
    values: set[str] = set()
    for name in ("roles", "groups"):
        listed = claims.get(name)
        if isinstance(listed, list | tuple):
            values |= {str(value) for value in listed}
    return values


def role_for(claims: dict[str, Any]) -> str | None:
    """Our role for these claims by ALM_SSO_ROLE_MAP, or None when nothing maps."""
    mapping: dict[str, str] = settings.ALM_SSO_ROLE_MAP
    granted = {mapping[value] for value in _claim_values(claims) if value in mapping}
    return next((role for role in ROLE_PRECEDENCE if role in granted), None)


def _groups_left_out(claims: dict[str, Any]) -> bool:
    """Entra ID leaves the `groups` claim out when a user is in too many groups (the "overage"), and
    points to Microsoft Graph instead."""
    names = claims.get("_claim_names")
    return bool(claims.get("hasgroups")) or (isinstance(names, dict) and "groups" in names)


def team_slugs_for(claims: dict[str, Any]) -> set[str]:
    """The mapped teams these claims make the user a member of, by ALM_SSO_GROUP_TEAM_MAP."""
    mapping: dict[str, str] = settings.ALM_SSO_GROUP_TEAM_MAP
    return {mapping[value] for value in _claim_values(claims) if value in mapping}


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
    if user is not None or not settings.ALM_SSO_LINK_BY_USERNAME:
        return user
    local = identity.username.split("@", 1)[0]
    return (
        User.objects.filter(entra_object_id__isnull=True, username__in={identity.username, local})
        .order_by("pk")
        .first()
    )


def _refuse(*, context: AuditContext, subject: ObjectRef, oid: str, reason: str, message: str) -> SignInRefused:
    record_outcome(
        context=context, action="auth.sso_refused", outcome="denied", message=reason, target=subject, after={"oid": oid}
    )
    return SignInRefused(message)


def user_from_claims(*, claims: dict[str, Any], context: AuditContext) -> User:
    """The user these id_token claims sign in (created, linked or updated), or SignInRefused."""
    identity = _identity(claims)
    role = role_for(claims)
    user = _find(identity)
    subject = ObjectRef(type="accounts.user", id=str(user.pk) if user else "", repr=identity.username)
    if role is None and _groups_left_out(claims):
        # The claims do not say which groups the user is in, so they cannot say the user lost access.
        raise _refuse(
            context=context, subject=subject, oid=identity.oid, reason="groups overage", message=GROUPS_LEFT_OUT
        )
    if role is None:
        if user is not None and user.is_active:
            services.user_disable(user=user, context=context, reason="Entra ID sign-in without an app role")
        raise _refuse(context=context, subject=subject, oid=identity.oid, reason="no app role", message=NO_APP_ROLE)
    if user is not None and not user.is_active:
        raise _refuse(context=context, subject=subject, oid=identity.oid, reason="account disabled", message=DISABLED)
    if user is None:
        if User.objects.filter(username=identity.username).exists():
            raise _refuse(
                context=context,
                subject=subject,
                oid=identity.oid,
                reason="username taken by an unlinked account",
                message=USERNAME_TAKEN.format(username=identity.username),
            )
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
    if settings.ALM_SSO_GROUP_TEAM_MAP and not _groups_left_out(claims):
        services.user_sync_teams(
            user=user,
            team_slugs=team_slugs_for(claims),
            managed_slugs=set(settings.ALM_SSO_GROUP_TEAM_MAP.values()),
            context=context,
        )
    return user
