"""Production never goes without an approval by accident (docs/security.md, "Governance").

The review, as an admin, set the prod stage to 0 required approvals and had its own request approved by
"system" with nobody else involved. A stage into a production environment may require none only when an
admin says so explicitly (production_without_approval, audited with the stage's policy), and an environment
becomes production only when no stage into it would then go unapproved. Kind changes are audited.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion, Stage

pytestmark = pytest.mark.django_db


def _admin_client(world: Any) -> Any:
    return world.client("admin")


def _release_to_prod(world: Any) -> Promotion:
    """The admin's own request of 1.1.0.0 into prod, after it succeeded in test (gating)."""
    system = AuditContext.system()
    tested = Promotion.objects.get(pk=world.ids["promotion"])
    workflow.promotion_preflight_finished(
        promotion_id=tested.pk, status="passed", result={"checks": []}, context=system
    )
    approver = world.users["approver"]
    workflow.promotion_approve(
        promotion=tested, user=approver, comment="ok", context=AuditContext.for_user(approver, auth_method="session")
    )
    tested.refresh_from_db()
    workflow.promotion_mark_running(
        promotion_id=tested.pk, job_id=tested.run_job_id, previous_version="", context=system
    )
    workflow.promotion_mark_succeeded(promotion_id=tested.pk, result={}, context=system)
    admin = world.users["admin"]
    promotion = workflow.promotion_request(
        version=world.objects["versions"]["1.1"],
        stage=Stage.objects.get(pk=world.ids["stage_prod"]),
        requested_by=admin,
        context=AuditContext.for_user(admin, auth_method="session"),
        comment="Friday release",
    )
    workflow.promotion_preflight_finished(
        promotion_id=promotion.pk, status="passed", result={"checks": []}, context=system
    )
    promotion.refresh_from_db()
    return promotion


def test_an_admin_cannot_set_a_production_stage_to_zero_approvals_by_the_api(api_world: Any) -> None:
    stage = api_world.ids["stage_prod"]

    response = _admin_client(api_world).patch(f"/api/v1/stages/{stage}/", {"required_approvals": 0}, format="json")

    assert response.status_code == 400, response.json()
    assert "production environment" in response.json()["error"]["details"]["required_approvals"][0]
    assert Stage.objects.get(pk=stage).required_approvals == 2


def test_nor_on_the_stage_page(api_world: Any) -> None:
    stage = Stage.objects.get(pk=api_world.ids["stage_prod"])
    browser = Client()
    browser.force_login(api_world.users["admin"])
    form = browser.get(reverse("deployments:stage-edit", args=[stage.pk])).context["form"]
    data = {name: value for name, value in form.initial.items() if value not in (None, False)}
    data |= {"required_approvals": 0, "target_environment": stage.target_environment_id}
    data["approver_users"] = [user.pk for user in stage.approver_users.all()]

    page = browser.post(reverse("deployments:stage-edit", args=[stage.pk]), data)

    assert page.status_code == 200 and "production environment" in page.content.decode()
    stage.refresh_from_db()
    assert stage.required_approvals == 2


def test_an_admins_own_request_into_production_waits_for_an_approval(api_world: Any) -> None:
    """The attack itself: 0 approvals on prod (saved before the rule, or forced in the database), and the
    admin's own request. It must wait for someone else; "system" approves nothing into production."""
    Stage.objects.filter(pk=api_world.ids["stage_prod"]).update(required_approvals=0)

    promotion = _release_to_prod(api_world)

    assert promotion.status == "pending_approval"
    assert not promotion.approvals.exists()
    page = Client()
    page.force_login(api_world.users["approver"])
    detail = page.get(reverse("deployments:promotion-detail", args=[promotion.pk])).context["approvals"]
    assert detail["required"] == 1


def test_the_explicit_policy_flag_allows_it_and_is_audited(api_world: Any) -> None:
    stage = api_world.ids["stage_prod"]

    response = _admin_client(api_world).patch(
        f"/api/v1/stages/{stage}/", {"required_approvals": 0, "production_without_approval": True}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["production_without_approval"] is True
    event = AuditEvent.objects.filter(action="stage.updated", object_id=str(stage)).latest("seq")
    assert event.before["production_without_approval"] is False and event.after["production_without_approval"] is True
    assert event.actor_id == api_world.users["admin"].pk
    promotion = _release_to_prod(api_world)
    assert promotion.status in ("queued", "scheduled")  # as the admin explicitly allowed


def test_an_environment_becomes_production_only_when_its_stages_need_an_approval(api_world: Any) -> None:
    test_env = api_world.objects["environments"]["test"]
    Stage.objects.filter(pk=api_world.ids["stage"]).update(required_approvals=0)

    refused = _admin_client(api_world).patch(
        f"/api/v1/environments/{test_env.pk}/", {"kind": "production"}, format="json"
    )

    assert refused.status_code == 400, refused.json()
    assert "require no approval" in refused.json()["error"]["details"]["kind"][0]
    test_env.refresh_from_db()
    assert test_env.kind == "test"


def test_environment_kind_changes_are_audited_from_the_api_and_the_page(api_world: Any) -> None:
    environment = api_world.objects["environments"]["dev"]

    response = _admin_client(api_world).patch(
        f"/api/v1/environments/{environment.pk}/", {"kind": "other"}, format="json"
    )
    assert response.status_code == 200, response.json()
    browser = Client()
    browser.force_login(api_world.users["admin"])
    edit = browser.get(reverse("environments:edit", args=[environment.pk])).context["form"]
    data = {name: value for name, value in edit.initial.items() if value not in (None, "")}
    data |= {"kind": "development", "team": environment.team_id}
    browser.post(reverse("environments:edit", args=[environment.pk]), data)

    events = AuditEvent.objects.filter(action="environment.updated", object_id=str(environment.pk)).order_by("seq")
    assert [(e.before["kind"], e.after["kind"]) for e in events] == [("development", "other"), ("other", "development")]
    assert {e.actor_id for e in events} == {api_world.users["admin"].pk}
