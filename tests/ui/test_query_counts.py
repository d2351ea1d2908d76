"""The dashboard and the list pages cost the same number of queries with the demo-sized world and with
300 environments × 200 solutions (and their inventory, drift, promotions, versions and audit events).

The crowd is written with bulk_create so the test stays quick; the pages only read it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments.choices import PreflightStatus, PromotionStatus
from deployments.models import Pipeline, Promotion, Stage
from environments.models import DriftFinding, Environment, InventoryInterval
from solutions.models import Solution, SolutionVersion

pytestmark = pytest.mark.django_db

ENVIRONMENTS, SOLUTIONS, STAGES_PER_PIPELINE = 300, 200, 10
# The approvals inbox is pinned: session, user, the user's teams, the waiting promotions (everything the
# rows show joined, the naming stages a subquery) and their approvals.
INBOX_QUERIES = 5


def crowd(world: Any) -> dict[str, Any]:
    """Add 300 environments, 30 pipelines of 10 stages, 200 solutions with versions, current inventory of
    every solution in every environment, drift, pending and failed promotions, running jobs and audit events,
    all for the team of the world's maker, so every persona sees all of it."""
    now = timezone.now()
    team = world.users["maker"].memberships.get().team
    pipeline = world.objects["pipeline"]
    approver = world.users["approver"]
    environments = Environment.objects.bulk_create(
        Environment(
            name=f"crowd-{index:03d}",
            url=f"https://crowd-{index:03d}.crm4.dynamics.com",
            kind="production" if index % 10 == 9 else "test",
            tenant_id="t",
            authority="https://login.microsoftonline.com/t",
            team=team,
        )
        for index in range(ENVIRONMENTS)
    )
    pipelines = Pipeline.objects.bulk_create(
        Pipeline(name=f"Crowd {index:02d}", team=team, development_environment=environments[0])
        for index in range(ENVIRONMENTS // STAGES_PER_PIPELINE)
    )
    stages = Stage.objects.bulk_create(
        Stage(
            pipeline=pipelines[index // STAGES_PER_PIPELINE],
            name=f"stage-{index % STAGES_PER_PIPELINE}",
            order=index % STAGES_PER_PIPELINE + 1,
            target_environment=environment,
        )
        for index, environment in enumerate(environments)
    )
    Stage.approver_users.through.objects.bulk_create(
        Stage.approver_users.through(stage_id=stage.pk, user_id=approver.pk) for stage in stages
    )
    # 120 solutions on the world's pipeline (more than a matrix page), the others spread over the crowd.
    solutions = Solution.objects.bulk_create(
        Solution(
            unique_name=f"crowd_solution_{index:03d}",
            display_name=f"Crowd solution {index}",
            team=team,
            pipeline=pipeline if index < 120 else pipelines[index % len(pipelines)],
        )
        for index in range(SOLUTIONS)
    )
    versions = SolutionVersion.objects.bulk_create(
        SolutionVersion(
            solution=solution,
            version=f"1.0.{revision}.0",
            version_key=f"1.0.{revision}.0",
            major=1,
            minor=0,
            build=revision,
            revision=0,
            source_kind="upload",
            managed_sha256="a" * 64,
            managed_path=f"crowd/{solution.unique_name}/{revision}.zip",
            managed_size=1,
        )
        for solution in solutions
        for revision in ((0, 1) if solution is not solutions[0] else range(60))
    )
    latest = {version.solution_id: version for version in versions}
    InventoryInterval.objects.bulk_create(
        (
            InventoryInterval(
                environment=environment,
                unique_name=solution.unique_name,
                version="1.0.0.0" if (env_index + sol_index) % 3 else "1.0.1.0",
                is_managed=True,
                valid_from=now,
            )
            for env_index, environment in enumerate(environments)
            for sol_index, solution in enumerate(solutions)
        ),
        batch_size=5000,
    )
    DriftFinding.objects.bulk_create(
        DriftFinding(
            environment=environment,
            kind="version_mismatch",
            unique_name=solutions[index % SOLUTIONS].unique_name,
            first_seen_at=now,
            last_seen_at=now,
        )
        for index, environment in enumerate(environments)
    )
    world_stages = world.objects["stages"]
    promotions = Promotion.objects.bulk_create(
        Promotion(
            solution=solution,
            version=latest[solution.pk],
            stage=world_stages["test"] if index % 2 else world_stages["prod"],
            target_environment=(world_stages["test"] if index % 2 else world_stages["prod"]).target_environment,
            artifact_sha256="a" * 64,
            requested_by=world.users["maker"],
            requested_at=now - timedelta(minutes=index),
            status=PromotionStatus.PENDING_APPROVAL if index % 4 else PromotionStatus.FAILED,
            finished_at=None if index % 4 else now,
            preflight_status=PreflightStatus.PASSED,
        )
        for index, solution in enumerate(solutions[:120])
    )
    Job.objects.bulk_create(
        Job(kind=JobKind.INVENTORY_SYNC, status=JobStatus.PENDING, environment=environment, progress=index % 100)
        for index, environment in enumerate(environments[:40])
    )
    # Audit events go through the one writer (append-only: no bulk_create), 300 of them.
    context = AuditContext.for_user(world.users["maker"], auth_method="session", request_id="req-crowd")
    with transaction.atomic():
        for index in range(300):
            record(context=context, action="promotion.viewed", target=promotions[index % len(promotions)])
        for index in range(40):  # more than a page of history on the solution whose page is measured
            record(context=context, action="solution.touched", target=solutions[0], after={"n": index})
    return {"solution": solutions[0], "environment": environments[0], "pipeline": pipelines[0]}


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries)


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


PAGES = (
    ("home", None),
    ("solutions:solution-list", None),
    ("solutions:solution-detail", "solution"),  # its version history is the versions list
    ("deployments:promotion-list", None),
    ("environments:list", None),
    ("audit:timeline", None),
    ("deployments:approvals-inbox", None),
    ("deployments:running-jobs", None),
)


def _urls(world: Any, crowded: dict[str, Any] | None) -> dict[str, str]:
    solution_id = crowded["solution"].pk if crowded else world.ids["solution"]
    return {name: reverse(name, args=[solution_id]) if arg == "solution" else reverse(name) for name, arg in PAGES}


def test_pages_cost_the_same_queries_with_300_environments_and_200_solutions(api_world: Any) -> None:
    from deployments import workflow

    # The world's own promotion waits for the approver too, so the small inbox is not empty.
    workflow.promotion_preflight_finished(
        promotion_id=api_world.ids["promotion"], status="passed", result={}, context=AuditContext.system()
    )
    clients = {persona: _as(api_world.users[persona]) for persona in ("admin", "approver", "maker", "auditor")}
    small: dict[tuple[str, str], int] = {}
    for persona, client in clients.items():
        for name, url in _urls(api_world, None).items():
            if name == "audit:timeline" and persona not in ("admin", "auditor"):
                continue
            if name == "deployments:approvals-inbox" and persona not in ("admin", "approver"):
                continue
            _count(client, url)  # warm caches (content types, sessions) once
            small[(persona, name)] = _count(client, url)
    crowded = crowd(api_world)
    large = {}
    for persona, name in small:
        large[(persona, name)] = _count(clients[persona], _urls(api_world, crowded)[name])
    differences = {key: (small[key], large[key]) for key in small if small[key] != large[key]}
    assert differences == {}
    assert small[("approver", "deployments:approvals-inbox")] == INBOX_QUERIES


def test_the_crowded_dashboard_pages_the_matrix_and_counts_every_environment(api_world: Any) -> None:
    crowd(api_world)
    response = _as(api_world.users["admin"]).get(reverse("home"))
    contoso = next(matrix for matrix in response.context["matrices"] if matrix.pipeline.name == "Contoso")
    assert len(contoso.rows) == 50 and contoso.page.paginator.count == 121
    assert f"pipeline_{contoso.pipeline.pk}_page=2" in contoso.next_link
    second = _as(api_world.users["admin"]).get(reverse("home") + contoso.next_link)
    contoso = next(matrix for matrix in second.context["matrices"] if matrix.pipeline.name == "Contoso")
    assert contoso.page.number == 2 and len(contoso.rows) == 50
    environments = response.context["environment_page"]
    assert environments.paginator.count == ENVIRONMENTS + 2  # the crowd and the world's test and prod
    first = response.context["environment_counts"][0]
    assert first["environment"].name == "contoso-prod"
    crowd_row = next(row for row in response.context["environment_counts"] if row["environment"].name == "crowd-000")
    # crowd-000 is stage 0 of "Crowd 00": solutions 120 + 30k land there. Its one drift finding is about
    # crowd_solution_000, a solution of another pipeline: listed under Drift, not one of these three.
    assert crowd_row["total"] == 3 and crowd_row["drift"] == 0
    states = ("ok", "behind", "not_installed", "drift", "failed")
    assert sum(crowd_row[state] for state in states) == crowd_row["total"]


def test_the_dashboard_pages_the_pipelines_so_a_large_tenant_gets_a_page_not_every_matrix(api_world: Any) -> None:
    from deployments.dashboard import PIPELINE_PAGE_PARAMETER, PIPELINE_PAGE_SIZE
    from deployments.models import Pipeline

    crowd(api_world)
    admin = _as(api_world.users["admin"])
    first = admin.get(reverse("home"))
    names = [matrix.pipeline.name for matrix in first.context["matrices"]]
    every = list(Pipeline.objects.order_by("name", "pk").values_list("name", flat=True))
    assert names == every[:PIPELINE_PAGE_SIZE]
    assert first.context["pipeline_page"].paginator.count == len(every)
    assert f"{PIPELINE_PAGE_PARAMETER}=2" in first.context["pipeline_next"]
    second = admin.get(reverse("home") + first.context["pipeline_next"])
    assert [matrix.pipeline.name for matrix in second.context["matrices"]] == every[
        PIPELINE_PAGE_SIZE : 2 * PIPELINE_PAGE_SIZE
    ]
    assert 'aria-label="Pages of pipelines"' in second.content.decode()
