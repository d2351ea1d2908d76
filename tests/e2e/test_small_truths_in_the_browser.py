"""The smaller things a new user met in the first ten minutes, each as the user met it (issue 13, item 11):

- the stage editor says which stage gates the one being edited (not "the first stage" on prod);
- the register-environment form asks what and where first, shows its hints as written, refuses a tenant
  id that is neither a GUID nor a domain (the API too) and shows errors like every other form;
- a failed health check says in words what failed, not a Python exception;
- the token form says what an empty name becomes;
- metrics show durations as people say them;
- the audit log shows what changed field by field, offers object types by name, and one choice finds
  every approval decision (promotion.approval_recorded too);
- the request form shows what the target stage asks for before submitting, its pre-flight preview does
  not say "passed" without it, the justification is called that, and the promotion page shows the
  references back;
- the Entra ID sign-in page and the portal call each demo person by the same name.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from alm_portal.accounts.demo import DEMO_PEOPLE, directory_names, seed_demo_people
from alm_portal.audit.context import AuditContext
from alm_portal.jobs.services import job_run_now
from deployments.models import Promotion
from deployments.services import stage_update
from environments.services import environment_create, environment_request_health_check
from tests.deployments.test_runner_fixtures import success_package
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    promotion_url,
    sign_in_with_entra,
    sign_in_with_password,
)
from tests.e2e.site import Site, site_fixture  # noqa: F401 - the fixture is found by name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PYTHON_REPRS = re.compile(r"HTTPSConnectionPool|NewConnectionError|Max retries|Errno|Caused by|\w+Error\(")


def _as(new_page: Any, live_server: Any, site: Site, who: str) -> Any:
    return sign_in_with_password(new_page(), live_server, site.people[who].username)


def test_the_stage_editor_names_the_stage_that_gates_it(new_page: Any, live_server: Any, site: Site) -> None:
    page = _as(new_page, live_server, site, "admin")
    gating = "#id_requires_previous_stage_helptext"
    page.goto(live_server.url + reverse("deployments:stage-edit", args=[site.contoso.stages["test"].pk]))
    assert "This is the first stage" in page.locator(gating).inner_text()
    page.goto(live_server.url + reverse("deployments:stage-edit", args=[site.contoso.stages["prod"].pk]))
    said = page.locator(gating).inner_text()
    assert "first stage" not in said and "succeeded in test first" in said


def test_the_register_form_asks_what_and_where_first_and_refuses_a_tenant_that_is_no_tenant(
    new_page: Any, live_server: Any, site: Site, token_for: Any
) -> None:
    page = _as(new_page, live_server, site, "admin")
    page.goto(live_server.url + reverse("environments:register"))
    labels = [label.strip() for label in page.locator("main form label").all_inner_texts()]
    assert labels.index("Name") < labels.index("Environment URL") < labels.index("Client (application) id")
    assert "https://<org>.crm<N>.dynamics.com" in page.locator("#id_url_helptext").inner_text()
    assert "Empty: https://login.microsoftonline.com/<tenant id>" in page.locator("#id_authority_helptext").inner_text()

    org = site.contoso.orgs["test"]
    page.fill("#id_name", "contoso-uat")
    page.fill("#id_url", org.url)
    page.fill("#id_tenant_id", "xyz")
    page.select_option("#id_team", label="Contoso")
    page.fill("#id_client_id", org.client_id)
    page.fill("#id_client_secret", org.client_secret)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    # The error sits under its field, marked up as on every other form (templates/_form_fields.html).
    error = page.locator("p.error#id_tenant_id_error")
    assert "GUID" in error.inner_text() and "domain" in error.inner_text()
    assert page.locator("main ul.errorlist").count() == 0
    assert page.locator("#id_name").input_value() == "contoso-uat"  # what was typed stays

    page.fill("#id_tenant_id", org.tenant_id)
    page.fill("#id_client_secret", org.client_secret)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/environments/*/")
    assert "contoso-uat registered" in page.locator(".flash").inner_text()

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(site.people['admin'], scopes=['read', 'admin'])}")
    environment_id = site.contoso.environments["test"].pk
    for tenant in ("xyz", "common", "contoso"):
        refused = api.patch(f"/api/v1/environments/{environment_id}/", {"tenant_id": tenant}, format="json")
        assert refused.status_code == 400 and "tenant_id" in refused.json()["error"]["details"], tenant
    for tenant in ("contoso.onmicrosoft.com", org.tenant_id):
        accepted = api.patch(f"/api/v1/environments/{environment_id}/", {"tenant_id": tenant}, format="json")
        assert accepted.status_code == 200, (tenant, accepted.json())


def _closed_port() -> int:
    """A local port nothing listens on (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failed_health_check_says_what_failed_in_words(new_page: Any, live_server: Any, site: Site) -> None:
    port = _closed_port()
    closed = f"https://127.0.0.1:{port}"
    org = site.contoso.orgs["test"]
    environment = environment_create(
        name="contoso-closed", url=f"{closed}/contoso-closed", kind="test", tenant_id=org.tenant_id,
        authority=f"{closed}/{org.tenant_id}", team=site.contoso.environments["test"].team, client_id=org.client_id,
        credential_type="secret", client_secret=org.client_secret, context=AuditContext.system(), check_health=False,
    )  # fmt: skip
    job_run_now(environment_request_health_check(environment=environment, context=AuditContext.system()))

    page = _as(new_page, live_server, site, "admin")
    page.goto(live_server.url + reverse("environments:detail", args=[environment.pk]))
    health = page.locator("main section.card").first.inner_text()
    assert "Unreachable" in health
    assert f"The sign-in authority 127.0.0.1:{port} could not be reached: the connection was refused" in health
    assert not PYTHON_REPRS.search(health), health


def test_the_token_form_says_what_an_empty_name_becomes(new_page: Any, live_server: Any, site: Site) -> None:
    page = _as(new_page, live_server, site, "maker")
    page.goto(live_server.url + reverse("accounts:api-tokens"))
    said = page.locator("#id_name_helptext").inner_text()
    assert "cli-." not in said and re.search(r"cli-\d{4}-\d{2}-\d{2}T", said), said
    page.click("main form.card button[type=submit]")
    page.wait_for_selector("pre.token")
    assert re.search(r"cli-\d{4}-\d{2}-\d{2}T", page.locator("main table").inner_text())


def _to_production(site: Site) -> Promotion:
    promotion = site.contoso.run(site.contoso.approve(site.waiting))
    assert promotion.status == "succeeded", promotion.error_message
    return promotion


def test_metrics_show_durations_as_people_say_them(new_page: Any, live_server: Any, site: Site) -> None:
    _to_production(site)
    page = _as(new_page, live_server, site, "auditor")
    page.goto(live_server.url + reverse("deployments:metrics"))
    shown = page.locator("main").inner_text()
    assert re.search(r"Median \d+ (s|min)", shown), shown
    assert not re.search(r"\d+:\d\d:\d\d", shown), shown  # Python's timedelta, 0:00:52.644527
    lead_times = page.locator("#per-solution tbody td:nth-child(4)").all_inner_texts()
    assert lead_times and all(re.fullmatch(r"\d+ (s|min|h|d)( \d+ (s|min|h))?", text) for text in lead_times)


def test_the_audit_log_shows_changes_by_field_and_filters_by_what_people_call_things(
    new_page: Any, live_server: Any, site: Site
) -> None:
    _to_production(site)  # its first approval records promotion.approval_recorded, the second promotion.approved
    page = _as(new_page, live_server, site, "auditor")
    page.goto(live_server.url + reverse("audit:timeline"))
    types = page.locator("select[name=object_type] option").all_inner_texts()
    assert "Promotion" in types and not any("deployments." in text for text in types)
    page.select_option("select[name=object_type]", label="Promotion")
    page.fill("input[name=object_id]", str(site.waiting.pk))
    groups = page.locator("#audit-actions option[label^='Approvals']")
    page.fill("input[name=what]", groups.first.get_attribute("value") or "")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/audit/?*")
    cells = page.locator("main > div > table > tbody > tr > td:nth-child(4)").all_inner_texts()
    actions = [cell.split("\n")[0] for cell in cells]
    assert sorted(actions) == ["promotion.approval_recorded", "promotion.approved"], actions
    assert "Promotion" in page.locator("main > div > table > tbody").inner_text()

    page.locator("main details summary").first.click()
    rows = page.locator("main details table.changes").first.locator("tbody tr")
    assert rows.count() >= 1
    for index in range(rows.count()):
        cells = rows.nth(index).locator("th, td").all_inner_texts()
        assert len(cells) == 3 and not any(text.startswith(("{", "[")) for text in cells), cells


def test_the_request_form_shows_what_the_stage_asks_for_and_the_promotion_shows_it_back(
    new_page: Any, live_server: Any, site: Site
) -> None:
    prod = site.contoso.stages["prod"]
    stage_update(
        stage=prod, context=AuditContext.system(), change_reference_required=True,
        change_reference_pattern=r"CHG\d{7}", backup_reference_required=True,
    )  # fmt: skip
    version = site.contoso.upload(success_package("1.2.0.0"))
    assert site.contoso.promote(version, "test").status == "succeeded"  # prod's gate is open for it
    page = _as(new_page, live_server, site, "maker")
    page.goto(live_server.url + reverse("deployments:promotion-request", args=[version.pk]))
    assert page.locator("label[for=id_comment]").inner_text() == "Justification"
    assert "Required for prod (matching CHG\\d{7})" in page.locator("#id_change_reference_helptext").inner_text()
    assert "Required for prod" in page.locator("#id_backup_reference_helptext").inner_text()
    page.select_option("select[name=stage]", str(prod.pk))
    page.wait_for_selector("#preflight-preview [data-status]")
    preview = page.locator("#preflight-preview")
    page.wait_for_function("() => document.querySelector('#preflight-preview').innerText.includes('prod')")
    assert preview.locator("[data-status]").get_attribute("data-status") == "blocked"
    assert "requires a change reference" in preview.inner_text()
    assert "requires a pre-deployment backup reference" in preview.inner_text()

    page.fill("#id_change_reference", "CHG0012345")
    page.locator("#id_change_reference").dispatch_event("change")
    page.fill("#id_backup_reference", "Backup 2026-12-07 of contoso-prod")
    page.locator("#id_backup_reference").dispatch_event("change")
    page.wait_for_function("() => document.querySelector('#preflight-preview').innerText.includes('given')")
    assert "requires a change reference" not in preview.inner_text()

    page.fill("#id_comment", "Hotfix for the incident form")
    page.click("#request-button")
    page.wait_for_selector('[data-status="pending_approval"]')
    facts = page.locator("#request-facts").inner_text()
    assert "Justification" in facts and "Hotfix for the incident form" in facts
    assert "CHG0012345" in page.locator("#change-reference").inner_text()
    assert "Backup 2026-12-07 of contoso-prod" in page.locator("#backup-reference").inner_text()


def test_the_sign_in_page_and_the_portal_call_everyone_the_same(
    new_page: Any, live_server: Any, entra: Any, entra_server: Any
) -> None:
    _, credentials = entra_server
    directory = directory_names(credentials["identities"])
    # Without the emulator the demo names its people itself: the same names.
    assert {person.username: person.display_name for person in DEMO_PEOPLE} == {
        name: shown for name, shown in directory.items() if name in {person.username for person in DEMO_PEOPLE}
    }
    seed_demo_people(directory=directory)  # what `make run` does with the emulator's directory
    for person in DEMO_PEOPLE:
        page = new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.click("#sso-button")
        shown_there = page.locator(f'[data-testid="signin-{person.username}"]').inner_text().strip()
        page.click(f'[data-testid="signin-{person.username}"]')
        page.wait_for_url(f"{live_server.url}/")
        shown_here = page.locator("header .who").inner_text().split(" · ")[0]
        assert shown_here == shown_there, (person.username, shown_there, shown_here)
        assert page.locator("main h1").inner_text() == f"Welcome, {shown_there}"
