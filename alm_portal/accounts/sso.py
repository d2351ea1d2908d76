"""Entra ID single sign-on: MSAL's authorization-code flow (state, nonce and PKCE are msal's) and the
mapping of id_token claims to our users.

- Users are keyed by the `tid` and `oid` claims together (User.entra_tenant_id, entra_object_id), never
  by a name. A first sign-in creates its user, named by `preferred_username`, and is refused when an
  unlinked account already has that username: an admin decides who that is and links it
  (accounts.services.user_link_entra_identity). Only in the demo (settings.ALM_SSO_DEMO_LINKING, from
  the emulator's credentials) does a first sign-in from the demo's tenant whose user principal name is
  exactly `<username>@<the demo's domain>` link the local demo account `<username>`.
- A sign-in that is not linked to an account never changes or disables an existing account.
- ALM_SSO_ROLE_MAP maps app roles (`roles` claim) or group object ids (`groups` claim) to our roles;
  with several, the most powerful wins (admin, approver, maker, auditor). A sign-in without any
  mapped value disables the linked account (accounts.services.user_disable: sessions, tokens, approvals)
  and is refused.
- ALM_SSO_GROUP_TEAM_MAP maps app roles or group ids to team slugs; each sign-in adds and removes
  memberships of the mapped teams to match the claims and leaves other teams alone.
- A disabled account is refused; single sign-on never re-enables one (an admin does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from django.conf import settings

from alm_portal.accounts import services
from alm_portal.accounts.choices import Role
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext, ObjectRef

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
    "ask an admin to link it (tenant {tenant_id}, object id {object_id})."
)


class SignInRefused(Exception):
    """Single sign-on ended without a user: a sentence for the sign-in page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingIdentity(SignInRefused):
    """The id_token lacks the claims that say who signed in (tid, oid)."""


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


UNREACHABLE = "Entra ID could not be reached to finish the sign-in; please try again in a moment."


def sign_in_from_answer(*, flow: dict[str, Any] | None, answer: dict[str, str], context: AuditContext) -> User:
    """The callback's whole use case: redeem Entra ID's answer for the flow this browser started, then
    map the claims to a user. Every way it can end without a user raises SignInRefused and is audited."""
    if not flow:
        raise _failed(context=context, reason="no sign-in in progress for this browser", message=STALE_FLOW)
    try:
        claims = flow_finish(flow=flow, answer=answer)
    except ValueError as problem:  # msal: state mismatch and other protocol errors
        raise _failed(context=context, reason=f"answer did not match the flow: {problem}", message=MISMATCH) from None
    except RuntimeError as problem:
        # msal raises RuntimeError (IdTokenError and its kin among them) when the id_token's nonce,
        # issuer or audience is not the one this flow expects: a replayed or substituted token.
        reason = f"id_token did not match the flow: {problem}"
        raise _failed(context=context, reason=reason, message=MISMATCH) from None
    except requests.RequestException as problem:
        reason = f"Entra ID unreachable: {type(problem).__name__}"
        raise _failed(context=context, reason=reason, message=UNREACHABLE) from None
    except SignInRefused as refusal:  # Entra ID answered with an error
        raise _failed(context=context, reason=refusal.message, message=refusal.message) from None
    try:
        return user_from_claims(claims=claims, context=context)
    except MissingIdentity as missing:
        raise _failed(context=context, reason=missing.message, message=missing.message) from None


def _failed(*, context: AuditContext, reason: str, message: str) -> SignInRefused:
    services.sso_sign_in_failed(context=context, reason=reason)
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
    tenant_id: str
    oid: str
    username: str
    display_name: str


def _identity(claims: dict[str, Any]) -> _Identity:
    oid = str(claims.get("oid") or "").lower()
    tenant_id = str(claims.get("tid") or "").lower()
    if not oid or not tenant_id:
        raise MissingIdentity("Entra ID sent no tenant or object id (tid, oid); the portal cannot tell who you are.")
    preferred = str(claims.get("preferred_username") or oid)
    return _Identity(
        tenant_id=tenant_id, oid=oid, username=preferred[:150], display_name=str(claims.get("name") or "")[:150]
    )


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def configured_tenant() -> str | None:
    """The tenant id the authority names (`https://<host>/<tenant id>`), or None when it names none (common,
    organizations, a domain name): the tenant an account linked before tenants were recorded belongs to."""
    segment = urlparse(str(settings.ALM_SSO_AUTHORITY or "")).path.strip("/").split("/")[0].lower()
    return segment if _GUID.fullmatch(segment) else None


def _linked(identity: _Identity) -> User | None:
    """The account linked to this tenant and object id. An account linked before the tenant was recorded
    counts only for the tenant the authority names (and gets it recorded)."""
    user = User.objects.filter(entra_tenant_id=identity.tenant_id, entra_object_id=identity.oid).first()
    if user is not None or identity.tenant_id != configured_tenant():
        return user
    return User.objects.filter(entra_tenant_id__isnull=True, entra_object_id=identity.oid).first()


def _demo_account(identity: _Identity) -> User | None:
    """The demo only: the unlinked local account whose username, with the demo's domain, is exactly this
    sign-in's user principal name, in the demo's tenant. approver2@attacker.example is not approver2."""
    demo: dict[str, str] | None = settings.ALM_SSO_DEMO_LINKING
    if not demo or identity.tenant_id != demo["tenant_id"].lower():
        return None
    local, at, domain = identity.username.rpartition("@")
    if not at or not local or domain.lower() != demo["domain"].lower():
        return None
    return User.objects.filter(username=local, entra_object_id__isnull=True, entra_tenant_id__isnull=True).first()


def _refuse(
    *, context: AuditContext, subject: ObjectRef, identity: _Identity, reason: str, message: str
) -> SignInRefused:
    services.sso_sign_in_refused(
        context=context,
        subject=subject,
        tenant_id=identity.tenant_id,
        object_id=identity.oid,
        username=identity.username,
        reason=reason,
    )
    return SignInRefused(message)


def user_from_claims(*, claims: dict[str, Any], context: AuditContext) -> User:
    """The user these id_token claims sign in (created, or the linked one updated), or SignInRefused.

    Only an account linked to the claims' tenant and object id is ever changed (role, teams, disabled
    when no app role maps); a sign-in linked to no account creates one or is refused, and leaves every
    existing account as it was.
    """
    identity = _identity(claims)
    role = role_for(claims)
    user = _linked(identity)
    demo_link = False
    if user is None and role is not None:
        user = _demo_account(identity)
        demo_link = user is not None
    subject = ObjectRef(type="accounts.user", id=str(user.pk) if user else "", repr=identity.username)
    if role is None and _groups_left_out(claims):
        # The claims do not say which groups the user is in, so they cannot say the user lost access.
        raise _refuse(
            context=context, subject=subject, identity=identity, reason="groups overage", message=GROUPS_LEFT_OUT
        )
    if role is None:
        if user is not None and user.is_active:
            services.user_disable(user=user, context=context, reason="Entra ID sign-in without an app role")
        raise _refuse(context=context, subject=subject, identity=identity, reason="no app role", message=NO_APP_ROLE)
    if user is not None and not user.is_active:
        raise _refuse(context=context, subject=subject, identity=identity, reason="account disabled", message=DISABLED)
    if user is None:
        if User.objects.filter(username=identity.username).exists():
            raise _refuse(
                context=context,
                subject=subject,
                identity=identity,
                reason="username taken by an unlinked account",
                message=USERNAME_TAKEN.format(
                    username=identity.username, tenant_id=identity.tenant_id, object_id=identity.oid
                ),
            )
        user = services.user_create(
            username=identity.username,
            role=role,
            display_name=identity.display_name,
            context=context,
            entra_tenant_id=identity.tenant_id,
            entra_object_id=identity.oid,
        )
    elif demo_link or user.entra_tenant_id is None:
        how = "the demo's own domain and tenant" if demo_link else "the tenant the authority names"
        user = services.user_link_entra_identity(
            user=user, tenant_id=identity.tenant_id, object_id=identity.oid, context=context, how=how
        )
    if identity.display_name and not user.display_name:
        # The column holds 150 characters; a directory's name is the directory's, not typed here, so it is cut.
        user = services.user_set_display_name(user=user, display_name=identity.display_name[:150], context=context)
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
