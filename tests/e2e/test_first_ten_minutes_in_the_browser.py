"""The first ten minutes, per role, as a new user lives them (issue 13): everyone signs in through Entra ID
(the emulator's sign-in page), a real Celery worker runs every job against the emulator, and each page
visited is checked for what that person must see.

- maker: requests a release to test with a justification and a change reference, and sees them back;
- approver: finds it waiting, approves with a comment, and watches it succeed without reloading; later
  approves production first;
- approver2: sees production wait for a second approval with the first approver's comment, approves;
- maker again: a second release to test;
- admin: the environments the portal deployed to show no drift and hold what was deployed;
- auditor: finds every approval decision with its comment in the audit log, and verifies the chain.

On every page: no clipping at 1366 px (tests/e2e/test_layout_in_the_browser.py's measure), and whatever
the page says about a promotion's status agrees with the promotion's page. After the portal's own
deployments there is no drift anywhere: not on the dashboard, not on an environment, no notification.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from deployments.choices import PromotionStatus
from deployments.models import Promotion
from environments.models import DriftFinding, EnvironmentNotification
from tests.deployments.test_runner_fixtures import success_package
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    preflight_done,
    promotion_url,
    run_finished,
    sign_in_with_entra,
)
from tests.e2e.test_layout_in_the_browser import MEASURE
from tests.e2e.test_promotion_status_in_the_browser import SAYS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
LAPTOP = {"width": 1366, "height": 900}
RUN_MS = 90_000


class Journey:
    """One browser per person, and the checks every page visited gets."""

    def __init__(self, new_page: Any, live_server: Any) -> None:
        self.new_page = new_page
        self.live_server = live_server
        self.people: dict[str, Any] = {}
        self.visited: list[str] = []

    def person(self, who: str) -> Any:
        if who not in self.people:
            page = self.new_page()
            page.set_viewport_size(LAPTOP)
            self.people[who] = sign_in_with_entra(page, self.live_server, who)
            self.check(page, who)
        return self.people[who]

    def go(self, who: str, path: str) -> Any:
        page = self.person(who)
        page.goto(self.live_server.url + path)
        self.check(page, who)
        return page

    def check(self, page: Any, who: str) -> None:
        """No clipping, and every status this page shows for a promotion is that promotion's own."""
        page.wait_for_load_state()
        where = f"{page.url} as {who}"
        self.visited.append(where)
        problems = page.evaluate(MEASURE, True)
        assert problems == [], (where, problems)
        for link in page.locator("main a[href^='/deploy/promotions/']").all():
            href = link.get_attribute("href") or ""
            row = link.locator("xpath=ancestor::tr[1]")
            if not href.rstrip("/").split("/")[-1].isdigit() or row.count() == 0:
                continue
            promotion = Promotion.objects.get(pk=int(href.rstrip("/").split("/")[-1]))
            badges = row.locator("[data-status]")
            for index in range(badges.count()):
                shown = badges.nth(index).get_attribute("data-status")
                if shown in SAYS:  # a promotion status (matrix cells speak of versions instead)
                    label = badges.nth(index).inner_text()
                    assert shown == promotion.status, (where, promotion.pk, shown, promotion.status)
                    assert label == PromotionStatus(shown).label, (where, promotion.pk, label)
        if page.locator("#status-sentence").count():
            status = page.locator("#progress [data-status]").get_attribute("data-status") or ""
            assert page.locator("#status-sentence").inner_text().startswith(SAYS[status]), where


def _no_drift_anywhere(journey: Journey, who: str, contoso: Any) -> None:
    dashboard = journey.go(who, "/")
    assert "No drift" in dashboard.locator("#drift").inner_text()
    assert not dashboard.locator("#matrices [data-status='drift']").count()
    for stage in ("test", "prod"):
        environment = contoso.environments[stage]
        page = journey.go(who, reverse("environments:detail", args=[environment.pk]))
        assert "No drift found" in page.locator("main").inner_text(), stage
    assert not DriftFinding.objects.filter(resolved_at__isnull=True).exists()
    assert not EnvironmentNotification.objects.filter(kind__icontains="drift").exists()


def test_the_first_ten_minutes_of_each_role(
    new_page: Any, live_server: Any, contoso: Any, entra: Any, auditor: Any, worker: Any
) -> None:
    journey = Journey(new_page, live_server)
    first = contoso.upload(success_package("1.0.0.0"))
    second = contoso.upload(success_package("1.1.0.0"))

    # maker: finds the version and asks for it in test.
    maker = journey.go("maker", reverse("solutions:solution-list"))
    maker.click(f"main a[href='{reverse('solutions:solution-detail', args=[first.solution_id])}']")
    journey.check(maker, "maker")
    maker.goto(live_server.url + reverse("deployments:promotion-request", args=[first.pk]))
    journey.check(maker, "maker")
    maker.select_option("select[name=stage]", str(contoso.stages["test"].pk))
    maker.fill("#id_comment", "First release of the incident form to test")
    maker.fill("#id_change_reference", "CHG0001001")
    maker.click("#request-button")
    maker.wait_for_selector('#progress [data-status="pending_approval"]')
    journey.check(maker, "maker")
    to_test = Promotion.objects.get(version=first, stage=contoso.stages["test"])
    assert maker.locator("#justification").inner_text() == "First release of the incident form to test"
    assert maker.locator("#change-reference").inner_text() == "CHG0001001"
    preflight_done(worker, to_test)
    journey.go("maker", reverse("deployments:promotion-list"))

    # approver: it waits on the dashboard and in the inbox; approving runs it, watched without a reload.
    dashboard = journey.go("approver", "/")
    assert (
        promotion_url(live_server, to_test).removeprefix(live_server.url) in dashboard.locator("#waiting").inner_html()
    )
    inbox = journey.go("approver", reverse("deployments:approvals-inbox"))
    inbox.click(f"main a[href='/deploy/promotions/{to_test.pk}/']")
    journey.check(inbox, "approver")
    inbox.fill("#approve-comment", "Diff checked; the new table is empty in test")
    inbox.click("#approve-button")
    inbox.wait_for_selector("text=Your approval is recorded.")
    inbox.wait_for_selector('#progress [data-status="succeeded"]', timeout=RUN_MS)
    run_finished(worker, to_test)
    journey.check(inbox, "approver")
    assert "Diff checked; the new table is empty in test" in inbox.locator("#approvals").inner_text()

    # maker: the same version to production, which needs two approvers.
    request = journey.go("maker", reverse("deployments:promotion-request", args=[first.pk]))
    request.select_option("select[name=stage]", str(contoso.stages["prod"].pk))
    request.fill("#id_comment", "Release to production after a week in test")
    request.click("#request-button")
    request.wait_for_selector('#progress [data-status="pending_approval"]')
    to_prod = Promotion.objects.get(version=first, stage=contoso.stages["prod"])
    preflight_done(worker, to_prod)

    approver = journey.go("approver", reverse("deployments:promotion-detail", args=[to_prod.pk]))
    approver.fill("#approve-comment", "Fine for production")
    approver.click("#approve-button")
    approver.wait_for_selector("text=Your approval is recorded.")
    assert approver.locator("#approvals h2").inner_text() == "Approvals (1 of 2)"

    # approver2: sees who approved and why, and is the second.
    second_approver = journey.go("approver2", reverse("deployments:promotion-detail", args=[to_prod.pk]))
    assert "Fine for production" in second_approver.locator("#approvals").inner_text()
    second_approver.fill("#approve-comment", "Agreed")
    second_approver.click("#approve-button")
    second_approver.wait_for_selector('#progress [data-status="succeeded"]', timeout=RUN_MS)
    run_finished(worker, to_prod)
    journey.check(second_approver, "approver2")

    # maker: a second release to test (the deployment after which the portal used to report drift).
    request = journey.go("maker", reverse("deployments:promotion-request", args=[second.pk]))
    request.select_option("select[name=stage]", str(contoso.stages["test"].pk))
    request.fill("#id_comment", "Second release to test")
    request.click("#request-button")
    request.wait_for_selector('#progress [data-status="pending_approval"]')
    again = preflight_done(worker, Promotion.objects.get(version=second, stage=contoso.stages["test"]))
    page = journey.go("approver", reverse("deployments:promotion-detail", args=[again.pk]))
    page.click("#approve-button")
    page.wait_for_selector('#progress [data-status="succeeded"]', timeout=RUN_MS)
    run_finished(worker, again)
    journey.check(page, "approver")

    # admin: what the portal deployed is what the environments hold, and nothing calls it drift.
    _no_drift_anywhere(journey, "admin", contoso)
    dashboard = journey.go("admin", "/")
    cells = dashboard.locator("#matrices tbody tr td[data-status] .badge").all_inner_texts()
    assert cells == ["1.1.0.0", "1.0.0.0"], cells
    journey.go("admin", reverse("environments:list"))
    journey.go("admin", reverse("deployments:stage-edit", args=[contoso.stages["prod"].pk]))
    journey.go("admin", reverse("deployments:metrics"))

    # auditor: every approval decision with its comment, and a verified chain.
    audit = journey.go("auditor", reverse("audit:timeline"))
    audit.fill(
        "input[name=what]", audit.locator("#audit-actions option[label^='Approvals']").first.get_attribute("value")
    )
    audit.click("#filters button[type=submit]")
    audit.wait_for_url("**/audit/?*")
    journey.check(audit, "auditor")
    decisions = audit.locator("#events > tbody > tr").count()
    assert decisions == 4  # test: 1, prod: 2 (approval_recorded, then approved), test again: 1
    for summary in audit.locator("#events details summary").all():
        summary.click()
    shown = audit.locator("#events").inner_text()
    for comment in ("Diff checked; the new table is empty in test", "Fine for production", "Agreed"):
        assert comment in shown, comment
    audit.click("#verify-now")
    audit.wait_for_selector("#verification-result", timeout=RUN_MS)
    assert audit.locator("#verification-result").inner_text() == "intact"
    _no_drift_anywhere(journey, "auditor", contoso)
    assert len(journey.visited) > 25
