"""The promotion pages behave like the policy: refusals in words, actions by role, live progress."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion

pytestmark = pytest.mark.django_db


def _as(world: Any, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def _preflight_passed(promotion_id: int) -> None:
    workflow.promotion_preflight_finished(
        promotion_id=promotion_id,
        status="passed",
        result={"checks": [{"code": "deps_ok", "severity": "info", "message": "Every dependency is installed."}]},
        context=AuditContext.system(),
    )


def test_the_requester_sees_no_approve_button_but_the_policy_sentence(api_world: Any) -> None:
    _preflight_passed(api_world.ids["promotion"])
    url = reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]])
    body = _as(api_world, "maker").get(url).content.decode()
    assert "You requested this promotion; someone else must approve it." in body
    assert 'id="approve-button"' not in body
    assert "Every dependency is installed." in body
    assert "approver" in body  # who still may approve


def test_a_maker_posting_approve_anyway_gets_the_refusal_in_words_and_a_denied_audit_row(api_world: Any) -> None:
    _preflight_passed(api_world.ids["promotion"])
    pk = api_world.ids["promotion"]
    response = _as(api_world, "maker").post(reverse("deployments:promotion-approve", args=[pk]), follow=True)
    assert "You are not named as an approver of the stage" in response.content.decode()
    assert Promotion.objects.get(pk=pk).status == "pending_approval"
    denied = AuditEvent.objects.filter(action="page.denied", object_id=str(pk)).get()
    assert denied.outcome == "denied" and "permission_denied" in denied.message


def test_an_approver_who_requested_may_not_approve_their_own_promotion(api_world: Any) -> None:
    approver = api_world.users["approver"]
    promotion = workflow.promotion_request(
        version=api_world.objects["versions"]["1.0"],
        stage=api_world.objects["stages"]["test"],
        requested_by=approver,
        context=AuditContext.for_user(approver, auth_method="session"),
    )
    _preflight_passed(promotion.pk)
    client = _as(api_world, "approver")
    body = client.get(reverse("deployments:promotion-detail", args=[promotion.pk])).content.decode()
    assert "You requested this promotion; someone else must approve it." in body
    assert 'id="approve-button"' not in body
    response = client.post(reverse("deployments:promotion-approve", args=[promotion.pk]), follow=True)
    assert "You requested this promotion; someone else must approve it." in response.content.decode()
    denied = AuditEvent.objects.filter(action="page.denied", object_id=str(promotion.pk)).get()
    assert "self_approval_forbidden" in denied.message


def test_an_approver_sees_the_form_and_approving_queues_the_import(api_world: Any) -> None:
    pk = api_world.ids["promotion"]
    client = _as(api_world, "approver")
    detail = reverse("deployments:promotion-detail", args=[pk])
    assert "Pre-flight checks have not finished yet" in client.get(detail).content.decode()
    _preflight_passed(pk)
    body = client.get(detail).content.decode()
    assert 'id="approve-button"' in body and 'id="reject-button"' in body
    response = client.post(reverse("deployments:promotion-approve", args=[pk]), {"comment": "ok"}, follow=True)
    assert "Your approval is recorded." in response.content.decode()
    promotion = Promotion.objects.get(pk=pk)
    assert promotion.status == "queued" and promotion.run_job_id is not None
    body = response.content.decode()
    assert "promotion.approved" in body  # the timeline
    assert "Approved and queued" in body  # the status, said once (deployments/status_sentences.py)
    assert "Decisions are closed" in body


def test_reject_needs_a_comment_and_is_final(api_world: Any) -> None:
    pk = api_world.ids["promotion"]
    client = _as(api_world, "approver")
    client.post(reverse("deployments:promotion-reject", args=[pk]), {"comment": ""})
    assert Promotion.objects.get(pk=pk).status == "pending_approval"
    client.post(reverse("deployments:promotion-reject", args=[pk]), {"comment": "Not this sprint"})
    assert Promotion.objects.get(pk=pk).status == "rejected"


def test_the_requester_cancels_with_a_comment_another_maker_may_not(api_world: Any, make_user: Any, team: Any) -> None:
    pk = api_world.ids["promotion"]
    colleague = make_user("colleague", "maker", team)
    other = Client()
    other.force_login(colleague)
    response = other.post(reverse("deployments:promotion-cancel", args=[pk]), {"comment": "mine now"}, follow=True)
    assert "Only the requester or an admin may cancel this promotion." in response.content.decode()
    _as(api_world, "maker").post(reverse("deployments:promotion-cancel", args=[pk]), {"comment": "wrong version"})
    assert Promotion.objects.get(pk=pk).status == "cancelled"


def test_progress_partial_polls_while_live_and_stops_when_over(api_world: Any) -> None:
    pk = api_world.ids["promotion"]
    client = _as(api_world, "auditor")
    partial = reverse("deployments:promotion-progress", args=[pk])
    live = client.get(partial).content.decode()
    assert 'hx-trigger="every 2s"' in live and "<html" not in live
    _as(api_world, "maker").post(reverse("deployments:promotion-cancel", args=[pk]), {"comment": "stop"})
    over = client.get(partial).content.decode()
    assert "hx-trigger" not in over and "Cancelled" in over


def test_auditors_see_no_actions(api_world: Any) -> None:
    _preflight_passed(api_world.ids["promotion"])
    body = (
        _as(api_world, "auditor")
        .get(reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]]))
        .content.decode()
    )
    assert "approve-button" not in body and "cancel-button" not in body


def test_a_maker_requests_a_promotion_from_a_version_page(api_world: Any) -> None:
    client = _as(api_world, "maker")
    version = api_world.ids["old_version"]
    page = client.get(reverse("solutions:version-detail", args=[version])).content.decode()
    assert reverse("deployments:promotion-request", args=[version]) in page
    form = client.get(reverse("deployments:promotion-request", args=[version])).content.decode()
    assert "test → contoso-test" in form and "prod → contoso-prod" in form
    response = client.post(
        reverse("deployments:promotion-request", args=[version]),
        {"stage": api_world.ids["stage"], "comment": "1.0 to test"},
    )
    created = Promotion.objects.exclude(pk=api_world.ids["promotion"]).get()
    assert response.status_code == 302 and response["Location"].endswith(f"/promotions/{created.pk}/")
    assert created.requested_by == api_world.users["maker"] and created.version_id == version


def test_a_refused_request_shows_the_reason_on_the_form(api_world: Any) -> None:
    client = _as(api_world, "maker")
    version = api_world.ids["old_version"]
    response = client.post(
        reverse("deployments:promotion-request", args=[version]), {"stage": api_world.ids["stage_prod"]}
    )
    assert response.status_code == 200
    assert Promotion.objects.count() == 1
    assert "has not yet been deployed successfully to the previous stage" in response.content.decode()


def test_the_inbox_lists_what_waits_for_me_oldest_first(api_world: Any) -> None:
    _preflight_passed(api_world.ids["promotion"])
    client = _as(api_world, "approver")
    body = client.get(reverse("deployments:approvals-inbox")).content.decode()
    assert reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]]) in body
    admin_body = _as(api_world, "admin").get(reverse("deployments:approvals-inbox")).content.decode()
    assert "Nothing waits for you." in admin_body  # admins approve only where a stage names them
