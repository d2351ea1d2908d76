"""The deploying identity's privileges: pre-flight blocks what would be refused, a refusal during a run
fails it at once naming the privilege, and the pipeline page shows per stage what is missing.

Microsoft lists the privileges of the ImportSolution message
(https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8)), and
a missing one is refused with 0x80040220 "Principal user is missing privilege"
(https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/client-errors). The
emulator gives application users security roles; System Customizer lacks prvWriteOrganization.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.dataverse.client import DataverseClient
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run
from environments import services as environment_services
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    contoso_fixture,
    job_of,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db


def give_roles(org, *roles: str) -> None:
    org.server.admin("POST", f"/orgs/{org.name}/users/{org.client_id}/roles", {"roles": list(roles)})


def checks_of(promotion) -> dict:
    return {check["code"]: check for check in promotion.preflight_result["checks"]}


def test_preflight_blocks_a_target_identity_without_a_needed_privilege(contoso):
    give_roles(contoso.orgs["test"], "System Customizer")
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))

    assert promotion.preflight_status == "blocked"
    missing = checks_of(promotion)["target_privileges_missing"]
    assert missing["severity"] == "blocker"
    assert [entry["privilege"] for entry in missing["details"]["missing"]] == ["prvWriteOrganization"]
    assert missing["details"]["missing"][0]["needed_by"] == ["StageAndUpgradeAsync"]  # the stage's import mode
    assert "prvWriteOrganization" in missing["message"]
    assert "System Administrator" in missing["message"]  # what to grant


def test_preflight_says_the_identity_holds_what_the_promotion_needs(contoso):
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))

    assert promotion.preflight_status == "passed"
    assert checks_of(promotion)["target_privileges"]["severity"] == "info"


def test_a_refusal_at_submit_fails_the_run_at_once_naming_the_privilege(contoso, monkeypatch):
    """The role is taken away between approval and the submit: Dataverse refuses the import with 403
    0x80040220; the promotion fails once, permanently, and its message names the privilege."""
    promotion = contoso.approve(contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test")))
    take_the_role_away_at_submit(monkeypatch, contoso.orgs["test"])

    promotion = contoso.run(promotion)

    assert promotion.status == "failed"
    assert promotion.error_code == "0x80040220"
    assert "prvWriteOrganization" in promotion.error_message
    assert "security role" in promotion.error_message
    job = job_of(promotion)
    assert job.status == "failed" and job.attempts == 1  # no retry
    assert contoso.orgs["test"].import_count(SUCCESS) == 0
    assert AuditEvent.objects.filter(action="promotion.failed", object_id=str(promotion.pk)).count() == 1


def test_a_system_job_failing_on_a_privilege_fails_the_run_naming_it(contoso, monkeypatch):
    """An org that accepts the async import and fails its system job with errorcode -2147220960 (the emulator's
    switch privilege_check "job"): the run ends failed with 0x80040220 and the privilege, never polled again."""
    contoso.orgs["test"].settings(privilege_check="job")
    promotion = contoso.approve(contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test")))
    take_the_role_away_at_submit(monkeypatch, contoso.orgs["test"])

    promotion = contoso.run(promotion)

    assert promotion.status == "failed"
    assert promotion.error_code == "0x80040220"
    assert "prvWriteOrganization" in promotion.error_message
    job = job_of(promotion)
    assert job.status == "failed"
    assert Job.objects.filter(pk=job.pk, status="failed").exists()
    assert job_run(job.pk).ran is False  # a finished job is not picked up again


def take_the_role_away_at_submit(monkeypatch, org) -> None:
    """Just before the import is sent, an administrator gives the application user System Customizer only."""
    original = DataverseClient.stage_and_upgrade_async

    def submit(self, *args, **kwargs):
        monkeypatch.setattr(DataverseClient, "stage_and_upgrade_async", original)
        give_roles(org, "System Customizer")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DataverseClient, "stage_and_upgrade_async", submit)


def test_the_pipeline_page_shows_per_stage_what_each_identity_lacks(contoso, client):
    give_roles(contoso.orgs["prod"], "System Customizer")
    for environment in contoso.environments.values():
        environment_services.environment_check_health(environment=environment, context=AuditContext.system())
    client.force_login(contoso.admin)

    page = client.get(reverse("deployments:pipeline-detail", args=[contoso.pipeline.pk])).content.decode()

    section = page[page.index('id="privileges"') :]
    rows = section.split("<tr>")[2:]
    assert "source (exports)" in rows[0] and "ExportSolutionAsync: every privilege it needs is held" in rows[0]
    assert "1. test" in rows[1] and "StageAndUpgradeAsync: every privilege it needs is held" in rows[1]
    assert "2. prod" in rows[2] and "StageAndUpgradeAsync: missing <code>prvWriteOrganization</code>" in rows[2]
