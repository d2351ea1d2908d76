"""API throttles: anonymous clients, authenticated clients and failed authentication, shared by every process.

Each scope counts requests in fixed windows (a rate of 60/min allows 60 in each clock minute) with one atomic
increment of a cache key per request (Redis INCR; the database cache where there is no Redis), so every web
worker and thread counts into the same number. A fixed window may let up to twice the rate through across a
window boundary; what it bounds is the sustained rate.

- anonymous (ALM_THROTTLE_ANON), per client address: requests without credentials, refused or not;
- authenticated (ALM_THROTTLE_USER), per user: every request of the user's tokens and session, including the
  ones refused 403;
- failed authentication (ALM_THROTTLE_FAILED_AUTH), per client address: requests whose credentials were
  refused. Once an address is over it, requests with credentials from it are answered 429 before the token is
  even looked up, until the window ends.

DRF checks throttles after permissions, and every API endpoint but the schema needs a signed-in caller, so the
401 and 403 answers are counted where they are made (alm_portal.api.exceptions) as well as here.
If the cache does not answer, requests are let through (and logged): a throttle must not take the API down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from alm_portal.config import parse_rate

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
USER = "user"
FAILED_AUTHENTICATION = "failed_authentication"
_SETTING_OF = {
    ANONYMOUS: "ALM_THROTTLE_ANON",
    USER: "ALM_THROTTLE_USER",
    FAILED_AUTHENTICATION: "ALM_THROTTLE_FAILED_AUTH",
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait: float  # seconds until the window ends (0 when allowed)


def rate_of(scope: str) -> tuple[int, int] | None:
    """(requests, seconds) of a scope, or None when it is off."""
    return parse_rate(getattr(settings, _SETTING_OF[scope]))


def _window(period: int, now: float) -> tuple[int, float]:
    """The window's number and the whole seconds until it ends (at least 1, for Retry-After)."""
    number = int(now // period)
    return number, float(max(1, math.ceil((number + 1) * period - now)))


def _key(scope: str, ident: str, period: int, window: int) -> str:
    return f"throttle:{scope}:{period}:{ident}:{window}"


def take(scope: str, ident: str, *, now: float | None = None) -> Verdict:
    """Count one request of `ident` in `scope` and say whether it is within the rate."""
    rate = rate_of(scope)
    if rate is None:
        return Verdict(True, 0.0)
    limit, period = rate
    window, wait = _window(period, time.time() if now is None else now)
    key = _key(scope, ident, period, window)
    try:
        cache.add(key, 0, timeout=period + 5)
        try:
            hits = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.add(key, 1, timeout=period + 5)
            hits = 1
    except Exception:
        logger.warning("throttle %s: the cache did not answer; request let through", scope, exc_info=True)
        return Verdict(True, 0.0)
    return Verdict(hits <= limit, 0.0 if hits <= limit else wait)


def over(scope: str, ident: str, *, now: float | None = None) -> Verdict:
    """Whether `ident` has already used up `scope` in this window, without counting a request."""
    rate = rate_of(scope)
    if rate is None:
        return Verdict(True, 0.0)
    limit, period = rate
    window, wait = _window(period, time.time() if now is None else now)
    try:
        hits = cache.get(_key(scope, ident, period, window)) or 0
    except Exception:
        logger.warning("throttle %s: the cache did not answer; request let through", scope, exc_info=True)
        return Verdict(True, 0.0)
    return Verdict(hits < limit, 0.0 if hits < limit else wait)


def client_of(request: Any) -> str:
    """The client address the request-id middleware resolved (trusting only the configured proxy header)."""
    return str(getattr(request, "client_ip", None) or "unknown")


def user_of(request: Any) -> str | None:
    user = getattr(request, "user", None)
    return str(user.pk) if user is not None and user.is_authenticated else None


def counted_on(request: Any) -> set[str]:
    """The scopes this request was already counted in (a view may refuse after DRF's throttles ran)."""
    scopes: set[str] | None = getattr(request, "_alm_throttle_scopes", None)
    if scopes is None:
        scopes = set()
        request._alm_throttle_scopes = scopes
    return scopes


def take_once(scope: str, ident: str, request: Any) -> Verdict:
    """take(), unless this request was already counted in `scope`."""
    scopes = counted_on(request)
    if scope in scopes:
        return Verdict(True, 0.0)
    scopes.add(scope)
    return take(scope, ident)


class _ScopeThrottle(BaseThrottle):
    scope_name = ""

    def ident(self, request: Any) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        ident = self.ident(request)
        if ident is None:
            return True
        counted_on(request).add(self.scope_name)
        verdict = take(self.scope_name, ident)
        self._wait = verdict.wait
        return verdict.allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None) or None


class AnonymousRateThrottle(_ScopeThrottle):
    """Requests without a signed-in caller (the API schema, and every 401), per client address."""

    scope_name = ANONYMOUS

    def ident(self, request: Any) -> str | None:
        return None if user_of(request) is not None else client_of(request)


class UserRateThrottle(_ScopeThrottle):
    """Requests of a signed-in caller (tokens and session together), per user."""

    scope_name = USER

    def ident(self, request: Any) -> str | None:
        return user_of(request)
