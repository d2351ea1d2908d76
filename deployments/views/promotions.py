"""Pages of promotions: detail (timeline, pre-flight, approvals, live progress, import log, rollback
planner), the list and the request form on a version (the approvals inbox: deployments/views/approvals.py;
pipeline pages: deployments/views/pipelines.py).

Thin: each view reads through selectors, asks deployments.policy what the user may do (so the page
shows the same refusal sentences the API answers with) and calls one workflow function per POST.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy as account_policy
from alm_portal.accounts.choices import Scope
from alm_portal.accounts.identity import portal_user
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.history import object_history_context
from alm_portal.errors import DomainError
from alm_portal.refusals import refusal_field_errors, refusal_to_form, refusal_to_page
from deployments import policy, selectors, workflow
from deployments.choices import ApprovalDecision, PromotionKind, PromotionStatus, RollbackStrategy
from deployments.forms.promotions import CancelForm, DecisionForm, PromotionRequestForm, RejectForm, RollbackForm
from deployments.models import Promotion, Stage
from deployments.rollback import rollback_plan
from deployments.services.promotions import PromotionAction, promotion_act
from deployments.source import promotion_source_diff, version_source_point
from deployments.status_sentences import job_line, promotion_status_sentence
from deployments.target_diff import promotion_target_diff
from deployments.views.preflight import preview_trigger_attributes, reference_trigger_attributes
from solutions import selectors as solution_selectors

# Statuses whose page polls for progress; the partial stops polling once the promotion is over.
LIVE_STATUSES = (
    PromotionStatus.PENDING_APPROVAL,
    PromotionStatus.APPROVED,
    PromotionStatus.SCHEDULED,
    PromotionStatus.QUEUED,
    PromotionStatus.RUNNING,
)
STATUS_TONE: dict[str, str] = {
    PromotionStatus.SUCCEEDED: "ok",
    PromotionStatus.FAILED: "bad",
    PromotionStatus.REJECTED: "bad",
    PromotionStatus.CANCELLED: "muted",
    PromotionStatus.ROLLED_BACK: "muted",
    PromotionStatus.RUNNING: "busy",
    PromotionStatus.QUEUED: "busy",
}


def _promotion(request: HttpRequest, pk: int) -> Promotion:
    return get_object_or_404(selectors.promotions_visible_to(user=portal_user(request)), pk=pk)


def _refusal_text(refusal: Any) -> str:
    return refusal.message if refusal is not None else ""


# --- facts for the detail page ------------------------------------------------------------------------


def _approvals_facts(promotion: Promotion) -> dict[str, Any]:
    """Decisions so far (newest last) and the people who still may approve (named on the stage, not
    the requester nor the uploader, not yet decided)."""
    now = timezone.now()
    approvals = list(promotion.approvals.all())
    decided = {approval.approver_id for approval in approvals if approval.voided_at is None}
    count = policy.approvals_count(promotion=promotion, approvals=approvals, at=now)
    candidates = User.objects.filter(
        Q(approver_of_stages=promotion.stage) | Q(memberships__team__approver_of_stages=promotion.stage),
        is_active=True,
        role__in=account_policy.DECIDING_ROLES,
    ).distinct()
    still = [
        person.shown_name
        for person in candidates.order_by("username")
        if person.pk not in decided and policy.four_eyes_refusal(user=person, promotion=promotion) is None
    ]
    return {
        "decisions": [
            {
                "who": approval.approver.shown_name,
                "decision": approval.get_decision_display(),
                "approve": approval.decision == ApprovalDecision.APPROVE,
                "comment": approval.comment,
                "at": approval.decided_at,
                "valid": policy.approval_is_valid(approval, promotion=promotion, at=now),
                "void_reason": approval.void_reason,
                "freeze_override": approval.freeze_override,
            }
            for approval in approvals
        ],
        "valid": len(count.ordinary),
        "required": count.required,
        "still_may_approve": still,
    }


def _decision_refusal(user: User, promotion: Promotion) -> str:
    """Why `user` may not approve or reject now, in words ("" when they may)."""
    if promotion.status != PromotionStatus.PENDING_APPROVAL:
        # The status itself is said once, in the live part above: this must not restate it.
        return "Decisions are closed: it is past approval (see Status above)."
    # The requester learns the four-eyes rule first: it is the reason that never changes.
    refusal = policy.four_eyes_refusal(user=user, promotion=promotion) or policy.decision_refusal(
        user=user, promotion=promotion
    )
    if refusal is None:
        live = [approval for approval in promotion.approvals.all() if approval.voided_at is None]
        refusal = policy.already_decided_refusal(user=user, live_approvals=live)
    return _refusal_text(refusal)


def _approve_refusal(promotion: Promotion) -> str:
    return _refusal_text(policy.preflight_refusal(promotion=promotion))


def _progress_context(promotion: Promotion) -> dict[str, Any]:
    """The live part: the status, its one sentence and the run job (deployments/status_sentences.py)."""
    job = promotion.run_job
    return {
        "promotion": promotion,
        "status_tone": STATUS_TONE.get(promotion.status, ""),
        "status_sentence": promotion_status_sentence(promotion),
        "live": promotion.status in LIVE_STATUSES,
        "job": job,
        "job_line": job_line(job),
        "progress": job.progress if job is not None else (100 if promotion.status == PromotionStatus.SUCCEEDED else 0),
    }


def _rollback_plan(promotion: Promotion, user: User, *, sent: RollbackForm | None = None) -> list[dict[str, Any]]:
    """The planner for a succeeded promotion the user may act on; empty otherwise. Each strategy the
    user may request has its form (the one just refused comes back bound, with its errors)."""
    if promotion.status != PromotionStatus.SUCCEEDED or not account_policy.changes_anything(user):
        return []
    if policy.request_refusal(user=user, solution=promotion.solution) is not None:
        return []

    try:
        plan = rollback_plan(promotion=promotion)
    except DomainError as refusal:
        return [{"strategy": "", "label": "Rollback", "available": False, "reason": refusal.message}]
    sent_strategy = sent.data.get("strategy") if sent is not None else None
    for entry in plan:
        strategy = str(entry.get("strategy") or "")
        # The scope rule rollback_request applies; the manual "restore backup" entry is an admin's step too.
        scope = policy.rollback_strategy_scope(strategy) if strategy in RollbackStrategy.values else Scope.ADMIN
        entry["allowed"] = bool(entry.get("available")) and (
            account_policy.scope_refusal(user=user, token=None, scope=scope) is None
        )
        if not entry["allowed"]:
            continue
        form = sent if sent is not None and sent_strategy == strategy else RollbackForm(initial={"strategy": strategy})
        form.auto_id = f"rollback-{strategy}-%s"
        if not entry.get("requires_confirmation"):
            form.fields.pop("confirm", None)
        else:
            form.fields["confirm"].label = f"Type {entry.get('confirmation')} to confirm"
            form.fields["confirm"].widget.attrs["autocomplete"] = "off"
        entry["form"] = form
    return plan


# --- pages ---------------------------------------------------------------------------------------------


@login_required
def promotion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail_page(request, _promotion(request, pk))


def _decision_forms(data: Any = None, *, doing: str = "") -> dict[str, Any]:
    """The page's forms, each with ids of its own; the one just sent is bound to what was sent."""
    bound = {name: data if name == doing else None for name in ("approve", "reject", "cancel")}
    return {
        "decision_form": DecisionForm(bound["approve"], auto_id="approve-%s"),
        "reject_form": RejectForm(bound["reject"], auto_id="reject-%s"),
        "cancel_form": CancelForm(bound["cancel"], auto_id="cancel-%s"),
    }


def _detail_page(
    request: HttpRequest,
    promotion: Promotion,
    *,
    forms: dict[str, Any] | None = None,
    rollback_form: RollbackForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The detail page; after a refused form, that form comes back with its errors and what was typed."""
    user = portal_user(request)
    preflight = promotion.preflight_result if isinstance(promotion.preflight_result, dict) else {}
    result = promotion.result if isinstance(promotion.result, dict) else {}
    may_change = account_policy.changes_anything(user)
    cancel_refusal = policy.requester_or_admin_refusal(user=user, promotion=promotion, action="cancel")
    context = {
        **_progress_context(promotion),
        "preflight_checks": preflight.get("checks", []),
        "approvals": _approvals_facts(promotion),
        "decision_refusal": _decision_refusal(user, promotion) if may_change else "",
        "approve_refusal": _approve_refusal(promotion),
        "show_decision": may_change,
        **(forms or _decision_forms()),
        "may_cancel": cancel_refusal is None and promotion.status in policy.CANCELLABLE_STATUSES,
        "may_retry": cancel_refusal is None and promotion.status == PromotionStatus.FAILED,
        "import_log": result.get("import_log") or {},
        "components": result.get("components") or [],
        "rollback_plan": _rollback_plan(promotion, user, sent=rollback_form),
        "is_rollback": promotion.kind == PromotionKind.ROLLBACK,
        "target": promotion_target_diff(promotion=promotion),
        "source_point": version_source_point(promotion.version),
        **object_history_context(user=user, instance=promotion, page_number=request.GET.get("history_page")),
    }
    return render(request, "deployments/promotion_detail.html", context, status=status)


@login_required
def promotion_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the detail page, polled by htmx every 2 s while the promotion is not over.

    `shown` is the status the page was rendered with. When the status has moved on, the rest of the page
    (approvals, actions, rollback) no longer fits it: the page reloads itself (HX-Refresh), unless the
    person has typed into one of its forms (their text fields are sent along), whose text a reload
    would throw away; then the live part says the status changed and asks them to reload when ready."""
    promotion = _promotion(request, pk)
    context = _progress_context(promotion)
    shown = request.GET.get("shown", "")
    if shown and shown != promotion.status:
        typed = [value for name in request.GET if name != "shown" for value in request.GET.getlist(name)]
        if not any(value.strip() for value in typed):
            response = render(request, "deployments/_promotion_progress.html", context)
            response["HX-Refresh"] = "true"
            return response
        # Keep asking with the status the rest of the page shows, so the note stays until it is reloaded.
        context.update(status_changed=True, shown_status=shown, live=True)
    return render(request, "deployments/_promotion_progress.html", context)


@login_required
def promotion_source(request: HttpRequest, pk: int) -> HttpResponse:
    """The per-file source diff of the detail page, loaded after the page (it may wait for the Git host)."""
    promotion = _promotion(request, pk)
    context = {"promotion": promotion, "source": promotion_source_diff(promotion=promotion)}
    return render(request, "deployments/_promotion_source_diff.html", context)


def _act(request: HttpRequest, pk: int, doing: PromotionAction, success: str) -> HttpResponse:
    """Validate the action's form, call the workflow, and come back to the page. A form that does not
    validate (a comment over the limit, a missing reason) is shown again with what was typed and the
    error, and nothing happens: the decision is never taken without the text that was sent with it."""
    promotion = _promotion(request, pk)
    if not account_policy.changes_anything(portal_user(request)):
        raise PermissionDenied("Auditors read everything and change nothing.")
    forms = _decision_forms(request.POST, doing=doing)
    form = forms.get(f"{doing}_form" if doing != "approve" else "decision_form")
    if form is None:  # retry sends no text
        form = DecisionForm(request.POST, auto_id=f"{doing}-%s")
    if not form.is_valid():
        messages.error(request, f"Nothing was done: {_first_error(form)}")
        return _detail_page(request, promotion, forms=forms, status=400)
    try:
        promotion_act(
            action=doing,
            promotion=promotion,
            user=portal_user(request),
            comment=form.cleaned_data.get("comment", ""),
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        refusal_to_page(request, refusal, doing=doing, target=promotion)
    else:
        messages.success(request, success)
    return redirect("deployments:promotion-detail", pk=pk)


def _first_error(form: Any) -> str:
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        label = str(label).split(" (")[0]
        return f"{label}: {errors[0]}" if label else str(errors[0])
    return "the form is not valid."


@login_required
@require_POST
def promotion_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "approve", "Your approval is recorded.")


@login_required
@require_POST
def promotion_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "reject", "The promotion is rejected.")


@login_required
@require_POST
def promotion_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "cancel", "The promotion is cancelled.")


@login_required
@require_POST
def promotion_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "retry", "Trying again: pre-flight runs first.")


@login_required
@require_POST
def promotion_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    promotion = _promotion(request, pk)
    if not account_policy.changes_anything(portal_user(request)):
        raise PermissionDenied("Auditors read everything and change nothing.")
    form = RollbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Nothing was done: {_first_error(form)}")
        return _detail_page(request, promotion, rollback_form=form, status=400)
    try:
        rollback = workflow.rollback_request(
            promotion=promotion,
            strategy=form.cleaned_data["strategy"],
            requested_by=portal_user(request),
            confirm=form.cleaned_data["confirm"],
            comment=form.cleaned_data["comment"],
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        refusal_to_page(request, refusal, doing="rollback", target=promotion)
        return redirect("deployments:promotion-detail", pk=pk)
    messages.success(request, f"Rollback {rollback.pk} requested; it needs an approval.")
    return redirect("deployments:promotion-detail", pk=rollback.pk)


def _say_which_stages_ask(form: PromotionRequestForm, *, pipeline_id: int | None) -> None:
    """Up front, under each reference field: which stages require it (and the pattern a change reference
    must match), so nobody learns it only from a refusal."""
    stages = list(Stage.objects.filter(pipeline_id=pipeline_id).order_by("order", "pk"))
    change = [
        f"{stage.name}" + (f" (matching {stage.change_reference_pattern})" if stage.change_reference_pattern else "")
        for stage in stages
        if stage.change_reference_required
    ]
    backup = [stage.name for stage in stages if stage.backup_reference_required]
    form.fields["change_reference"].help_text = (
        f"Required for {', '.join(change)}." if change else "No stage of this pipeline requires one."
    )
    form.fields["backup_reference"].help_text = (
        f"Required for {', '.join(backup)}: where the pre-deployment backup of the target is."
        if backup
        else "No stage of this pipeline requires one."
    )


def _stage_choices(version: Any) -> list[tuple[int, str]]:
    pipeline_id = version.solution.pipeline_id
    stages = Stage.objects.filter(pipeline_id=pipeline_id).select_related("target_environment").order_by("order", "pk")
    return [(stage.pk, f"{stage.name} → {stage.target_environment.name}") for stage in stages]


@login_required
def promotion_request(request: HttpRequest, version_pk: int) -> HttpResponse:
    user = portal_user(request)
    version = get_object_or_404(
        solution_selectors.versions_visible_to(user=user).select_related("solution"), pk=version_pk
    )
    refusal = policy.request_refusal(user=user, solution=version.solution)
    if refusal is not None:
        raise PermissionDenied(refusal.message)
    stages = _stage_choices(version)
    form = PromotionRequestForm(request.POST or None, stages=stages)
    form.fields["stage"].widget.attrs.update(preview_trigger_attributes(version_pk=version.pk))
    for name in ("change_reference", "backup_reference"):
        form.fields[name].widget.attrs.update(reference_trigger_attributes(version_pk=version.pk))
    _say_which_stages_ask(form, pipeline_id=version.solution.pipeline_id)
    existing: dict[str, Any] | None = None
    if request.method == "POST" and form.is_valid():
        stage = get_object_or_404(Stage, pk=int(form.cleaned_data["stage"]))
        try:
            promotion = workflow.promotion_request(
                version=version,
                stage=stage,
                requested_by=user,
                comment=form.cleaned_data["comment"],
                change_reference=form.cleaned_data["change_reference"],
                backup_reference=form.cleaned_data["backup_reference"],
                scheduled_for=form.cleaned_data["scheduled_for"],
                context=AuditContext.from_request(request),
            )
        except DomainError as problem:
            # duplicate_request: Back + resubmit; the refusal links the promotion already asked for.
            if problem.code == "duplicate_request":
                existing = refusal_field_errors(problem).get("existing")
            refusal_to_form(form, problem)
        else:
            messages.success(request, "Promotion requested; pre-flight checks run now.")
            return redirect("deployments:promotion-detail", pk=promotion.pk)
    return render(
        request,
        "deployments/promotion_request.html",
        {"version": version, "form": form, "has_stages": bool(stages), "existing": existing},
    )


@login_required
def promotion_list(request: HttpRequest) -> HttpResponse:
    promotions = selectors.promotion_rows_visible_to(user=portal_user(request)).order_by("-requested_at", "-pk")
    status = request.GET.get("status", "")
    if status in PromotionStatus.values:
        promotions = promotions.filter(status=status)
    # The dashboard's matrix cells link here for one solution's history in one environment.
    narrowed = {key: request.GET.get(key, "") for key in ("solution", "environment")}
    narrowed = {key: value for key, value in narrowed.items() if value.isdigit()}
    if "solution" in narrowed:
        promotions = promotions.filter(solution_id=int(narrowed["solution"]))
    if "environment" in narrowed:
        promotions = promotions.filter(target_environment_id=int(narrowed["environment"]))
    page = Paginator(promotions, 50).get_page(request.GET.get("page"))
    rows = [{"promotion": promotion, "tone": STATUS_TONE.get(promotion.status, "muted")} for promotion in page]
    return render(
        request,
        "deployments/promotion_list.html",
        {
            "page": page,
            "rows": rows,
            "status": status,
            "statuses": PromotionStatus.choices,
            "narrowed": narrowed,
            "keep": urlencode({key: value for key, value in {"status": status, **narrowed}.items() if value}),
        },
    )
