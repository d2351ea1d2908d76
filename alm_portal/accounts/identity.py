"""The signed-in person of a request, typed: pages (behind login_required) and API views (behind
authentication) act as a `User`, never as Django's `AnonymousUser | AbstractBaseUser` union."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.request import Request

from alm_portal.accounts.models import User


def portal_user(request: HttpRequest | Request) -> User:
    """The request's user. Views call it only after authentication; an anonymous caller reaching it
    anyway is refused (403) rather than treated as somebody."""
    user = request.user
    if isinstance(user, User):
        return user
    raise PermissionDenied("Sign in first.")
