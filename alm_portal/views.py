"""Portal-wide pages: the dashboard.

The dashboard reads through the apps' selectors with a fixed number of queries per section whatever
the number of pipelines, solutions and environments (the release matrix is built from one query
each for solutions, current inventory, open drift and the latest promotions); the cell colours are
decided here, never in the template.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from alm_portal.accounts.models import User
from deployments import selectors as deployment_selectors
from deployments.choices import ACTIVE_JOB_STATUSES, JobStatus, PromotionStatus
from deployments.models import Promotion
from deployments.views import approvals_waiting_for
from environments import selectors as environment_selectors
from environments.models import DriftFinding, InventoryInterval
from solutions import selectors as solution_selectors
from solutions.models import Solution

MATRIX_SOLUTIONS = 50  # solutions per pipeline on the dashboard (a page)
RECENT_FAILURE_DAYS = 7


def _cell(
    *, installed: str | None, latest: str | None, failed: bool, drift: bool, promotion: Promotion | None
) -> dict[str, Any]:
    """One matrix cell: what is installed and how it compares (failed > drift > up to date > behind)."""
    installed_key = solution_selectors.parse_version(installed) if installed else None
    latest_key = solution_selectors.parse_version(latest) if latest else None
    if failed:
        state, label = "bad", "failed"
    elif drift:
        state, label = "drift", "drift"
    elif installed_key is not None and latest_key is not None and installed_key >= latest_key:
        state, label = "ok", "up to date"
    elif installed:
        state, label = "warn", "behind"
    else:
        state, label = "muted", "not installed"
    return {
        "installed": installed or "—",
        "state": state,
        "label": label,
        "promotion_id": promotion.pk if promotion is not None else None,
    }


def release_matrices(*, user: User) -> list[dict[str, Any]]:
    """Per visible pipeline: its stages' environments as columns and its solutions as rows."""
    pipelines = list(deployment_selectors.pipelines_visible_to(user=user).order_by("name"))
    if not pipelines:
        return []
    visible = solution_selectors.solutions_visible_to(user=user).filter(pipeline__in=[p.pk for p in pipelines])
    # Only the solutions a matrix shows (the first MATRIX_SOLUTIONS by name per pipeline) are read,
    # with what the rows need; the rest is counted. Reading every visible solution (and, through the
    # list prefetch, all their deployments) cost seconds with thousands of solutions.
    totals = dict(
        Solution.objects.filter(pk__in=visible.values("pk"))
        .order_by()
        .values("pipeline_id")
        .annotate(n=Count("pk"))
        .values_list("pipeline_id", "n")
    )
    ranked = visible.prefetch_related(None).annotate(
        matrix_rank=Window(RowNumber(), partition_by=[F("pipeline_id")], order_by=F("unique_name").asc())
    )
    solutions = list(ranked.filter(matrix_rank__lte=MATRIX_SOLUTIONS).order_by("unique_name"))
    by_pipeline: dict[int | None, list[Any]] = {}
    for solution in solutions:
        by_pipeline.setdefault(solution.pipeline_id, []).append(solution)
    environment_ids = {stage.target_environment_id for p in pipelines for stage in p.stages.all()}
    names = {solution.unique_name for solution in solutions}
    installed = {
        (row.environment_id, row.unique_name): row.version
        for row in InventoryInterval.objects.filter(
            valid_to__isnull=True, environment_id__in=environment_ids, unique_name__in=names
        ).only("environment_id", "unique_name", "version")
    }
    drift = set(
        DriftFinding.objects.filter(
            resolved_at__isnull=True, environment_id__in=environment_ids, unique_name__in=names
        ).values_list("environment_id", "unique_name")
    )
    latest_promotion: dict[tuple[int, int], Promotion] = {}
    newest_first = Window(
        RowNumber(), partition_by=[F("solution_id"), F("stage_id")], order_by=[F("requested_at").desc(), F("pk").desc()]
    )
    for promotion in (
        Promotion.objects.filter(solution_id__in=[s.pk for s in solutions])
        .only("pk", "solution_id", "stage_id", "status", "requested_at")
        .annotate(newest=newest_first)
        .filter(newest=1)  # only the latest promotion per (solution, stage) leaves the database
    ):
        latest_promotion[(promotion.solution_id, promotion.stage_id)] = promotion
    matrices = []
    for pipeline in pipelines:
        stages = list(pipeline.stages.all())
        rows = []
        for solution in by_pipeline.get(pipeline.pk, []):
            cells = []
            for stage in stages:
                latest = latest_promotion.get((solution.pk, stage.pk))
                cells.append(
                    _cell(
                        installed=installed.get((stage.target_environment_id, solution.unique_name)),
                        latest=solution.latest_version_text,
                        failed=latest is not None and latest.status == PromotionStatus.FAILED,
                        drift=(stage.target_environment_id, solution.unique_name) in drift,
                        promotion=latest,
                    )
                )
            rows.append({"solution": solution, "latest": solution.latest_version_text or "—", "cells": cells})
        matrices.append(
            {
                "pipeline": pipeline,
                "stages": stages,
                "rows": rows,
                "more": max(0, totals.get(pipeline.pk, 0) - MATRIX_SOLUTIONS),
            }
        )
    return matrices


def environment_counts(matrices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage environment of the matrices: how many solutions are behind, drifted or failed there."""
    counts: dict[int, dict[str, Any]] = {}
    for matrix in matrices:
        for index, stage in enumerate(matrix["stages"]):
            row = counts.setdefault(
                stage.target_environment_id,
                {"environment": stage.target_environment, "behind": 0, "drift": 0, "failed": 0, "ok": 0},
            )
            for solution_row in matrix["rows"]:
                state = solution_row["cells"][index]["state"]
                key = {"warn": "behind", "muted": "behind", "drift": "drift", "bad": "failed", "ok": "ok"}[state]
                row[key] += 1
    return sorted(counts.values(), key=lambda row: row["environment"].name)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    since = timezone.now() - timedelta(days=RECENT_FAILURE_DAYS)
    environments = environment_selectors.environments_visible_to(user=user)
    running = (
        deployment_selectors.jobs_visible_to(user=user)
        .filter(status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES))
        .order_by("created_at", "pk")[:20]
    )
    failures = (
        deployment_selectors.promotions_visible_to(user=user)
        .filter(status=PromotionStatus.FAILED, finished_at__gte=since)
        .order_by("-finished_at", "-pk")[:10]
    )
    drift = (
        DriftFinding.objects.filter(resolved_at__isnull=True, environment__in=environments.values("pk"))
        .select_related("environment")
        .order_by("-last_seen_at", "pk")[:20]
    )
    matrices = release_matrices(user=user)
    context = {
        "matrices": matrices,
        "environment_counts": environment_counts(matrices),
        "waiting": approvals_waiting_for(user),
        "running": list(running),
        "failures": list(failures),
        "drift": list(drift),
        "is_admin": user.role == "admin",
    }
    return render(request, "home.html", context)
