"""The request form shows pre-flight before it is submitted; the promotion page shows the diff against the
target with its data-loss warnings (row counts and when they were counted)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion
from environments.models import InventoryInterval

pytestmark = pytest.mark.django_db


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _preview(world: Any, persona: str, stage: str) -> Any:
    url = reverse("deployments:promotion-request-preview", args=[world.ids["version"]])
    return _as(world.users[persona]).get(url, {"stage": world.ids[stage]})


def _codes(response: Any) -> list[str]:
    return [check["code"] for check in response.context["checks"]]


def test_the_request_form_asks_for_the_preview_when_a_stage_is_chosen(api_world: Any) -> None:
    body = (
        _as(api_world.users["maker"])
        .get(reverse("deployments:promotion-request", args=[api_world.ids["version"]]))
        .content.decode()
    )
    preview = reverse("deployments:promotion-request-preview", args=[api_world.ids["version"]])
    assert f'hx-get="{preview}"' in body and 'hx-trigger="load, change"' in body
    assert 'id="preflight-preview"' in body and "Choose a stage" in body


def test_a_new_install_is_previewed_from_the_inventory_without_writing_anything(api_world: Any) -> None:
    client = _as(api_world.users["maker"])  # signing in is audited; the preview is not
    events, promotions = AuditEvent.objects.count(), Promotion.objects.count()
    url = reverse("deployments:promotion-request-preview", args=[api_world.ids["version"]])
    response = client.get(url, {"stage": api_world.ids["stage"]})
    assert response.status_code == 200
    codes = _codes(response)
    assert "inventory_unknown" in codes and "version_new_install" in codes and "component_diff" in codes
    assert (AuditEvent.objects.count(), Promotion.objects.count()) == (events, promotions)


def test_an_upgrade_is_previewed_against_the_installed_registered_version(api_world: Any) -> None:
    environment = api_world.objects["environments"]["test"]
    name = api_world.objects["versions"]["1.0"].solution.unique_name
    now = timezone.now()
    InventoryInterval.objects.create(
        environment=environment, unique_name=name, version="1.0.0.0", is_managed=True, valid_from=now
    )
    environment.inventory_synced_at = now
    environment.save(update_fields=["inventory_synced_at"])
    response = _preview(api_world, "maker", "stage")
    codes = _codes(response)
    assert "inventory_as_of" in codes and "version_upgrade" in codes
    diff = next(check for check in response.context["checks"] if check["code"] == "component_diff")
    assert diff["message"].startswith("1.0.0.0 → 1.1.0.0")


def test_the_same_version_installed_already_is_a_blocker_shown_first(api_world: Any) -> None:
    environment = api_world.objects["environments"]["test"]
    name = api_world.objects["versions"]["1.1"].solution.unique_name
    InventoryInterval.objects.create(
        environment=environment, unique_name=name, version="1.1.0.0", is_managed=True, valid_from=timezone.now()
    )
    response = _preview(api_world, "maker", "stage")
    assert response.context["report"].status == "blocked"
    assert _codes(response)[0] == "already_installed"
    assert 'data-status="blocked"' in response.content.decode()


def test_production_before_test_is_refused_in_the_preview_as_the_request_would_be(api_world: Any) -> None:
    response = _preview(api_world, "maker", "stage_prod")
    assert "previous_stage_not_succeeded" in _codes(response)


def test_no_stage_chosen_shows_what_to_do_and_a_foreign_stage_is_not_found(api_world: Any) -> None:
    url = reverse("deployments:promotion-request-preview", args=[api_world.ids["version"]])
    client = _as(api_world.users["maker"])
    assert "Choose a stage" in client.get(url).content.decode()
    assert client.get(url, {"stage": 999999}).status_code == 404


def test_auditors_and_other_teams_get_no_preview(api_world: Any) -> None:
    assert _preview(api_world, "auditor", "stage").status_code == 403
    assert _preview(api_world, "maker2", "stage").status_code == 404


def test_the_promotion_shows_its_diff_against_the_target(api_world: Any) -> None:
    environment = api_world.objects["environments"]["test"]
    name = api_world.objects["versions"]["1.0"].solution.unique_name
    InventoryInterval.objects.create(
        environment=environment, unique_name=name, version="1.0.0.0", is_managed=True, valid_from=timezone.now()
    )
    response = _as(api_world.users["approver"]).get(
        reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]])
    )
    target = response.context["target"]
    assert (target["installed_version"], target["compared_with"]) == ("1.0.0.0", "now")
    assert target["diff"]["in_registry"] is True
    body = response.content.decode()
    assert 'id="target-diff"' in body and "contoso-test has 1.0.0.0" in body
    assert reverse("solutions:version-diff", args=[api_world.ids["version"], api_world.ids["old_version"]]) in body


def test_data_loss_warnings_show_row_counts_and_when_they_were_counted(api_world: Any) -> None:
    loss = {"table": "contoso_invoice", "column": None, "rows": 1234, "as_of": "2026-11-20T08:30:00+00:00"}
    result = {
        "checks": [
            {
                "code": "data_loss",
                "severity": "warning",
                "message": "The upgrade deletes 1 custom table(s)/column(s).",
                "details": {"data_loss": [{**loss, "approximate": True}]},
            }
        ]
    }
    workflow.promotion_preflight_finished(
        promotion_id=api_world.ids["promotion"], status="warnings", result=result, context=AuditContext.system()
    )
    body = (
        _as(api_world.users["approver"])
        .get(reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]]))
        .content.decode()
    )
    warning = body.split('id="data-loss"')[1].split("</div>")[0]
    assert "contoso_invoice: about 1234 rows as of 2026-11-20 08:30 UTC" in warning


def test_a_new_install_says_everything_is_new(api_world: Any) -> None:
    response = _as(api_world.users["maker"]).get(
        reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]])
    )
    assert "is not installed in contoso-test: everything is new." in response.content.decode()


def test_an_unreadable_settings_document_is_a_blocker_not_a_crash(api_world: Any) -> None:
    from deployments.models import DeploymentSettings

    DeploymentSettings.objects.create(
        stage_id=api_world.ids["stage"], version=1, document={"EnvironmentVariables": "not a list"}, etag="x"
    )
    response = _preview(api_world, "maker", "stage")
    assert response.status_code == 200
    assert "settings_invalid" in _codes(response) and response.context["report"].status == "blocked"
