"""Duplicate and stale requests never become fake failures (issue 13, item 3).

In Chromium and over HTTP, with a real Celery worker running every job against the emulator:

- Back + resubmit on the request form is refused in words that name (and link) the open promotion;
- the same POST sent twice without Idempotency-Key: the second answers 409 duplicate_request with
  `details.existing`;
- a request overtaken by another deployment of the same solution to the same target is cancelled by
  the system as superseded, when an approver approves it and when its import job finally gets the
  environment's slot: it never runs, never lands in "Recent failures" and never counts as a failure.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.urls import reverse

from alm_portal.audit.models import AuditEvent
from alm_portal.jobs.models import Job
from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import SUCCESS, success_package
from tests.e2e.conftest import (  # noqa: F401 - browser is a fixture
    browser,
    preflight_done,
    promoted_by_the_worker,
    run_finished,
    sign_in_with_password,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def _api(live_server: Any, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return requests.request(
        method,
        f"{live_server.url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _cancelled_as_superseded(promotion: Promotion, by: Promotion) -> AuditEvent:
    promotion.refresh_from_db()
    assert promotion.status == "cancelled" and promotion.error_code == "superseded", promotion.error_message
    assert f"#{by.pk}" in promotion.error_message
    event = AuditEvent.objects.get(action="promotion.cancelled", object_id=str(promotion.pk))
    assert event.actor_kind == "system"
    assert event.after["reason"] == "superseded" and event.after["superseded_by"] == by.pk
    return event


def test_back_and_resubmit_is_refused_naming_the_open_promotion(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    page = sign_in_with_password(new_page(), live_server, contoso.maker.username)
    page.goto(live_server.url + reverse("deployments:promotion-request", args=[version.pk]))
    page.select_option("select[name=stage]", str(contoso.stages["test"].pk))
    page.fill("textarea[name=comment]", "First release to test")
    page.click("#request-button")
    page.wait_for_selector('[data-status="pending_approval"]')
    first = Promotion.objects.get()

    page.go_back()  # the filled form again, as the browser kept it
    page.select_option("select[name=stage]", str(contoso.stages["test"].pk))
    page.fill("textarea[name=comment]", "First release to test")
    page.click("#request-button")
    refusal = page.locator(".refusal[role=alert]").inner_text()
    assert f"already has an open promotion: #{first.pk}" in refusal, refusal
    assert "waiting for approval" in refusal
    page.click("#existing-promotion a")
    page.wait_for_url(f"**/deploy/promotions/{first.pk}/")
    assert Promotion.objects.count() == 1  # nothing stored twice


def test_the_same_post_twice_answers_409_duplicate_request_naming_the_first(
    live_server: Any, contoso: Any, token_for: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    token = token_for(contoso.maker, ["read", "request"])
    body = {"version": version.pk, "stage": contoso.stages["test"].pk, "justification": "CI run 41"}
    created = _api(live_server, token, "POST", "/promotions/", body)
    assert created.status_code == 201, created.text
    again = _api(live_server, token, "POST", "/promotions/", body)
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "duplicate_request"
    existing = error["details"]["existing"]
    assert existing["id"] == created.json()["id"] and existing["status"] == "pending_approval"
    assert (existing["solution"], existing["version"], existing["stage"]) == (SUCCESS, "1.0.0.0", "test")
    assert f"#{existing['id']}" in error["message"]
    assert Promotion.objects.count() == 1


def test_an_overtaken_request_is_cancelled_when_approved_and_never_runs(
    new_page: Any, live_server: Any, contoso: Any, token_for: Any, worker: Any
) -> None:
    older = contoso.upload(success_package("1.0.0.0"))
    newer = contoso.upload(success_package("1.1.0.0"))
    stale = preflight_done(worker, contoso.request(older, "test"))
    overtaking = promoted_by_the_worker(contoso, worker, newer, "test")

    approver = contoso.approvers[0]
    answer = _api(live_server, token_for(approver, ["read", "approve"]), "POST", f"/promotions/{stale.pk}/approve/", {})
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_state" and error["details"]["superseded_by"] == overtaking.pk
    assert "superseded" in error["message"]
    _cancelled_as_superseded(stale, overtaking)
    assert not stale.approvals.exists() and stale.run_job_id is None
    assert contoso.orgs["test"].import_count(SUCCESS, "1.0.0.0") == 0  # never run
    page = sign_in_with_password(new_page(), live_server, approver.username)
    assert "No failed promotions" in page.locator("#failures").inner_text()


def test_an_overtaken_request_waiting_for_the_slot_is_cancelled_by_the_runner(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    older = contoso.upload(success_package("1.0.0.0"))
    newer = contoso.upload(success_package("1.1.0.0"))
    for version in (older, newer):
        promoted_by_the_worker(contoso, worker, version, "test")
    prod = contoso.orgs["prod"]
    prod.settings(operation_duration=600)  # prod's imports run until the test completes them
    stale = preflight_done(worker, contoso.request(older, "prod"))
    overtaking = preflight_done(worker, contoso.request(newer, "prod"))
    contoso.approve(overtaking)
    worker.wait_for(lambda: Job.objects.get(pk=Promotion.objects.get(pk=overtaking.pk).run_job_id).async_operation_id)
    contoso.approve(stale)  # nothing has overtaken it yet: approved, queued behind the running import
    stale.refresh_from_db()
    assert stale.status == "queued"

    prod.complete_operation(Job.objects.get(pk=Promotion.objects.get(pk=overtaking.pk).run_job_id).async_operation_id)
    assert run_finished(worker, overtaking).status == "succeeded"
    worker.wait_for(lambda: Promotion.objects.get(pk=stale.pk).status != "queued", timeout=60)
    _cancelled_as_superseded(stale, overtaking)
    run_job = Job.objects.get(pk=stale.run_job_id)
    worker.wait_for(lambda: Job.objects.get(pk=run_job.pk).status in ("succeeded", "cancelled"), timeout=60)
    assert prod.import_count(SUCCESS, "1.0.0.0") == 0  # never run
    assert contoso.installed("prod")["version"] == "1.1.0.0"

    page = sign_in_with_password(new_page(), live_server, contoso.admin.username)
    assert "No failed promotions" in page.locator("#failures").inner_text()
    page.goto(live_server.url + reverse("deployments:metrics"))
    change_failure = page.locator("article", has=page.locator("h2", has_text="Change failure rate")).inner_text()
    assert "(0 of 1)" in change_failure, change_failure
