"""Live parts of the dashboard, polled by htmx (every 2 s while a job runs) so a page never holds a worker open."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from alm_portal.accounts.identity import portal_user
from deployments import dashboard, selectors


def _ids(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part.isdigit()}


@login_required
def running_jobs(request: HttpRequest) -> HttpResponse:
    """The dashboard's "Running jobs" card with fresh progress bars.

    A job that starts shows up at the next poll. When a job has ended since the page was drawn (one the
    card showed running, or one newer than the newest the page knew, which may have run between two
    polls), the whole dashboard reloads (HX-Refresh), so the release matrix, the counts, the approvals
    waiting and the failures show what it did."""
    user = portal_user(request)
    rows = dashboard.running_jobs(user=user)
    seen = request.GET.get("seen", "")
    context = {
        "running": rows,
        "running_poll": dashboard.running_jobs_poll_interval(rows),
        "running_ids": dashboard.running_job_ids(rows),
        "running_seen": seen if seen.isdigit() else selectors.jobs_newest_id(user=user),
    }
    response = render(request, "deployments/_running_jobs.html", context)
    if seen.isdigit() and selectors.jobs_ended(
        user=user,
        job_ids=_ids(request.GET.get("shown", "")),
        after_id=int(seen),
    ):
        response["HX-Refresh"] = "true"
    return response
