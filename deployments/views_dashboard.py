"""Live parts of the dashboard, polled by htmx (every 2 s) so a page never holds a worker open."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from deployments import dashboard


@login_required
def running_jobs(request: HttpRequest) -> HttpResponse:
    """The dashboard's "Running jobs" card with fresh progress bars."""
    rows = dashboard.running_jobs(user=request.user)  # type: ignore[arg-type]
    poll = dashboard.running_jobs_poll_interval(rows)
    return render(request, "deployments/_running_jobs.html", {"running": rows, "running_poll": poll})
