"""Reads of the dashboard: the release matrix of every visible pipeline and per-environment counts.

Every function here costs a fixed number of queries whatever the number of pipelines, solutions and
environments: rows are fetched for the shown page of each pipeline only, in one query per kind of
fact (solutions, inventory, drift, latest promotions), and joined in Python. Colours and labels are
decided here, never in a template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from alm_portal.accounts.models import User
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from deployments import selectors
from deployments.choices import PromotionStatus
from deployments.models import Pipeline, Promotion, Stage
from environments import selectors as environment_selectors
from environments.models import DriftFinding, Environment, InventoryInterval
from solutions import selectors as solution_selectors

MATRIX_PAGE_SIZE = 50  # solutions per pipeline and page of the release matrix
# Pipelines per dashboard page: an admin of a large tenant sees hundreds, and a page holding every
# pipeline's matrix would be megabytes of HTML (bench/README.md: 200 pipelines took seconds to render).
PIPELINE_PAGE_SIZE = 5
PIPELINE_PAGE_PARAMETER = "pipelines_page"
ENVIRONMENT_PAGE_SIZE = 50
RECENT_FAILURE_DAYS = 7

# state -> (tone class of the badge, words shown and read out)
UP_TO_DATE, BEHIND, DRIFT, FAILED, NOT_INSTALLED = "up_to_date", "behind", "drift", "failed", "not_installed"
# The order cell_state decides in: a solution is counted in the first state that applies.
COUNT_STATES = (FAILED, DRIFT, NOT_INSTALLED, UP_TO_DATE, BEHIND)
CELL_STATES: dict[str, tuple[str, str]] = {
    UP_TO_DATE: ("ok", "up to date"),
    BEHIND: ("warn", "behind"),
    DRIFT: ("drift", "drift"),
    FAILED: ("bad", "failed"),
    NOT_INSTALLED: ("muted", "not installed"),
}


def matrix_page_parameter(pipeline_id: int) -> str:
    """The query parameter that pages one pipeline's matrix (each pipeline pages on its own)."""
    return f"pipeline_{pipeline_id}_page"


def page_link(query: Mapping[str, str], parameter: str, number: int) -> str:
    """The query string of the same dashboard with one pager moved (the other pagers stay put)."""
    kept = {key: value for key, value in query.items() if key != parameter}
    kept[parameter] = str(number)
    return "?" + urlencode(sorted(kept.items()))


def cell_state(*, installed: str | None, latest: str | None, failed: bool, drift: bool) -> str:
    """How an installed version compares with the newest registered one; a failure outranks drift,
    drift outranks the version comparison (the inventory is not what the portal installed)."""
    if failed:
        return FAILED
    if drift:
        return DRIFT
    if not installed:
        return NOT_INSTALLED
    installed_key = solution_selectors.parse_version(installed)
    latest_key = solution_selectors.parse_version(latest) if latest else None
    if installed_key is not None and latest_key is not None and installed_key >= latest_key:
        return UP_TO_DATE
    return BEHIND


def _cell(
    *, state: str, installed: str | None, promotion_id: int | None, solution_id: int, environment: Environment
) -> dict[str, Any]:
    tone, label = CELL_STATES[state]
    return {
        "installed": installed or "—",
        "state": tone,
        "status": state,
        "label": label,
        "promotion_id": promotion_id,
        # Every promotion of this solution into this environment, newest first.
        "history_url": reverse("deployments:promotion-list")
        + "?"
        + urlencode({"solution": solution_id, "environment": environment.pk}),
        "environment_name": environment.name,
    }


def _failed_latest_promotions() -> QuerySet[Promotion]:
    """Promotions that failed and are the newest request of their solution into their stage."""
    newer = Promotion.objects.filter(
        solution_id=OuterRef("solution_id"), stage_id=OuterRef("stage_id"), requested_at__gt=OuterRef("requested_at")
    )
    return Promotion.objects.filter(status=PromotionStatus.FAILED).exclude(Exists(newer))


def _latest_promotions(*, solution_ids: Iterable[int], stage_ids: Iterable[int]) -> dict[tuple[int, int], Promotion]:
    """The newest promotion per (solution, stage) among the given ones: one query."""
    newer = Promotion.objects.filter(
        solution_id=OuterRef("solution_id"), stage_id=OuterRef("stage_id"), requested_at__gt=OuterRef("requested_at")
    )
    rows = (
        Promotion.objects.filter(solution_id__in=list(solution_ids), stage_id__in=list(stage_ids))
        .exclude(Exists(newer))
        .only("pk", "solution_id", "stage_id", "status", "requested_at")
        .order_by("requested_at", "pk")
    )
    return {(row.solution_id, row.stage_id): row for row in rows}


@dataclass
class ReleaseMatrix:
    """One pipeline's matrix page: stages as columns, a page of its solutions as rows."""

    pipeline: Pipeline
    stages: list[Stage]
    page: Page[Any]
    page_parameter: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    previous_link: str = ""
    next_link: str = ""


def pipeline_page(*, user: User, page_number: str | None = None) -> Page[Pipeline]:
    """One page of the pipelines the user sees, by name: the dashboard draws a release matrix for each."""
    pipelines = selectors.pipelines_visible_to(user=user).order_by("name", "pk")
    return Paginator(pipelines, PIPELINE_PAGE_SIZE).get_page(page_number)


def release_matrices(
    *, user: User, page_numbers: Mapping[str, str] | None = None, pipelines: list[Pipeline] | None = None
) -> list[ReleaseMatrix]:
    """Per pipeline (`pipelines`, or every visible one): its stages' environments × one page of its
    solutions, each cell coloured.

    `page_numbers` is the request's query (e.g. {"pipeline_3_page": "2"}); a missing or bad number is
    the first page. Queries: pipelines (+ prefetches), solution ids, the shown solutions, inventory,
    drift and latest promotions; the same count for 1 or 300 pipelines and 2 or 200 solutions.
    """
    page_numbers = page_numbers or {}
    if pipelines is None:
        pipelines = list(selectors.pipelines_visible_to(user=user).order_by("name", "pk"))
    if not pipelines:
        return []
    visible = solution_selectors.solutions_visible_to(user=user)
    ids_by_pipeline: dict[int, list[int]] = {}
    for solution_id, pipeline_id in (
        visible.filter(pipeline_id__in=[p.pk for p in pipelines])
        .order_by("unique_name", "pk")
        .values_list("pk", "pipeline_id")
    ):
        ids_by_pipeline.setdefault(pipeline_id, []).append(solution_id)
    matrices: list[ReleaseMatrix] = []
    for pipeline in pipelines:
        parameter = matrix_page_parameter(pipeline.pk)
        page = Paginator(ids_by_pipeline.get(pipeline.pk, []), MATRIX_PAGE_SIZE).get_page(page_numbers.get(parameter))
        matrix = ReleaseMatrix(pipeline, list(pipeline.stages.all()), page, parameter)
        if page.has_previous():
            matrix.previous_link = page_link(page_numbers, parameter, page.previous_page_number())
        if page.has_next():
            matrix.next_link = page_link(page_numbers, parameter, page.next_page_number())
        matrices.append(matrix)
    shown_ids = [solution_id for matrix in matrices for solution_id in matrix.page.object_list]
    # The shown solutions, without the list page's prefetch of deployments (not needed here).
    solutions = {s.pk: s for s in visible.prefetch_related(None).filter(pk__in=shown_ids)} if shown_ids else {}
    # Only the cells shown: per pipeline, its stages' environments × its page of solutions (an OR of
    # one pair of IN lists per pipeline, not the cross product of every environment and solution).
    shown_cells = Q()
    for matrix in matrices:
        page_names = [solutions[solution_id].unique_name for solution_id in matrix.page.object_list]
        environment_ids = [stage.target_environment_id for stage in matrix.stages]
        if page_names and environment_ids:
            shown_cells |= Q(environment_id__in=environment_ids, unique_name__in=page_names)
    installed: dict[tuple[int, str], str] = {}
    drift: set[tuple[int, str]] = set()
    latest: dict[tuple[int, int], Promotion] = {}
    if shown_cells:
        installed = {
            (environment_id, name): version
            for environment_id, name, version in InventoryInterval.objects.filter(
                shown_cells, valid_to__isnull=True
            ).values_list("environment_id", "unique_name", "version")
        }
        drift_rows = DriftFinding.objects.filter(shown_cells, resolved_at__isnull=True)
        drift = set(drift_rows.values_list("environment_id", "unique_name"))
        latest = _latest_promotions(
            solution_ids=solutions, stage_ids=[stage.pk for matrix in matrices for stage in matrix.stages]
        )
    for matrix in matrices:
        for solution_id in matrix.page.object_list:
            solution = solutions[solution_id]
            cells = []
            for stage in matrix.stages:
                where = (stage.target_environment_id, solution.unique_name)
                promotion = latest.get((solution.pk, stage.pk))
                state = cell_state(
                    installed=installed.get(where),
                    latest=solution.latest_version_text,  # type: ignore[attr-defined]  # annotated by the selector
                    failed=promotion is not None and promotion.status == PromotionStatus.FAILED,
                    drift=where in drift,
                )
                cells.append(
                    _cell(
                        state=state,
                        installed=installed.get(where),
                        promotion_id=promotion.pk if promotion is not None else None,
                        solution_id=solution.pk,
                        environment=stage.target_environment,
                    )
                )
            latest_text = solution.latest_version_text  # type: ignore[attr-defined]  # annotated by the selector
            matrix.rows.append({"solution": solution, "latest": latest_text or "—", "cells": cells})
    return matrices


def environment_status_counts(*, user: User, page_number: str | None = None) -> Page[Any]:
    """A page of the environments that visible pipelines deploy to, each with its solutions counted by
    the state their release-matrix cell shows there.

    The solutions in scope of an environment are the visible solutions of the pipelines with a stage
    targeting it; each is counted exactly once, in the first state that applies (COUNT_STATES, the
    same order cell_state decides in): failed (its newest promotion into that stage failed), drift (an
    open drift finding for it there), not installed, up to date, behind. So the five numbers add up to
    `total`, the number of solutions in scope. Drift about solutions outside the pipelines (an
    unregistered solution, a stuck holding solution) is listed under Drift, not counted here.

    Behind needs the numeric version order (1.10 > 1.9), so the states are decided in Python over one
    query each of solutions, current inventory, open drift and failed latest promotions: a fixed
    number of queries.
    """
    pipelines = selectors.pipelines_visible_to(user=user).values("pk")
    stages = list(
        Stage.objects.filter(pipeline__in=pipelines).values_list("pk", "target_environment_id", "pipeline_id")
    )
    environment_ids = sorted({environment_id for _, environment_id, _ in stages})
    environments = (
        environment_selectors.environments_visible_to(user=user)
        .prefetch_related(None)
        .filter(pk__in=environment_ids)
        .order_by("name", "pk")
    )
    page = Paginator(environments, ENVIRONMENT_PAGE_SIZE).get_page(page_number)
    shown: list[Environment] = list(page.object_list)
    shown_ids = [environment.pk for environment in shown]
    if not shown_ids:
        page.object_list = []
        return page
    visible = solution_selectors.solutions_visible_to(user=user).prefetch_related(None)
    solutions_by_pipeline: dict[int, list[tuple[int, str, str | None]]] = {}
    for solution_id, pipeline_id, name, latest in visible.filter(pipeline__in=pipelines).values_list(  # type: ignore[misc]
        "pk", "pipeline_id", "unique_name", "latest_version_text"
    ):
        solutions_by_pipeline.setdefault(pipeline_id, []).append((solution_id, name, latest))
    # environment -> [(stage, solution id, unique name, latest version)]: what each environment counts.
    in_scope: dict[int, list[tuple[int, int, str, str | None]]] = {pk: [] for pk in shown_ids}
    wanted = Q()
    for stage_id, environment_id, pipeline_id in stages:
        members = solutions_by_pipeline.get(pipeline_id, [])
        if environment_id not in in_scope or not members:
            continue
        in_scope[environment_id] += [(stage_id, solution_id, name, latest) for solution_id, name, latest in members]
        wanted |= Q(environment_id=environment_id, unique_name__in=[name for _, name, _ in members])
    installed: dict[tuple[int, str], str] = {}
    if wanted:  # nothing to read while no pipeline has a solution
        installed = {
            (environment_id, name.lower()): version
            for environment_id, name, version in InventoryInterval.objects.filter(
                wanted, valid_to__isnull=True
            ).values_list("environment_id", "unique_name", "version")
        }
    drift = {
        (environment_id, name.lower())
        for environment_id, name in DriftFinding.objects.filter(
            resolved_at__isnull=True, environment_id__in=shown_ids
        ).values_list("environment_id", "unique_name")
    }
    failed = set(
        _failed_latest_promotions()
        .filter(target_environment_id__in=shown_ids, solution__in=visible.values("pk"))
        .values_list("solution_id", "stage_id")
    )
    rows = []
    for environment in shown:
        counts = dict.fromkeys(COUNT_STATES, 0)
        for stage_id, solution_id, name, latest in in_scope[environment.pk]:
            where = (environment.pk, name.lower())
            state = cell_state(
                installed=installed.get(where),
                latest=latest,
                failed=(solution_id, stage_id) in failed,
                drift=where in drift,
            )
            counts[state] += 1
        rows.append(
            {
                "environment": environment,
                "ok": counts[UP_TO_DATE],
                "behind": counts[BEHIND],
                "not_installed": counts[NOT_INSTALLED],
                "drift": counts[DRIFT],
                "failed": counts[FAILED],
                "total": len(in_scope[environment.pk]),
            }
        )
    page.object_list = rows  # type: ignore[assignment]  # the page carries rows, not environments
    return page


def running_jobs(*, user: User, limit: int = 20) -> list[dict[str, Any]]:
    """Jobs waiting or running that the user may see, oldest first, with their progress bar values."""
    jobs = (
        selectors.jobs_visible_to(user=user)
        .filter(status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES))
        .order_by("created_at", "pk")[:limit]
    )
    return [
        {
            "job": job,
            "label": f"{job.kind_label} on {job.environment.name if job.environment else '—'}",
            "status": job.get_status_display(),
            "progress": max(0, min(100, job.progress or 0)),
            "message": job.progress_message,
            "tone": "muted" if job.status == JobStatus.PENDING else "busy",
        }
        for job in jobs
    ]


def running_jobs_poll_interval(rows: list[dict[str, Any]]) -> str:
    """How often the card asks again: every 2 s while something runs, slower while nothing does (a new job
    still shows up within 10 s, and idle dashboards left open cost little)."""
    return "2s" if rows else "10s"


def running_job_ids(rows: list[dict[str, Any]]) -> str:
    """The ids of the jobs the "Running jobs" card shows, as the card sends them back when it asks again."""
    return ",".join(str(row["job"].pk) for row in rows)


def recent_failures(*, user: User, days: int = RECENT_FAILURE_DAYS, limit: int = 10) -> list[Promotion]:
    """Promotions that failed in the last `days` days, newest first."""
    since = timezone.now() - timedelta(days=days)
    return list(
        selectors.promotion_rows_visible_to(user=user)
        .filter(status=PromotionStatus.FAILED, finished_at__gte=since)
        .order_by("-finished_at", "-pk")[:limit]
    )


def open_drift(*, user: User, limit: int = 20) -> list[DriftFinding]:
    """Unresolved drift in environments the user may see, most recently seen first."""
    environments = environment_selectors.environments_visible_to(user=user).values("pk")
    return list(
        DriftFinding.objects.filter(resolved_at__isnull=True, environment__in=environments)
        .select_related("environment")
        .order_by("-last_seen_at", "pk")[:limit]
    )
