"""The deployment settings editor of a stage (admins): the pac settings document as rows of a table,
checked against a solution version's manifest (names it lacks, names it does not know, connectors
that differ), saved as a new version under the ETag the page was built from, and imported and exported
as the `pac solution create-settings` JSON file.

Names a version does not know are reported, not refused: one stage's settings serve every solution of
the pipeline, so a name may belong to another solution. Thin: deployments.services decides.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.forms import BaseFormSet, Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from alm_portal.accounts.identity import portal_user
from alm_portal.errors import DomainError
from deployments import selectors, services
from deployments.forms.pipelines import ConnectionReferenceRows, EnvironmentVariableRows, SettingsImportForm
from deployments.models import Stage
from deployments.settings_documents import (
    CONNECTION_REFERENCES,
    ENVIRONMENT_VARIABLES,
    MAX_VALUE_LENGTH,
    settings_document_coverage,
    settings_document_from_manifest,
)
from deployments.views.pipelines import audit_context, require_admin, stage_or_404
from solutions.models import SolutionVersion


def _current_document(stage: Stage) -> tuple[dict[str, Any], str]:
    content, etag = services.settings_export(stage=stage)
    document: dict[str, Any] = json.loads(content)
    return document, etag


def _chosen_version(stage: Stage, raw: str | None) -> Any:
    """The solution version (of this pipeline's solutions) the settings are checked against, if any."""

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
            "value_limit": MAX_VALUE_LENGTH,
        },
    )


@login_required
def stage_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """The settings editor. GET `?version=<id>` checks the settings against that version's manifest;
    `&fill=1` adds empty rows for every name the manifest has and the settings lack (not saved yet)."""
    require_admin(request)
    stage = stage_or_404(pk)
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
                stage=stage,
                document=document,
                if_match=etag,
                context=audit_context(request),
                user=portal_user(request),
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
    require_admin(request)
    stage = stage_or_404(pk)
    form = SettingsImportForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            with transaction.atomic():
                services.settings_import(
                    stage=stage,
                    content=upload.read(),
                    if_match=form.cleaned_data["etag"],
                    context=audit_context(request),
                    user=portal_user(request),
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
    require_admin(request)
    stage = stage_or_404(pk)
    content, etag = services.settings_export(stage=stage)
    response = HttpResponse(content, content_type="application/json; charset=utf-8")
    filename = f"{stage.pipeline.name}-{stage.name}-settings.json".replace(" ", "_").replace('"', "")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if etag:
        response["ETag"] = f'"{etag}"'
    return response
