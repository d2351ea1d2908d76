"""Sign-in pages and the caller's own API tokens."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy, selectors, services, sso
from alm_portal.accounts.forms import ApiTokenForm, EntraLinkForm, SignInForm
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import User
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
                    user=portal_user(request),
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
            "tokens": selectors.api_tokens_of(user=portal_user(request)),
            "created_token": created_token,
            "role_scopes": sorted(policy.role_scopes(portal_user(request).role)),
        },
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(selectors.api_tokens_of(user=portal_user(request)), pk=pk)
    try:
        services.api_token_revoke(
            token=token, context=AuditContext.from_request(request), revoked_by=portal_user(request)
        )
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Token {token.name!r} revoked (and any token created with it).")
    return redirect("accounts:api-tokens")


# --- sign-in: passwords and Entra ID single sign-on ---------------------------------------------------

SSO_FLOW_KEY = "alm_sso_flow"
SSO_NEXT_KEY = "alm_sso_next"


class SignInView(LoginView):
    """Django's password sign-in, plus the Entra ID button when single sign-on is configured."""

    template_name = "accounts/login.html"
    form_class = SignInForm

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = sso.sso_configured()
        context["sso_error"] = self.request.session.pop("alm_sso_error", "")
        return context


def _safe_next(request: HttpRequest, target: str) -> str:
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def sso_login(request: HttpRequest) -> HttpResponse:
    """Start the authorization-code flow and send the browser to Entra ID."""
    if not sso.sso_configured():
        raise Http404("Single sign-on is not configured.")
    flow = sso.flow_start(redirect_uri=request.build_absolute_uri(reverse("accounts:sso-callback")))
    request.session[SSO_FLOW_KEY] = flow
    request.session[SSO_NEXT_KEY] = _safe_next(request, request.GET.get("next", ""))
    return redirect(flow["auth_uri"])


def _refuse(request: HttpRequest, message: str) -> HttpResponse:
    request.session["alm_sso_error"] = message
    return redirect("accounts:login")


def sso_callback(request: HttpRequest) -> HttpResponse:
    """Entra ID's answer: redeem the code (msal checks state, nonce, PKCE), map the claims, sign in."""
    if not sso.sso_configured():
        raise Http404("Single sign-on is not configured.")
    flow = request.session.pop(SSO_FLOW_KEY, None)
    target = request.session.pop(SSO_NEXT_KEY, "") or resolve_url(settings.LOGIN_REDIRECT_URL)
    try:
        user = sso.sign_in_from_answer(flow=flow, answer=request.GET.dict(), context=AuditContext.from_request(request))
    except sso.SignInRefused as refusal:
        return _refuse(request, refusal.message)
    request.sign_in_method = "entra"  # type: ignore[attr-defined]
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    return redirect(target)


# --- an admin's view of people's browser sessions ------------------------------------------------------


def _admin_only(request: HttpRequest) -> None:
    if not policy.is_admin(portal_user(request)):
        raise PermissionDenied("Only admins see and end other people's sessions.")


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    _admin_only(request)
    return render(request, "accounts/user_list.html", {"people": selectors.users_for_session_admin()})


@login_required
def user_sessions(request: HttpRequest, pk: int) -> HttpResponse:
    _admin_only(request)
    person = get_object_or_404(User, pk=pk)
    return render(
        request,
        "accounts/user_sessions.html",
        {"person": person, "sessions": selectors.active_sessions_of(user=person), "link_form": EntraLinkForm()},
    )


@login_required
@require_POST
def user_entra_link(request: HttpRequest, pk: int) -> HttpResponse:
    """An admin links a local account to an Entra ID identity: the one way, besides a first sign-in that
    creates its own account, that an account gets one (sign-ins never link by name)."""
    _admin_only(request)
    person = get_object_or_404(User, pk=pk)
    form = EntraLinkForm(request.POST)
    if not form.is_valid():
        # The page again, with what was typed and why it was refused beside each field.
        context = {"person": person, "sessions": selectors.active_sessions_of(user=person), "link_form": form}
        return render(request, "accounts/user_sessions.html", context, status=400)
    try:
        services.user_link_entra_identity(
            user=person,
            tenant_id=form.cleaned_data["tenant_id"],
            object_id=form.cleaned_data["object_id"],
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        details = refusal.details if isinstance(refusal.details, dict) else {}
        problems = [str(problem) for values in details.values() for problem in values]
        messages.error(request, " ".join([refusal.message, *problems]))
    else:
        messages.success(request, f"{person.shown_name} now signs in with that Entra ID identity.")
    return redirect("accounts:user-sessions", pk=person.pk)


@login_required
@require_POST
def user_sessions_end(request: HttpRequest, pk: int) -> HttpResponse:
    _admin_only(request)
    person = get_object_or_404(User, pk=pk)
    ended = services.user_end_sessions(user=person, context=AuditContext.from_request(request))
    messages.success(request, f"Ended {ended} session(s) of {person.shown_name}.")
    if person.pk == request.user.pk:
        return redirect("accounts:login")  # that included this one
    return redirect("accounts:user-sessions", pk=person.pk)
