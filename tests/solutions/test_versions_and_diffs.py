"""Version identity and ordering (numeric, 2-/3-/4-part), component diffs, and diffs against an inventory."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.core.files.storage import storages

from alm_portal.audit.models import AuditEvent
from alm_portal.errors import ValidationFailed
from solutions import selectors, services
from solutions.errors import ArtifactMissing, VersionExists
from solutions.models import VersionDiff
from tests.solutions.conftest import (
    INCIDENT_102_MANAGED,
    INCIDENT_102_UNMANAGED,
    INCIDENT_104_UNMANAGED,
    reversioned,
)

pytestmark = pytest.mark.django_db


def _keys(solution):
    return list(selectors.solution_versions(solution=solution).values_list("version_key", flat=True))


def test_versions_order_numerically_not_as_text(maker, upload):
    for version in ("1.9.0.0", "1.10.0.0", "1.2.0.0"):
        upload(maker, reversioned(INCIDENT_102_UNMANAGED, version))
    solution = selectors.solution_find(unique_name="incidentreporting")  # unique names are case-insensitive

    assert _keys(solution) == ["1.10.0.0", "1.9.0.0", "1.2.0.0"]
    listed = selectors.solutions_visible_to(user=maker).get(pk=solution.pk)
    assert listed.latest_version_text == "1.10.0.0"
    assert selectors.solution_next_allowed(solution=solution) == "1.10.0.1"
    assert selectors.solution_next_allowed(solution=solution, part="minor") == "1.11.0.0"


def test_two_and_three_part_versions_are_their_four_part_forms(maker, upload):
    start_11 = upload(maker, "StartMenu_1_1_managed.zip").version
    start_14 = upload(maker, "StartMenu_1_4_managed.zip").version
    quote = upload(maker, "QuoteLineEditor_0_1_0_managed.zip").version

    assert (start_14.version, start_14.version_key) == ("1.4", "1.4.0.0")
    assert (quote.version, quote.version_key) == ("0.1.0", "0.1.0.0")
    assert _keys(start_11.solution) == ["1.4.0.0", "1.1.0.0"]
    assert selectors.version_find(solution=start_14.solution, version="1.4.0") == start_14
    assert selectors.version_find(solution=start_14.solution, version="1.4.0.0") == start_14
    # "1.4.0.0" is the version "1.4" already is: other bytes in the same flavour are refused.
    with pytest.raises(VersionExists) as refused:
        upload(maker, reversioned("StartMenu_1_4_managed.zip", "1.4.0.0"))
    assert refused.value.details["next_allowed"] == "1.4.0.1"


def test_three_part_versions_with_large_parts_order_numerically(maker, upload):
    newer = upload(maker, "SecondaryRecordSource_SampleSolution_1_23091_1_managed.zip").version
    older = upload(maker, "SecondaryRecordSource_SampleSolution_1_21111_1_managed.zip").version

    assert _keys(newer.solution) == ["1.23091.1.0", "1.21111.1.0"]
    assert older.version == "1.21111.1"


def test_diff_of_two_versions_shows_the_dropped_table_as_data_loss(maker, upload):
    old = upload(maker, INCIDENT_102_UNMANAGED).version
    new = upload(maker, INCIDENT_104_UNMANAGED).version
    events = AuditEvent.objects.count()

    diff = services.version_diff(old=old, new=new)

    assert diff["old"] == {"id": old.pk, "version": "1.0.0.2", "flavour": "unmanaged", "sha256": old.unmanaged_sha256}
    assert diff["new"]["version"] == "1.0.0.4" and diff["in_registry"] is True
    assert [item["column"] for item in diff["data_loss"]] == [None]
    dropped = diff["data_loss"][0]["table"]
    assert any(item["kind"] == "table" and item["name"] for item in diff["removed"])
    assert "deletes it and all its rows" in diff["data_loss"][0]["description"]
    assert dropped
    assert AuditEvent.objects.count() == events  # a diff derives data; it changes nothing


def test_diffs_are_cached_by_artifact_checksums(maker, upload):
    old = upload(maker, INCIDENT_102_UNMANAGED).version
    new = upload(maker, INCIDENT_104_UNMANAGED).version
    first = services.version_diff(old=old, new=new)
    assert VersionDiff.objects.filter(old_sha256=old.unmanaged_sha256, new_sha256=new.unmanaged_sha256).count() == 1

    # The cached result answers even when the files cannot be read any more.
    storages["artifacts"].delete(old.unmanaged_path)
    assert services.version_diff(old=old, new=new) == first
    assert VersionDiff.objects.count() == 1


def test_diff_compares_managed_artifacts_when_both_versions_have_them(maker, upload):
    old = upload(maker, INCIDENT_102_UNMANAGED).version
    upload(maker, INCIDENT_102_MANAGED)
    upload(maker, "IncidentReporting_1_0_0_5_managed.zip")
    old.refresh_from_db()
    new = selectors.solution_versions(solution=old.solution).first()

    diff = services.version_diff(old=old, new=new)

    assert (diff["old"]["flavour"], diff["new"]["flavour"]) == ("managed", "managed")
    assert diff["data_loss"]


def test_diff_against_itself_is_empty_and_versions_of_other_solutions_are_refused(maker, upload):
    incident = upload(maker, INCIDENT_102_UNMANAGED).version
    other = upload(maker, "UpdateCreatedBy_1_0_0_1.zip").version

    same = services.version_diff(old=incident, new=incident)
    assert not (same["added"] or same["removed"] or same["changed"] or same["data_loss"])
    with pytest.raises(ValidationFailed):
        services.version_diff(old=incident, new=other)


def test_diff_against_a_version_installed_outside_the_portal_lists_only_what_the_inventory_knows(maker, upload):
    version = upload(maker, INCIDENT_104_UNMANAGED).version
    installed = SimpleNamespace(version="1.0.0.3", is_managed=True, installed_on=datetime(2026, 1, 5, tzinfo=UTC))

    diff = services.version_diff_against_installed(version=version, installed=installed, environment_name="prod")

    assert diff["in_registry"] is False
    assert "not in the registry" in diff["message"] and "prod" in diff["message"]
    assert diff["installed"] == {"version": "1.0.0.3", "is_managed": True, "installed_on": "2026-01-05T00:00:00+00:00"}
    assert "added" not in diff and "data_loss" not in diff


def test_diff_against_a_registered_installed_version_is_the_component_diff(maker, upload, team):
    from django.utils import timezone

    from environments.models import Environment, InventoryInterval

    old = upload(maker, INCIDENT_102_UNMANAGED).version
    new = upload(maker, INCIDENT_104_UNMANAGED).version
    test_env = Environment.objects.create(
        name="contoso-test", url="https://contoso-test.crm4.dynamics.com", tenant_id="t", team=team
    )
    InventoryInterval.objects.create(
        environment=test_env,
        unique_name="IncidentReporting",
        version="1.0.0.2",
        is_managed=False,
        valid_from=timezone.now(),
    )
    installed = selectors.installed_solution(environment_id=test_env.pk, unique_name="IncidentReporting")

    diff = services.version_diff_against_installed(version=new, installed=installed, environment_name="contoso-test")

    assert diff["in_registry"] is True and diff["old"]["id"] == old.pk
    assert diff["installed"]["version"] == "1.0.0.2"
    assert diff["data_loss"]
    # ...and the inventory counts as "seen anywhere" for the next allowed version.
    InventoryInterval.objects.create(
        environment=test_env,
        unique_name="IncidentReporting",
        version="1.0.0.9",
        is_managed=True,
        valid_from=timezone.now(),
        valid_to=timezone.now(),
    )
    assert selectors.solution_next_allowed(solution=new.solution) == "1.0.0.10"


def test_diff_needs_artifacts_in_storage(maker, upload):
    old = upload(maker, INCIDENT_102_UNMANAGED).version
    new = upload(maker, INCIDENT_104_UNMANAGED).version
    storages["artifacts"].delete(new.unmanaged_path)

    with pytest.raises(ArtifactMissing):
        services.version_diff(old=old, new=new)


def test_reversion_registers_a_higher_copy_of_an_older_managed_artifact(maker, upload, context_of):
    old = upload(maker, INCIDENT_102_MANAGED).version
    upload(maker, "IncidentReporting_1_0_0_5_managed.zip")

    outcome = services.solution_version_reversion(version=old, user=maker, context=context_of(maker))

    copy = outcome.version
    assert outcome.created and outcome.flavour == "managed"
    assert copy.version_key == "1.0.0.6"  # above everything seen
    assert (copy.source_kind, copy.restores_version) == ("reversioned", old)
    assert copy.managed_sha256 != old.managed_sha256
    assert copy.manifest_summary["components"] == old.manifest_summary["components"]
    diff = services.version_diff(old=old, new=copy)
    assert not (diff["added"] or diff["removed"] or diff["changed"] or diff["data_loss"])
    created = AuditEvent.objects.filter(action="solution_version.created").latest("seq")
    assert created.object_id == str(copy.pk)
    assert created.after["source_kind"] == "reversioned" and created.after["restores_version"] == old.pk
    # The re-versioned package counts as seen: the next export or upload must go above it.
    assert selectors.solution_next_allowed(solution=old.solution) == "1.0.0.7"


def test_reversion_refuses_a_version_that_is_not_above_everything(maker, upload, context_of):
    old = upload(maker, INCIDENT_102_MANAGED).version
    upload(maker, "IncidentReporting_1_0_0_5_managed.zip")

    with pytest.raises(VersionExists) as refused:
        services.solution_version_reversion(version=old, new_version="1.0.0.5", context=context_of(maker))
    assert refused.value.details["next_allowed"] == "1.0.0.6"
    with pytest.raises(ArtifactMissing):
        services.solution_version_reversion(
            version=upload(maker, INCIDENT_104_UNMANAGED).version, context=context_of(maker)
        )
