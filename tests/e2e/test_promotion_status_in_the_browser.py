"""A promotion's page says one true thing about its status, for every status (issue 13, item 6).

For a promotion in each of the ten statuses: the badge, the status sentence, the live part as its poll
answers it and the page after a reload all agree; nothing else on the page restates the status ("This
promotion is succeeded", "it starts once approved" on a rejected one); a finished job says how it ended,
not its last progress message; import-log cells never read "None".

While a page is open and the status moves on (approved by someone else, then run), the page follows by
itself; if the person has typed into one of its forms, it keeps the text and says the status changed.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import workflow
from deployments.choices import PromotionStatus
from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import as_user, success_package
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    promotion_url,
    sign_in_with_password,
)
from tests.e2e.site import Site, site_fixture  # noqa: F401 - the fixture is found by name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# What each status must say first, and what it must never say. Every status is here (checked below).
SAYS: dict[str, str] = {
    PromotionStatus.PENDING_APPROVAL: "Waiting for",  # the pre-flight checks, then approval; or approval
    PromotionStatus.APPROVED: "Approved: the import is being queued",
    PromotionStatus.SCHEDULED: "Approved and scheduled: the import starts at",
    PromotionStatus.QUEUED: "Approved and queued",
    PromotionStatus.RUNNING: "Running: importing",
    PromotionStatus.SUCCEEDED: "Succeeded:",
    PromotionStatus.FAILED: "Failed",
    PromotionStatus.REJECTED: "Rejected by",
    PromotionStatus.CANCELLED: "Cancelled: it will not run",
    PromotionStatus.ROLLED_BACK: "Rolled back by rollback",
}
OPEN = (PromotionStatus.PENDING_APPROVAL, PromotionStatus.APPROVED, PromotionStatus.SCHEDULED)
NEVER = re.compile(r"This promotion is |nothing to decide\.$|No import job yet")


def _promotion_in_every_status(site: Site) -> dict[str, Promotion]:
    contoso = site.contoso
    maker, approver = contoso.maker, contoso.approvers[0]
    versions = iter(contoso.upload(success_package(f"2.{minor}.0.0")) for minor in range(10))

    def requested(**kwargs: Any) -> Promotion:
        return contoso.preflight(contoso.request(next(versions), "test", **kwargs))

    found: dict[str, Promotion] = {
        PromotionStatus.PENDING_APPROVAL: site.waiting,
        PromotionStatus.SUCCEEDED: site.succeeded,
    }
    found[PromotionStatus.REJECTED] = workflow.promotion_reject(
        promotion=requested(), user=approver, comment="Not this week", context=as_user(approver)
    )
    found[PromotionStatus.CANCELLED] = workflow.promotion_cancel(
        promotion=requested(), user=maker, comment="Asked by mistake", context=as_user(maker)
    )
    # Runs first: the "running" one below holds the environment's one solution-operation slot.
    rolled_back = contoso.promote(next(versions), "test")
    contoso.rollback(rolled_back, "reversion_update")
    found[PromotionStatus.ROLLED_BACK] = rolled_back
    found[PromotionStatus.SCHEDULED] = contoso.approve(requested(scheduled_for=timezone.now() + timedelta(days=2)))
    found[PromotionStatus.QUEUED] = contoso.approve(requested())
    # `approved` lasts only inside the approving transaction, and a run takes a worker: these three are
    # put in place directly, as the workflow leaves them.
    approved = requested()
    Promotion.objects.filter(pk=approved.pk).update(status=PromotionStatus.APPROVED)
    found[PromotionStatus.APPROVED] = approved
    running = contoso.approve(requested())
    Job.objects.filter(pk=running.run_job_id).update(
        status=JobStatus.POLLING, progress=40, progress_message="Importing 12 of 30 components"
    )
    Promotion.objects.filter(pk=running.pk).update(status=PromotionStatus.RUNNING, started_at=timezone.now())
    found[PromotionStatus.RUNNING] = running
    failed = contoso.approve(requested())
    Job.objects.filter(pk=failed.run_job_id).update(
        status=JobStatus.FAILED, progress=60, progress_message="Refreshing the target's inventory",
        error_code="0x8004801D", error_message="Some dependencies are missing.", finished_at=timezone.now(),
    )  # fmt: skip
    Promotion.objects.filter(pk=failed.pk).update(
        status=PromotionStatus.FAILED, error_code="0x8004801D", error_message="Some dependencies are missing.",
        finished_at=timezone.now(),
    )  # fmt: skip
    found[PromotionStatus.FAILED] = failed
    for status, promotion in found.items():
        promotion.refresh_from_db()
        assert promotion.status == status, (status, promotion.status)
    return found


def _said(page: Any) -> dict[str, str]:
    return {
        "status": page.locator("#progress [data-status]").get_attribute("data-status") or "",
        "badge": page.locator("#progress [data-status]").inner_text(),
        "sentence": page.locator("#status-sentence").inner_text(),
        "main": page.locator("main").inner_text(),
    }


def test_every_status_is_said_once_and_the_same_live_and_after_a_reload(
    new_page: Any, live_server: Any, site: Site
) -> None:
    assert set(SAYS) == set(PromotionStatus.values)
    promotions = _promotion_in_every_status(site)
    page = sign_in_with_password(new_page(), live_server, site.people["admin"].username)
    for status, promotion in promotions.items():
        page.goto(promotion_url(live_server, promotion))
        first = _said(page)
        assert first["status"] == status and first["badge"] == PromotionStatus(status).label, (status, first)
        assert first["sentence"].startswith(SAYS[status]), (status, first["sentence"])
        for line in first["main"].splitlines():
            assert not NEVER.search(line), (status, line)
        if status not in OPEN:
            assert "starts once approved" not in first["main"], status
        if status in (PromotionStatus.SUCCEEDED, PromotionStatus.FAILED, PromotionStatus.ROLLED_BACK):
            job_line = page.locator("#job-line").inner_text()
            assert "Refreshing" not in job_line and ("finished" in job_line or "ended" in job_line), job_line

        # The poll answers with the same words (as htmx asks, with the status the page shows).
        polled = page.request.get(
            live_server.url + reverse("deployments:promotion-progress", args=[promotion.pk]) + f"?shown={status}"
        )
        assert polled.ok and "hx-refresh" not in polled.headers
        assert first["sentence"] in html.unescape(polled.text()), status

        page.reload()
        again = _said(page)
        assert (again["status"], again["sentence"]) == (first["status"], first["sentence"]), status
        for cell in page.locator("#import-log td").all_inner_texts():
            assert "None" not in cell, (status, cell)


def test_an_open_page_follows_the_status_by_itself_and_keeps_what_was_typed(
    new_page: Any, live_server: Any, site: Site
) -> None:
    contoso = site.contoso
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("3.0.0.0")), "test"))
    watcher = sign_in_with_password(new_page(), live_server, site.people["maker"].username)
    watcher.goto(promotion_url(live_server, promotion))
    assert watcher.locator("#progress [data-status]").get_attribute("data-status") == "pending_approval"

    contoso.approve(promotion)  # someone else approves: queued, with no worker to take it yet
    watcher.wait_for_selector('#progress [data-status="queued"]', timeout=20_000)
    assert watcher.locator("#status-sentence").inner_text().startswith("Approved and queued")
    # The whole page followed (it reloaded itself), not only the live part.
    assert "Who still may approve" not in watcher.locator("main").inner_text()
    assert watcher.locator("#decision-refusal").inner_text().startswith("Decisions are closed")

    typist = sign_in_with_password(new_page(), live_server, site.people["maker"].username)
    typist.goto(promotion_url(live_server, promotion))
    typist.fill("#cancel-comment", "Hold on, the release notes are wrong")
    contoso.run(promotion)  # the import runs and succeeds while the text is in the box
    watcher.wait_for_selector('#progress [data-status="succeeded"]', timeout=20_000)
    typist.wait_for_selector("#status-changed", timeout=20_000)
    assert typist.locator('#progress [data-status="succeeded"]').count() == 1
    assert typist.locator("#cancel-comment").input_value() == "Hold on, the release notes are wrong"
    typist.wait_for_timeout(4_500)  # two more polls: the note stays while the text does
    assert typist.locator("#status-changed").count() == 1
    assert typist.locator("#cancel-comment").input_value() == "Hold on, the release notes are wrong"
    typist.fill("#cancel-comment", "")  # nothing left to lose: the page catches up by itself
    typist.wait_for_selector("#cancel-comment", state="detached", timeout=20_000)
    assert typist.locator("#status-sentence").inner_text().startswith("Succeeded:")
    assert watcher.locator("#status-sentence").inner_text().startswith("Succeeded:")
    assert "Approved and queued" not in watcher.locator("main").inner_text()
