"""In Chromium, with a real Celery worker running every job against the emulator (issue 7, "Must show"):

- a maker signs in through Entra ID (the emulator's sign-in page) and requests a promotion; an approver
  approves it and watches the progress bar reach "succeeded" without reloading;
- production needs a second approver: the first approval leaves it waiting, the second starts it;
- a maker sees no approve button on their own request and is refused in words when posting anyway;
- an auditor filters the audit log and exports what the filter shows.

Set-up shared with the other browser tests is in tests/e2e/conftest.py (screenshots on failure too).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from alm_portal.audit.models import AuditEvent
from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import success_package
from tests.e2e.conftest import (  # noqa: F401 - PASSWORD and browser: other modules import them from here
    PASSWORD,
    browser,
    preflight_done,
    promoted_by_the_worker,
    promotion_url,
    sign_in_with_entra,
    sign_in_with_password,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
SELF_APPROVAL = "You requested this promotion; someone else must approve it."


def test_a_maker_requests_through_entra_id_and_an_approver_watches_it_succeed(
    new_page: Any, live_server: Any, contoso: Any, entra: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))

    maker = sign_in_with_entra(new_page(), live_server, "maker")
    assert "Max Maker" in maker.content() or contoso.maker.username in maker.content()
    maker.goto(live_server.url + reverse("solutions:version-detail", args=[version.pk]))
    maker.click("#request-promotion")
    maker.select_option("select[name=stage]", str(contoso.stages["test"].pk))
    maker.fill("textarea[name=comment]", "First release to test")
    maker.click("#request-button")
    maker.wait_for_selector('[data-status="pending_approval"]')
    promotion = Promotion.objects.get()
    assert promotion.requested_by_id == contoso.maker.pk  # the Entra ID identity is the local maker
    assert maker.locator("#approve-button").count() == 0
    preflight_done(worker, promotion)

    approver = sign_in_with_password(new_page(), live_server, contoso.approvers[0].username)
    approver.goto(f"{live_server.url}/deploy/approvals/")
    approver.click(f'a[href="/deploy/promotions/{promotion.pk}/"]')
    approver.fill("#approve-comment", "Looks good")
    approver.click("#approve-button")
    approver.wait_for_selector("text=Your approval is recorded.")

    # No reload: the progress part polls every 2 s and swaps itself in while the worker imports.
    approver.wait_for_selector('[data-status="succeeded"]', timeout=60_000)
    assert approver.locator("#job-progress").get_attribute("value") == "100"
    assert contoso.installed("test")["version"] == "1.0.0.0"


def test_production_waits_for_a_second_approver(new_page: Any, live_server: Any, contoso: Any, worker: Any) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    promoted_by_the_worker(contoso, worker, version, "test")
    to_prod = preflight_done(worker, contoso.request(version, "prod"))
    first, second = contoso.approvers

    page = sign_in_with_password(new_page(), live_server, first.username)
    page.goto(promotion_url(live_server, to_prod))
    page.click("#approve-button")
    page.wait_for_selector("text=Your approval is recorded.")
    assert page.locator("#approvals h2").inner_text() == "Approvals (1 of 2)"
    assert page.locator('[data-status="pending_approval"]').count() == 1
    assert Promotion.objects.get(pk=to_prod.pk).status == "pending_approval"
    assert contoso.installed("prod") is None

    page = sign_in_with_password(new_page(), live_server, second.username)
    page.goto(promotion_url(live_server, to_prod))
    assert second.shown_name in page.locator("#approvals").inner_text()  # still may approve
    page.click("#approve-button")
    page.wait_for_selector("text=Your approval is recorded.")
    page.wait_for_selector('[data-status="succeeded"]', timeout=60_000)
    assert contoso.installed("prod")["version"] == "1.0.0.0"


def test_a_maker_sees_no_approve_on_their_own_request_and_posting_anyway_is_refused(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    promotion = preflight_done(worker, contoso.request(version, "test"))
    assert promotion.preflight_status == "passed"  # nothing but the policy stands in the way

    page = sign_in_with_password(new_page(), live_server, contoso.maker.username)
    page.goto(promotion_url(live_server, promotion))
    assert page.locator("#approve-button").count() == 0
    assert page.locator("#decision-refusal").inner_text() == SELF_APPROVAL

    # Post the approve form anyway, as a hand-made form would, with the page's own CSRF token.
    action = reverse("deployments:promotion-approve", args=[promotion.pk])
    with page.expect_navigation():
        page.evaluate(
            """action => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const token = document.querySelector("input[name=csrfmiddlewaretoken]").cloneNode();
                form.appendChild(token);
                document.body.appendChild(form);
                form.submit();
            }""",
            action,
        )
    assert page.url == promotion_url(live_server, promotion)
    refusal = page.locator(".flash").inner_text()
    # The project's wording for a maker: the stage does not name them (and the page still says why not).
    assert "You are not named as an approver of the stage" in refusal, refusal
    assert page.locator("#decision-refusal").inner_text() == SELF_APPROVAL
    assert Promotion.objects.get(pk=promotion.pk).status == "pending_approval"
    assert not promotion.approvals.exists()
    denied = AuditEvent.objects.get(action="page.denied", object_id=str(promotion.pk))
    assert denied.actor_id == contoso.maker.pk and denied.outcome == "denied"


def test_an_auditor_filters_the_audit_log_and_exports_it(
    new_page: Any, live_server: Any, contoso: Any, auditor: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    promotion = preflight_done(worker, contoso.request(version, "test"))

    page = sign_in_with_password(new_page(), live_server, auditor.username)
    page.click("nav >> text=Audit")
    page.fill("input[name=what]", "promotion.")
    page.fill("input[name=object_id]", str(promotion.pk))
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/audit/?*what=promotion.*")
    shown = [cell.split("\n")[0] for cell in page.locator("#events > tbody > tr > td:nth-child(4)").all_inner_texts()]
    expected = list(
        AuditEvent.objects.filter(action__startswith="promotion.", object_id=str(promotion.pk))
        .order_by("-seq")
        .values_list("action", flat=True)
    )
    assert shown == expected and "promotion.requested" in shown
    assert "auth.signed_in" not in page.locator("#events > tbody").inner_text()

    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("audit-") and download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert sorted(row["action"] for row in rows) == sorted(expected)
    assert {row["object_id"] for row in rows} == {str(promotion.pk)}
    requested = next(row for row in rows if row["action"] == "promotion.requested")
    event = AuditEvent.objects.get(action="promotion.requested", object_id=str(promotion.pk))
    assert requested["seq"] == str(event.seq) and requested["hash"] == event.hash
