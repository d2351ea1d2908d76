"""Signing in and out: sessions remembered so they can be ended, failed password sign-ins counted against
(username, address) with a cool-off, and single sign-ons that failed or were refused, all audited."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alm_portal.accounts import selectors
from alm_portal.accounts.models import SignInThrottle, User, UserSession
from alm_portal.audit.choices import Outcome
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.services import record, record_outcome


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
