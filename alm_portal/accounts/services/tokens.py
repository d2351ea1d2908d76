"""API tokens: minting (narrowed by the token that asks), revoking with every token it minted, and
recognising the text a request presents. Every change writes one audit event in the same transaction."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.models import ApiToken, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.errors import DomainError, ValidationFailed

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
