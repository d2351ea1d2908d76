"""Portal-wide pages."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from alm_portal.accounts import policy


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "teams": list(user.teams.all()),  # type: ignore[union-attr]
        "scopes": sorted(policy.role_scopes(user.role)),  # type: ignore[union-attr]
    }
    return render(request, "home.html", context)
