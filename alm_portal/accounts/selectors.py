"""Reads for accounts: what a user may see."""

from django.contrib.sessions.models import Session
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from alm_portal.accounts.models import ApiToken, SignInThrottle, User, UserSession


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def throttle_key(*, username: str, client_ip: str | None) -> tuple[str, str]:
    """How failed sign-ins are counted: the username as typed, case-folded, and the client address."""
    return username.strip().casefold()[:150], client_ip or ""


def sign_in_locked(*, username: str, client_ip: str | None) -> bool:
    name, address = throttle_key(username=username, client_ip=client_ip)
    return SignInThrottle.objects.filter(username=name, client_ip=address, locked_until__gt=timezone.now()).exists()


def active_sessions_of(*, user: User) -> QuerySet[UserSession]:
    """The user's browser sessions that have not ended or expired, newest first."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    return UserSession.objects.filter(user=user, session_key__in=live).order_by("-created_at", "-id")


def users_for_session_admin() -> QuerySet[User]:
    """Every user with the number of live browser sessions, for the admin's sessions page."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    return User.objects.annotate(
        live_sessions=Count("browser_sessions", filter=Q(browser_sessions__session_key__in=live))
    ).order_by("username")
