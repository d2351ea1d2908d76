"""People: creating accounts, their role, name, password and Entra ID identity, ending their sessions,
disabling and enabling them. Every change writes one audit event in the same transaction."""

from __future__ import annotations

import re

from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from alm_portal.accounts import policy
from alm_portal.accounts.callbacks import user_disabled_run
from alm_portal.accounts.choices import Role
from alm_portal.accounts.models import ApiToken, User, UserSession
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import NotFound, ValidationFailed


def user_set_role(*, user: User, role: str, context: AuditContext) -> User:
    if role not in Role.values:
        raise ValidationFailed("Unknown role.", details={"role": [f"Must be one of {', '.join(Role.values)}."]})
    with transaction.atomic():
        before = user.role
        if before == role:
            return user
        User.objects.filter(pk=user.pk).update(role=role)
        # A token never exceeds its user's role: narrowing a role also narrows the tokens' scopes.
        allowed = policy.role_scopes(role)
        for token in ApiToken.objects.filter(user=user, revoked_at__isnull=True):
            narrowed = sorted(set(token.scopes) & allowed)
            if narrowed != sorted(token.scopes):
                ApiToken.objects.filter(pk=token.pk).update(scopes=narrowed)
        user.role = role
        record(context=context, action="user.role_changed", target=user, before={"role": before}, after={"role": role})
    return user


def user_set_display_name(*, user: User, display_name: str, context: AuditContext) -> User:
    """The name pages show for the person (the directory's name, when there is one)."""
    display_name = (display_name or "").strip()
    if len(display_name) > 150:
        raise ValidationFailed("Name too long.", details={"display_name": ["At most 150 characters."]})
    with transaction.atomic():
        before = user.display_name
        if before == display_name:
            return user
        User.objects.filter(pk=user.pk).update(display_name=display_name)
        user.display_name = display_name
        record(
            context=context,
            action="user.display_name_changed",
            target=user,
            before={"display_name": before},
            after={"display_name": display_name},
        )
    return user


def _end_sessions(user: User) -> int:
    keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
    Session.objects.filter(session_key__in=keys).delete()
    UserSession.objects.filter(user=user).delete()
    return len(keys)


def user_end_sessions(*, user: User, context: AuditContext) -> int:
    """End every browser session of `user` (an admin action, also part of disabling)."""
    with transaction.atomic():
        ended = _end_sessions(user)
        record(context=context, action="user.sessions_ended", target=user, after={"sessions_ended": ended})
    return ended


def user_disable(*, user: User, context: AuditContext, reason: str = "") -> User:
    """Disable a user in one transaction: sessions end, tokens are revoked, the "a user was disabled"
    callbacks run (deployments registers one that voids their approvals on promotions that have not
    started, with its own events; accounts.callbacks), and the event is audited (docs/roles.md).
    """
    with transaction.atomic():
        if not User.objects.filter(pk=user.pk, is_active=True).update(is_active=False):
            return user
        ended = _end_sessions(user)
        revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        user.is_active = False
        user_disabled_run(user=user, context=context)
        record(
            context=context,
            action="user.disabled",
            target=user,
            before={"is_active": True},
            after={"is_active": False, "sessions_ended": ended, "tokens_revoked": revoked, "reason": reason},
        )
    return user


def user_enable(*, user: User, context: AuditContext) -> User:
    with transaction.atomic():
        if User.objects.filter(pk=user.pk, is_active=False).update(is_active=True):
            user.is_active = True
            record(
                context=context,
                action="user.enabled",
                target=user,
                before={"is_active": False},
                after={"is_active": True},
            )
    return user


def user_create(
    *,
    username: str,
    role: str,
    context: AuditContext,
    display_name: str = "",
    email: str = "",
    password: str | None = None,
    entra_tenant_id: str | None = None,
    entra_object_id: str | None = None,
) -> User:
    """Create an account: a local one (break-glass and demo, with a password), or the one a first Entra ID
    sign-in makes, linked to its tenant and object id from the start. Event: user.created."""
    if role not in Role.values:
        raise ValidationFailed("Unknown role.", details={"role": [f"Must be one of {', '.join(Role.values)}."]})
    if User.objects.filter(username=username).exists():
        raise ValidationFailed("This username is taken.", details={"username": [f"{username!r} already exists."]})
    with transaction.atomic():
        user = User(
            username=username,
            role=role,
            display_name=display_name,
            email=email,
            entra_tenant_id=entra_tenant_id,
            entra_object_id=entra_object_id,
        )
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        after: dict[str, object] = {"username": username, "role": role}
        if entra_object_id:
            after |= {"entra_tenant_id": entra_tenant_id, "entra_object_id": entra_object_id}
        record(context=context, action="user.created", target=user, after=after)
    return user


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def user_link_entra_identity(
    *, user: User, tenant_id: str, object_id: str, context: AuditContext, how: str = "linked by an admin"
) -> User:
    """Link `user` to the Entra ID identity (tenant id, object id): its sign-ins then sign in as `user`.

    The explicit way an existing local account gets its Entra ID identity (People in the portal,
    `manage.py link_entra_identity`); single sign-on calls it too for the demo's own accounts and to
    record the tenant of an account linked before tenants were recorded. Both ids are GUIDs; an
    identity already linked to another account is refused. Event: user.sso_linked (before/after, how).
    """
    tenant_id, object_id = (tenant_id or "").strip().lower(), (object_id or "").strip().lower()
    errors = {
        name: ["Must be a GUID such as 5b0b0d7e-2f43-4c1e-9a4e-0d3e7c2a9f10."]
        for name, value in (("tenant_id", tenant_id), ("object_id", object_id))
        if not _GUID.match(value)
    }
    if errors:
        raise ValidationFailed("The Entra ID identity is not valid.", details=errors)
    with transaction.atomic():
        taken = (
            User.objects.select_for_update()
            .filter(entra_tenant_id=tenant_id, entra_object_id=object_id)
            .exclude(pk=user.pk)
            .first()
        )
        if taken is not None:
            raise ValidationFailed(
                f"This Entra ID identity is already linked to {taken.username}.",
                details={"object_id": [f"Already linked to {taken.username}; unlink it there first."]},
            )
        current = User.objects.select_for_update().get(pk=user.pk)
        before = {"entra_tenant_id": current.entra_tenant_id, "entra_object_id": current.entra_object_id}
        after = {"entra_tenant_id": tenant_id, "entra_object_id": object_id}
        if before != after:
            User.objects.filter(pk=user.pk).update(**after)
            record(context=context, action="user.sso_linked", target=user, before=before, after={**after, "how": how})
        user.entra_tenant_id, user.entra_object_id = tenant_id, object_id
    return user


def user_set_password(*, user: User, password: str, context: AuditContext) -> None:
    with transaction.atomic():
        user.set_password(password)
        User.objects.filter(pk=user.pk).update(password=user.password)
        record(context=context, action="user.password_set", target=user)


def user_get(*, username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user
