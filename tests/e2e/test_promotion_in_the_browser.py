"""In Chromium: a maker signs in and requests a promotion from a version page; an approver sees the
maker's request, approves it, and watches the htmx-polled status reach "succeeded" while the jobs run
(inline, as the worker would, against the emulator). A screenshot lands in test-results/ on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct-horse-battery"  # tests/conftest.py make_user
RESULTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _signed_in(browser: Any, live_server: Any, username: str) -> Any:
    page = browser.new_context(ignore_https_errors=True).new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#password-sign-in")
    page.wait_for_url(f"{live_server.url}/")
    return page


def test_request_approve_and_watch_it_succeed(browser: Any, live_server: Any, contoso: Any, request: Any) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    pages: list[Any] = []
    try:
        maker = _signed_in(browser, live_server, contoso.maker.username)
        pages.append(maker)
        maker.goto(f"{live_server.url}/deploy/versions/{version.pk}/promote/")
        maker.select_option("select[name=stage]", str(contoso.stages["test"].pk))
        maker.fill("textarea[name=comment]", "First release to test")
        maker.click("#request-button")
        maker.wait_for_selector('[data-status="pending_approval"]')
        promotion = Promotion.objects.get()
        assert maker.locator("#approve-button").count() == 0

        contoso.preflight(promotion)  # the worker's pre-flight job, inline

        approver = _signed_in(browser, live_server, contoso.approvers[0].username)
        pages.append(approver)
        approver.goto(f"{live_server.url}/deploy/approvals/")
        approver.click(f'a[href="/deploy/promotions/{promotion.pk}/"]')
        approver.fill("#approve-comment", "Looks good")
        approver.click("#approve-button")
        approver.wait_for_selector("text=Your approval is recorded.")
        approver.wait_for_selector('[data-status="queued"]')

        contoso.run(promotion)  # the worker's import job, inline
        # No reload: the progress partial polls every 2 s and swaps itself in.
        approver.wait_for_selector('[data-status="succeeded"]', timeout=15_000)
        assert approver.locator("#job-progress").get_attribute("value") == "100"
    except Exception:
        RESULTS.mkdir(exist_ok=True)
        for index, page in enumerate(pages):
            page.screenshot(path=str(RESULTS / f"{request.node.name}-{index}.png"), full_page=True)
        raise
