"""The Content-Security-Policy in a real browser: pages and the API docs work under it, and Chromium
reports no violation (a blocked script, style or eval shows up as a console error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an event loop in this thread; the test's ORM calls are synchronous.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                yield browser
            finally:
                browser.close()


def test_pages_and_api_docs_run_under_the_policy_without_violations(
    chromium: Any, live_server: Any, api_world: Any
) -> None:
    session = Client()
    session.force_login(api_world.users["admin"])
    context = chromium.new_context()
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session.cookies[settings.SESSION_COOKIE_NAME].value,
          "url": live_server.url}]
    )  # fmt: skip
    page = context.new_page()
    problems: list[str] = []
    # A missing resource is judged by `failed` below (the browser's own /favicon.ico probe is not ours).
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    seen = []
    try:
        for path in (
            "/accounts/tokens/",
            "/",
            f"/deploy/promotions/{api_world.ids['promotion']}/",
            "/audit/",
            "/api/docs/",
        ):
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, path
            assert "script-src 'self'" in response.headers["content-security-policy"], path
            page.wait_for_load_state("networkidle")
            seen.append(path)
        # Swagger UI built its page from the schema: its scripts ran.
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() > 50
    finally:
        context.close()

    assert len(seen) == 5
    assert failed == []
    assert problems == []
