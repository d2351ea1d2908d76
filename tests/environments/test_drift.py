"""Drift: every kind computed from explicit expectations, and produced against the emulator by
changing it behind the portal's back; stored, audited once when first seen and when resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps

from environments import selectors, services
from environments.choices import DriftKind
from environments.drift import Expected, Installed, compute_drift, version_key
from environments.models import DriftFinding, EnvironmentNotification
from tests.emulator.packages import make_solution
from tests.environments.conftest import events, only_event

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=30)


def _installed(*rows):
    return {row.unique_name: row for row in rows}


def _drift(installed, expected=None, registered=None, kind="production", now=NOW):
    findings = compute_drift(
        installed=installed,
        expected=expected or {},
        registered=registered,
        environment_kind=kind,
        now=now,
        holding_grace=GRACE,
    )
    return {(finding.kind, finding.unique_name): finding.details for finding in findings}


# --- the pure rules ---------------------------------------------------------------------------------------


def test_versions_compare_numerically_and_short_versions_are_padded():
    assert version_key("1.10.0.0") > version_key("1.9.0.0")
    assert version_key("1.0") == version_key("1.0.0.0")
    assert version_key("2.1.3") == (2, 1, 3, 0)
    assert version_key("1.0.0.10") > version_key("1.0.0.9")


def test_nothing_expected_and_nothing_odd_means_no_drift():
    assert _drift(_installed(Installed("Core", "1.0.0.0", True, "contoso"))) == {}


def test_a_version_changed_outside_the_portal():
    found = _drift(_installed(Installed("Core", "1.2.0.0", True)), {"Core": Expected("1.1.0.0", True)})
    assert found == {("version_changed", "Core"): {"expected_version": "1.1.0.0", "installed_version": "1.2.0.0"}}


def test_the_same_version_written_differently_is_not_drift():
    assert _drift(_installed(Installed("Core", "1.1", True)), {"Core": Expected("1.1.0.0", True)}) == {}


def test_a_deployed_solution_that_is_gone():
    found = _drift(_installed(), {"Core": Expected("1.1.0.0", True)})
    assert found == {("missing", "Core"): {"expected_version": "1.1.0.0", "expected_managed": True}}


def test_what_a_running_promotion_of_the_portal_installs_is_not_drift():
    """Issue 13: the runner syncs before it reports success, and a scheduled sync may come mid-import."""
    under_way = Expected("1.1.0.0", True, also_accepted=("1.2.0.0",))
    assert _drift(_installed(Installed("Core", "1.2.0.0", True)), {"Core": under_way}) == {}
    assert _drift(_installed(Installed("Core", "1.1.0.0", True)), {"Core": under_way}) == {}
    found = _drift(_installed(Installed("Core", "1.3.0.0", True)), {"Core": under_way})  # not the portal's
    assert list(found) == [("version_changed", "Core")]
    first_install = Expected("1.2.0.0", True, may_be_absent=True)
    assert _drift(_installed(), {"Core": first_install}) == {}
    applying_holding = Expected("1.1.0.0", True, any_version=True)
    assert _drift(_installed(Installed("Core", "1.1.5.0", True)), {"Core": applying_holding}) == {}


def test_unmanaged_where_managed_was_deployed():
    found = _drift(_installed(Installed("core", "1.1.0.0", False)), {"Core": Expected("1.1.0.0", True)})
    assert list(found) == [("unmanaged", "Core")]
    assert found[("unmanaged", "Core")]["installed_managed"] is False


def test_a_holding_solution_older_than_the_grace_period_is_stuck():
    installed = _installed(
        Installed("Core", "1.0.0.0", True),
        Installed("Core_Upgrade", "2.0.0.0", True, installed_on=NOW - timedelta(hours=2)),
    )
    found = _drift(installed)
    assert found[("holding_stuck", "Core_Upgrade")]["base_version"] == "1.0.0.0"
    assert found[("holding_stuck", "Core_Upgrade")]["holding_version"] == "2.0.0.0"


def test_a_fresh_holding_solution_is_an_upgrade_in_progress_not_drift():
    installed = _installed(
        Installed("Core", "1.0.0.0", True), Installed("Core_Upgrade", "2.0.0.0", True, installed_on=NOW)
    )
    assert _drift(installed) == {}


def test_a_solution_nobody_registered_in_test_and_production_only():
    installed = _installed(
        Installed("Core", "1.0.0.0", True, "contoso"),
        Installed("Rogue", "1.0.0.0", True, "someone"),
        Installed("Default", "1.0", False, "DefaultPublisherorg"),
        Installed("msdyn_PowerConnectors", "9.2.15.0", True, "MicrosoftCorporation"),
    )
    found = _drift(installed, registered={"Core"})
    assert list(found) == [("unregistered", "Rogue")]
    assert found[("unregistered", "Rogue")]["publisher"] == "someone"
    assert _drift(installed, registered={"Core"}, kind="development") == {}
    # Without a registry the kind cannot be judged and is skipped.
    assert _drift(installed, registered=None) == {}


def test_a_deployed_solution_counts_as_known_even_if_the_registry_lacks_it():
    found = _drift(_installed(Installed("Core", "1.0.0.0", True, "c")), {"Core": Expected("1.0.0.0", True)}, set())
    assert found == {}


# --- against the emulator ------------------------------------------------------------------------------------


def _expect(monkeypatch, expected):
    """Until promotions exist, expectations come from this one selector; tests supply them."""
    monkeypatch.setattr(selectors, "expected_installations", lambda *, environment: dict(expected))


def _uninstall(org, name):
    operation = org.post("UninstallSolutionAsync", json={"SolutionUniqueName": name}).json()
    org.complete_operation(operation["AsyncOperationId"])


def _open(environment):
    return {(row.kind, row.unique_name): row for row in selectors.drift_findings(environment=environment)}


@pytest.fixture
def dev_environment(emulator_org, register):
    """A development environment, so only the drift kinds a test asks for show up."""
    return register(emulator_org, kind="development")


@pytest.mark.django_db
def test_version_changed_behind_the_portals_back(emulator_org, dev_environment, admin_context, monkeypatch):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0"))
    _expect(monkeypatch, {"EmtCore": Expected("1.0.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert _open(dev_environment) == {}

    emulator_org.install(make_solution("EmtCore", "1.1.0.0"), mode="upgrade")
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)

    assert report.drift_detected == ["version_changed:EmtCore"]
    finding = _open(dev_environment)[("version_changed", "EmtCore")]
    assert finding.details == {"expected_version": "1.0.0.0", "installed_version": "1.1.0.0"}
    assert finding.last_seen_at > finding.first_seen_at
    detected = only_event("drift.detected")  # once, although two syncs saw it
    assert (detected.object_id, detected.related_id) == (str(finding.pk), str(dev_environment.pk))
    assert detected.after["kind"] == "version_changed"
    assert detected.after["details"]["installed_version"] == "1.1.0.0"
    assert EnvironmentNotification.objects.filter(environment=dev_environment, kind="drift_detected").count() == 1

    # The portal catches up (e.g. the promotion that installed 1.1 is recorded): the finding resolves.
    _expect(monkeypatch, {"EmtCore": Expected("1.1.0.0", True)})
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert report.drift_resolved == ["version_changed:EmtCore"]
    assert _open(dev_environment) == {}
    finding.refresh_from_db()
    assert finding.resolved_at is not None
    resolved = only_event("drift.resolved")
    assert resolved.object_id == str(finding.pk)
    assert (resolved.before, resolved.after["resolved_at"] is not None) == ({"resolved_at": None}, True)
    assert EnvironmentNotification.objects.filter(environment=dev_environment, kind="drift_resolved").count() == 1


@pytest.mark.django_db
def test_a_deployed_solution_uninstalled_behind_the_portals_back(
    emulator_org, dev_environment, admin_context, monkeypatch
):
    emulator_org.install(make_solution("EmtGone", "1.0.0.0"))
    _expect(monkeypatch, {"EmtGone": Expected("1.0.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    _uninstall(emulator_org, "EmtGone")
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert report.drift_detected == ["missing:EmtGone"]
    assert _open(dev_environment)[("missing", "EmtGone")].details["expected_version"] == "1.0.0.0"


@pytest.mark.django_db
def test_unmanaged_installed_where_managed_was_deployed(emulator_org, dev_environment, admin_context, monkeypatch):
    emulator_org.install(make_solution("EmtFlip", "1.0.0.0"))
    _expect(monkeypatch, {"EmtFlip": Expected("1.0.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    _uninstall(emulator_org, "EmtFlip")
    emulator_org.install(make_solution("EmtFlip", "1.0.0.0", managed=False))
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert report.drift_detected == ["unmanaged:EmtFlip"]
    assert only_event("drift.detected").after["kind"] == DriftKind.UNMANAGED


@pytest.mark.django_db
def test_a_stuck_holding_solution_needs_no_expectations(emulator_org, dev_environment, admin_context, settings):
    settings.ALM_HOLDING_GRACE_MINUTES = 0
    emulator_org.install(make_solution("EmtStage", "1.0.0.0"))
    emulator_org.install(make_solution("EmtStage", "2.0.0.0"), mode="holding")
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert report.drift_detected == ["holding_stuck:EmtStage_Upgrade"]
    finding = _open(dev_environment)[("holding_stuck", "EmtStage_Upgrade")]
    assert (finding.details["base_version"], finding.details["holding_version"]) == ("1.0.0.0", "2.0.0.0")

    # Someone applies the upgrade: the holding solution is gone, so is the finding.
    emulator_org.post("DeleteAndPromote", json={"UniqueName": "EmtStage"})
    report = services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    assert report.drift_resolved == ["holding_stuck:EmtStage_Upgrade"]
    assert report.changed == ["EmtStage 1.0.0.0 -> 2.0.0.0"]


@pytest.mark.django_db
def test_a_solution_nobody_registered_in_a_test_environment(emulator_org, register, admin_context, team):
    solution_model = apps.get_model("solutions", "Solution")
    solution_model.objects.create(unique_name="EmtKnown", team=team)
    emulator_org.install(make_solution("EmtKnown", "1.0.0.0"))
    emulator_org.install(make_solution("EmtRogue", "1.0.0.0", publisher="roguepub"))
    environment = register(emulator_org, kind="test")
    report = services.environment_sync_inventory(environment=environment, context=admin_context)
    assert report.drift_detected == ["unregistered:EmtRogue"]
    assert _open(environment)[("unregistered", "EmtRogue")].details["publisher"] == "roguepub"

    solution_model.objects.create(unique_name="emtrogue", team=team)  # registered later, any case
    report = services.environment_sync_inventory(environment=environment, context=admin_context)
    assert report.drift_resolved == ["unregistered:EmtRogue"]
    assert [e.action for e in events() if e.action.startswith("drift.")] == ["drift.detected", "drift.resolved"]


@pytest.mark.django_db
def test_findings_keep_their_history(emulator_org, dev_environment, admin_context, monkeypatch):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0"))
    _expect(monkeypatch, {"EmtCore": Expected("0.9.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    _expect(monkeypatch, {"EmtCore": Expected("1.0.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    _expect(monkeypatch, {"EmtCore": Expected("0.9.0.0", True)})
    services.environment_sync_inventory(environment=dev_environment, context=admin_context)
    rows = list(DriftFinding.objects.filter(environment=dev_environment).order_by("pk"))
    assert [(row.kind, row.resolved_at is None) for row in rows] == [
        ("version_changed", False),
        ("version_changed", True),
    ]
    assert len(selectors.drift_findings(environment=dev_environment, include_resolved=True)) == 2
