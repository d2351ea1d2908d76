"""DataverseClient against the emulator over real HTTPS (no mocks of our own client).

Every test gets its own org (``emulator_org``), so request and import counters are the test's own. Waits that
matter (Retry-After, backoff) go through an injected ``sleep`` that checks the emulator's request counter
before really sleeping: "nothing was sent while we waited" is asserted with counters, not with wall-clock.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import ssl
import threading
import time
import tracemalloc
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alm_portal.dataverse import errors
from alm_portal.dataverse.auth import ClientCredentials, StaticTokenProvider
from alm_portal.dataverse.client import (
    AsyncOperationType,
    DataverseClient,
    RetryPolicy,
    Timeouts,
    clear_throttle,
    restore_throttle_not_before,
    throttle_not_before,
)
from alm_portal.dataverse.settings_document import DeploymentSettings
from tests.support.emulator import EmulatorOrg, EmulatorServer

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "solutions"

INCIDENT_UNMANAGED = CORPUS / "IncidentReporting_1_0_0_4.zip"  # IncidentReporting 1.0.0.4, unmanaged
INCIDENT_OLDER_MANAGED = CORPUS / "IncidentReporting_1_0_0_1_managed.zip"  # holds 1.0.0.2, managed
SUCCESS_1_0 = CORPUS / "Success_1_0_0_0_managed.zip"
SUCCESS_1_1 = CORPUS / "Success_1_1_0_0_managed.zip"
MISSING_DEPENDENCY = CORPUS / "MissingDependency_1_0_0_0_managed.zip"

FAST_POLL: dict[str, Any] = {"initial_interval": 0.1, "max_interval": 0.5}


@pytest.fixture(autouse=True)
def _forget_throttling() -> Iterator[None]:
    clear_throttle()
    yield
    clear_throttle()


def client_for(org: EmulatorOrg, **kwargs: Any) -> DataverseClient:
    credentials = ClientCredentials(org.authority, org.client_id, org.client_secret)
    kwargs.setdefault("ca_bundle", str(org.server.ca_file))
    return DataverseClient(org.url, credentials=credentials, **kwargs)


def requests_seen(org: EmulatorOrg) -> int:
    return int(org.counters()["requests"][org.name])


class CountingSleep:
    """An injected sleep that records each wait and the org's request counter when the wait began and ended."""

    def __init__(self, org: EmulatorOrg) -> None:
        self.org = org
        self.calls: list[tuple[float, int, int]] = []

    def __call__(self, seconds: float) -> None:
        before = requests_seen(self.org)
        time.sleep(seconds)
        self.calls.append((seconds, before, requests_seen(self.org)))


def big_solution(path: Path, payload_bytes: int, *, unique_name: str = "UpdateCreatedBy") -> Path:
    """A valid unmanaged solution zip (UpdateCreatedBy from the corpus) with an incompressible payload file."""
    source = CORPUS / "UpdateCreatedBy_1_0_0_1.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in original.infolist():
            target.writestr(info, original.read(info.filename))
        with target.open(zipfile.ZipInfo("WebResources/payload.bin"), "w") as payload:
            remaining = payload_bytes
            while remaining > 0:
                block = os.urandom(min(remaining, 1 << 20))
                payload.write(block)
                remaining -= len(block)
    return path


# --- identity, solutions, paging -----------------------------------------------------------------------------


def test_who_am_i_and_version(emulator_org: EmulatorOrg) -> None:
    with client_for(emulator_org) as client:
        me = client.who_am_i()
        assert isinstance(me.user_id, uuid.UUID)
        assert me.organization_id != me.user_id
        assert client.retrieve_version().startswith("9.")


def test_solutions_come_with_their_publisher_and_unknown_names_are_none(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(INCIDENT_UNMANAGED.read_bytes())
    client = client_for(emulator_org)
    solution = client.get_solution("IncidentReporting")
    assert solution is not None
    assert (solution.version, solution.is_managed, solution.is_patch) == ("1.0.0.4", False, False)
    assert solution.publisher is not None
    assert solution.publisher.unique_name == "Shaheer"
    assert solution.publisher.customization_prefix
    assert client.get_solution("NoSuchSolution") is None
    assert client.get_solution("O'Brien") is None  # quotes are escaped, not an OData syntax error
    unmanaged = client.list_solutions(managed=False)
    assert "IncidentReporting" in {s.unique_name for s in unmanaged}
    assert all(not s.is_managed for s in unmanaged)


def test_collections_follow_every_next_link(emulator_org: EmulatorOrg) -> None:
    everything = client_for(emulator_org).list_solutions(visible_only=False)
    assert len(everything) > 6
    before = requests_seen(emulator_org)
    paged = client_for(emulator_org, page_size=2).list_solutions(visible_only=False)
    assert [s.solution_id for s in paged] == [s.solution_id for s in everything]
    assert requests_seen(emulator_org) - before >= len(everything) // 2  # one request per page of two


def test_update_solution_version_in_the_source_environment(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(INCIDENT_UNMANAGED.read_bytes())
    client = client_for(emulator_org)
    assert client.update_solution_version("IncidentReporting", "1.0.1.0").version == "1.0.1.0"
    with pytest.raises(ValueError):
        client.update_solution_version("IncidentReporting", "one.two")
    with pytest.raises(errors.NotFound):
        client.update_solution_version("NoSuchSolution", "1.0.0.1")


def test_a_managed_solution_version_cannot_be_patched(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(SUCCESS_1_0.read_bytes())
    with pytest.raises(errors.PermanentError) as raised:
        client_for(emulator_org).update_solution_version("Success", "1.0.0.1")
    assert raised.value.http_status == 400


def test_record_counts(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(INCIDENT_UNMANAGED.read_bytes())
    client = client_for(emulator_org)
    counts = client.retrieve_total_record_count(["csa_csincident"])
    assert set(counts) == {"csa_csincident"}
    assert counts["csa_csincident"] >= 0
    with pytest.raises(errors.NotFound) as raised:
        client.retrieve_total_record_count(["no_such_table"])
    assert raised.value.code == "0x80040217"


# --- the end-to-end path -----------------------------------------------------------------------------------------


def test_export_managed_from_dev_validate_import_and_trace_in_test(emulator: EmulatorServer, tmp_path: Path) -> None:
    dev, test = emulator.new_org(), emulator.new_org()
    dev.install(INCIDENT_UNMANAGED.read_bytes())
    source, target = client_for(dev), client_for(test)
    started = datetime.now(UTC) - timedelta(minutes=5)

    # Export the unmanaged dev solution as managed, async, and stream it to disk.
    export = source.export_solution_async("IncidentReporting", managed=True)
    export_op = source.wait_for_async_operation(export.async_operation_id, timeout=30, **FAST_POLL)
    assert export_op.succeeded and export_op.operation_type == AsyncOperationType.EXPORT_SOLUTION
    artifact = source.download_solution_export_data(export.export_job_id, tmp_path / "ir_managed.zip")
    assert artifact.sha256 == hashlib.sha256(artifact.path.read_bytes()).hexdigest()
    assert artifact.size == artifact.path.stat().st_size
    with zipfile.ZipFile(artifact.path) as package:
        assert b"<Managed>1</Managed>" in package.read("solution.xml")

    # The synchronous export of the same solution gives the same bytes.
    small = source.export_solution("IncidentReporting", managed=True, destination=tmp_path / "sync.zip")
    assert small.sha256 == artifact.sha256

    # Validate against test without installing.
    staged = target.stage_solution(artifact.path)
    assert staged.ok, staged
    assert staged.solution_details["SolutionUniqueName"] == "IncidentReporting"
    assert target.get_solution("IncidentReporting") is None

    # Import asynchronously with deployment settings, poll to success.
    settings = DeploymentSettings.from_dict(
        {
            "EnvironmentVariables": [
                {"SchemaName": "csa_shared_sharepointonline_7d107e7e625d454bb4fcf242b2c1a0bd", "Value": "https://x"}
            ],
            "ConnectionReferences": [
                {
                    "LogicalName": "csa_sharedoffice365_e578a",
                    "ConnectionId": "0123456789abcdef0123456789abcdef",
                    "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_office365",
                }
            ],
        }
    )
    handle = target.import_solution_async(artifact.path, publish_workflows=True, settings=settings)
    assert handle.package_sha256 == artifact.sha256 and handle.package_size == artifact.size
    assert handle.sent_import_job_id is None  # import_job_id_mode is off by default (docs/states.md §3)
    seen = list(target.poll_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL))
    assert seen[-1].succeeded and all(not op.is_completed for op in seen[:-1])
    assert seen[-1].error() is None
    seen[-1].raise_for_failure()

    # The import log, the solution list and the environment's own history agree.
    assert handle.import_job_id is not None
    job = target.get_import_job(handle.import_job_id)
    assert job.progress == 100 and job.solution_name == "IncidentReporting"
    assert job.log is not None and job.log.succeeded
    assert job.log.solution_unique_name == "IncidentReporting" and job.log.managed is True
    assert {c.component_type for c in job.log.components} >= {"entity", "workflow"}
    installed = target.get_solution("IncidentReporting")
    assert installed is not None and installed.is_managed and installed.version == "1.0.0.4"
    assert "IncidentReporting" in {s.unique_name for s in target.list_solutions(managed=True)}
    history = target.list_solution_history(solution_name="IncidentReporting", since=started)
    assert [(h.operation, h.status, h.result, h.solution_version) for h in history] == [(0, 1, True, "1.0.0.4")]

    # ComponentParameters reached the target (docs/dataverse.md §12).
    state = emulator.admin("GET", "/state")["orgs"][test.name]
    assert state["environment_variable_values"] == {
        "csa_shared_sharepointonline_7d107e7e625d454bb4fcf242b2c1a0bd": "https://x"
    }
    assert state["connection_reference_bindings"]["csa_sharedoffice365_e578a"]["connectionid"] == (
        "0123456789abcdef0123456789abcdef"
    )

    # After a crash the job can find what it started (docs/states.md §3).
    adopted = target.find_async_operations(AsyncOperationType.IMPORT_SOLUTION, started)
    assert handle.async_operation_id in {op.async_operation_id for op in adopted}
    jobs = target.find_import_jobs("IncidentReporting", started)
    assert [j.import_job_id for j in jobs] == [handle.import_job_id]
    assert target.find_import_jobs("IncidentReporting", datetime.now(UTC) + timedelta(hours=1)) == []
    named = target.find_async_operations(AsyncOperationType.IMPORT_SOLUTION, started, name_contains="Import")
    assert [op.async_operation_id for op in named] == [handle.async_operation_id]
    assert target.retrieve_missing_dependencies("IncidentReporting") == []
    with pytest.raises(errors.NotFound):
        target.retrieve_missing_dependencies("NotInstalledHere")

    # A lower version is refused with the real error.
    lower = target.import_solution_async(INCIDENT_OLDER_MANAGED)
    failed = target.wait_for_async_operation(lower.async_operation_id, timeout=30, **FAST_POLL)
    assert failed.failed
    with pytest.raises(errors.VersionNotHigher) as raised:
        failed.raise_for_failure(target.environment_url)
    assert raised.value.code == "0x80048541"
    assert target.get_solution("IncidentReporting").version == "1.0.0.4"  # type: ignore[union-attr]


def test_missing_dependencies_are_reported_by_staging_and_by_the_import(emulator_org: EmulatorOrg) -> None:
    client = client_for(emulator_org)
    staged = client.stage_solution(MISSING_DEPENDENCY)
    assert staged.failed and not staged.ok
    assert {d["RequiredComponentSchemaName"] for d in staged.missing_dependencies} >= {"ud_testentity4"}
    assert client.get_solution("MissingDependency") is None

    handle = client.import_solution_async(MISSING_DEPENDENCY)
    operation = client.wait_for_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL)
    assert operation.failed
    error = operation.error(client.environment_url)
    assert isinstance(error, errors.MissingDependencies)
    assert error.code == "0x8004801D"
    assert not error.transient
    assert handle.import_job_id is not None
    log = client.get_import_job(handle.import_job_id).log
    assert log is not None and not log.succeeded and log.result == "failure"
    assert "dependencies are missing" in log.message
    assert emulator_org.import_count("MissingDependency") == 1


def test_managed_over_unmanaged_is_a_mode_mismatch(emulator: EmulatorServer, tmp_path: Path) -> None:
    dev = emulator.new_org()
    dev.install(INCIDENT_UNMANAGED.read_bytes())
    client = client_for(dev)
    handle = client.import_solution_async(CORPUS / "IncidentReporting_1_0_0_5_managed.zip")
    operation = client.wait_for_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL)
    assert isinstance(operation.error(), errors.ManagedUnmanagedMismatch)


def test_stage_and_upgrade_replaces_the_managed_version(emulator_org: EmulatorOrg) -> None:
    client = client_for(emulator_org)
    first = client.stage_and_upgrade_async(SUCCESS_1_0)  # not installed yet: installs
    assert client.wait_for_async_operation(first.async_operation_id, timeout=30, **FAST_POLL).succeeded
    upgrade = client.stage_and_upgrade_async(SUCCESS_1_1, overwrite_unmanaged_customizations=True)
    operation = client.wait_for_async_operation(upgrade.async_operation_id, timeout=30, **FAST_POLL)
    assert operation.succeeded and operation.operation_type == AsyncOperationType.STAGE_AND_UPGRADE
    assert client.get_solution("Success").version == "1.1.0.0"  # type: ignore[union-attr]
    assert client.get_solution("Success_Upgrade") is None


def test_holding_solution_then_delete_and_promote(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(SUCCESS_1_0.read_bytes())
    client = client_for(emulator_org)
    staged = client.import_solution_async(SUCCESS_1_1, holding_solution=True)
    assert client.wait_for_async_operation(staged.async_operation_id, timeout=30, **FAST_POLL).succeeded
    holding = client.get_solution("Success_Upgrade")
    assert holding is not None and holding.version == "1.1.0.0"
    promote = client.delete_and_promote_async("Success")
    assert client.wait_for_async_operation(promote, timeout=30, **FAST_POLL).succeeded
    assert client.get_solution("Success").version == "1.1.0.0"  # type: ignore[union-attr]
    assert client.get_solution("Success_Upgrade") is None


def test_uninstall_removes_the_solution(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(SUCCESS_1_0.read_bytes())
    client = client_for(emulator_org)
    operation = client.get_async_operation(client.uninstall_solution_async("Success"))
    assert operation.operation_type == AsyncOperationType.UNINSTALL_SOLUTION
    assert client.wait_for_async_operation(operation.async_operation_id, timeout=30, **FAST_POLL).succeeded
    assert client.get_solution("Success") is None
    history = client.list_solution_history(solution_name="Success")
    # operation 1 = Uninstall (docs/dataverse.md §9); install and uninstall may share a start second, so no order check
    assert {(h.operation, h.result) for h in history} >= {(0, True), (1, True)}


# --- errors -------------------------------------------------------------------------------------------------------


def test_export_errors_are_typed(emulator_org: EmulatorOrg, tmp_path: Path) -> None:
    emulator_org.install(SUCCESS_1_0.read_bytes())
    client = client_for(emulator_org)
    with pytest.raises(errors.NotFound):
        client.export_solution("NoSuchSolution", managed=True, destination=tmp_path / "x.zip")
    with pytest.raises(errors.ManagedUnmanagedMismatch):
        client.export_solution("Success", managed=True, destination=tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    with pytest.raises(ValueError):
        client.export_solution("Success", managed=True, destination=tmp_path / "x.zip", include=["nonsense"])


def test_unknown_records_are_not_found_with_the_dataverse_code(emulator_org: EmulatorOrg) -> None:
    client = client_for(emulator_org)
    with pytest.raises(errors.NotFound) as raised:
        client.get_async_operation(uuid.uuid4())
    assert (raised.value.http_status, raised.value.code) == (404, "0x80040217")
    assert raised.value.request_id  # x-ms-service-request-id is kept for support cases
    with pytest.raises(errors.NotFound):
        client.get_import_job(uuid.uuid4())


def test_a_file_that_is_not_a_solution_is_refused_at_submission(emulator_org: EmulatorOrg, tmp_path: Path) -> None:
    not_a_solution = tmp_path / "broken.zip"
    with zipfile.ZipFile(not_a_solution, "w") as package:
        package.writestr("readme.txt", "hello")
    client = client_for(emulator_org)
    with pytest.raises(errors.BadSolutionZip) as raised:
        client.import_solution_async(not_a_solution)
    assert raised.value.code == "0x80048060"
    with pytest.raises(errors.BadSolutionZip):
        client.stage_solution(not_a_solution)
    with pytest.raises(FileNotFoundError):
        client.import_solution_async(tmp_path / "missing.zip")


def test_a_second_solution_operation_is_environment_busy_and_not_retried(emulator_org: EmulatorOrg) -> None:
    emulator_org.settings(operation_duration=3)
    client = client_for(emulator_org, retry_policy=RetryPolicy(max_retry_after=0))
    first = client.import_solution_async(SUCCESS_1_0)
    with pytest.raises(errors.EnvironmentBusy) as raised:
        client.import_solution_async(SUCCESS_1_1)
    assert raised.value.transient
    assert raised.value.code == "0x80071151"
    assert emulator_org.import_count("Success", "1.1.0.0") == 0
    assert raised.value.retry_after is None  # no Retry-After on the lock: reads of the running import go on
    assert throttle_not_before(client.environment_url) is None
    assert not client.get_async_operation(first.async_operation_id).is_completed
    emulator_org.complete_operation(str(first.async_operation_id))
    assert client.get_async_operation(first.async_operation_id).succeeded


def test_a_client_that_is_not_an_application_user_is_access_denied(emulator: EmulatorServer) -> None:
    org, other = emulator.new_org(), emulator.new_org()
    stranger = ClientCredentials(other.authority, other.client_id, other.client_secret)  # allowed on `other` only
    client = DataverseClient(org.url, credentials=stranger, ca_bundle=str(emulator.ca_file))
    with pytest.raises(errors.AccessDenied) as raised:
        client.who_am_i()
    assert raised.value.http_status == 403


def test_a_token_that_stays_invalid_is_authentication_failed_after_one_refresh(emulator_org: EmulatorOrg) -> None:
    client = DataverseClient(
        emulator_org.url, token_provider=StaticTokenProvider("not-a-token"), ca_bundle=str(emulator_org.server.ca_file)
    )
    before = requests_seen(emulator_org)
    with pytest.raises(errors.AuthenticationFailed):
        client.who_am_i()
    assert requests_seen(emulator_org) - before == 2  # the original and exactly one retry


def test_import_job_id_mode_sends_the_callers_id(emulator: EmulatorServer) -> None:
    honouring = emulator.new_org(import_job_id_on_async="honour")
    chosen = uuid.uuid4()
    handle = client_for(honouring, import_job_id_mode=True).import_solution_async(SUCCESS_1_0, import_job_id=chosen)
    assert handle.sent_import_job_id == chosen
    assert handle.import_job_id == chosen
    with pytest.raises(ValueError):
        client_for(honouring).import_solution_async(SUCCESS_1_0, import_job_id=chosen)

    rejecting = emulator.new_org(import_job_id_on_async="reject")  # as observed on-premises: 400
    with pytest.raises(errors.PermanentError) as raised:
        client_for(rejecting, import_job_id_mode=True).import_solution_async(SUCCESS_1_0)
    assert raised.value.http_status == 400
    assert "ImportJobId" in raised.value.message


# --- throttling, retries, timeouts -----------------------------------------------------------------------------


def test_no_request_reaches_a_throttled_environment_before_retry_after(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 2, "count": 1})
    impatient = client_for(emulator_org, retry_policy=RetryPolicy(max_retry_after=0))
    before = requests_seen(emulator_org)
    with pytest.raises(errors.Throttled) as raised:
        impatient.who_am_i()
    assert (raised.value.http_status, raised.value.code, raised.value.retry_after) == (429, "0x80072322", 2.0)
    assert requests_seen(emulator_org) == before + 1

    # Any client in this process, any call: refused locally while the window lasts.
    not_before = throttle_not_before(emulator_org.url)
    assert not_before is not None and not_before > datetime.now(UTC)
    with pytest.raises(errors.Throttled) as local:
        client_for(emulator_org, retry_policy=RetryPolicy(max_retry_after=0)).list_solutions()
    assert local.value.http_status is None and 0 < (local.value.retry_after or 0) <= 2
    with pytest.raises(errors.Throttled):
        impatient.import_solution_async(SUCCESS_1_0)
    assert requests_seen(emulator_org) == before + 1
    assert emulator_org.import_count("Success") == 0

    # Another process (a Celery worker) restores the persisted time and holds back too.
    clear_throttle()
    restore_throttle_not_before(emulator_org.url, not_before)
    with pytest.raises(errors.Throttled):
        impatient.who_am_i()
    assert requests_seen(emulator_org) == before + 1

    # A patient client sleeps through the window: nothing is sent while it waits, then one request.
    sleep = CountingSleep(emulator_org)
    patient = client_for(emulator_org, retry_policy=RetryPolicy(max_retry_after=5), sleep=sleep)
    patient.who_am_i()
    assert sleep.calls and all(start == end == before + 1 for _, start, end in sleep.calls)
    assert requests_seen(emulator_org) == before + 2
    assert throttle_not_before(emulator_org.url) is None


def test_a_throttled_idempotent_call_waits_and_succeeds(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(throttle={"code": "concurrency", "retry_after": 1, "count": 1})
    sleep = CountingSleep(emulator_org)
    before = requests_seen(emulator_org)
    assert client_for(emulator_org, sleep=sleep).who_am_i()
    assert requests_seen(emulator_org) == before + 2
    assert [round(s) for s, start, end in sleep.calls] == [1] and sleep.calls[0][1] == sleep.calls[0][2]


def test_every_429_is_reported_to_on_throttled_and_a_failing_counter_changes_nothing(
    emulator_org: EmulatorOrg,
) -> None:
    seen: list[float | None] = []
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 1, "count": 1})
    patient = client_for(emulator_org, sleep=CountingSleep(emulator_org), on_throttled=seen.append)
    assert patient.who_am_i()
    assert seen == [1.0]

    def broken(retry_after: float | None) -> None:
        raise RuntimeError("the counter's database is down")

    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 1, "count": 1})
    assert client_for(emulator_org, sleep=CountingSleep(emulator_org), on_throttled=broken).who_am_i()


def test_server_errors_are_retried_with_backoff_for_reads_only(emulator_org: EmulatorOrg) -> None:
    sleep = CountingSleep(emulator_org)
    policy = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)
    client = client_for(emulator_org, retry_policy=policy, sleep=sleep)
    emulator_org.set_faults(server_errors={"status": 503, "count": 2})
    before = requests_seen(emulator_org)
    client.who_am_i()
    assert requests_seen(emulator_org) == before + 3
    assert len(sleep.calls) == 2 and all(0.025 <= s <= 0.2 for s, _, _ in sleep.calls)

    emulator_org.set_faults(server_errors={"status": 500, "count": 10})
    before = requests_seen(emulator_org)
    with pytest.raises(errors.ServerError) as raised:
        client.who_am_i()
    assert raised.value.transient and raised.value.http_status == 500
    assert requests_seen(emulator_org) == before + policy.max_attempts

    emulator_org.set_faults(server_errors={"status": 503, "count": 1})
    before = requests_seen(emulator_org)
    with pytest.raises(errors.ServerError):
        client.import_solution_async(SUCCESS_1_0)  # never resubmitted automatically
    assert requests_seen(emulator_org) == before + 1
    emulator_org.clear_faults()


def test_a_lost_import_answer_is_outcome_unknown_and_the_operation_can_be_adopted(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(drop_after_import={"count": 1})
    client = client_for(emulator_org)
    submitted_at = datetime.now(UTC)
    with pytest.raises(errors.SubmissionOutcomeUnknown) as raised:
        client.import_solution_async(SUCCESS_1_0)
    assert raised.value.transient
    assert emulator_org.import_count("Success") == 1  # sent once, never resubmitted
    found = client.find_async_operations(AsyncOperationType.IMPORT_SOLUTION, submitted_at - timedelta(minutes=5))
    assert len(found) == 1
    assert client.wait_for_async_operation(found[0].async_operation_id, timeout=30, **FAST_POLL).succeeded
    assert len(client.find_import_jobs("Success", submitted_at - timedelta(minutes=5))) == 1


def test_read_timeouts_retry_reads_but_not_imports(emulator_org: EmulatorOrg) -> None:
    client = client_for(
        emulator_org,
        timeouts=Timeouts(connect=5, read=0.5, transfer_read=0.5),
        retry_policy=RetryPolicy(base_delay=0.01, max_delay=0.01),
    )
    emulator_org.set_faults(delay={"seconds": 1.5, "count": 1})
    assert client.who_am_i()  # first answer too late, the retry is on time

    emulator_org.set_faults(delay={"seconds": 1.5, "count": 1})
    with pytest.raises(errors.SubmissionOutcomeUnknown):
        client.import_solution_async(SUCCESS_1_0)


def test_polling_stops_at_the_deadline_with_the_outcome_unknown(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(import_never_finishes={"count": 1})
    client = client_for(emulator_org)
    handle = client.import_solution_async(SUCCESS_1_0)
    with pytest.raises(errors.PollDeadlineExceeded) as raised:
        client.wait_for_async_operation(handle.async_operation_id, timeout=1.0, initial_interval=0.2)
    assert raised.value.last_status in (0, 20)
    assert not isinstance(raised.value, errors.PermanentError | errors.TransientError)
    emulator_org.complete_operation(str(handle.async_operation_id))
    assert client.get_async_operation(handle.async_operation_id).succeeded


# --- TLS ---------------------------------------------------------------------------------------------------------


def test_the_wrong_ca_fails_even_when_the_environment_names_the_right_one(
    emulator_org: EmulatorOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator_ca = str(emulator_org.server.ca_file)
    # requests would let REQUESTS_CA_BUNDLE override Session.verify; the client must not.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator_ca)
    monkeypatch.setenv("CURL_CA_BUNDLE", emulator_ca)
    token = emulator_org.token()
    with pytest.raises(errors.TlsError):
        DataverseClient(emulator_org.url, token_provider=StaticTokenProvider(token), ca_bundle=None).who_am_i()
    system_bundle = "/etc/ssl/certs/ca-certificates.crt"
    if Path(system_bundle).exists():
        with pytest.raises(errors.TlsError):
            DataverseClient(
                emulator_org.url, token_provider=StaticTokenProvider(token), ca_bundle=system_bundle
            ).who_am_i()
    # …and the explicit bundle wins over whatever the environment says.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    assert DataverseClient(
        emulator_org.url, token_provider=StaticTokenProvider(token), ca_bundle=emulator_ca
    ).who_am_i()


def test_only_https_environments_are_accepted() -> None:
    provider = StaticTokenProvider("t")
    for url in ("http://org.crm.dynamics.com", "https://user:pw@org.crm.dynamics.com", "https://org?x=1"):
        with pytest.raises(ValueError):
            DataverseClient(url, token_provider=provider)


# --- big packages ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_20_mb_package_streams_both_ways_without_being_held_in_memory(
    emulator_org: EmulatorOrg, tmp_path: Path
) -> None:
    package = big_solution(tmp_path / "big.zip", 20 * 1024 * 1024)
    size = package.stat().st_size
    client = client_for(emulator_org)
    client.who_am_i()  # token and connection set up outside the measurement

    tracemalloc.start()
    try:
        handle = client.import_solution_async(package)
        _, upload_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upload_peak < size / 4, f"upload peak {upload_peak} for a {size}-byte package"
    assert handle.package_size == size
    assert handle.package_sha256 == hashlib.sha256(package.read_bytes()).hexdigest()
    assert client.wait_for_async_operation(handle.async_operation_id, timeout=60, **FAST_POLL).succeeded

    tracemalloc.start()
    try:
        exported = client.export_solution("UpdateCreatedBy", managed=False, destination=tmp_path / "out.zip")
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert download_peak < size / 4, f"download peak {download_peak} for a {size}-byte package"
    assert exported.size > 20 * 1024 * 1024
    with zipfile.ZipFile(exported.path) as round_tripped, zipfile.ZipFile(package) as original:
        assert round_tripped.read("WebResources/payload.bin") == original.read("WebResources/payload.bin")


# --- the remaining error classes ------------------------------------------------------------------------------


def test_a_managed_solution_cannot_change_publisher(emulator_org: EmulatorOrg, tmp_path: Path) -> None:
    emulator_org.install(SUCCESS_1_0.read_bytes())
    other_publisher = tmp_path / "Success_other_publisher.zip"
    with zipfile.ZipFile(SUCCESS_1_1) as original, zipfile.ZipFile(other_publisher, "w") as target:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "solution.xml":
                data = data.replace(b"<UniqueName>ultradynamics</UniqueName>", b"<UniqueName>someoneelse</UniqueName>")
            target.writestr(info, data)
    client = client_for(emulator_org)
    handle = client.import_solution_async(other_publisher)
    operation = client.wait_for_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL)
    with pytest.raises(errors.PublisherMismatch) as raised:
        operation.raise_for_failure()
    assert raised.value.code == "0x8004801C"


def test_a_failed_job_without_a_specific_code_is_async_operation_failed(emulator_org: EmulatorOrg) -> None:
    emulator_org.set_faults(import_failure={"count": 1})  # ImportSolutionError 0x80048033, the generic wrapper
    client = client_for(emulator_org)
    handle = client.import_solution_async(SUCCESS_1_0)
    operation = client.wait_for_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL)
    error = operation.error()
    assert type(error) is errors.AsyncOperationFailed
    assert error.code == "0x80048033" and not error.transient


def test_repeated_read_timeouts_end_in_request_timeout(emulator_org: EmulatorOrg) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
    client = client_for(emulator_org, timeouts=Timeouts(connect=5, read=0.3), retry_policy=policy)
    emulator_org.set_faults(delay={"seconds": 1.0, "count": 2})
    with pytest.raises(errors.RequestTimeout) as raised:
        client.who_am_i()
    assert raised.value.transient


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_environment_is_connection_failed_even_for_an_import(emulator_org: EmulatorOrg) -> None:
    port = _closed_port()
    token = emulator_org.token()
    slept: list[float] = []
    client = DataverseClient(
        f"https://127.0.0.1:{port}/{emulator_org.name}",
        token_provider=StaticTokenProvider(token),
        ca_bundle=str(emulator_org.server.ca_file),
        retry_policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01),
        sleep=slept.append,
    )
    with pytest.raises(errors.ConnectionFailed):
        client.who_am_i()
    assert len(slept) == 2  # three attempts for a read
    slept.clear()
    # Nothing was ever connected, so the import is known not to have been sent: not "outcome unknown".
    with pytest.raises(errors.ConnectionFailed):
        client.import_solution_async(SUCCESS_1_0)
    assert slept == []


def test_an_unreachable_authority_is_authority_unavailable(emulator_org: EmulatorOrg) -> None:
    authority = f"https://127.0.0.1:{_closed_port()}/{emulator_org.tenant_id}"
    credentials = ClientCredentials(authority, emulator_org.client_id, emulator_org.client_secret)
    client = DataverseClient(emulator_org.url, credentials=credentials, ca_bundle=str(emulator_org.server.ca_file))
    with pytest.raises(errors.AuthorityUnavailable) as raised:
        client.who_am_i()
    assert raised.value.transient


@pytest.fixture
def redirecting_server(emulator: EmulatorServer) -> Iterator[str]:
    """An HTTPS endpoint (the emulator's own certificate, so it verifies) that answers every request with 302.

    The emulator has no Web API route that redirects, so this stands in for a misconfigured proxy or a
    hijacked DNS name sending the client elsewhere.
    """
    state_dir = emulator.state_file.parent
    target = emulator.base_url

    class Redirect(http.server.BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(302)
            self.send_header("Location", f"{target}/somewhere-else")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _redirect

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(state_dir / "server.pem", state_dir / "server-key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/org"
    finally:
        server.shutdown()
        server.server_close()


def test_redirects_are_never_followed(redirecting_server: str, emulator: EmulatorServer) -> None:
    client = DataverseClient(
        redirecting_server, token_provider=StaticTokenProvider("secret-token"), ca_bundle=str(emulator.ca_file)
    )
    with pytest.raises(errors.UnexpectedRedirect) as raised:
        client.who_am_i()
    assert raised.value.http_status == 302
    assert raised.value.location == f"{emulator.base_url}/somewhere-else"
    with pytest.raises(errors.UnexpectedRedirect):
        client.import_solution_async(SUCCESS_1_0)


# --- privileges of the deploying identity ----------------------------------------------------------------------


def _roles(org: EmulatorOrg, *roles: str) -> None:
    org.server.admin("POST", f"/orgs/{org.name}/users/{org.client_id}/roles", {"roles": list(roles)})


def test_retrieve_user_privileges_of_the_deploying_identity(emulator_org: EmulatorOrg) -> None:
    """RetrieveUserPrivileges of the WhoAmI user
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/retrieveuserprivileges),
    the same call at the root of its own origin and under a path."""
    _roles(emulator_org, "System Customizer")
    for org in (emulator_org, emulator_org.server.new_org(addressing="path")):
        with client_for(org) as client:
            held = client.retrieve_user_privileges(client.who_am_i().user_id)
        names = {privilege.name for privilege in held}
        assert {"prvWriteCustomization", "prvReadSolution", "prvReadAsyncOperation"} <= names
        assert ("prvWriteOrganization" in names) is (org is not emulator_org)  # System Customizer lacks it
        solution = next(privilege for privilege in held if privilege.name == "prvReadSolution")
        assert solution.depth == "Global"
        assert solution.privilege_id == uuid.UUID("b64e92c8-5d2a-4052-a026-1b73eff9cebf")


def test_a_missing_privilege_is_a_permanent_error_naming_it(emulator_org: EmulatorOrg) -> None:
    """403 0x80040220 ("Principal user is missing privilege",
    https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/client-errors) becomes
    MissingPrivilege: permanent, sent once, its message leading with the privilege and what to grant."""
    _roles(emulator_org, "System Customizer")
    client = client_for(emulator_org)
    before = requests_seen(emulator_org)
    with pytest.raises(errors.MissingPrivilege) as raised:
        client.import_solution_async(SUCCESS_1_0)
    error = raised.value
    assert (error.http_status, error.code, error.privilege) == (403, "0x80040220", "prvWriteOrganization")
    assert isinstance(error, errors.AccessDenied) and isinstance(error, errors.PermanentError)
    assert error.message.startswith("The deploying identity lacks the Dataverse privilege prvWriteOrganization")
    assert "System Administrator" in error.message and "Principal user (Id=" in error.dataverse_message
    assert requests_seen(emulator_org) - before == 1  # sent once: no retry


def test_a_system_job_failing_on_a_privilege_is_a_missing_privilege(emulator_org: EmulatorOrg) -> None:
    """errorcode -2147220960 on a failed asyncoperation maps to the same MissingPrivilege."""
    emulator_org.settings(privilege_check="job")
    _roles(emulator_org, "System Customizer")
    with client_for(emulator_org) as client:
        handle = client.import_solution_async(SUCCESS_1_0)
        operation = client.wait_for_async_operation(handle.async_operation_id, timeout=30, **FAST_POLL)
        error = operation.error(client.environment_url)
    assert isinstance(error, errors.MissingPrivilege)
    assert (error.code, error.privilege) == ("0x80040220", "prvWriteOrganization")
