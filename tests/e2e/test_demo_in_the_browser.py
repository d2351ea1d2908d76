"""The demo shows its best features (issue 13, item 12): seed_demo against an emulator seeded as the demo,
then the registry over HTTP and the approver's page in Chromium.

- versions that really differ: the published IncidentReporting 1.0.0.2 runs in test and prod first, so
  the exported 1.0.0.5 (contoso-dev's 1.0.0.4 content) has a non-empty diff against it;
- a version derived from a corpus zip with its custom table removed, labelled as derived, waits for
  approval in test, and its pre-flight and page warn about the table's rows;
- seed_demo stays idempotent: a second run adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from alm_portal.accounts.models import User
from deployments.demo import DERIVED_TABLE, DERIVED_VERSION
from deployments.models import Promotion
from solutions.models import SolutionVersion
from tests.e2e.conftest import browser  # noqa: F401 - browser is a fixture
from tests.support.emulator import start_emulator

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
PASSWORD = "demo-password-for-tests"


@pytest.fixture
def demo(tmp_path: Path, settings: Any) -> Any:
    """The demo laid out twice by seed_demo against a `--seed demo` emulator (jobs run inline)."""
    settings.DEMO_PASSWORD = PASSWORD
    settings.ALM_ALLOW_LOOPBACK = True
    settings.ALM_IMPORT_POLL_SECONDS = 0.2
    settings.ALM_IMPORT_POLL_MAX_SECONDS = 0.5
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with start_emulator(tmp_path / "emulator", "--seed", "demo") as emulator:
        settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        first = (Promotion.objects.count(), SolutionVersion.objects.count())
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        assert (Promotion.objects.count(), SolutionVersion.objects.count()) == first  # idempotent
        yield emulator


def _get(live_server: Any, token: str, path: str, **params: Any) -> Any:
    response = requests.get(
        f"{live_server.url}/api/v1{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_demo_has_real_diffs_and_a_derived_version_that_warns_about_data_loss(
    demo: Any, live_server: Any, token_for: Any, new_page: Any
) -> None:
    token = token_for(User.objects.get(username="approver"), ["read"])
    versions = {
        row["version"]: row
        for row in _get(live_server, token, "/versions/", unique_name="IncidentReporting", page_size=50)["results"]
    }
    assert {"1.0.0.2", "1.0.0.5", "1.0.0.6", DERIVED_VERSION} <= set(versions)
    assert versions["1.0.0.2"]["flavours"] == ["managed", "unmanaged"]

    diff = _get(live_server, token, f"/versions/{versions['1.0.0.5']['id']}/diff/{versions['1.0.0.2']['id']}/")
    assert diff["added"] or diff["removed"] or diff["changed"], diff
    assert any(item["kind"] == "table" for item in diff["removed"]), diff["removed"]

    derived = _get(live_server, token, f"/versions/{versions[DERIVED_VERSION]['id']}/")
    assert derived["release_notes"].startswith("DERIVED FOR THE DEMO")
    waiting = _get(live_server, token, "/promotions/", version=derived["id"])["results"]
    assert [row["status"] for row in waiting] == ["pending_approval"]
    promotion = _get(live_server, token, f"/promotions/{waiting[0]['id']}/")
    assert promotion["preflight"]["status"] == "warnings"
    (data_loss,) = [check for check in promotion["preflight"]["checks"] if check["code"] == "data_loss"]
    (lost,) = data_loss["details"]["data_loss"]
    assert lost["table"].lower() == DERIVED_TABLE.lower() and lost["rows"] > 0, lost

    # The exported release's promotions to test and prod show their diff against the published 1.0.0.2.
    upgrade = Promotion.objects.get(version__version_key="1.0.0.5", stage__name="test")
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "approver")
    page.fill("input[name=password]", PASSWORD)
    page.click("#password-sign-in")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(live_server.url + reverse("deployments:promotion-detail", args=[upgrade.pk]))
    removed = page.locator("#target-diff").inner_text()
    assert "Removed (0)" not in removed, removed
    # 1.0.0.2 listed the system table systemuser, 1.0.0.5 does not: it stays, with its rows. No warning.
    assert page.locator("#data-loss").count() == 0, removed

    page.goto(live_server.url + reverse("deployments:promotion-detail", args=[waiting[0]["id"]]))
    warning = page.locator("#data-loss").inner_text()
    assert DERIVED_TABLE.lower() in warning.lower() and f"{lost['rows']} rows" in warning, warning
    page.goto(live_server.url + reverse("deployments:approvals-inbox"))
    assert "deletes data" in page.locator("main").inner_text()
