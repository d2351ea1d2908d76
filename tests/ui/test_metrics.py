"""Delivery metrics on fixed data: frequency per week, lead time, change failure rate, time to restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deployments.metrics import delivery_metrics
from deployments.models import Promotion
from solutions.models import SolutionVersion

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday: ISO week 2026-W02


@pytest.fixture
def history(api_world: Any) -> dict[str, Any]:
    versions = api_world.objects["versions"]
    SolutionVersion.objects.filter(pk=versions["1.0"].pk).update(created_at=T0 - timedelta(days=2))
    SolutionVersion.objects.filter(pk=versions["1.1"].pk).update(created_at=T0 - timedelta(days=1))
    prod = api_world.objects["stages"]["prod"]

    def row(version: str, status: str, finished: datetime, kind: str = "promotion", **extra: Any) -> Promotion:
        return Promotion.objects.create(
            kind=kind,
            status=status,
            solution=versions[version].solution,
            version=versions[version],
            stage=extra.pop("stage", prod),
            target_environment=extra.pop("target", prod.target_environment),
            artifact_sha256="0" * 64,
            requested_by=api_world.users["maker"],
            requested_at=extra.pop("requested_at", finished - timedelta(minutes=30)),
            finished_at=finished,
            **extra,
        )

    row("1.0", "succeeded", T0)
    row("1.1", "failed", T0 + timedelta(days=1), started_at=T0 + timedelta(days=1, minutes=-5))
    row("1.1", "succeeded", T0 + timedelta(days=1, hours=3))
    original = row("1.1", "rolled_back", T0 + timedelta(days=7))
    row(
        "1.0",
        "succeeded",
        T0 + timedelta(days=7, hours=2),
        kind="rollback",
        requested_at=T0 + timedelta(days=7, hours=1),
        rollback_of=original,
    )
    test_stage = api_world.objects["stages"]["test"]
    row("1.1", "succeeded", T0, stage=test_stage, target=test_stage.target_environment)  # not production
    return {"world": api_world}


def test_the_four_metrics_on_fixed_data(history: dict[str, Any]) -> None:
    metrics = delivery_metrics(
        promotions=Promotion.objects.all(), since=T0 - timedelta(days=1), until=T0 + timedelta(30)
    )
    assert metrics.deployments_per_week == [("2026-W02", 2), ("2026-W03", 1)]
    assert metrics.lead_time_median == timedelta(days=2, hours=3)
    assert metrics.lead_time_p90 == timedelta(days=8)
    assert (metrics.failed_or_rolled_back, metrics.production_outcomes) == (2, 4)
    assert metrics.change_failure_rate == 0.5
    assert metrics.restores == 2 and metrics.time_to_restore_median == timedelta(hours=1)


def test_an_empty_window_has_no_numbers(history: dict[str, Any]) -> None:
    metrics = delivery_metrics(
        promotions=Promotion.objects.all(), since=T0 + timedelta(days=60), until=T0 + timedelta(days=90)
    )
    assert metrics.deployments_per_week == [] and metrics.change_failure_rate is None
    assert metrics.lead_time_median is None and metrics.time_to_restore_median is None


def test_the_page_shows_them_to_everyone_who_sees_the_promotions(history: dict[str, Any]) -> None:
    world = history["world"]
    client = Client()
    client.force_login(world.users["auditor"])
    response = client.get(reverse("deployments:metrics"), {"from": "2026-01-04", "to": "2026-02-04"})
    body = response.content.decode()
    assert response.status_code == 200 and "2026-W02" in body and "50%" in body
    outsider = Client()
    outsider.force_login(world.users["maker2"])
    assert "No production deployments" in outsider.get(reverse("deployments:metrics")).content.decode()


def test_the_metrics_per_solution_and_per_environment_on_fixed_data(history: dict[str, Any]) -> None:
    from deployments.metrics import delivery_metrics_by

    window = {"since": T0 - timedelta(days=1), "until": T0 + timedelta(30)}
    overall = delivery_metrics(promotions=Promotion.objects.all(), **window)
    assert overall.failures_per_week == [("2026-W02", 1), ("2026-W03", 1)]
    [environment] = delivery_metrics_by(promotions=Promotion.objects.all(), by="environment", **window)
    assert environment.name == "contoso-prod" and environment.metrics == overall
    [solution] = delivery_metrics_by(promotions=Promotion.objects.all(), by="solution", **window)
    assert solution.metrics.production_outcomes == 4 and solution.metrics.change_failure_rate == 0.5
    with pytest.raises(ValueError):
        delivery_metrics_by(promotions=Promotion.objects.all(), by="team", **window)


def test_the_page_draws_charts_from_json_data_and_keeps_the_numbers_in_tables(history: dict[str, Any]) -> None:
    import json
    import re

    client = Client()
    client.force_login(history["world"].users["maker"])
    response = client.get(reverse("deployments:metrics"), {"from": "2026-01-04", "to": "2026-02-04"})
    body = response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "unsafe-eval" not in policy and "unsafe-inline" not in policy
    data = json.loads(re.search(r'<script id="delivery-metrics-data" type="application/json">(.*?)</script>', body)[1])
    assert data["over_time"] == {"labels": ["2026-W02", "2026-W03"], "deployments": [2, 1], "failures": [1, 1]}
    assert data["by_environment"]["labels"] == ["contoso-prod"] and data["by_environment"]["failure_percent"] == [50]
    assert "vendor/chartjs/chart.umd.min.js" in body and "js/delivery-metrics.js" in body
    for canvas in re.findall(r"<canvas\b[^>]*>", body):
        assert 'role="img"' in canvas and "aria-label=" in canvas
    per_environment = body.split('id="per-environment"')[1]
    assert '<th scope="row">contoso-prod</th><td>3</td><td>50% of 4</td>' in per_environment


def test_the_chart_scripts_need_no_eval() -> None:
    from pathlib import Path

    static = Path(__file__).resolve().parents[2] / "static"
    for script in (static / "vendor/chartjs/chart.umd.min.js", static / "js/delivery-metrics.js"):
        text = script.read_text()
        assert "eval(" not in text and "new Function" not in text, script
    assert "MIT" in (static / "vendor/chartjs/LICENSE.md").read_text()
    assert "4.6.1" in (static / "vendor/chartjs/README.md").read_text()
