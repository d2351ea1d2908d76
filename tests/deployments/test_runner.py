"""The import runner on the emulator, jobs run inline: what a run records, how it fails, how it waits,
and how it adopts an operation it lost the handle of (docs/states.md §3)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from alm_portal.audit.models import AuditEvent
from alm_portal.dataverse.client import AsyncOperationType, DataverseClient
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run
from deployments import runner
from deployments.choices import ImportMode
from deployments.services import stage_freeze_add, stage_update
from environments.models import Environment, InventoryInterval
from solutions.storage import artifact_storage
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    WORKER,
    as_user,
    contoso_fixture,
    corpus_bytes,
    job_of,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db


def approved(contoso, version, stage="test"):
    """A promotion through pre-flight and approval, its run job not started yet."""
    promotion = contoso.preflight(contoso.request(version, stage))
    return contoso.approve(promotion)


def operation_of(contoso, stage, async_operation_id):
    return contoso.orgs[stage].get(f"asyncoperations({async_operation_id})").json()


def run_once(job):
    """One task's worth of the job (claim, one step, defer or finish)."""
    job.refresh_from_db()
    if job.not_before and job.not_before > timezone.now():
        Job.objects.filter(pk=job.pk).update(not_before=timezone.now())
    outcome = job_run(job.pk)
    job.refresh_from_db()
    return outcome


class Crash(BaseException):
    """Stands in for a worker dying mid-call (not an Exception: nothing in the job engine catches it)."""


def crash_the_next_submit(monkeypatch, method="stage_and_upgrade_async", after_sending=False):
    """The next submit dies before (or just after) reaching Dataverse; the job row keeps its lease."""
    original = getattr(DataverseClient, method)

    def dying(self, *args, **kwargs):
        monkeypatch.setattr(DataverseClient, method, original)
        if after_sending:
            original(self, *args, **kwargs)
        raise Crash()

    monkeypatch.setattr(DataverseClient, method, dying)


def lease_runs_out(job):
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1), not_before=None)


# --- the happy path -------------------------------------------------------------------------------------


def test_an_upgrade_is_submitted_once_polled_and_recorded(contoso):
    contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")
    promotion = contoso.promote(contoso.upload(success_package("1.1.0.0")), "test")

    assert promotion.status == "succeeded", (promotion.error_code, promotion.error_message)
    assert promotion.previous_version == "1.0.0.0"
    job = job_of(promotion)
    assert job.status == JobStatus.SUCCEEDED and job.package_sha256 == promotion.artifact_sha256
    assert (
        operation_of(contoso, "test", job.async_operation_id)["operationtype"] == AsyncOperationType.STAGE_AND_UPGRADE
    )
    result = promotion.result
    assert result["installed_version"] == "1.1.0.0" and result["previous_version"] == "1.0.0.0"
    assert result["import_log"]["result"] == "success" and result["import_log"]["version"] == "1.1.0.0"
    assert "xml" not in result["import_log"]  # the raw log is kept for failures only
    assert {component["result"] for component in result["components"]} == {"success"}
    assert result["async_operation_id"] == job.async_operation_id
    assert result["flows"]["activation"] == "not_needed"
    assert result["inventory"]["refreshed"] is True
    assert (
        InventoryInterval.objects.get(
            environment=contoso.environments["test"], unique_name=SUCCESS, valid_to__isnull=True
        ).version
        == "1.1.0.0"
    )
    assert contoso.installed("test")["version"] == "1.1.0.0"
    assert contoso.orgs["test"].import_count(SUCCESS, "1.1.0.0") == 1
    actions = list(
        AuditEvent.objects.filter(object_type="deployments.promotion", object_id=str(promotion.pk)).values_list(
            "action", flat=True
        )
    )
    assert actions[-2:] == ["promotion.started", "promotion.succeeded"]


def test_update_mode_imports_with_import_solution_async(contoso):
    stage_update(stage=contoso.stages["test"], context=as_user(contoso.admin), import_mode=ImportMode.UPDATE)
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    job = job_of(promotion)
    assert promotion.status == "succeeded"
    assert operation_of(contoso, "test", job.async_operation_id)["operationtype"] == AsyncOperationType.IMPORT_SOLUTION


def test_component_parameters_come_from_the_settings_snapshot(contoso, emulator):
    contoso.set_settings(
        "test",
        {
            "EnvironmentVariables": [{"SchemaName": "new_ContosoURL", "Value": "https://test.contoso.com"}],
            "ConnectionReferences": [
                {
                    "LogicalName": "new_D365connection",
                    "ConnectionId": "0123456789abcdef0123456789abcdef",
                    "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_dynamicscrmonline",
                }
            ],
        },
    )
    promotion = contoso.promote(contoso.upload(corpus_bytes("Contoso_sample_1_0_0_1_managed.zip")), "test")

    assert promotion.status == "succeeded", promotion.error_message
    state = json.loads((Path(f"{emulator.state_file}.orgs") / f"{contoso.orgs['test'].name}.json").read_text())
    assert state["environment_variable_values"]["new_ContosoURL"] == "https://test.contoso.com"
    assert state["connection_reference_bindings"]["new_D365connection"]["connectionid"] == (
        "0123456789abcdef0123456789abcdef"
    )


def test_a_run_that_already_reported_returns_its_outcome_without_calling_dataverse(contoso):
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    again = runner.promotion_run(job=job_of(promotion), context=WORKER)

    assert again == promotion.result
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


# --- failures --------------------------------------------------------------------------------------------


def test_a_failed_import_keeps_the_dataverse_code_message_and_log(contoso):
    org = contoso.orgs["test"]
    # The dependency is there for pre-flight and approval, and gone (uninstalled) before the run.
    org.install(success_package("1.0.0.0", ("ud_testentity4",), unique_name="DependencyProvider"))
    promotion = approved(contoso, contoso.upload(corpus_bytes("MissingDependency_1_0_0_0_managed.zip")))
    operation = org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "DependencyProvider"}).json()
    org.wait_for_operation(operation["AsyncOperationId"])

    promotion = contoso.run(promotion)

    assert promotion.status == "failed"
    assert promotion.error_code == "0x8004801D"
    assert "dependencies are missing" in promotion.error_message
    log = promotion.result["import_log"]
    assert log["result"] == "failure" and "<importexportxml" in log["xml"].lower()
    assert {entry["required_name"] for entry in log["missing_dependencies"]} >= {"ud_testentity4"}
    job = job_of(promotion)
    assert job.status == JobStatus.FAILED and job.error_code == "0x8004801D"
    event = AuditEvent.objects.get(action="promotion.failed", object_id=str(promotion.pk))
    assert event.after["error_code"] == "0x8004801D"


def test_a_changed_artifact_fails_with_checksum_mismatch_and_nothing_is_imported(contoso):
    version = contoso.upload(success_package("1.0.0.0"))
    promotion = approved(contoso, version)
    path = Path(artifact_storage().path(version.managed_path))
    path.write_bytes(success_package("1.0.0.0", ("ud_testentity1",)))

    promotion = contoso.run(promotion)

    assert (promotion.status, promotion.error_code) == ("failed", "checksum_mismatch")
    assert contoso.orgs["test"].import_count(SUCCESS) == 0


def test_a_blocker_that_appeared_after_approval_stops_the_run(contoso):
    version = contoso.upload(success_package("1.0.0.0"))
    promotion = approved(contoso, version)
    contoso.orgs["test"].install(success_package("1.0.0.0"))  # someone installed it by hand meanwhile

    promotion = contoso.run(promotion)

    assert (promotion.status, promotion.error_code) == ("failed", "preflight_blocked")
    assert "already_installed" in promotion.error_message
    assert contoso.orgs["test"].import_count(SUCCESS) == 0


def test_a_stage_frozen_while_the_job_waited_gives_the_promotion_back(contoso):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    now = timezone.now()
    stage_freeze_add(
        stage=contoso.stages["test"],
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        reason="quarter end",
        context=as_user(contoso.admin),
    )
    job = job_of(promotion)

    contoso.run(promotion)

    promotion.refresh_from_db()
    job.refresh_from_db()
    assert promotion.status == "scheduled"
    assert job.status == JobStatus.SUCCEEDED and job.result["reason"] == "stage_frozen"
    assert contoso.orgs["test"].import_count(SUCCESS) == 0


# --- waiting --------------------------------------------------------------------------------------------


def test_a_busy_environment_defers_the_submit_and_it_runs_once_free(contoso):
    org = contoso.orgs["test"]
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    org.set_faults(import_never_finishes={"count": 1})
    other = org.post(
        "ImportSolutionAsync",
        json={
            "CustomizationFile": __import__("base64").b64encode(corpus_bytes("Success_1_0_0_0_managed.zip")).decode(),
            "OverwriteUnmanagedCustomizations": False,
            "PublishWorkflows": True,
        },
    ).json()  # someone else's import holds the environment
    job = job_of(promotion)

    outcome = run_once(job)

    assert outcome.reason == "deferred"
    assert (job.status, job.step, job.async_operation_id) == (JobStatus.SUBMITTING, "wait:0", "")
    org.server.admin("POST", f"/orgs/{org.name}/operations/{other['AsyncOperationId']}/cancel")
    promotion = contoso.run(promotion)
    assert promotion.status == "succeeded", promotion.error_message
    job.refresh_from_db()
    assert job.async_operation_id != other["AsyncOperationId"]


def test_a_long_retry_after_is_shared_through_the_environment_row(contoso):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    contoso.orgs["test"].set_faults(throttle={"code": "requests", "retry_after": 8, "count": 1})
    job = job_of(promotion)
    before = timezone.now()

    outcome = run_once(job)

    assert outcome.reason == "deferred"
    assert job.not_before >= before + timedelta(seconds=7)
    environment = Environment.objects.get(pk=contoso.environments["test"].pk)
    assert environment.throttled_until is not None and environment.throttled_until >= before + timedelta(seconds=7)


def test_an_import_still_running_after_the_maximum_wait_needs_attention(contoso, settings):
    settings.ALM_IMPORT_MAX_WAIT = 1
    contoso.orgs["test"].set_faults(import_never_finishes={"count": 1})
    promotion = contoso.run(approved(contoso, contoso.upload(success_package("1.0.0.0"))))

    job = job_of(promotion)
    assert job.status == JobStatus.NEEDS_ATTENTION
    assert (promotion.status, promotion.attention_required) == ("running", True)
    assert "ALM_IMPORT_MAX_WAIT" in job.error_message
    assert AuditEvent.objects.filter(action="promotion.attention_required", object_id=str(promotion.pk)).exists()


# --- a lost handle ----------------------------------------------------------------------------------------


def test_a_lost_answer_is_adopted_not_resubmitted(contoso):
    contoso.orgs["test"].set_faults(drop_after_import={"count": 1})
    promotion = contoso.run(approved(contoso, contoso.upload(success_package("1.0.0.0"))))

    assert promotion.status == "succeeded", promotion.error_message
    assert promotion.result["adopted"]["async_operation_id"] == job_of(promotion).async_operation_id
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_submitting_without_a_handle_adopts_the_operation(contoso):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    job = job_of(promotion)
    while not job.async_operation_id:
        run_once(job)
    submitted = job.async_operation_id
    # As if the worker died after Dataverse accepted the import but before the handle was stored.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUBMITTING, async_operation_id="", import_job_id="")

    promotion = contoso.run(promotion)

    job.refresh_from_db()
    assert promotion.status == "succeeded", promotion.error_message
    assert job.async_operation_id == submitted
    assert promotion.result["adopted"]["async_operation_id"] == submitted
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_a_crash_before_the_request_left_resubmits_when_nothing_was_started(contoso, monkeypatch):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    job = job_of(promotion)
    crash_the_next_submit(monkeypatch)
    with pytest.raises(Crash):
        job_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.step, job.async_operation_id) == (JobStatus.SUBMITTING, "submit:0", "")
    lease_runs_out(job)

    promotion = contoso.run(promotion)

    assert promotion.status == "succeeded", promotion.error_message
    assert promotion.result["adopted"] is None
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_a_crash_after_the_request_left_adopts_what_it_started(contoso, monkeypatch):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    job = job_of(promotion)
    crash_the_next_submit(monkeypatch, after_sending=True)
    with pytest.raises(Crash):
        job_run(job.pk)
    lease_runs_out(job)

    promotion = contoso.run(promotion)

    assert promotion.status == "succeeded", promotion.error_message
    assert promotion.result["adopted"]["async_operation_id"]
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_a_caller_chosen_import_job_id_is_committed_before_the_call_and_finds_the_import(
    contoso, monkeypatch, settings
):
    settings.ALM_IMPORT_JOB_ID_ON_ASYNC = True
    contoso.orgs["test"].settings(import_job_id_on_async="honour")
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    job = job_of(promotion)
    crash_the_next_submit(monkeypatch, after_sending=True)
    with pytest.raises(Crash):
        job_run(job.pk)
    job.refresh_from_db()
    sent = job.import_job_id
    assert sent and job.async_operation_id == ""
    lease_runs_out(job)

    promotion = contoso.run(promotion)

    job.refresh_from_db()
    assert promotion.status == "succeeded", promotion.error_message
    assert job.import_job_id == sent and promotion.result["import_log"]["import_job_id"] == sent
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_nothing_found_and_a_changed_target_needs_attention(contoso, monkeypatch):
    promotion = approved(contoso, contoso.upload(success_package("1.0.0.0")))
    job = job_of(promotion)
    crash_the_next_submit(monkeypatch)
    with pytest.raises(Crash):
        job_run(job.pk)
    lease_runs_out(job)
    contoso.orgs["test"].install(success_package("1.0.0.0"))  # the target changed by other means

    promotion = contoso.run(promotion)

    job.refresh_from_db()
    assert job.status == JobStatus.NEEDS_ATTENTION
    assert (promotion.status, promotion.attention_required) == ("running", True)
    assert contoso.orgs["test"].import_count(SUCCESS) == 0


def test_adoption_ignores_operations_other_jobs_own(contoso, monkeypatch):
    # Test's first promotion owns its operation; the second one's lost submit must not adopt it.
    first = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")
    promotion = approved(contoso, contoso.upload(success_package("1.1.0.0")))
    job = job_of(promotion)
    crash_the_next_submit(monkeypatch)
    with pytest.raises(Crash):
        job_run(job.pk)
    lease_runs_out(job)

    promotion = contoso.run(promotion)

    assert promotion.status == "succeeded", promotion.error_message
    assert job_of(promotion).async_operation_id != job_of(first).async_operation_id
    assert contoso.orgs["test"].import_count(SUCCESS, "1.1.0.0") == 1


# --- our own database in trouble ----------------------------------------------------------------------------


def test_an_inventory_refresh_that_fails_does_not_fail_a_finished_import(contoso, monkeypatch):
    from django.db import OperationalError

    def deadlocked(**kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr("environments.services.environment_sync_inventory", deadlocked)
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    assert promotion.status == "succeeded"
    assert promotion.result["inventory"] == {
        "refreshed": False,
        "error_code": "database_error",
        "message": "deadlock detected",
    }


def test_a_deadlock_while_reporting_is_retried_not_left_running(contoso, monkeypatch):
    from django.db import OperationalError

    from deployments import workflow

    original = workflow.promotion_mark_succeeded
    calls = []

    def first_time_deadlocked(**kwargs):
        calls.append(kwargs["promotion_id"])
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        return original(**kwargs)

    monkeypatch.setattr(workflow, "promotion_mark_succeeded", first_time_deadlocked)
    promotion = contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")

    assert promotion.status == "succeeded" and len(calls) == 2
    assert job_of(promotion).status == JobStatus.SUCCEEDED
    assert contoso.orgs["test"].import_count(SUCCESS) == 1


def test_drift_compares_the_inventory_with_what_the_portal_deployed(contoso):
    """A version changed behind the portal's back is found by the next sync, against the last deployment."""
    from alm_portal.audit.context import AuditContext
    from environments.models import DriftFinding
    from environments.selectors import expected_installations
    from environments.services.inventory import environment_sync_inventory

    contoso.promote(contoso.upload(success_package("1.0.0.0")), "test")
    environment = contoso.environments["test"]
    assert expected_installations(environment=environment)[SUCCESS].version == "1.0.0.0"

    contoso.orgs["test"].install(success_package("1.2.0.0"), mode="upgrade")  # outside the portal
    environment_sync_inventory(environment=environment, context=AuditContext.system())
    finding = DriftFinding.objects.get(environment=environment, unique_name=SUCCESS, resolved_at__isnull=True)
    assert finding.kind == "version_changed"
