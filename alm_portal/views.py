"""Portal-wide pages: the dashboard.

The dashboard reads through selectors with a fixed number of queries per section whatever the number
of pipelines, solutions and environments (deployments.dashboard builds the release matrices and the
per-environment counts); cell colours are decided there, never in the template.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from deployments import dashboard
from deployments import selectors as deployment_selectors
from deployments import selectors as job_selectors
from solutions import selectors as solution_selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    running = dashboard.running_jobs(user=user)
    environments = dashboard.environment_status_counts(user=user, page_number=request.GET.get("environments_page"))
    pipelines = dashboard.pipeline_page(user=user, page_number=request.GET.get(dashboard.PIPELINE_PAGE_PARAMETER))
    context = {
        "matrices": dashboard.release_matrices(
            user=user, page_numbers=request.GET, pipelines=list(pipelines.object_list)
        ),
        "pipeline_page": pipelines,
        "pipeline_previous": (
            dashboard.page_link(request.GET, dashboard.PIPELINE_PAGE_PARAMETER, pipelines.previous_page_number())
            if pipelines.has_previous()
            else ""
        ),
        "pipeline_next": (
            dashboard.page_link(request.GET, dashboard.PIPELINE_PAGE_PARAMETER, pipelines.next_page_number())
            if pipelines.has_next()
            else ""
        ),
        "environment_page": environments,
        "environment_counts": list(environments.object_list),
        "environment_previous": (
            dashboard.page_link(request.GET, "environments_page", environments.previous_page_number())
            if environments.has_previous()
            else ""
        ),
        "environment_next": (
            dashboard.page_link(request.GET, "environments_page", environments.next_page_number())
            if environments.has_next()
            else ""
        ),
        "waiting": deployment_selectors.approvals_waiting_for(user=user),
        "running": running,
        "running_poll": dashboard.running_jobs_poll_interval(running),
        "running_ids": dashboard.running_job_ids(running),
        "running_seen": job_selectors.jobs_newest_id(user=user),
        "failures": dashboard.recent_failures(user=user),
        "drift": dashboard.open_drift(user=user),
        "source_drift": solution_selectors.source_drift(user=user),
        "is_admin": policy.is_admin(user),
    }
    return render(request, "home.html", context)
