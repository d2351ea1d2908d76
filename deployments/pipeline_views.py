"""Pages of pipelines: everyone reads the ones they may see; admins create, edit and delete pipelines
and stages, order stages, name approvers, edit windows and freezes, and edit a stage's deployment
settings (checked against a solution version's manifest; the pac JSON file imported and exported).

Thin: each view checks permission, validates a form and calls one service of deployments.services;
a refusal is shown in words, next to the field it concerns when it names one. Everything works
without JavaScript.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.forms import BaseFormSet, Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.errors import DomainError
from deployments import selectors, services
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow
from deployments.pipeline_forms import (
    ConnectionReferenceRows,
    EnvironmentVariableRows,
    FreezeForm,
    PipelineForm,
    SettingsImportForm,
    StageForm,
    WindowForm,
)
from deployments.services.stages import POLICY_FIELDS
from deployments.settings_documents import (
    CONNECTION_REFERENCES,
    ENVIRONMENT_VARIABLES,
    settings_document_coverage,
    settings_document_from_manifest,
)


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _context(request: HttpRequest) -> AuditContext:
    return AuditContext.from_request(request)


def _is_admin(request: HttpRequest) -> bool:
    return account_policy.can_administer(user=_user(request), token=None)


def _require_admin(request: HttpRequest) -> None:
    if not _is_admin(request):
        raise PermissionDenied("Only admins change pipelines, stages and their settings.")


def _place_errors(form: Form, refusal: DomainError, *, renames: dict[str, str] | None = None) -> None:
    """Put a service's field errors next to the form's fields (the message on top when none fits)."""
    details = refusal.details if isinstance(refusal.details, dict) else {}
    placed = False
    for field, problems in details.items():
        name = (renames or {}).get(field, field)
        if name not in form.fields:
            continue
        for problem in problems if isinstance(problems, list) else [problems]:
            form.add_error(name, str(problem))
            placed = True
    if not placed:
        form.add_error(None, refusal.message)


def _stage(pk: int) -> Stage:
    return get_object_or_404(Stage.objects.select_related("pipeline", "target_environment"), pk=pk)


# --- pipelines -----------------------------------------------------------------------------------------


@login_required
def pipeline_list(request: HttpRequest) -> HttpResponse:
    pipelines = selectors.pipelines_visible_to(user=_user(request)).order_by("name")
    return render(request, "deployments/pipeline_list.html", {"pipelines": pipelines, "is_admin": _is_admin(request)})


@login_required
def pipeline_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(selectors.pipelines_visible_to(user=_user(request)), pk=pk)
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
    return render(
        request,
        "deployments/pipeline_detail.html",
        {"pipeline": pipeline, "rows": rows, "is_admin": _is_admin(request)},
    )


@login_required
def pipeline_create(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    form = PipelineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline = services.pipeline_create(context=_context(request), **form.cleaned_data)
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, f"Pipeline {pipeline.name} created; add its stages next.")
            return redirect("deployments:pipeline-detail", pk=pipeline.pk)
    return render(request, "deployments/pipeline_form.html", {"form": form, "pipeline": None})


@login_required
def pipeline_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
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
            services.pipeline_update(pipeline=pipeline, context=_context(request), **form.cleaned_data)
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, "Pipeline saved.")
            return redirect("deployments:pipeline-detail", pk=pipeline.pk)
    return render(request, "deployments/pipeline_form.html", {"form": form, "pipeline": pipeline})


@login_required
def pipeline_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes (or says why not)."""
    _require_admin(request)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    if request.method == "POST":
        name = pipeline.name
        try:
            services.pipeline_delete(pipeline=pipeline, context=_context(request))
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
    _require_admin(request)
    pipeline = get_object_or_404(Pipeline, pk=pk)
    form = StageForm(request.POST or None, initial={"import_mode": "upgrade"})
    if request.method == "POST" and form.is_valid():
        try:
            stage = services.stage_add(pipeline=pipeline, context=_context(request), **form.cleaned_data)
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, f"Stage {stage.name} added; set its windows, freezes and settings here.")
            return redirect("deployments:stage-edit", pk=stage.pk)
    return render(request, "deployments/stage_form.html", {"form": form, "pipeline": pipeline, "stage": None})


def _stage_page(
    request: HttpRequest,
    stage: Stage,
    *,
    form: StageForm | None = None,
    window_form: WindowForm | None = None,
    freeze_form: FreezeForm | None = None,
) -> HttpResponse:
    return render(
        request,
        "deployments/stage_form.html",
        {
            "pipeline": stage.pipeline,
            "stage": stage,
            "form": form or StageForm(initial=_stage_initial(stage)),
            "windows": list(stage.windows.order_by("pk")),
            "freezes": list(stage.freezes.order_by("starts_at")),
            "window_form": window_form or WindowForm(),
            "freeze_form": freeze_form or FreezeForm(),
        },
    )


@login_required
def stage_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    stage = _stage(pk)
    if request.method != "POST":
        return _stage_page(request, stage)
    form = StageForm(request.POST, initial=_stage_initial(stage))
    if form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            services.stage_update(stage=stage, context=_context(request), **changes)
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, "Stage saved." if changes else "Nothing changed.")
            return redirect("deployments:stage-edit", pk=stage.pk)
    return _stage_page(request, stage, form=form)


@login_required
@require_POST
def stage_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    stage = _stage(pk)
    pipeline_id, name = stage.pipeline_id, stage.name
    try:
        services.stage_delete(stage=stage, context=_context(request))
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Stage {name} deleted; the stages after it moved up.")
    return redirect("deployments:pipeline-detail", pk=pipeline_id)


@login_required
@require_POST
def stage_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a stage one place up or down (the buttons post `direction`)."""
    _require_admin(request)
    stage = _stage(pk)
    offset = {"up": -1, "down": 1}.get(request.POST.get("direction", ""))
    if offset is None:
        messages.error(request, "Say whether to move the stage up or down.")
    else:
        try:
            services.stage_move(stage=stage, offset=offset, context=_context(request))
        except DomainError as refusal:
            messages.error(request, refusal.message)
        else:
            messages.success(request, f"Stage {stage.name} moved {request.POST['direction']}.")
    return redirect("deployments:pipeline-detail", pk=stage.pipeline_id)


# --- windows and freezes ----------------------------------------------------------------------------------


@login_required
@require_POST
def window_create(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    stage = _stage(pk)
    form = WindowForm(request.POST)
    if form.is_valid():
        try:
            services.stage_window_add(stage=stage, context=_context(request), **form.cleaned_data)
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, "Window added.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage.pk}) + "#windows")
    return _stage_page(request, stage, window_form=form)


@login_required
@require_POST
def window_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    window = get_object_or_404(StageWindow, pk=pk)
    stage_id = window.stage_id
    services.stage_window_remove(window=window, context=_context(request))
    messages.success(request, "Window removed.")
    return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage_id}) + "#windows")


@login_required
@require_POST
def freeze_create(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    stage = _stage(pk)
    form = FreezeForm(request.POST)
    if form.is_valid():
        try:
            services.stage_freeze_add(
                stage=stage, context=_context(request), created_by=_user(request), **form.cleaned_data
            )
        except DomainError as refusal:
            _place_errors(form, refusal)
        else:
            messages.success(request, "Freeze added.")
            return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage.pk}) + "#freezes")
    return _stage_page(request, stage, freeze_form=form)


@login_required
@require_POST
def freeze_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    freeze = get_object_or_404(StageFreeze, pk=pk)
    stage_id = freeze.stage_id
    services.stage_freeze_remove(freeze=freeze, context=_context(request))
    messages.success(request, "Freeze removed.")
    return redirect(reverse("deployments:stage-edit", kwargs={"pk": stage_id}) + "#freezes")


# --- deployment settings ------------------------------------------------------------------------------------


def _current_document(stage: Stage) -> tuple[dict[str, Any], str]:
    content, etag = services.settings_export(stage=stage)
    document: dict[str, Any] = json.loads(content)
    return document, etag


def _chosen_version(stage: Stage, raw: str | None) -> Any:
    """The solution version (of this pipeline's solutions) the settings are checked against, if any."""
    from solutions.models import SolutionVersion

    if not raw or not raw.isdigit():
        return None
    return SolutionVersion.objects.filter(pk=int(raw), solution__pipeline_id=stage.pipeline_id).first()


def _manifest(version: Any) -> dict[str, Any] | None:
    if version is None:
        return None
    manifest: dict[str, Any] | None = version.managed_manifest or version.unmanaged_manifest
    return manifest


def _rows_from(document: dict[str, Any]) -> tuple[BaseFormSet, BaseFormSet]:
    return (
        EnvironmentVariableRows(prefix="ev", initial=document.get(ENVIRONMENT_VARIABLES, [])),
        ConnectionReferenceRows(prefix="cr", initial=document.get(CONNECTION_REFERENCES, [])),
    )


def _document_from(variables: BaseFormSet, references: BaseFormSet) -> tuple[dict[str, Any], dict[str, list[Form]]]:
    """The document the rows describe (rows without a name dropped) and, per section, the form of each
    kept entry, so the service's errors (keyed `Section[index].Field`) land on the right row."""
    document: dict[str, Any] = {ENVIRONMENT_VARIABLES: [], CONNECTION_REFERENCES: []}
    forms_of: dict[str, list[Form]] = {ENVIRONMENT_VARIABLES: [], CONNECTION_REFERENCES: []}
    for section, rows, key in (
        (ENVIRONMENT_VARIABLES, variables, "SchemaName"),
        (CONNECTION_REFERENCES, references, "LogicalName"),
    ):
        for row in rows.forms:
            data = row.cleaned_data if hasattr(row, "cleaned_data") else {}
            if (data.get(key) or "").strip():
                document[section].append({name: data.get(name) or "" for name in row.fields})
                forms_of[section].append(row)
    return document, forms_of


def _place_document_errors(refusal: DomainError, forms_of: dict[str, list[Form]]) -> list[str]:
    """Field errors of a settings document onto its rows; what fits no row is returned for the top."""
    leftover: list[str] = []
    details = refusal.details if isinstance(refusal.details, dict) else {}
    for path, problems in details.items():
        texts = [str(problem) for problem in (problems if isinstance(problems, list) else [problems])]
        section, _, rest = str(path).partition("[")
        index_text, _, field = rest.partition("].")
        rows = forms_of.get(section, [])
        if index_text.isdigit() and int(index_text) < len(rows) and field in rows[int(index_text)].fields:
            for text in texts:
                rows[int(index_text)].add_error(field, text)
        else:
            leftover += [f"{path}: {text}" for text in texts]
    return leftover or ([refusal.message] if not details else [])


def _row_notes(rows: BaseFormSet, key: str, unknown: list[str], label: str) -> list[tuple[Form, str]]:
    folded = {name.casefold() for name in unknown}
    notes = []
    for row in rows.forms:
        value = row[key].value() or ""
        notes.append((row, f"Not in {label}." if value and value.casefold() in folded else ""))
    return notes


def _settings_page(
    request: HttpRequest,
    stage: Stage,
    *,
    variables: BaseFormSet,
    references: BaseFormSet,
    document: dict[str, Any],
    etag: str,
    version: Any,
    problems: list[str] | None = None,
    import_form: SettingsImportForm | None = None,
) -> HttpResponse:
    coverage = settings_document_coverage(document, _manifest(version)) if version is not None else None
    label = f"{version.solution.unique_name} {version.version_key}" if version is not None else ""
    unknown = coverage["unknown"] if coverage else {ENVIRONMENT_VARIABLES: [], CONNECTION_REFERENCES: []}
    current = services.settings_current(stage=stage)
    return render(
        request,
        "deployments/stage_settings.html",
        {
            "pipeline": stage.pipeline,
            "stage": stage,
            "variables": variables,
            "references": references,
            "variable_rows": _row_notes(variables, "SchemaName", unknown[ENVIRONMENT_VARIABLES], label),
            "reference_rows": _row_notes(references, "LogicalName", unknown[CONNECTION_REFERENCES], label),
            "etag": etag,
            "current": current,
            "versions": list(selectors.settings_check_versions(pipeline=stage.pipeline)),
            "version": version,
            "version_label": label,
            "coverage": coverage,
            "problems": problems or [],
            "import_form": import_form or SettingsImportForm(initial={"etag": etag}),
        },
    )


@login_required
def stage_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """The settings editor. GET `?version=<id>` checks the settings against that version's manifest;
    `&fill=1` adds empty rows for every name the manifest has and the settings lack (not saved yet)."""
    _require_admin(request)
    stage = _stage(pk)
    source = request.POST if request.method == "POST" else request.GET
    version = _chosen_version(stage, source.get("version"))
    if request.method != "POST":
        document, etag = _current_document(stage)
        if version is not None and request.GET.get("fill") == "1":
            document = settings_document_from_manifest(_manifest(version), keep=document)
        variables, references = _rows_from(document)
        return _settings_page(
            request, stage, variables=variables, references=references, document=document, etag=etag, version=version
        )
    variables = EnvironmentVariableRows(request.POST, prefix="ev")
    references = ConnectionReferenceRows(request.POST, prefix="cr")
    etag = request.POST.get("etag", "")
    problems: list[str] = []
    document: dict[str, Any] = {ENVIRONMENT_VARIABLES: [], CONNECTION_REFERENCES: []}
    if variables.is_valid() and references.is_valid():
        document, forms_of = _document_from(variables, references)
        try:
            services.settings_update(
                stage=stage, document=document, if_match=etag, context=_context(request), user=_user(request)
            )
        except services.PreconditionFailed as refusal:
            problems = [f"{refusal.message} Your changes are below, not saved."]
        except DomainError as refusal:
            problems = _place_document_errors(refusal, forms_of)
        else:
            messages.success(request, "Deployment settings saved as a new version.")
            query = f"?version={version.pk}" if version is not None else ""
            return redirect(reverse("deployments:stage-settings", kwargs={"pk": stage.pk}) + query)
    else:
        problems = ["Some rows are not valid; see the marked fields."]
    return _settings_page(
        request,
        stage,
        variables=variables,
        references=references,
        document=document,
        etag=etag,
        version=version,
        problems=problems,
    )


@login_required
@require_POST
def stage_settings_import(request: HttpRequest, pk: int) -> HttpResponse:
    """Upload a pac settings JSON file as the next version (the same ETag rule as the editor)."""
    _require_admin(request)
    stage = _stage(pk)
    form = SettingsImportForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            with transaction.atomic():
                services.settings_import(
                    stage=stage,
                    content=upload.read(),
                    if_match=form.cleaned_data["etag"],
                    context=_context(request),
                    user=_user(request),
                )
        except DomainError as refusal:
            details = refusal.details if isinstance(refusal.details, dict) else {}
            form.add_error("file", refusal.message)
            for path, problems in details.items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    form.add_error("file", f"{path}: {problem}")
        else:
            messages.success(request, f"{upload.name} imported as the stage's new deployment settings.")
            return redirect("deployments:stage-settings", pk=stage.pk)
    document, etag = _current_document(stage)
    variables, references = _rows_from(document)
    return _settings_page(
        request,
        stage,
        variables=variables,
        references=references,
        document=document,
        etag=etag,
        version=None,
        import_form=form,
    )


@login_required
def stage_settings_export(request: HttpRequest, pk: int) -> HttpResponse:
    """The stage's current settings as the pac JSON file (an empty document while there are none)."""
    _require_admin(request)
    stage = _stage(pk)
    content, etag = services.settings_export(stage=stage)
    response = HttpResponse(content, content_type="application/json; charset=utf-8")
    filename = f"{stage.pipeline.name}-{stage.name}-settings.json".replace(" ", "_").replace('"', "")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if etag:
        response["ETag"] = f'"{etag}"'
    return response
