"""A solution registered by name takes its publisher and display name from its first package (issue 13,
item 11): over HTTP and in Chromium, with a real Celery worker exporting from the emulator.

The demo registers IncidentReporting by name and exports it; its page said publisher "—" and the API
returned an empty publisher and the unique name as display name, while the manifest says "Shaheer".
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.urls import reverse

from alm_portal.audit.models import AuditEvent
from alm_portal.jobs.models import Job
from tests.e2e.conftest import browser, sign_in_with_password  # noqa: F401 - browser is a fixture
from tests.solutions.conftest import INCIDENT_102_UNMANAGED, corpus_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def test_a_solution_registered_by_name_shows_the_publisher_of_its_exported_package(
    new_page: Any, live_server: Any, contoso: Any, token_for: Any, worker: Any
) -> None:
    contoso.orgs["dev"].install(corpus_bytes(INCIDENT_102_UNMANAGED))
    token = token_for(contoso.maker, ["read", "request"])
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{live_server.url}/api/v1"
    registered = requests.post(
        f"{api}/solutions/",
        json={
            "unique_name": "IncidentReporting",
            "team": contoso.maker.teams.get().pk,
            "home_environment": contoso.environments["dev"].pk,
        },
        headers=headers,
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    solution = registered.json()
    assert solution["publisher"]["unique_name"] == ""  # nothing to know it from yet

    accepted = requests.post(f"{api}/solutions/{solution['id']}/export/", json={}, headers=headers, timeout=30)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job"]["id"]
    worker.wait_for(lambda: Job.objects.get(pk=job_id).status in ("succeeded", "failed"), timeout=90)
    assert Job.objects.get(pk=job_id).status == "succeeded", Job.objects.get(pk=job_id).error_message

    shown = requests.get(f"{api}/solutions/{solution['id']}/", headers=headers, timeout=30).json()
    assert shown["publisher"] == {"unique_name": "Shaheer", "prefix": "sa"}
    assert shown["display_name"] == "Incident Reporting"
    filled = AuditEvent.objects.get(action="solution.identity_filled", object_id=str(solution["id"]))
    assert filled.after["publisher_unique_name"] == "Shaheer" and filled.before["publisher_unique_name"] == ""

    page = sign_in_with_password(new_page(), live_server, contoso.maker.username)
    page.goto(live_server.url + reverse("solutions:solution-detail", args=[solution["id"]]))
    assert "Publisher: Shaheer (prefix sa)" in page.locator("main").inner_text()
    assert page.locator("h1").inner_text().startswith("Incident Reporting")
    page.goto(live_server.url + reverse("solutions:solution-list"))
    row = page.locator("tr").filter(has=page.locator("a", has_text="IncidentReporting"))
    assert "Shaheer" in row.inner_text() and "Incident Reporting" in row.inner_text()
