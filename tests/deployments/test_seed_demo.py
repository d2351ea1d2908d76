"""seed_demo lays out the demo of docs/demo.md against a running emulator, idempotently."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from deployments.models import Pipeline
from environments.models import Environment
from tests.support.emulator import start_emulator

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_registers_the_emulator_orgs_and_pipelines(tmp_path, settings, capsys):
    settings.DEMO_PASSWORD = "demo-password-for-tests"
    with start_emulator(tmp_path / "emulator", "--seed", "demo") as emulator:
        settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")

    environments = dict(Environment.objects.values_list("name", "kind"))
    assert environments == {
        "contoso-dev": "development",
        "contoso-test": "test",
        "contoso-prod": "production",
        "contoso-build": "other",
        "fabrikam-dev": "development",
    }
    assert Environment.objects.get(name="fabrikam-dev").team.slug == "fabrikam"
    contoso = Pipeline.objects.get(name="Contoso")
    stages = list(contoso.stages.values_list("name", "target_environment__name", "required_approvals"))
    assert stages == [("test", "contoso-test", 1), ("prod", "contoso-prod", 2)]
    for stage in contoso.stages.all():
        assert set(stage.approver_users.values_list("username", flat=True)) == {"approver", "approver2"}
    assert Pipeline.objects.get(name="Fabrikam").development_environment.name == "fabrikam-dev"
    out = capsys.readouterr().out
    assert "pipeline Contoso: contoso-dev → test → prod" in out
    assert "demo-password-for-tests" in out


def test_seed_demo_moves_an_existing_demo_to_the_urls_of_this_run(tmp_path, settings):
    """A demo registered while the emulator served its organisations under a path (or on other ports) gets
    each organisation's own origin and the identity provider's authority, through the audited update."""
    from alm_portal.audit.context import AuditContext
    from alm_portal.audit.models import AuditEvent
    from environments.services.registry import environment_update

    settings.DEMO_PASSWORD = "demo-password-for-tests"
    with start_emulator(tmp_path / "emulator", "--seed", "demo") as emulator:
        settings.ALM_DATAVERSE_CA_BUNDLE = str(emulator.ca_file)
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")
        dev = Environment.objects.get(name="contoso-dev")
        origin, authority = dev.url, dev.authority
        assert origin.count("/") == 2 and authority.startswith(emulator.idp_url)
        old = environment_update(
            environment=dev,
            url=f"{emulator.base_url}/contoso-dev",
            authority=f"{emulator.base_url}/{emulator.tenant_id}",
            context=AuditContext.system(),
        )
        assert old.url.endswith("/contoso-dev")
        call_command("seed_demo", "--emulator-state", str(emulator.state_file), "--wait", "30")

    dev.refresh_from_db()
    assert (dev.url, dev.authority) == (origin, authority)
    moved = AuditEvent.objects.filter(action="environment.updated", object_id=str(dev.pk)).order_by("seq").last()
    assert moved.after == {"url": origin, "authority": authority}
