"""Inventory sync against the emulator: change intervals, point-in-time reads, solution history,
idempotence and a bounded number of SQL statements."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.services import job_run_now
from environments import selectors, services
from environments.models import InventoryInterval, SolutionHistoryEntry
from tests.emulator.packages import b64, make_solution
from tests.environments.conftest import events, only_event

pytestmark = pytest.mark.django_db


def _uninstall(org, name):
    operation = org.post("UninstallSolutionAsync", json={"SolutionUniqueName": name}).json()
    org.complete_operation(operation["AsyncOperationId"])


def _ours(queryset):
    """Every new emulator org holds Microsoft's platform solutions; tests look at their own (Emt…)."""
    return {row.unique_name: row.version for row in queryset if row.unique_name.startswith("Emt")}


def test_first_sync_stores_every_installed_solution_and_its_history(emulator_org, register, admin_context):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0", publisher="contosopub"))
    emulator_org.install(make_solution("EmtApp", "2.1.0.0", managed=False))
    environment = register(emulator_org)

    report = services.environment_sync_inventory(environment=environment, context=admin_context)

    current = {row.unique_name: row for row in selectors.inventory_current(environment=environment)}
    assert current["EmtCore"].version == "1.0.0.0"
    assert current["EmtCore"].is_managed is True
    assert current["EmtCore"].publisher == "contosopub"
    assert current["EmtCore"].installed_on is not None
    assert current["EmtApp"].is_managed is False
    assert "Default" in current  # platform solutions are inventoried too
    assert report.solutions == len(current)
    assert "EmtCore 1.0.0.0" in report.added

    history = {row.solution_name for row in selectors.solution_history(environment=environment)}
    assert {"EmtCore", "EmtApp"} <= history
    assert report.history_added == SolutionHistoryEntry.objects.filter(environment=environment).count()

    event = only_event("inventory.changed", object_id=str(environment.pk))
    assert "EmtCore 1.0.0.0" in event.after["added"]
    assert event.after["counts"]["added"] == len(current)
    environment.refresh_from_db()
    assert environment.inventory_synced_at is not None


def test_a_second_sync_without_changes_writes_nothing_new(emulator_org, register, admin_context):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0"))
    environment = register(emulator_org)
    services.environment_sync_inventory(environment=environment, context=admin_context)
    intervals = InventoryInterval.objects.count()
    history = SolutionHistoryEntry.objects.count()

    report = services.environment_sync_inventory(environment=environment, context=admin_context)

    assert (report.added, report.changed, report.removed) == ([], [], [])
    assert (report.history_added, report.history_updated) == (0, 0)
    assert InventoryInterval.objects.count() == intervals
    assert SolutionHistoryEntry.objects.count() == history
    assert len(events("inventory.changed")) == 1


def test_intervals_answer_what_was_installed_at_any_time(emulator_org, register, admin_context):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0"))
    emulator_org.install(make_solution("EmtGone", "1.0.0.0"))
    environment = register(emulator_org)
    services.environment_sync_inventory(environment=environment, context=admin_context)
    first = timezone.now()
    # Dataverse (and the emulator) report installedon in whole seconds: an upgrade in the same second
    # as `first` would truthfully be dated at or before it. Move past that second first.
    time.sleep(1.05 - first.microsecond / 1_000_000)

    emulator_org.install(make_solution("EmtCore", "1.1.0.0"), mode="upgrade")
    _uninstall(emulator_org, "EmtGone")
    report = services.environment_sync_inventory(environment=environment, context=admin_context)
    second = timezone.now()

    assert report.changed == ["EmtCore 1.0.0.0 -> 1.1.0.0"]
    assert report.removed == ["EmtGone 1.0.0.0"]
    assert _ours(selectors.inventory_at(environment=environment, when=first)) == {
        "EmtCore": "1.0.0.0",
        "EmtGone": "1.0.0.0",
    }
    assert _ours(selectors.inventory_at(environment=environment, when=second)) == {"EmtCore": "1.1.0.0"}
    core = list(selectors.inventory_history_of(environment=environment, unique_name="EmtCore"))
    assert [(row.version, row.valid_to is None) for row in core] == [("1.0.0.0", False), ("1.1.0.0", True)]
    assert core[0].valid_to == core[1].valid_from  # no gap, no overlap
    event = events("inventory.changed")[-1]
    assert event.after["changed"] == ["EmtCore 1.0.0.0 -> 1.1.0.0"]
    assert event.after["removed"] == ["EmtGone 1.0.0.0"]
    assert event.before is None


def test_history_rows_are_stored_once_and_refreshed_when_they_complete(emulator_org, register, admin_context):
    environment = register(emulator_org)
    emulator_org.settings(operation_duration=30)
    submitted = emulator_org.post(
        "ImportSolutionAsync",
        json={"CustomizationFile": b64(make_solution("EmtSlow", "1.0.0.0")), "OverwriteUnmanagedCustomizations": False},
    ).json()
    services.environment_sync_inventory(environment=environment, context=admin_context)
    started = SolutionHistoryEntry.objects.get(environment=environment, solution_name="EmtSlow")
    assert started.status == 0 and started.end_time is None

    emulator_org.complete_operation(submitted["AsyncOperationId"])
    report = services.environment_sync_inventory(environment=environment, context=admin_context)

    assert report.history_updated == 1
    completed = SolutionHistoryEntry.objects.get(environment=environment, solution_name="EmtSlow")
    assert completed.pk == started.pk
    assert (completed.status, completed.result) == (1, True)
    assert completed.end_time is not None


def _queries_for_first_sync(emulator, register, admin_context, count):
    org = emulator.new_org()
    for index in range(count):
        org.install(make_solution(f"EmtBulk{index:03d}", f"1.0.{index}.0"))
    # A development environment: drift of kind "unregistered" (one audit row per finding) is only
    # looked for in test and production, and would measure drift, not the sync.
    environment = register(org, kind="development")
    with CaptureQueriesContext(connection) as captured:
        report = services.environment_sync_inventory(environment=environment, context=admin_context)
    assert len([name for name in report.added if name.startswith("EmtBulk")]) == count
    return len(captured.captured_queries), environment


@pytest.mark.slow
def test_sql_statements_per_sync_do_not_grow_with_the_number_of_solutions(
    emulator, register, admin_context, django_assert_max_num_queries
):
    small, _ = _queries_for_first_sync(emulator, register, admin_context, 5)
    large, environment = _queries_for_first_sync(emulator, register, admin_context, 50)
    assert small == large
    # And a sync that finds nothing new is cheaper still, whatever the size.
    with django_assert_max_num_queries(large):
        services.environment_sync_inventory(environment=environment, context=admin_context)


def test_the_inventory_sync_job_runs_the_service(emulator_org, register, admin_context):
    emulator_org.install(make_solution("EmtCore", "1.0.0.0"))
    environment = register(emulator_org)
    job = services.environment_request_inventory_sync(environment=environment, context=admin_context)
    assert services.environment_request_inventory_sync(environment=environment, context=admin_context) == job
    job = job_run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress == 100
    assert "EmtCore 1.0.0.0" in job.result["added"]


def test_a_failed_sync_fails_its_job_with_the_code(emulator_org, register, admin_context):
    environment = register(emulator_org, client_secret="wrong-secret-for-sync")
    job = services.environment_request_inventory_sync(environment=environment, context=admin_context)
    job = job_run_now(job)
    assert job.status == JobStatus.FAILED
    assert job.error_code.startswith("AADSTS")
    assert "wrong-secret-for-sync" not in job.error_message
    assert not InventoryInterval.objects.filter(environment=environment).exists()


def test_a_throttled_sync_is_deferred_until_the_retry_after(emulator_org, register, admin_context):
    environment = register(emulator_org)
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 300, "count": 3})
    job = services.environment_request_inventory_sync(environment=environment, context=admin_context)
    from alm_portal.jobs.services import job_run

    outcome = job_run(job.pk)
    assert outcome.reason == "deferred"
    job.refresh_from_db()
    environment.refresh_from_db()
    assert job.not_before is not None and job.not_before > timezone.now()
    assert environment.throttled_until is not None


def test_beat_queues_one_sync_per_active_environment_and_never_two(emulator, register, admin_context):
    first = register(emulator.new_org())
    second = register(emulator.new_org())
    inactive = register(emulator.new_org())
    services.environment_update(environment=inactive, is_active=False, context=admin_context)
    from environments.tasks import schedule_inventory_syncs

    assert schedule_inventory_syncs() == 2
    assert schedule_inventory_syncs() == 0  # delivered twice, one effect
    from alm_portal.jobs.models import Job

    queued = Job.objects.filter(kind=JobKind.INVENTORY_SYNC).values_list("environment_id", flat=True)
    assert sorted(queued) == sorted([first.pk, second.pk])
