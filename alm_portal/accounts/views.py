"""Sign-in pages and the caller's own API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy, selectors, services
from alm_portal.accounts.forms import ApiTokenForm
from alm_portal.audit.context import AuditContext
from alm_portal.errors import DomainError


@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    created_token = None
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            try:
                _, created_token = services.api_token_create(
                    user=request.user,  # type: ignore[arg-type]
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    days=form.cleaned_data["days"],
                    context=AuditContext.from_request(request),
                )
                form = ApiTokenForm()
            except DomainError as refusal:
                form.add_error(None, refusal.message)
    else:
        form = ApiTokenForm()
    return render(
        request,
        "accounts/api_tokens.html",
        {
            "form": form,
            "tokens": selectors.api_tokens_of(user=request.user),  # type: ignore[arg-type]
            "created_token": created_token,
            "role_scopes": sorted(policy.role_scopes(request.user.role)),  # type: ignore[union-attr]
        },
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(selectors.api_tokens_of(user=request.user), pk=pk)  # type: ignore[arg-type]
    services.api_token_revoke(token=token, context=AuditContext.from_request(request))
    messages.success(request, f"Token {token.name!r} revoked.")
    return redirect("accounts:api-tokens")
