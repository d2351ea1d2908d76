"""Password sign-in behind a lockout of 5 failures per (username, address), then a cool-off.

Our own small lockout rather than django-axes: axes keeps its own attempt and log tables (a second
audit trail beside the hash-chained one), wants its backend, middleware and lockout responses wired
into every form, and re-reads the client address from forwarded headers by its own rules. Here the
lockout is one table (SignInThrottle), the client address is the one the request-id middleware
already trusts, and every attempt goes to the one audit log through Django's auth signals.

Checking in the backend (not only in our form) makes every password form honour the lockout,
including the Django admin's. A locked pair is refused before the password is hashed, so the answer
is the same whether or not the user exists.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from alm_portal.accounts import selectors

# Set on the request when the lockout refused a sign-in, so the form and the audit receiver can say so.
LOCKED_OUT_ATTRIBUTE = "sign_in_locked_out"


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if (
            request is not None
            and username
            and selectors.sign_in_locked(username=username, client_ip=getattr(request, "client_ip", None))
        ):
            setattr(request, LOCKED_OUT_ATTRIBUTE, True)
            # Django's authenticate() stops at PermissionDenied and sends user_login_failed.
            raise PermissionDenied("sign-in locked out")
        return super().authenticate(request, username=username, password=password, **kwargs)
