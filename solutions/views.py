"""Minimal server-rendered pages of the registry: thin, reads through selectors, writes through services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from alm_portal.accounts import policy
from alm_portal.accounts.choices import Scope
from alm_portal.audit.context import AuditContext
from alm_portal.audit.history import object_history_context
from alm_portal.errors import DomainError
from alm_portal.jobs.choices import TERMINAL_JOB_STATUSES
from solutions import selectors, services
from solutions.forms import ExportForm, SourceBindForm, SourceBuildForm, VersionUploadForm
from solutions.models import SolutionVersion

PAGE_SIZE = 50


def _may_request(user: Any) -> bool:
    return policy.scope_refusal(user=user, token=None, scope=Scope.REQUEST) is None


def _solution_to_change(request: HttpRequest, pk: int) -> Any:
    """The solution an action changes: 404 when the user may not see it, 403 when they may see but not ask."""
    solution = get_object_or_404(selectors.solutions_visible_to(user=request.user), pk=pk)  # type: ignore[arg-type]
    if not _may_request(request.user):
        raise PermissionDenied
    return solution


@login_required
def solution_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    # The list shows no deployments: skip the detail page's prefetch of them.
    solutions = selectors.solutions_visible_to(user=request.user).prefetch_related(None)  # type: ignore[arg-type]
    if search:
        solutions = solutions.filter(Q(unique_name__icontains=search) | Q(display_name__icontains=search))
    page = Paginator(solutions, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "solutions/solution_list.html",
        {
            "page": page,
            "search": search,
            "keep": urlencode({"q": search}) if search else "",
            "may_request": _may_request(request.user),
        },
    )


@login_required
def solution_detail(request: HttpRequest, pk: int) -> HttpResponse:
    solution = get_object_or_404(selectors.solutions_visible_to(user=request.user), pk=pk)  # type: ignore[arg-type]
    return _render_detail(request, solution)


def _render_detail(request: HttpRequest, solution: Any, *, status: int = 200, **forms: Any) -> HttpResponse:
    """The solution page; a form the user sent with a mistake is shown again as sent, with its errors."""
    return render(
        request,
        "solutions/solution_detail.html",
        {
            "solution": solution,
            "versions": Paginator(selectors.solution_versions(solution=solution), PAGE_SIZE).get_page(
                request.GET.get("page")
            ),
            "export_form": ExportForm(),
            "may_request": _may_request(request.user),
            **_exports_context(solution, watching=[]),
            **_source_context(solution),
            **forms,
            **object_history_context(
                user=request.user,  # type: ignore[arg-type]
                instance=solution,
                page_number=request.GET.get("history_page"),
            ),
        },
        status=status,
    )


def _source_context(solution: Any) -> dict[str, Any]:
    source = selectors.solution_source(solution=solution)
    binding = source["source_binding"]
    own = binding if binding is not None and binding.solution_id is not None else None
    initial = (
        {
            "url": binding.url,
            "branch": binding.branch,
            "root_folder": binding.root_folder,
            "username": binding.username,
            "build_environment": binding.build_environment_id,
        }
        if own is not None
        else {}
    )
    return {
        **source,
        "bind_form": SourceBindForm(initial=initial, solution=solution),
        "build_form": SourceBuildForm(),
    }


@login_required
@require_POST
def solution_source_bind(request: HttpRequest, pk: int) -> HttpResponse:
    solution = _solution_to_change(request, pk)
    form = SourceBindForm(request.POST, solution=solution)
    if not form.is_valid():
        return _render_detail(request, solution, status=400, bind_form=form)
    data = form.cleaned_data
    try:
        binding = services.source_bind(
            solution=solution,
            url=data["url"],
            branch=data["branch"],
            root_folder=data["root_folder"],
            username=data["username"],
            token=data["token"] or None,
            ssh_private_key=data["ssh_private_key"] or None,
            build_environment=data["build_environment"],
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        for field, problems in (refusal.details or {}).items():
            if field in form.fields and isinstance(problems, list):
                form.add_error(field, [str(problem) for problem in problems])
        if not form.errors:
            form.add_error(None, refusal.message)
        return _render_detail(request, solution, status=400, bind_form=form)
    messages.success(
        request, f"New versions of {solution.unique_name} are committed to {binding.folder_for(solution)}."
    )
    return redirect("solutions:solution-detail", pk=pk)


@login_required
@require_POST
def solution_source_unbind(request: HttpRequest, pk: int) -> HttpResponse:
    solution = _solution_to_change(request, pk)
    try:
        services.source_unbind(solution=solution, user=request.user, context=AuditContext.from_request(request))  # type: ignore[arg-type]
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"{solution.unique_name} is no longer committed to source control.")
    return redirect("solutions:solution-detail", pk=pk)


@login_required
@require_POST
def solution_source_build(request: HttpRequest, pk: int) -> HttpResponse:
    solution = _solution_to_change(request, pk)
    form = SourceBuildForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, solution, status=400, build_form=form)
    try:
        job = services.source_build_request(
            solution=solution,
            ref=form.cleaned_data["ref"],
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        form.add_error("ref" if "ref" in (refusal.details or {}) else None, refusal.message)
        return _render_detail(request, solution, status=400, build_form=form)
    messages.success(request, f"Build from {form.cleaned_data['ref']} queued as job {job.pk}.")
    return redirect("solutions:solution-detail", pk=pk)


# The exports card asks every 2 s while an export runs; otherwise every 10 s, so an export started
# elsewhere (almctl, the API) shows up too.
EXPORT_POLL_ACTIVE, EXPORT_POLL_IDLE = "2s", "10s"


def _exports_context(solution: Any, *, watching: list[int]) -> dict[str, Any]:
    """The exports card: exports running now, and how the ones the page showed running ended."""
    jobs = selectors.solution_export_jobs(solution=solution, job_ids=watching)
    running = [job for job in jobs if job.status not in TERMINAL_JOB_STATUSES]
    ended = [job for job in jobs if job.status in TERMINAL_JOB_STATUSES and job.pk in watching]
    stored = selectors.versions_of_jobs(job_ids=[job.pk for job in ended])
    return {
        "solution": solution,
        "running_exports": running,
        "ended_exports": [{"job": job, "version": stored.get(job.pk)} for job in ended],
        "watching": ",".join(str(job.pk) for job in running),
        "export_poll": EXPORT_POLL_ACTIVE if running else EXPORT_POLL_IDLE,
    }


@login_required
def solution_exports(request: HttpRequest, pk: int) -> HttpResponse:
    """The live exports card of a solution's page (htmx). When an export it showed running has stored
    a version, the version history is sent along and swapped in, so the new version appears without a
    reload."""
    solution = get_object_or_404(selectors.solutions_visible_to(user=request.user), pk=pk)  # type: ignore[arg-type]
    watching = [int(part) for part in request.GET.get("watching", "").split(",") if part.isdigit()]
    context = _exports_context(solution, watching=watching)
    if any(row["version"] is not None for row in context["ended_exports"]):
        context["versions"] = Paginator(selectors.solution_versions(solution=solution), PAGE_SIZE).get_page(1)
        context["versions_out_of_band"] = True
    return render(request, "solutions/_exports.html", context)


@login_required
@require_POST
def solution_export(request: HttpRequest, pk: int) -> HttpResponse:
    solution = _solution_to_change(request, pk)
    form = ExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how to bump the version.")
        return redirect("solutions:solution-detail", pk=pk)
    try:
        job = services.solution_export_request(
            solution=solution,
            bump=form.cleaned_data["bump"],
            user=request.user,  # type: ignore[arg-type]
            context=AuditContext.from_request(request),
        )
    except DomainError as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Export queued as job {job.pk}; the new version appears here when it is done.")
    return redirect("solutions:solution-detail", pk=pk)


def _version(request: HttpRequest, pk: int, *, with_manifests: bool = False) -> SolutionVersion:
    versions = selectors.versions_visible_to(user=request.user, with_manifests=with_manifests)  # type: ignore[arg-type]
    return get_object_or_404(versions, pk=pk)


@login_required
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(request, pk, with_manifests=True)
    manifest = version.managed_manifest or version.unmanaged_manifest or {}
    components = [
        (group, manifest.get(group) or [])
        for group in (
            "tables",
            "workflows",
            "canvas_apps",
            "model_driven_apps",
            "site_maps",
            "option_sets",
            "connection_references",
            "environment_variables",
            "security_roles",
            "plugin_assemblies",
            "plugin_steps",
            "web_resources",
            "custom_connectors",
        )
    ]
    return render(
        request,
        "solutions/version_detail.html",
        {
            "version": version,
            "manifest": manifest,
            "components": [(group.replace("_", " "), items) for group, items in components if items],
            "others": selectors.solution_versions(solution=version.solution).exclude(pk=version.pk),
            **object_history_context(
                user=request.user,  # type: ignore[arg-type]
                instance=version,
                page_number=request.GET.get("history_page"),
            ),
        },
    )


@login_required
def version_diff(request: HttpRequest, pk: int, other_pk: int) -> HttpResponse:
    version = _version(request, pk)
    other = _version(request, other_pk)
    try:
        diff = services.version_diff(old=other, new=version)
    except DomainError as refusal:
        raise Http404(refusal.message) from None
    return render(request, "solutions/version_diff.html", {"version": version, "other": other, "diff": diff})


@login_required
def version_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """The compare form on a version page: redirect to the diff against the chosen version."""
    against = request.GET.get("against", "")
    if not against.isdigit():
        return redirect("solutions:version-detail", pk=pk)
    return redirect("solutions:version-diff", pk=pk, other_pk=int(against))


@login_required
def version_upload(request: HttpRequest) -> HttpResponse:
    if not _may_request(request.user):
        raise PermissionDenied
    if request.method == "POST":
        form = VersionUploadForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            try:
                outcome = services.solution_version_upload(
                    file=form.cleaned_data["file"],
                    release_notes=form.cleaned_data["release_notes"],
                    team=form.cleaned_data["team"],
                    user=request.user,  # type: ignore[arg-type]
                    context=AuditContext.from_request(request),
                )
            except DomainError as refusal:
                form.add_error("file", refusal.message)
            else:
                if outcome.created:
                    messages.success(request, f"Version {outcome.version.version_key} registered ({outcome.flavour}).")
                elif outcome.added:
                    messages.success(
                        request, f"{outcome.flavour.capitalize()} artifact added to {outcome.version.version_key}."
                    )
                else:
                    messages.info(request, "This exact file is stored already; nothing changed.")
                return redirect("solutions:version-detail", pk=outcome.version.pk)
    else:
        form = VersionUploadForm(user=request.user)
    return render(request, "solutions/version_upload.html", {"form": form})
