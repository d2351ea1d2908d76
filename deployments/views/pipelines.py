"""Pages of pipelines: everyone reads the ones they may see; admins create, edit and delete pipelines
and stages, order stages, name approvers, and edit windows and freezes (a stage's deployment settings:
deployments/views/stage_settings.py).

Thin: each view checks permission, validates a form and calls one service of deployments.services;
a refusal is shown in words, next to the field it concerns when it names one. Everything works
without JavaScript.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.identity import portal_user
from alm_portal.audit.context import AuditContext
from alm_portal.audit.history import object_history_context
from alm_portal.errors import DomainError
from alm_portal.refusals import refusal_to_form
from deployments import selectors, services
from deployments.forms.pipelines import (
    FreezeForm,
    PipelineForm,
    StageForm,
    WindowForm,
)
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow
from deployments.services.stages import POLICY_FIELDS
from solutions.models import SourceBinding


def audit_context(request: HttpRequest) -> AuditContext:
    return AuditContext.from_request(request)


def _is_admin(request: HttpRequest) -> bool:
    return account_policy.can_administer(user=portal_user(request), token=None)


def require_admin(request: HttpRequest) -> None:
    if not _is_admin(request):
        raise PermissionDenied("Only admins change pipelines, stages and their settings.")


def stage_or_404(pk: int) -> Stage:
    return get_object_or_404(Stage.objects.select_related("pipeline", "target_environment"), pk=pk)


# --- pipelines -----------------------------------------------------------------------------------------


@login_required
def pipeline_list(request: HttpRequest) -> HttpResponse:
    pipelines = selectors.pipelines_visible_to(user=portal_user(request)).order_by("name")
    return render(request, "deployments/pipeline_list.html", {"pipelines": pipelines, "is_admin": _is_admin(request)})


@login_required
def pipeline_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(selectors.pipelines_visible_to(user=portal_user(request)), pk=pk)
    stages = list(pipeline.stages.all())
    rows = [
        {
            "stage": stage,
            "first": index == 0,
            "last": index == len(stages) - 1,
            "approvers": len(
                services.eligible_approvers(users=stage.approver_users.all(), teams=stage.approver_teams.all())
            ),
        }
        for index, stage in enumerate(stages)
    ]
    context = {
        "pipeline": pipeline,
        "rows": rows,
        "privilege_rows": selectors.pipeline_privileges(pipeline=pipeline),
        "source_binding": SourceBinding.objects.select_related("build_environment").filter(pipeline=pipeline).first(),
        "is_admin": _is_admin(request),
        **object_history_context(
            user=portal_user(request), instance=pipeline, page_number=request.GET.get("history_page")
        ),
    }
    return render(request, "deployments/pipeline_detail.html", context)


@login_required
def pipeline_create(request: HttpRequest) -> HttpResponse:
    require_admin(request)
    form = PipelineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline = services.pipeline_create(context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, f"Pipeline {pipeline.name} created; add its stages next.")
            return redirect("deployments:pipeline-detail", pk=pipeline.pk)
    return render(request, "deployments/pipeline_form.html", {"form": form, "pipeline": None})


@login_required
def pipeline_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    initial = {
        "name": pipeline.name,
        "team": pipeline.team_id,
        "development_environment": pipeline.development_environment_id,
        "description": pipeline.description,
    }
    form = PipelineForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.pipeline_update(pipeline=pipeline, context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Pipeline saved.")
            return redirect("deployments:pipeline-detail", pk=pipeline.pk)
    return render(request, "deployments/pipeline_form.html", {"form": form, "pipeline": pipeline})


@login_required
def pipeline_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes (or says why not)."""
    require_admin(request)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    if request.method == "POST":
        name = pipeline.name
        try:
            services.pipeline_delete(pipeline=pipeline, context=audit_context(request))
        except DomainError as refusal:
            messages.error(request, refusal.message)
            return redirect("deployments:pipeline-detail", pk=pk)
        messages.success(request, f"Pipeline {name} deleted.")
        return redirect("deployments:pipeline-list")
    return render(
        request,
        "deployments/pipeline_delete.html",
        {"pipeline": pipeline, "stages": list(pipeline.stages.order_by("order"))},
    )


# --- stages -------------------------------------------------------------------------------------------


def _stage_initial(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "target_environment": stage.target_environment_id,
        "approver_users": list(stage.approver_users.values_list("pk", flat=True)),
        "approver_teams": list(stage.approver_teams.values_list("pk", flat=True)),
        **{name: getattr(stage, name) for name in POLICY_FIELDS},
    }


@login_required
def stage_create(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    last = selectors.stage_before(pipeline_id=pipeline.pk)
    form = StageForm(
        request.POST or None, initial={"import_mode": "upgrade"}, previous_stage=last.name if last else None
    )
    if request.method == "POST" and form.is_valid():
        try:
            stage = services.stage_add(pipeline=pipeline, context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, f"Stage {stage.name} added; set its windows, freezes and settings here.")
            return redirect("deployments:stage-edit", pk=stage.pk)
    return render(request, "deployments/stage_form.html", {"form": form, "pipeline": pipeline, "stage": None})


def _window_row_form(window: StageWindow, data: Any = None) -> WindowForm:
    initial = {
        "weekdays": window.weekdays,
        "start_time": window.start_time,
        "end_time": window.end_time,
        "time_zone": window.time_zone,
    }
    return WindowForm(data, prefix=f"window-{window.pk}", initial=initial)


def _freeze_row_form(freeze: StageFreeze, data: Any = None) -> FreezeForm:
    initial = {"starts_at": freeze.starts_at, "ends_at": freeze.ends_at, "reason": freeze.reason}
    return FreezeForm(data, prefix=f"freeze-{freeze.pk}", initial=initial)


def _previous_name(stage: Stage) -> str | None:
    previous = selectors.stage_before(pipeline_id=stage.pipeline_id, order=stage.order)
    return previous.name if previous else None


def _stage_page(
    request: HttpRequest,
    stage: Stage,
    *,
    form: StageForm | None = None,
    window_form: WindowForm | None = None,
    freeze_form: FreezeForm | None = None,
    bound_rows: dict[str, Form] | None = None,
) -> HttpResponse:
    """The stage editor: its own form, and per window and freeze a form to change it (the one that was
    just posted with errors stays bound, so its errors show next to its fields)."""
    bound = bound_rows or {}
    windows = [
        (window, bound.get(f"window-{window.pk}") or _window_row_form(window))
        for window in stage.windows.order_by("pk")
    ]
    freezes = [
        (freeze, bound.get(f"freeze-{freeze.pk}") or _freeze_row_form(freeze))
        for freeze in stage.freezes.order_by("starts_at")
    ]
    return render(
        request,
        "deployments/stage_form.html",
        {
            "pipeline": stage.pipeline,
            "stage": stage,
            "form": form or StageForm(initial=_stage_initial(stage), previous_stage=_previous_name(stage)),
            "windows": windows,
            "freezes": freezes,
            "window_form": window_form or WindowForm(),
            "freeze_form": freeze_form or FreezeForm(),
        },
    )


@login_required
def stage_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    stage = stage_or_404(pk)
    if request.method != "POST":
        return _stage_page(request, stage)
    form = StageForm(request.POST, initial=_stage_initial(stage), previous_stage=_previous_name(stage))
    if form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            services.stage_update(stage=stage, context=audit_context(request), **changes)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Stage saved." if changes else "Nothing changed.")
            return redirect("deployments:stage-edit", pk=stage.pk)
    return _stage_page(request, stage, form=form)


@login_required
@require_POST
def stage_delete(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    stage = stage_or_404(pk)
    pipeline_id, name = stage.pipeline_id, stage.name
    try:
        services.stage_delete(stage=stage, context=audit_context(request))
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Stage {name} deleted; the stages after it moved up.")
    return redirect("deployments:pipeline-detail", pk=pipeline_id)


@login_required
@require_POST
def stage_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a stage one place up or down (the buttons post `direction`)."""
    require_admin(request)
    stage = stage_or_404(pk)
    offset = {"up": -1, "down": 1}.get(request.POST.get("direction", ""))
    if offset is None:
        messages.error(request, "Say whether to move the stage up or down.")
    else:
        try:
            services.stage_move(stage=stage, offset=offset, context=audit_context(request))
        except DomainError as refusal:
            messages.error(request, refusal.message)
        else:
            messages.success(request, f"Stage {stage.name} moved {request.POST['direction']}.")
    return redirect("deployments:pipeline-detail", pk=stage.pipeline_id)


# --- windows and freezes ----------------------------------------------------------------------------------


@login_required
@require_POST
def window_create(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    stage = stage_or_404(pk)
    form = WindowForm(request.POST)
    if form.is_valid():
        try:
            services.stage_window_add(stage=stage, context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Window added.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage.pk}) + "#windows")
    return _stage_page(request, stage, window_form=form)


@login_required
@require_POST
def window_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    window = get_object_or_404(StageWindow.objects.select_related("stage"), pk=pk)
    form = _window_row_form(window, request.POST)
    if form.is_valid():
        try:
            services.stage_window_update(window=window, context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Window saved.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": window.stage_id}) + "#windows")
    return _stage_page(request, stage_or_404(window.stage_id), bound_rows={form.prefix or "": form})


@login_required
@require_POST
def window_delete(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    window = get_object_or_404(StageWindow, pk=pk)
    stage_id = window.stage_id
    services.stage_window_remove(window=window, context=audit_context(request))
    messages.success(request, "Window removed.")
    return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage_id}) + "#windows")


@login_required
@require_POST
def freeze_create(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    stage = stage_or_404(pk)
    form = FreezeForm(request.POST)
    if form.is_valid():
        try:
            services.stage_freeze_add(
                stage=stage, context=audit_context(request), created_by=portal_user(request), **form.cleaned_data
            )
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Freeze added.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage.pk}) + "#freezes")
    return _stage_page(request, stage, freeze_form=form)


@login_required
@require_POST
def freeze_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a freeze, e.g. end it early."""
    require_admin(request)
    freeze = get_object_or_404(StageFreeze.objects.select_related("stage"), pk=pk)
    form = _freeze_row_form(freeze, request.POST)
    if form.is_valid():
        try:
            services.stage_freeze_update(freeze=freeze, context=audit_context(request), **form.cleaned_data)
        except DomainError as refusal:
            refusal_to_form(form, refusal)
        else:
            messages.success(request, "Freeze saved.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": freeze.stage_id}) + "#freezes")
    return _stage_page(request, stage_or_404(freeze.stage_id), bound_rows={form.prefix or "": form})


@login_required
@require_POST
def freeze_delete(request: HttpRequest, pk: int) -> HttpResponse:
    require_admin(request)
    freeze = get_object_or_404(StageFreeze, pk=pk)
    stage_id = freeze.stage_id
    services.stage_freeze_remove(freeze=freeze, context=audit_context(request))
    messages.success(request, "Freeze removed.")
    return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage_id}) + "#freezes")
