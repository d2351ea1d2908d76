"""Browser sessions end after ALM_SESSION_IDLE_MINUTES without activity and ALM_SESSION_ABSOLUTE_HOURS
after sign-in, checked server side on every request.

Only sessions are concerned: API calls with a bearer token carry no session (Django's request.user
is anonymous for them), so this never touches them. The times live in the session data, which stays
on the server; the cookie holds only the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url

SIGNED_IN_AT_KEY = "alm_signed_in_at"
LAST_SEEN_KEY = "alm_last_seen"
# Set on the request before the sign-out, so the audit receiver records why the session ended.
SESSION_EXPIRED_ATTRIBUTE = "session_expired"
# Activity is written at most once a minute: saving the session on every request would turn every
# page view into a database write.
ACTIVITY_RESOLUTION_SECONDS = 60


def _is_polling(request: HttpRequest) -> bool:
    # htmx requests are the live parts of pages refreshing themselves every few seconds; counting them
    # as activity would keep an unattended tab signed in for ever.
    return request.headers.get("HX-Request") == "true"


class SessionLifetimeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and self._check(request) and _is_polling(request):
            # A live part of a page must not swap the sign-in page into itself: send the whole tab there.
            ended = HttpResponse(status=204)
            ended["HX-Redirect"] = resolve_url(settings.LOGIN_URL)
            return ended
        response = self.get_response(request)
        # Signed in by this request (login() gave it a new session key). Asking the session, not
        # request.user: DRF sets request.user for bearer tokens too, and those must not get a session.
        if SESSION_KEY in request.session and SIGNED_IN_AT_KEY not in request.session:
            self._start(request)
        return response

    @staticmethod
    def _start(request: HttpRequest) -> None:
        now = time.time()
        request.session[SIGNED_IN_AT_KEY] = now
        request.session[LAST_SEEN_KEY] = now
        request.session.set_expiry(_expiry(now=now, signed_in_at=now))

    def _check(self, request: HttpRequest) -> bool:
        """Apply the limits; True when they ended the session."""
        session = request.session
        signed_in_at = session.get(SIGNED_IN_AT_KEY)
        if signed_in_at is None:
            self._start(request)
            return False
        now = time.time()
        last_seen = session.get(LAST_SEEN_KEY, signed_in_at)
        if now - signed_in_at >= settings.ALM_SESSION_ABSOLUTE_HOURS * 3600:
            self._end(request, "absolute")
            return True
        if now - last_seen >= settings.ALM_SESSION_IDLE_MINUTES * 60:
            self._end(request, "idle")
            return True
        if not _is_polling(request) and now - last_seen >= ACTIVITY_RESOLUTION_SECONDS:
            session[LAST_SEEN_KEY] = now
            session.set_expiry(_expiry(now=now, signed_in_at=signed_in_at))
        return False

    @staticmethod
    def _end(request: HttpRequest, reason: str) -> None:
        setattr(request, SESSION_EXPIRED_ATTRIBUTE, reason)
        logout(request)  # flushes the session row; the receiver audits auth.session_expired
        if reason == "idle":
            text = f"You were signed out after {settings.ALM_SESSION_IDLE_MINUTES} minutes without activity."
        else:
            text = f"You were signed out: sessions last at most {settings.ALM_SESSION_ABSOLUTE_HOURS} hours."
        messages.info(request, f"{text} Please sign in again.", fail_silently=True)


def _expiry(*, now: float, signed_in_at: float) -> int:
    """Seconds the stored session row and its cookie live: the idle limit (plus the resolution at which
    activity is written), never past the absolute limit. The checks above are the exact ones; this
    makes the database drop an abandoned session even if no request ever comes back."""
    idle = settings.ALM_SESSION_IDLE_MINUTES * 60 + ACTIVITY_RESOLUTION_SECONDS
    remaining = settings.ALM_SESSION_ABSOLUTE_HOURS * 3600 - (now - signed_in_at)
    return max(1, int(min(idle, remaining)))
