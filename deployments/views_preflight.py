"""Pre-flight on the request form, before anything is submitted: htmx asks for it when a stage is chosen."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from deployments import policy
from deployments.models import Stage
from deployments.preflight.preview import promotion_preflight_preview
from deployments.preflight.report import BLOCKER, WARNING
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
    user = request.user
    version = get_object_or_404(
        solution_selectors.versions_visible_to(user=user).select_related("solution"),  # type: ignore[arg-type]
        pk=version_pk,
    )
    refusal = policy.request_refusal(user=user, solution=version.solution)  # type: ignore[arg-type]
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


def preview_trigger_attributes(*, version_pk: int) -> dict[str, str]:
    """htmx attributes for the request form's stage field: load the preview now and on every change."""
    return {
        "hx-get": reverse("deployments:promotion-request-preview", args=[version_pk]),
        "hx-trigger": "load, change",
        "hx-target": "#preflight-preview",
        "hx-swap": "outerHTML",
        "aria-controls": "preflight-preview",
    }
