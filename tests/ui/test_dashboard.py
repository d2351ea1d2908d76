"""The dashboard: release matrix colours from inventory, what waits for me, empty states, fixed queries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from deployments import workflow
from environments.models import DriftFinding, InventoryInterval

pytestmark = pytest.mark.django_db


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _installed(environment: Any, name: str, version: str) -> None:
    InventoryInterval.objects.create(
        environment=environment, unique_name=name, version=version, is_managed=True, valid_from=timezone.now()
    )


def test_the_matrix_shows_installed_versions_coloured(api_world: Any) -> None:
    environments = api_world.objects["environments"]
    name = api_world.objects["versions"]["1.1"].solution.unique_name
    _installed(environments["test"], name, "1.1.0.0")
    _installed(environments["prod"], name, "1.0.0.0")
    response = _as(api_world.users["maker"]).get(reverse("home"))
    matrix = response.context["matrices"][0]
    assert [stage.name for stage in matrix.stages] == ["test", "prod"]
    test_cell, prod_cell = matrix.rows[0]["cells"]
    assert (test_cell["installed"], test_cell["label"], test_cell["state"]) == ("1.1.0.0", "up to date", "ok")
    assert (prod_cell["installed"], prod_cell["label"]) == ("1.0.0.0", "behind")
    assert test_cell["promotion_id"] == api_world.ids["promotion"]
    counts = {row["environment"].name: row for row in response.context["environment_counts"]}
    assert (counts["contoso-test"]["ok"], counts["contoso-prod"]["behind"]) == (1, 1)


def test_drift_marks_the_cell_and_is_listed(api_world: Any) -> None:
    environments = api_world.objects["environments"]
    name = api_world.objects["versions"]["1.1"].solution.unique_name
    _installed(environments["prod"], name, "1.1.0.0")
    now = timezone.now()
    DriftFinding.objects.create(
        environment=environments["prod"], kind="version_mismatch", unique_name=name, first_seen_at=now, last_seen_at=now
    )
    response = _as(api_world.users["admin"]).get(reverse("home"))
    assert response.context["matrices"][0].rows[0]["cells"][1]["label"] == "drift"
    assert "contoso-prod" in response.content.decode().split('id="drift"')[1]


def test_approvals_waiting_for_me_appear_for_the_named_approver_only(api_world: Any) -> None:
    workflow.promotion_preflight_finished(
        promotion_id=api_world.ids["promotion"], status="passed", result={}, context=AuditContext.system()
    )
    assert 'id="waiting"' in _as(api_world.users["approver"]).get(reverse("home")).content.decode()
    assert 'id="waiting"' not in _as(api_world.users["maker"]).get(reverse("home")).content.decode()


def test_an_outsider_sees_no_pipeline_of_another_team_and_the_next_step(api_world: Any, make_user: Any) -> None:
    loner = make_user("loner", "maker")
    body = _as(loner).get(reverse("home")).content.decode()
    assert "Ask an admin to add your team to a pipeline." in body
    assert "Nothing is running." in body and "No drift" in body


def test_the_dashboard_costs_the_same_queries_with_more_solutions(api_world: Any) -> None:
    from solutions.models import Solution

    client = _as(api_world.users["auditor"])
    client.get(reverse("home"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("home"))
    template = Solution.objects.get()
    for index in range(20):
        Solution.objects.create(
            unique_name=f"extra{index}",
            display_name=f"Extra {index}",
            team=template.team,
            pipeline=template.pipeline,
            home_environment=template.home_environment,
        )
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("home"))
    assert len(many) == len(few)


def test_a_failed_latest_promotion_marks_the_cell_and_counts_for_its_environment(api_world: Any) -> None:
    from deployments.models import Promotion

    Promotion.objects.filter(pk=api_world.ids["promotion"]).update(status="failed", finished_at=timezone.now())
    response = _as(api_world.users["admin"]).get(reverse("home"))
    test_cell = response.context["matrices"][0].rows[0]["cells"][0]
    assert (test_cell["status"], test_cell["label"], test_cell["state"]) == ("failed", "failed", "bad")
    counts = {row["environment"].name: row for row in response.context["environment_counts"]}
    assert counts["contoso-test"]["failed"] == 1 and counts["contoso-prod"]["failed"] == 0
    assert 'id="failures"' in response.content.decode()


def test_running_jobs_poll_every_two_seconds_with_progress_bars(api_world: Any) -> None:
    from alm_portal.jobs.models import Job

    Job.objects.filter(pk=api_world.ids["job"]).update(progress=40, progress_message="Reading solutions")
    client = _as(api_world.users["admin"])
    body = client.get(reverse("home")).content.decode()
    running = reverse("deployments:running-jobs")
    # It asks again with the jobs it shows and the newest job it knew, so a job that ends is noticed.
    assert re.search(rf'hx-get="{running}\?shown=[\d,]*\b{api_world.ids["job"]}\b[\d,]*&amp;seen=\d+"', body)
    assert 'hx-trigger="every 2s"' in body
    partial = client.get(running).content.decode()
    assert f'<progress id="job-{api_world.ids["job"]}" value="40" max="100">' in partial
    assert "Reading solutions" in partial and "<html" not in partial


def test_the_approvals_inbox_flags_promotions_that_delete_data(api_world: Any) -> None:
    result = {"checks": [{"code": "data_loss", "severity": "warning", "message": "", "details": {"data_loss": [{}]}}]}
    workflow.promotion_preflight_finished(
        promotion_id=api_world.ids["promotion"], status="warnings", result=result, context=AuditContext.system()
    )
    response = _as(api_world.users["approver"]).get(reverse("deployments:approvals-inbox"))
    assert response.context["rows"][0]["data_loss"] is True
    assert "deletes data" in response.content.decode()


def test_a_cell_clicks_through_to_that_solutions_history_in_that_environment(api_world: Any) -> None:
    client = _as(api_world.users["maker"])
    cell = client.get(reverse("home")).context["matrices"][0].rows[0]["cells"][0]
    environment = api_world.objects["environments"]["test"]
    assert cell["history_url"] == (
        reverse("deployments:promotion-list") + f"?solution={api_world.ids['solution']}&environment={environment.pk}"
    )
    listed = client.get(cell["history_url"])
    assert [row["promotion"].pk for row in listed.context["rows"]] == [api_world.ids["promotion"]]
    other = client.get(
        reverse("deployments:promotion-list"),
        {"solution": api_world.ids["solution"], "environment": api_world.objects["environments"]["prod"].pk},
    )
    assert other.context["rows"] == [] and "Show all promotions" in other.content.decode()


def test_an_idle_running_jobs_card_polls_less_often(api_world: Any) -> None:
    from alm_portal.jobs.models import Job

    Job.objects.update(status="succeeded")
    body = _as(api_world.users["admin"]).get(reverse("deployments:running-jobs")).content.decode()
    assert 'hx-trigger="every 10s"' in body and "Nothing is running." in body
