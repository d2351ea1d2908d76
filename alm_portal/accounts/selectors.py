"""Reads for accounts: what a user may see."""

from django.db.models import QuerySet

from alm_portal.accounts.models import ApiToken, User


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
