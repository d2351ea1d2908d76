"""Every page of the portal, for browser tests that must look at all of them rather than a hand-picked few.

The page names come from tests/ui/test_pages.py's PAGES, which itself must name every page the URL
resolver routes to (its enumeration test fails otherwise); this module only supplies an object for each
argument kind, on the `contoso` layout (the emulator's orgs, jobs run inline): a succeeded promotion that
replaced an earlier one (rollback planner, import log), one waiting for approval (approve, reject,
cancel), a window and a freeze.
Fragments (htmx partials), downloads and redirects are among the URLs; callers tell them from pages by
the answer (a page is an HTML document with <html>).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from deployments.models import Promotion
from deployments.services import stage_freeze_add, stage_window_add
from tests.deployments.test_runner_fixtures import success_package
from tests.ui.test_pages import PAGES


@dataclass
class Site:
    contoso: Any
    people: dict[str, Any]
    succeeded: Promotion
    waiting: Promotion
    urls: list[tuple[str, str]]


def _arguments(kind: str | None, site: dict[str, Any]) -> list[list[Any]]:
    """The argument lists one page name is visited with."""
    if kind is None:
        return [[]]
    return [[value] if not isinstance(value, list) else value for value in site[kind]]


@pytest.fixture(name="site")
def site_fixture(contoso: Any, auditor: Any, token_for: Any) -> Site:
    system = AuditContext.system()
    first = contoso.upload(success_package("1.0.0.0"))
    second = contoso.upload(success_package("1.1.0.0"))
    assert contoso.promote(first, "test").status == "succeeded"
    succeeded = contoso.promote(second, "test")  # the latest of two: every rollback strategy applies
    assert succeeded.status == "succeeded", succeeded.error_message
    waiting = contoso.preflight(contoso.request(second, "prod", comment="Release 1.1 to production"))
    prod = contoso.stages["prod"]
    window = stage_window_add(
        stage=prod, weekdays=[1, 2, 3, 4, 5, 6, 7], start_time=time(0, 0), end_time=time(0, 0), time_zone="UTC",
        context=system,
    )  # fmt: skip
    now = timezone.now()
    freeze = stage_freeze_add(
        stage=prod, starts_at=now + timedelta(days=300), ends_at=now + timedelta(days=301), reason="Year end",
        context=system,
    )  # fmt: skip
    token_for(contoso.maker, scopes=["read"], name="maker-token")
    token = contoso.maker.api_tokens.get(name="maker-token")
    objects: dict[str, Any] = {
        "promotion": [succeeded.pk, waiting.pk],
        "version": [second.pk],
        "version-pair": [[second.pk, first.pk]],
        "pipeline": [contoso.pipeline.pk],
        "stage": [contoso.stages["test"].pk, prod.pk],
        "environment": [contoso.environments["test"].pk],
        "solution": [first.solution_id],
        "user": [contoso.maker.pk],
        "token": [token.pk],
        "window": [window.pk],
        "freeze": [freeze.pk],
    }
    urls = [
        (name, reverse(name, args=arguments))
        for name, (method, kind, _) in sorted(PAGES.items())
        if method == "get"
        for arguments in _arguments(kind, objects)
    ]
    people = {
        "maker": contoso.maker,
        "approver": contoso.approvers[0],
        "approver2": contoso.approvers[1],
        "admin": contoso.admin,
        "auditor": auditor,
    }
    return Site(contoso=contoso, people=people, succeeded=succeeded, waiting=waiting, urls=urls)


def open_page(page: Any, url: str) -> Any | None:
    """Go to `url`; the response when it is an HTML document, None for a download or a fragment."""
    try:
        response = page.goto(url)
    except Exception as exc:  # Playwright's Error; a file answered with Content-Disposition: attachment
        if "Download is starting" in str(exc):
            return None
        raise
    if response is None or "text/html" not in response.headers.get("content-type", ""):
        return None
    if page.locator("html > body > header").count() == 0:  # an htmx fragment, not a page
        return None
    return response
