"""Use cases for people, teams and API tokens. The only code that writes these tables.

Every change writes one audit event in the same transaction (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from alm_portal.accounts import policy, selectors
from alm_portal.accounts.callbacks import user_disabled_run
from alm_portal.accounts.choices import Role, Scope
from alm_portal.accounts.models import ApiToken, SignInThrottle, Team, TeamMembership, User, UserSession
from alm_portal.accounts.policy import ScopeNotAllowed as ScopeNotAllowed  # raised by the services, named here
from alm_portal.audit.choices import Outcome
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record, record_outcome
from alm_portal.errors import DomainError, NotFound, ValidationFailed
from alm_portal.log_redaction import TOKEN_TEXT_PATTERN as TOKEN_TEXT_PATTERN  # token text anywhere in a text

logger = logging.getLogger(__name__)
TOKEN_PREFIX = "alm_"
_TOKEN_PATTERN = re.compile(r"^alm_(?P<id>[1-9][0-9]{0,18})_(?P<secret>[A-Za-z0-9_-]{43})$")
# last_used_at is a hint for people, not a log: writing it on every call would turn reads into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRejected(DomainError):
    """The presented API token cannot be used; `code` says why (401 on the API)."""

    status = 401
    code = "not_authenticated"


def _token_digest(*, token_id: int, secret: str) -> str:
    message = f"{token_id}:{secret}".encode()
    return hmac.new(settings.ALM_TOKEN_PEPPER.encode(), message, hashlib.sha256).hexdigest()


def _default_token_name() -> str:
    # Microseconds keep names unique when a script creates several tokens in one second.
    return f"cli-{timezone.now():%Y-%m-%dT%H:%M:%S.%fZ}"


def api_token_create(
    *,
    user: User,
    scopes: list[str],
    context: AuditContext,
    name: str | None = None,
    days: int | None = None,
    parent: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its text, which is never available again.

    `parent` is the token the request was authenticated with (None for a page or a command): the new
    token gets no scope the parent lacks, expires no later than the parent (an explicit `days` that
    would outlive it is refused; without `days` it expires with the parent at the latest), and is
    revoked with it. Event: api_token.created.
    """
    explicit_days = days is not None
    days = settings.ALM_TOKEN_DEFAULT_DAYS if days is None else days
    name = (name or "").strip() or _default_token_name()
    scopes = sorted(set(scopes or [Scope.READ]))
    errors: dict[str, list[str]] = {}
    if not 1 <= days <= settings.ALM_TOKEN_MAX_DAYS:
        errors["days"] = [f"Expiry must be between 1 and {settings.ALM_TOKEN_MAX_DAYS} days."]
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        errors["scopes"] = [f"Unknown scope: {', '.join(unknown)}. Known scopes: {', '.join(Scope.values)}."]
    if len(name) > 100:
        errors["name"] = ["Name must be at most 100 characters."]
    now = timezone.now()
    expires_at = now + timedelta(days=days)
    if parent is not None and expires_at > parent.expires_at:
        if explicit_days and "days" not in errors:
            errors["days"] = [
                f"A token created with a token expires no later than that token ({parent.expires_at:%Y-%m-%d %H:%M} "
                "UTC); ask for fewer days, or leave days out to expire together with it."
            ]
        expires_at = parent.expires_at
    if errors:
        raise ValidationFailed("The token request is not valid.", details=errors)
    if not user.is_active:
        raise ValidationFailed("A disabled user cannot get API tokens.", details={"user": ["User is disabled."]})
    refusal = policy.token_mint_refusal(user=user, parent=parent, scopes=scopes)
    if refusal is not None:
        raise refusal
    if ApiToken.objects.filter(user=user, name=name).exists():
        raise ValidationFailed(
            "A token with this name already exists.", details={"name": [f"You already have a token named {name!r}."]}
        )
    secret = secrets.token_urlsafe(32)  # 256 bits
    with transaction.atomic():
        # Locked, so a revocation of the parent either sees this child or makes this check fail.
        if (
            parent is not None
            and ApiToken.objects.select_for_update()
            .filter(pk=parent.pk, revoked_at__isnull=True, expires_at__gt=now)
            .first()
            is None
        ):
            raise TokenRejected("The API token has been revoked.", code="token_revoked")
        token = ApiToken.objects.create(
            user=user, name=name, scopes=scopes, digest="", expires_at=expires_at, parent=parent
        )
        token.digest = _token_digest(token_id=token.pk, secret=secret)
        ApiToken.objects.filter(pk=token.pk).update(digest=token.digest)
        after: dict[str, object] = {"name": name, "scopes": scopes, "expires_at": token.expires_at.isoformat()}
        if parent is not None:
            after["parent"] = parent.pk
        record(context=context, action="api_token.created", target=token, related=user, after=after)
    return token, f"{TOKEN_PREFIX}{token.pk}_{secret}"


def _descendants(token: ApiToken) -> list[ApiToken]:
    """The live tokens minted, directly or not, by `token`, parents before their children."""
    found: list[ApiToken] = []
    frontier = [token.pk]
    while frontier:
        children = list(ApiToken.objects.filter(parent_id__in=frontier, revoked_at__isnull=True).order_by("pk"))
        found += children
        frontier = [child.pk for child in children]
    return found


def api_token_revoke(
    *,
    token: ApiToken,
    context: AuditContext,
    revoked_by: User | None = None,
    acting_token: ApiToken | None = None,
    reason: str = "",
) -> ApiToken:
    """Revoke a token and every token it minted (each its own api_token.revoked event). Revoking an
    already revoked token changes nothing and writes nothing.

    `revoked_by` is the person asking (None: the portal itself, e.g. a command) and `acting_token` the
    token their request came with: it must hold every scope of the token it revokes
    (accounts.policy.token_revoke_refusal), so a read-only token cannot end a token that may request.
    """
    if revoked_by is not None:
        refusal = policy.token_revoke_refusal(user=revoked_by, acting_token=acting_token, target=token)
        if refusal is not None:
            raise refusal
    with transaction.atomic():
        now = timezone.now()
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if changed:
            record(
                context=context,
                action="api_token.revoked",
                target=token,
                related=token.user,
                after={"reason": reason} if reason else None,
            )
            for child in _descendants(token):
                ApiToken.objects.filter(pk=child.pk).update(revoked_at=now)
                record(
                    context=context,
                    action="api_token.revoked",
                    target=child,
                    related=child.user,
                    after={"reason": "its parent token was revoked", "parent": child.parent_id},
                )
    token.refresh_from_db()
    return token


EXPOSED_IN_URL = "it was sent in a URL, which proxies and servers write to their logs"


def api_token_revoke_exposed(*, raw: str, request_id: str = "", client_ip: str | None = None) -> ApiToken | None:
    """Revoke the live token whose text `raw` is, because it was sent where it is logged (a URL's query
    string): whoever reads those logs could use it. Returns the revoked token, or None when `raw` is no
    live token (nothing to do). The holder of the token is the actor: they presented it."""
    try:
        token = api_token_authenticate(raw)
    except TokenRejected:
        return None
    context = AuditContext.for_user(
        token.user, auth_method=f"api_token:{token.pk}", request_id=request_id, client_ip=client_ip
    )
    return api_token_revoke(token=token, context=context, reason=EXPOSED_IN_URL)


def api_token_authenticate(raw: str) -> ApiToken:
    """Return the token for `raw`, or raise TokenRejected with not_authenticated/token_expired/token_revoked."""
    match = _TOKEN_PATTERN.match(raw.strip())
    if not match:
        raise TokenRejected("The API token is malformed.")
    token = ApiToken.objects.select_related("user").filter(pk=int(match["id"])).first()
    # Compare against a digest even when the id is unknown, so timing says nothing about which ids exist.
    expected = token.digest if token else "0" * 64
    presented = _token_digest(token_id=int(match["id"]), secret=match["secret"])
    if not hmac.compare_digest(expected, presented) or token is None:
        raise TokenRejected("The API token is not valid.")
    if token.revoked_at is not None or not token.user.is_active:
        raise TokenRejected("The API token has been revoked.", code="token_revoked")
    now = timezone.now()
    if token.expires_at <= now:
        raise TokenRejected("The API token has expired.", code="token_expired")
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_RESOLUTION:
        # Conditional so that concurrent calls write at most once per minute.
        ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - LAST_USED_RESOLUTION).update(
            last_used_at=now
        )
    return token


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


def team_create(*, name: str, slug: str, context: AuditContext, description: str = "") -> Team:
    if Team.objects.filter(slug=slug).exists() or Team.objects.filter(name=name).exists():
        raise ValidationFailed("A team with this name already exists.", details={"name": ["Already taken."]})
    with transaction.atomic():
        team = Team.objects.create(name=name, slug=slug, description=description)
        record(context=context, action="team.created", target=team, after={"name": name, "slug": slug})
    return team


def team_add_member(*, team: Team, user: User, context: AuditContext) -> TeamMembership:
    with transaction.atomic():
        membership, created = TeamMembership.objects.get_or_create(team=team, user=user)
        if created:
            record(context=context, action="team.member_added", target=team, related=user)
    return membership


def team_remove_member(*, team: Team, user: User, context: AuditContext) -> None:
    with transaction.atomic():
        deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
        if deleted:
            record(context=context, action="team.member_removed", target=team, related=user)


def user_sync_teams(*, user: User, team_slugs: set[str], managed_slugs: set[str], context: AuditContext) -> None:
    """Make the user a member of exactly `team_slugs` among the `managed_slugs` teams (single sign-on's
    group mapping); memberships of other teams are left alone. Each change is audited by the team
    service; a mapped team that does not exist yet is skipped with a warning."""
    teams = {team.slug: team for team in Team.objects.filter(slug__in=managed_slugs)}
    for missing in sorted((team_slugs | managed_slugs) - set(teams)):
        logger.warning("single sign-on maps to team %r, which does not exist", missing)
    current = set(user.memberships.filter(team__slug__in=managed_slugs).values_list("team__slug", flat=True))
    for slug in sorted(team_slugs - current):
        if slug in teams:
            team_add_member(team=teams[slug], user=user, context=context)
    for slug in sorted(current - team_slugs):
        team_remove_member(team=teams[slug], user=user, context=context)


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


def session_signed_in(*, user: User, session_key: str, context: AuditContext, method: str) -> None:
    """Remember the new session (so it can be ended), forget the failures of this username from this
    address (a success ends their count), and audit the sign-in."""
    name, address = selectors.throttle_key(username=user.get_username(), client_ip=context.client_ip)
    with transaction.atomic():
        UserSession.objects.update_or_create(
            session_key=session_key, defaults={"user": user, "client_ip": context.client_ip}
        )
        SignInThrottle.objects.filter(username=name, client_ip=address).delete()
        record(context=context, action="auth.signed_in", target=user, after={"method": method})


def session_signed_out(*, user: User, session_key: str | None, context: AuditContext, expired: str = "") -> None:
    """Forget the ended session and audit it: a sign-out, or (`expired` = idle/absolute) a session that
    the lifetime rules ended."""
    with transaction.atomic():
        if session_key:
            UserSession.objects.filter(session_key=session_key).delete()
        if expired:
            record(context=context, action="auth.session_expired", target=user, after={"reason": expired})
        else:
            record(context=context, action="auth.signed_out", target=user)


SIGN_IN_LOCKED_MESSAGE = (
    "Too many failed sign-ins for this username from your address. "
    "Wait {minutes} minutes before trying again, or ask an admin."
)


def sign_in_locked_message() -> str:
    return SIGN_IN_LOCKED_MESSAGE.format(minutes=settings.ALM_SIGN_IN_COOLOFF_MINUTES)


def sign_in_failed(*, username: str, context: AuditContext, locked_out: bool) -> None:
    """Audit a refused password sign-in and count it against (username, address).

    The ALM_SIGN_IN_MAX_FAILURES-th failure within the cool-off locks the pair for the cool-off.
    An attempt refused because the pair is locked is audited but not counted, so the lock does not
    grow while someone keeps trying. The username need not exist: the same rules apply either way.
    """
    name, address = selectors.throttle_key(username=username, client_ip=context.client_ip)
    subject = ObjectRef(type="accounts.user", id="", repr=name)
    if locked_out:
        record_outcome(
            context=context,
            action="auth.sign_in_locked_out",
            outcome=Outcome.DENIED,
            message="Sign-in refused: too many failures for this username from this address.",
            target=subject,
        )
        return
    now = timezone.now()
    cooloff = timedelta(minutes=settings.ALM_SIGN_IN_COOLOFF_MINUTES)
    with transaction.atomic():
        # Counts that no longer matter go, so guessing many usernames cannot grow the table for ever.
        SignInThrottle.objects.filter(first_failure_at__lte=now - cooloff).exclude(locked_until__gt=now).exclude(
            username=name, client_ip=address
        ).delete()
        throttle, _ = SignInThrottle.objects.select_for_update().get_or_create(
            username=name, client_ip=address, defaults={"first_failure_at": now}
        )
        ended = throttle.locked_until is not None and throttle.locked_until <= now
        if ended or throttle.first_failure_at <= now - cooloff:
            throttle.failures, throttle.first_failure_at, throttle.locked_until = 0, now, None
        throttle.failures += 1
        if throttle.failures >= settings.ALM_SIGN_IN_MAX_FAILURES:
            throttle.locked_until = now + cooloff
        throttle.save(update_fields=["failures", "first_failure_at", "locked_until"])
        record(
            context=context,
            action="auth.sign_in_failed",
            outcome=Outcome.DENIED,
            message="Wrong username or password, or the account is disabled.",
            target=subject,
            after={
                "failures": throttle.failures,
                "locked_until": throttle.locked_until.isoformat() if throttle.locked_until else None,
            },
        )


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


def sso_sign_in_failed(*, context: AuditContext, reason: str) -> None:
    """Audit a single sign-on that ended without reading who signed in (no sign-in in progress, an answer
    or id_token that does not match the flow, Entra ID unreachable or answering with an error, no tenant
    or object id). Event: auth.sso_failed (failed), committed in a transaction of its own."""
    record_outcome(context=context, action="auth.sso_failed", outcome=Outcome.FAILED, message=reason[:500])


def sso_sign_in_refused(
    *, context: AuditContext, subject: ObjectRef, tenant_id: str, object_id: str, username: str, reason: str
) -> None:
    """Audit a single sign-on refused for who signed in (no app role, a groups overage, a disabled account,
    a username taken by an unlinked account). Event: auth.sso_refused (denied) about `subject`, with the
    identity's oid, tid and preferred_username, committed in a transaction of its own."""
    record_outcome(
        context=context,
        action="auth.sso_refused",
        outcome=Outcome.DENIED,
        message=reason,
        target=subject,
        after={"oid": object_id, "tid": tenant_id, "preferred_username": username},
    )
