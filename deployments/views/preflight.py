"""Pre-flight on the request form, before anything is submitted: htmx asks for it when a stage is chosen."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from alm_portal.accounts.identity import portal_user
from deployments import policy
from deployments.models import Stage
from deployments.preflight.preview import promotion_preflight_preview
from deployments.preflight.report import BLOCKER, INFO, WARNING, PreflightReport
from solutions import selectors as solution_selectors

SEVERITY_TONE = {BLOCKER: "bad", WARNING: "warn"}
STATUS_TONE = {"blocked": "bad", "warnings": "warn", "passed": "ok"}
STATUS_WORDS = {
    "blocked": "Blocked: this request would be refused or fail as it stands.",
    "warnings": "Warnings: read them before you submit.",
    "passed": "Nothing found that stops this promotion.",
}


@login_required
def promotion_request_preview(request: HttpRequest, version_pk: int) -> HttpResponse:
    """The findings known before submitting `version` into the chosen stage (GET ?stage=<id>)."""
    user = portal_user(request)
    version = get_object_or_404(
        solution_selectors.versions_visible_to(user=user).select_related("solution"),
        pk=version_pk,
    )
    refusal = policy.request_refusal(user=user, solution=version.solution)
    if refusal is not None:
        raise PermissionDenied(refusal.message)
    stage_id = request.GET.get("stage", "")
    if not stage_id.isdigit():
        return render(request, "deployments/_preflight_preview.html", {"report": None})
    stage = get_object_or_404(
        Stage.objects.select_related("target_environment", "pipeline"),
        pk=int(stage_id),
        pipeline_id=version.solution.pipeline_id,
    )
    report = promotion_preflight_preview(version=version, stage=stage)
    _request_fields(
        report,
        stage=stage,
        change_reference=request.GET.get("change_reference", ""),
        backup_reference=request.GET.get("backup_reference", ""),
    )
    checks = [
        {
            "code": check.code,
            "severity": check.severity,
            "tone": SEVERITY_TONE.get(check.severity, "ok"),
            "message": check.message,
            "data_loss": check.details.get("data_loss") or [],
        }
        for check in report.checks
    ]
    # Blockers first, then warnings, then the rest, each in the order the checks ran.
    order = {BLOCKER: 0, WARNING: 1}
    checks.sort(key=lambda check: order.get(str(check["severity"]), 2))
    return render(
        request,
        "deployments/_preflight_preview.html",
        {
            "report": report,
            "stage": stage,
            "checks": checks,
            "status_tone": STATUS_TONE[report.status],
            "status_words": STATUS_WORDS[report.status],
        },
    )


REQUEST_FIELD_LABELS = {"change_reference": "Change reference", "backup_reference": "Backup reference"}


def _request_fields(report: PreflightReport, *, stage: Stage, change_reference: str, backup_reference: str) -> None:
    """What the stage asks of the request itself (a change reference matching its pattern, a backup
    reference), checked against what the form holds now by the rule the request is refused by, so the
    preview never says "passed" for a request that would be refused."""
    asked = []
    if stage.change_reference_required:
        pattern = f" matching {stage.change_reference_pattern}" if stage.change_reference_pattern else ""
        asked.append(f"a change reference{pattern}")
    if stage.backup_reference_required:
        asked.append("a pre-deployment backup reference")
    refusal = policy.references_refusal(
        stage=stage, change_reference=change_reference, backup_reference=backup_reference
    )
    problems = refusal.details if refusal is not None and isinstance(refusal.details, dict) else {}
    for field, texts in problems.items():
        label = REQUEST_FIELD_LABELS.get(field, field)
        text = " ".join(str(item) for item in texts) if isinstance(texts, list) else str(texts)
        report.add(f"{field}_needed", BLOCKER, f"{label}: {text}", field=field)
    if asked and not problems:
        report.add("request_fields", INFO, f"The stage {stage.name} asks for {' and '.join(asked)}: given.")


def preview_trigger_attributes(*, version_pk: int) -> dict[str, str]:
    """htmx attributes for the request form's stage and reference fields: load the preview now and again
    whenever one of them changes, sending what they hold."""
    return {
        "hx-get": reverse("deployments:promotion-request-preview", args=[version_pk]),
        "hx-trigger": "load, change",
        "hx-target": "#preflight-preview",
        "hx-swap": "outerHTML",
        "hx-include": "[name=stage], [name=change_reference], [name=backup_reference]",
        "aria-controls": "preflight-preview",
    }


def reference_trigger_attributes(*, version_pk: int) -> dict[str, str]:
    """The same preview, asked again when a reference field changes (not on load)."""
    return {**preview_trigger_attributes(version_pk=version_pk), "hx-trigger": "change"}
