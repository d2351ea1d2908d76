"""In Chromium, under the production CSP: an admin adds a settings row with the editor's script (no
inline script runs anywhere) and saves it, and deleting a stage asks for confirmation first."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from deployments.models import DeploymentSettings, Stage
from tests.e2e.conftest import sign_in_with_password

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stage(team: Any, settings: Any) -> Stage:
    from deployments.services import pipeline_create, stage_add
    from tests.deployments.test_workflow_fixtures import make_environment

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    system = AuditContext.system()
    pipeline = pipeline_create(
        name="Browser",
        team=team,
        development_environment=make_environment("b-dev", team, "development"),
        context=system,
    )
    return stage_add(
        pipeline=pipeline, name="test", target_environment=make_environment("b-test", team), context=system
    )


def test_an_admin_adds_a_settings_row_with_the_script_and_is_asked_before_deleting(
    new_page: Any, live_server: Any, make_user: Any, stage: Stage
) -> None:
    make_user("boss", "admin")
    page = new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    sign_in_with_password(page, live_server, "boss")

    page.goto(live_server.url + reverse("deployments:stage-settings", args=[stage.pk]))
    assert page.locator("#ev-rows tr").count() == 2  # the spare rows a page without script has
    page.click("button[data-formset-add=ev]")
    assert page.locator("#ev-rows tr").count() == 3
    page.fill("#id_ev-2-SchemaName", "contoso_ApiUrl")
    page.fill("#id_ev-2-Value", "https://api.contoso.test")
    page.click("text=Save as a new version")
    page.wait_for_selector("text=Deployment settings saved as a new version.")
    saved = DeploymentSettings.objects.get(stage=stage)
    assert saved.document["EnvironmentVariables"] == [
        {"SchemaName": "contoso_ApiUrl", "Value": "https://api.contoso.test"}
    ]

    page.goto(live_server.url + reverse("deployments:stage-edit", args=[stage.pk]))
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("text=Delete stage test")
    assert Stage.objects.filter(pk=stage.pk).exists()  # dismissed: nothing was posted
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Delete stage test")
    page.wait_for_selector("text=Stage test deleted")
    assert not Stage.objects.filter(pk=stage.pk).exists()
    assert violations == []
