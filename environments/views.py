"""Server-rendered pages of environments: list, detail, register/edit and credential rotation for
admins, and "check now"/"sync now" buttons. Thin: each view checks permission and calls one service.

Secrets are write-only here too: the forms never render them back, and the views that receive
them are marked sensitive so error reports never contain them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy
from alm_portal.accounts.identity import portal_user
from alm_portal.audit.context import AuditContext
from alm_portal.audit.history import object_history_context
from alm_portal.errors import DomainError, NotFound
from environments import selectors, services
from environments.forms import (
    SECRET_FIELDS,
    CredentialRotateForm,
    EnvironmentEditForm,
    EnvironmentRegisterForm,
)
from environments.models import Environment


def _visible(request: HttpRequest, pk: int) -> Environment:
    try:
        return selectors.environment_visible_to(user=portal_user(request), pk=pk)
    except NotFound:
        raise Http404("No such environment.") from None


def _require_admin(request: HttpRequest) -> None:
    if not policy.can_administer(user=portal_user(request), token=None):
        raise PermissionDenied("Only admins change environments.")


def _form_errors(form: Any, refusal: DomainError) -> None:
    details = refusal.details if isinstance(refusal.details, dict) else {}
    placed = False
    for field, problems in details.items():
        target = field if field in form.fields else None
        for problem in problems if isinstance(problems, list) else [problems]:
            form.add_error(target, str(problem))
            placed = True
    if not placed:
        form.add_error(None, refusal.message)


@login_required
def environment_list(request: HttpRequest) -> HttpResponse:
    environments = selectors.environments_visible_to(user=portal_user(request)).order_by("name", "pk")
    page = Paginator(environments, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "environments/list.html",
        {"page": page, "can_administer": policy.can_administer(user=portal_user(request), token=None)},
    )


@login_required
def environment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    environment = _visible(request, pk)
    context = {
        "environment": environment,
        "credentials": selectors.credentials_of(environment=environment),
        "inventory": selectors.inventory_current(environment=environment),
        # Not "history": that name is the audit History tab's (object_history_context), which used to
        # overwrite this list and show audit events as 25 empty "? … failed" history rows.
        "solution_history": selectors.solution_history(environment=environment)[:50],
        "drift": selectors.drift_findings(environment=environment, include_resolved=True)[:100],
        "notifications": selectors.notifications_of(environment=environment)[:20],
        "privileges": selectors.environment_privileges(environment=environment),
        "can_administer": policy.can_administer(user=portal_user(request), token=None),
        "rotate_form": CredentialRotateForm(),
        **object_history_context(
            user=portal_user(request),
            instance=environment,
            page_number=request.GET.get("history_page"),
        ),
    }
    return render(request, "environments/detail.html", context)


@sensitive_post_parameters(*SECRET_FIELDS)
@sensitive_variables()
@login_required
def environment_register(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    form = EnvironmentRegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            environment = services.environment_create(
                name=data["name"],
                url=data["url"],
                kind=data["kind"],
                tenant_id=data["tenant_id"],
                authority=data["authority"] or None,
                team=data["team"],
                description=data["description"],
                is_active=data["is_active"],
                client_id=data["client_id"],
                credential_type=data["credential_type"],
                client_secret=data["client_secret"] or None,
                certificate_pem=data["certificate_pem"] or None,
                private_key_pem=data["private_key_pem"] or None,
                credential_expires_at=data["credential_expires_at"],
                context=AuditContext.from_request(request),
            )
        except DomainError as refusal:
            _form_errors(form, refusal)
        else:
            messages.success(request, f"{environment.name} registered; its first health check is queued.")
            return redirect("environments:detail", pk=environment.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "environments/form.html", {"form": form, "title": "Register an environment"}, status=status)


@login_required
def environment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    environment = _visible(request, pk)
    _require_admin(request)
    initial = {field: getattr(environment, field) for field in EnvironmentEditForm.base_fields if field != "team"}
    initial["team"] = environment.team_id
    form = EnvironmentEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.environment_update(
                environment=environment,
                context=AuditContext.from_request(request),
                name=data["name"],
                url=data["url"],
                kind=data["kind"],
                tenant_id=data["tenant_id"],
                authority=data["authority"] or environment.authority,
                team=data["team"],
                description=data["description"],
                is_active=data["is_active"],
            )
        except DomainError as refusal:
            _form_errors(form, refusal)
        else:
            messages.success(request, "Saved.")
            return redirect("environments:detail", pk=environment.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "environments/form.html",
        {"form": form, "title": f"Edit {environment.name}", "environment": environment},
        status=status,
    )


@sensitive_post_parameters(*SECRET_FIELDS)
@sensitive_variables()
@login_required
@require_POST
def credential_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    environment = _visible(request, pk)
    _require_admin(request)
    form = CredentialRotateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.credential_rotate(
                environment=environment,
                client_id=data["client_id"],
                kind=data["credential_type"],
                client_secret=data["client_secret"] or None,
                certificate_pem=data["certificate_pem"] or None,
                private_key_pem=data["private_key_pem"] or None,
                expires_at=data["credential_expires_at"],
                context=AuditContext.from_request(request),
            )
        except DomainError as refusal:
            _form_errors(form, refusal)
        else:
            messages.success(request, "New credential added; it becomes active once it has worked.")
            return redirect("environments:detail", pk=environment.pk)
    return render(
        request,
        "environments/form.html",
        {"form": form, "title": f"Rotate the credential of {environment.name}", "environment": environment},
        status=400,
    )


@login_required
@require_POST
def environment_check(request: HttpRequest, pk: int) -> HttpResponse:
    environment = _visible(request, pk)
    _require_admin(request)
    job = services.environment_request_health_check(environment=environment, context=AuditContext.from_request(request))
    messages.success(request, f"Health check queued (job {job.pk}).")
    return redirect("environments:detail", pk=environment.pk)


@login_required
@require_POST
def environment_sync(request: HttpRequest, pk: int) -> HttpResponse:
    environment = _visible(request, pk)
    _require_admin(request)
    try:
        job = services.environment_request_inventory_sync(
            environment=environment, context=AuditContext.from_request(request)
        )
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Inventory sync queued (job {job.pk}).")
    return redirect("environments:detail", pk=environment.pk)
