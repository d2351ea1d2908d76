"""A succeeded promotion's page on the emulator: import log, and the rollback planner with each
strategy's consequences; the destructive one is admin-only and needs the typed unique name."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def deployed(contoso: Any) -> Promotion:
    contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")
    second = contoso.promote(contoso.upload(success_package("1.1.0.0")), "test")
    assert second.status == "succeeded"
    return second


def test_the_page_shows_the_import_log_and_the_planner(contoso: Any, deployed: Promotion) -> None:
    response = _as(contoso.maker).get(reverse("deployments:promotion-detail", args=[deployed.pk]))
    body = response.content.decode()
    assert 'data-status="succeeded"' in body and 'id="import-log"' in body
    plan = {entry["strategy"]: entry for entry in response.context["rollback_plan"]}
    assert plan["reversion_update"]["allowed"] and plan["reversion_upgrade"]["allowed"]
    assert plan["uninstall_reinstall"]["requires_admin"] and not plan["uninstall_reinstall"]["allowed"]
    assert "admins only" in body
    admin = _as(contoso.admin).get(reverse("deployments:promotion-detail", args=[deployed.pk]))
    assert f"Type {SUCCESS} to confirm" in admin.content.decode()


def test_requesting_a_rollback_from_the_planner(contoso: Any, deployed: Promotion) -> None:
    client = _as(contoso.maker)
    url = reverse("deployments:promotion-rollback", args=[deployed.pk])
    response = client.post(url, {"strategy": "reversion_update", "comment": "bad release"})
    rollback = Promotion.objects.get(rollback_of=deployed)
    assert response["Location"] == reverse("deployments:promotion-detail", args=[rollback.pk])
    assert rollback.kind == "rollback" and rollback.status == "pending_approval"


def test_uninstall_without_the_typed_name_is_refused_in_words(contoso: Any, deployed: Promotion) -> None:
    client = _as(contoso.admin)
    url = reverse("deployments:promotion-rollback", args=[deployed.pk])
    response = client.post(url, {"strategy": "uninstall_reinstall", "confirm": "nope"}, follow=True)
    assert "confirm with its unique name" in response.content.decode()
    assert not Promotion.objects.filter(rollback_of=deployed).exists()


def test_production_needs_a_second_approver_and_the_page_says_who(contoso: Any) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    contoso.promote(version, "test")
    promotion = contoso.preflight(contoso.request(version, "prod"))
    first, second = contoso.approvers
    url = reverse("deployments:promotion-approve", args=[promotion.pk])
    _as(first).post(url, {"comment": "fine by me"})
    page = _as(second).get(reverse("deployments:promotion-detail", args=[promotion.pk]))
    approvals = page.context["approvals"]
    assert (approvals["valid"], approvals["required"]) == (1, 2)
    assert approvals["still_may_approve"] == [second.shown_name]
    assert "Approvals (1 of 2)" in page.content.decode()
    again = _as(first).get(reverse("deployments:promotion-detail", args=[promotion.pk])).content.decode()
    assert "You have already decided on this promotion." in again
    _as(second).post(url)
    promotion.refresh_from_db()
    assert promotion.status == "queued"
