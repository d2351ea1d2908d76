"""In Chromium: a maker signs in through Entra ID (the emulator's authority and demo identities) and
requests a promotion from a version page; an approver (password, break-glass) sees the maker's request
in the inbox, approves it, and watches the htmx-polled status reach "succeeded" while the jobs run
(inline, as the worker would, against the emulator). A screenshot lands in test-results/ on failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from deployments.models import Promotion
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)
from tests.support.emulator import start_emulator

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


@pytest.fixture
def entra(live_server: Any, runner_settings: Any, tmp_path: Path) -> Iterator[Any]:
    """The emulator's demo tenant as our Entra ID, its SSO client redirecting to this live server."""
    callback = f"{live_server.url}/accounts/sso/callback/"
    with start_emulator(tmp_path / "entra", "--seed", "demo", "--sso-redirect-uri", callback) as server:
        credentials = json.loads((tmp_path / "entra" / "demo-credentials.json").read_text())
        settings = runner_settings
        settings.ALM_SSO_AUTHORITY = credentials["authority"]
        settings.ALM_SSO_CLIENT_ID = credentials["sso_client"]["client_id"]
        settings.ALM_SSO_CLIENT_SECRET = credentials["sso_client"]["client_secret"]
        # One bundle trusting both emulators: this one (Entra ID) and the session's (the Dataverse orgs).
        bundle = tmp_path / "ca-bundle.pem"
        bundle.write_text(Path(settings.ALM_DATAVERSE_CA_BUNDLE).read_text() + server.ca_file.read_text())
        settings.ALM_DATAVERSE_CA_BUNDLE = str(bundle)
        yield server


def _signed_in_with_entra(browser: Any, live_server: Any, who: str) -> Any:
    page = browser.new_context(ignore_https_errors=True).new_page()  # the emulator's own CA
    page.goto(f"{live_server.url}/accounts/login/")
    page.click("#sso-button")
    page.click(f'[data-testid="signin-{who}"]')
    page.wait_for_url(f"{live_server.url}/")
    return page


def test_request_approve_and_watch_it_succeed(
    browser: Any, live_server: Any, contoso: Any, entra: Any, request: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    pages: list[Any] = []
    try:
        maker = _signed_in_with_entra(browser, live_server, "maker")
        pages.append(maker)
        assert "Max Maker" in maker.content() or contoso.maker.username in maker.content()
        maker.goto(live_server.url + reverse("solutions:version-detail", args=[version.pk]))
        maker.click("#request-promotion")
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
