"""An environment's page tells what the environment did (issue 13, items 8 and 11).

In Chromium, with a real Celery worker running every job against the emulator:

- the "Solution history" table lists the environment's own msdyn_solutionhistory rows, not the
  page's audit History (which used to fill it with 25 rows "? … failed" with empty fields);
- an environment registered through the API is synced minutes after registration (its first health
  check queues the first inventory sync), instead of saying "never" until the hourly schedule runs.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.urls import reverse

from alm_portal.audit.models import AuditEvent
from environments.models import Environment, SolutionHistoryEntry
from tests.deployments.test_runner_fixtures import SUCCESS, success_package
from tests.e2e.conftest import (  # noqa: F401 - browser is a fixture
    browser,
    promoted_by_the_worker,
    sign_in_with_password,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def _history_rows(page: Any) -> list[list[str]]:
    section = page.locator("section.card").filter(has=page.locator("h2", has_text="Solution history"))
    return [row.locator("td").all_inner_texts() for row in section.locator("tbody tr").all()]


def test_the_solution_history_shows_the_environments_own_history(
    new_page: Any, live_server: Any, contoso: Any, worker: Any
) -> None:
    for version in ("1.0.0.0", "1.1.0.0"):
        promoted_by_the_worker(contoso, worker, contoso.upload(success_package(version)), "test")
    environment = contoso.environments["test"]
    stored = list(SolutionHistoryEntry.objects.filter(environment=environment).order_by("-start_time", "-id"))
    assert [entry.solution_version for entry in stored] == ["1.1.0.0", "1.0.0.0"]
    # The page's History tab has plenty to show about this environment too: that is not solution history.
    assert AuditEvent.objects.filter(related_type="environments.environment", related_id=str(environment.pk)).count()

    page = sign_in_with_password(new_page(), live_server, contoso.admin.username)
    page.goto(live_server.url + reverse("environments:detail", args=[environment.pk]))
    rows = _history_rows(page)
    assert len(rows) == len(stored), rows
    for row, entry in zip(rows, stored, strict=True):
        started, operation, solution, version, result, _error = (cell.strip() for cell in row)
        assert (solution, version, result) == (SUCCESS, entry.solution_version, "succeeded"), row
        assert started and not operation.startswith("?"), row


def test_an_environment_registered_through_the_api_is_synced_without_waiting_for_the_schedule(
    new_page: Any,
    live_server: Any,
    emulator: Any,
    runner_settings: Any,
    admin_user: Any,
    team: Any,
    token_for: Any,
    worker: Any,
) -> None:
    org = emulator.new_org()
    response = requests.post(
        f"{live_server.url}/api/v1/environments/",
        json={
            "name": "fabrikam-dev",
            "url": org.url,
            "kind": "development",
            "tenant_id": org.tenant_id,
            "authority": org.authority,
            "team": team.pk,
            "client_id": org.client_id,
            "credential_type": "secret",
            "client_secret": org.client_secret,
        },
        headers={"Authorization": f"Bearer {token_for(admin_user, ['read', 'admin'])}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    environment_id = response.json()["id"]
    # The worker checks its health, then syncs it; the hourly schedule is never asked.
    worker.wait_for(
        lambda: Environment.objects.filter(pk=environment_id, inventory_synced_at__isnull=False).exists(), timeout=60
    )

    page = sign_in_with_password(new_page(), live_server, admin_user.username)
    page.goto(live_server.url + reverse("environments:detail", args=[environment_id]))
    synced = page.locator("text=Last synced").inner_text()
    assert "never" not in synced, synced
    assert page.locator("text=Default").count() >= 1  # the org's own solutions are listed
    page.goto(live_server.url + reverse("environments:list"))
    row = page.locator("tr").filter(has=page.locator("a", has_text="fabrikam-dev"))
    assert "never" not in row.inner_text(), row.inner_text()
