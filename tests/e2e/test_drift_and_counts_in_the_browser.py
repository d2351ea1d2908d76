"""What the dashboard and the drift API say after the portal's own deployments (issue 13, items 1 and 10).

In Chromium and over HTTP, with a real Celery worker running every job against the emulator:

- a second deployment to test and to prod, and a rollback, are the portal's own doing: no drift
  finding, no drift notification, no drift cell or count, nothing from the drift endpoints;
- a version changed behind the portal's back still is drift;
- the dashboard's per-environment counts put each solution in exactly one state, so they add up to
  the number of solutions the pipelines deploy there.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments import workflow
from deployments.models import Promotion
from environments.models import DriftFinding, EnvironmentNotification
from environments.services import environment_sync_inventory
from tests.deployments.test_runner_fixtures import SUCCESS, as_user, success_package
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


def _drift_api(live_server: Any, token: str, environment: Any) -> list[dict[str, Any]]:
    response = requests.get(
        f"{live_server.url}/api/v1/environments/{environment.pk}/drift/",
        params={"include_resolved": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


NONE = {"total": 0, "up-to-date": 0, "behind": 0, "not-installed": 0, "drift": 0, "failed": 0}


def _counts(page: Any, environment: Any) -> dict[str, int]:
    row = page.locator(f'#environments tr[data-environment="{environment.name}"]')
    names = ("total", "up-to-date", "behind", "not-installed", "drift", "failed")
    return {name: int(row.get_attribute(f"data-{name}") or "-1") for name in names}


def _cells(page: Any, solution: str) -> list[str]:
    row = page.locator("table.matrix tbody tr").filter(has=page.locator(f'th a:text-is("{solution}")'))
    return [cell.get_attribute("data-status") for cell in row.locator("td.cell").all()]


def test_the_portals_own_deployments_and_rollback_are_never_drift(
    new_page: Any, live_server: Any, contoso: Any, worker: Any, token_for: Any
) -> None:
    first = contoso.upload(success_package("1.0.0.0"))
    second = contoso.upload(success_package("1.1.0.0"))
    for version in (first, second):
        promoted_by_the_worker(contoso, worker, version, "test")
        promoted_by_the_worker(contoso, worker, version, "prod")
    # Roll test back (a re-versioned copy of 1.0.0.0, imported as an upgrade), through the worker too.
    latest = Promotion.objects.get(version=second, stage=contoso.stages["test"])
    rollback = workflow.rollback_request(
        promotion=latest, strategy="reversion_upgrade", requested_by=contoso.maker, context=as_user(contoso.maker)
    )
    contoso.approve(preflight_done(worker, rollback))
    rollback = run_finished(worker, rollback)
    assert rollback.status == "succeeded", rollback.error_message
    assert contoso.installed("test")["version"] == rollback.version.version_key
    assert contoso.installed("prod")["version"] == "1.1.0.0"

    test, prod = contoso.environments["test"], contoso.environments["prod"]
    # A later scheduled sync agrees with the runner's own.
    for environment in (test, prod):
        environment_sync_inventory(environment=environment, context=AuditContext.system())

    assert not DriftFinding.objects.exists()
    assert not EnvironmentNotification.objects.filter(kind="drift_detected").exists()
    assert not AuditEvent.objects.filter(action="drift.detected").exists()
    token = token_for(contoso.admin, ["read"])
    assert _drift_api(live_server, token, test) == [] and _drift_api(live_server, token, prod) == []

    page = sign_in_with_password(new_page(), live_server, contoso.admin.username)
    # The rollback's re-versioned copy is the newest version, so prod (still 1.1.0.0) is behind it.
    assert _cells(page, SUCCESS) == ["up_to_date", "behind"]
    assert "No drift" in page.locator("#drift").inner_text()
    assert _counts(page, test) == {**NONE, "total": 1, "up-to-date": 1}
    assert _counts(page, prod) == {**NONE, "total": 1, "behind": 1}

    # What the portal did not do is still drift: someone upgrades prod by hand.
    contoso.orgs["prod"].install(success_package("1.2.0.0"), mode="upgrade")
    environment_sync_inventory(environment=prod, context=AuditContext.system())
    (finding,) = _drift_api(live_server, token, prod)
    assert finding["kind"] == "version_changed" and finding["details"]["installed_version"] == "1.2.0.0"
    assert finding["details"]["expected_version"] == "1.1.0.0"
    page.reload()
    assert _cells(page, SUCCESS) == ["up_to_date", "drift"]
    assert _counts(page, prod) == {**NONE, "total": 1, "drift": 1}


def test_each_solution_counts_once_so_the_environment_counts_add_up(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    def package(name: str, version: str) -> bytes:
        return success_package(version, unique_name=name)

    # Five solutions of the pipeline, one per state in test.
    current = contoso.upload(package("CountCurrent", "1.0.0.0"))
    promoted_by_the_worker(contoso, worker, current, "test")

    behind = contoso.upload(package("CountBehind", "1.0.0.0"))
    promoted_by_the_worker(contoso, worker, behind, "test")
    contoso.upload(package("CountBehind", "1.1.0.0"))

    contoso.upload(package("CountAbsent", "1.0.0.0"))

    drifted = contoso.upload(package("CountDrifted", "1.0.0.0"))
    promoted_by_the_worker(contoso, worker, drifted, "test")
    contoso.orgs["test"].install(package("CountDrifted", "1.5.0.0"), mode="upgrade")  # outside the portal

    broken = contoso.upload(package("CountFailed", "1.0.0.0"))
    promoted_by_the_worker(contoso, worker, broken, "test")
    newer = contoso.upload(package("CountFailed", "1.1.0.0"))
    failing = preflight_done(worker, contoso.request(newer, "test"))
    fault = {"code": "0x8004801D", "message": "Some dependencies are missing.", "count": 1}
    contoso.orgs["test"].set_faults(import_failure=fault)
    contoso.approve(failing)
    assert run_finished(worker, failing).status == "failed"

    environment_sync_inventory(environment=contoso.environments["test"], context=AuditContext.system())
    page = sign_in_with_password(new_page(), live_server, contoso.admin.username)
    counts = _counts(page, contoso.environments["test"])
    assert counts == {"total": 5, "up-to-date": 1, "behind": 1, "not-installed": 1, "drift": 1, "failed": 1}
    prod = _counts(page, contoso.environments["prod"])
    assert prod == {"total": 5, "up-to-date": 0, "behind": 0, "not-installed": 5, "drift": 0, "failed": 0}
    assert _cells(page, "CountDrifted") == ["drift", "not_installed"]
    assert _cells(page, "CountFailed") == ["failed", "not_installed"]
