"""Pages that start work show it happening, without a reload (issue 13, item 7), with a real worker:

- a maker exports a solution: the solution page shows the export running and then the new version in
  its history, by itself;
- a dashboard left open shows a job that starts elsewhere, and when the job ends the dashboard follows
  (the release matrix shows what the promotion installed);
- an auditor presses "Verify now": the card shows the verification running and then its result.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from solutions import services as solution_services
from solutions.models import SolutionVersion
from tests.deployments.test_runner_fixtures import as_user, success_package
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    preflight_done,
    run_finished,
    sign_in_with_password,
)
from tests.solutions.conftest import INCIDENT_102_UNMANAGED, corpus_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
# Longer than the slowest poll (10 s while nothing runs), shorter than a person's patience.
SEEN_WITHIN_MS = 25_000


def test_an_export_shows_its_progress_and_then_its_version_without_a_reload(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    contoso.orgs["dev"].install(corpus_bytes(INCIDENT_102_UNMANAGED))
    solution = solution_services.solution_register(
        unique_name="IncidentReporting", team=contoso.pipeline.team, home_environment=contoso.environments["dev"],
        user=contoso.maker, context=as_user(contoso.maker),
    )  # fmt: skip
    page = sign_in_with_password(new_page(), live_server, contoso.maker.username)
    page.goto(live_server.url + reverse("solutions:solution-detail", args=[solution.pk]))
    assert page.locator("#versions tbody a").count() == 0
    page.evaluate("window.notReloaded = true")  # gone if the page were reloaded
    page.click("main form button:has-text('Export from')")
    page.wait_for_selector("text=Export queued as job")
    page.evaluate("window.notReloaded = true")

    page.wait_for_selector("#exports progress, #exports [id$=-ended]", timeout=SEEN_WITHIN_MS)
    page.wait_for_selector("#exports [id$=-ended]", timeout=90_000)
    version = SolutionVersion.objects.get(solution=solution)
    assert f"version {version.version_key} is stored" in page.locator("#exports").inner_text()
    assert page.locator("#versions tbody a").all_inner_texts() == [version.version_key]
    assert page.evaluate("window.notReloaded") is True  # it came by itself, not by a reload


def test_an_open_dashboard_shows_a_job_that_starts_elsewhere_and_what_it_did(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    version = contoso.upload(success_package("1.0.0.0"))
    promotion = preflight_done(worker, contoso.request(version, "test"))
    dashboard = sign_in_with_password(new_page(), live_server, contoso.admin.username)
    assert "Nothing is running" in dashboard.locator("#running").inner_text()
    test_cell = "#matrices tbody tr:first-child td[data-status] .badge >> nth=0"
    assert dashboard.locator(test_cell).inner_text() == "—"  # not installed in test yet

    contoso.orgs["test"].settings(operation_duration=15)  # long enough to be seen running
    contoso.approve(promotion)  # elsewhere: the import job starts in the worker
    dashboard.wait_for_selector("#running progress", timeout=SEEN_WITHIN_MS)
    assert "Import on" in dashboard.locator("#running").inner_text()
    run_finished(worker, promotion)
    # The job ended: the dashboard follows, and its matrix shows what the promotion installed.
    dashboard.wait_for_function(
        "() => document.querySelector('#matrices tbody tr td[data-status] .badge').innerText === '1.0.0.0'",
        timeout=SEEN_WITHIN_MS,
    )
    assert "Nothing is running" in dashboard.locator("#running").inner_text()

    # A job that starts and ends between two polls is never seen running; its outcome still shows.
    contoso.orgs["test"].settings(operation_duration=0)
    quick = preflight_done(worker, contoso.request(contoso.upload(success_package("1.1.0.0")), "test"))
    run_finished(worker, contoso.approve(quick))
    dashboard.wait_for_function(
        "() => document.querySelector('#matrices tbody tr td[data-status] .badge').innerText === '1.1.0.0'",
        timeout=SEEN_WITHIN_MS,
    )


def test_verify_now_shows_the_verification_and_its_result_without_a_reload(
    new_page: Any, live_server: Any, contoso: Any, auditor: Any, worker: Any
) -> None:
    page = sign_in_with_password(new_page(), live_server, auditor.username)
    page.goto(live_server.url + reverse("audit:timeline"))
    assert "has not been verified yet" in page.locator("#verification").inner_text()
    page.click("#verify-now")
    page.wait_for_selector("text=Verification queued")
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector("#verification-result", timeout=60_000)
    assert page.locator("#verification-result").inner_text() == "intact"
    assert page.locator("#verify-now").is_enabled()
    assert page.evaluate("window.notReloaded") is True
