"""Export as a job against the emulator over HTTPS: bump in development, both flavours, registered once."""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.errors import PermissionRefused, ValidationFailed
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from solutions import services
from solutions.errors import VersionExists
from solutions.models import SolutionVersion
from tests.solutions.conftest import (
    INCIDENT_102_UNMANAGED,
    INCIDENT_105_MANAGED,
    corpus_bytes,
    reversioned,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def incident(dev_environment, emulator_org, team, maker, context_of):
    """IncidentReporting 1.0.0.2 installed unmanaged in the development org and registered with it as home."""
    emulator_org.install(corpus_bytes(INCIDENT_102_UNMANAGED))
    return services.solution_register(
        unique_name="IncidentReporting",
        team=team,
        home_environment=dev_environment,
        user=maker,
        context=context_of(maker),
    )


def _dev_version(org, unique_name="IncidentReporting"):
    rows = org.get(f"solutions?$select=version&$filter=uniquename eq '{unique_name}'").json()["value"]
    return rows[0]["version"]


def test_export_bumps_the_revision_in_development_and_registers_both_flavours(
    incident, emulator_org, maker, context_of
):
    job = services.solution_export_request(solution=incident, bump="revision", user=maker, context=context_of(maker))
    requested = AuditEvent.objects.get(action="solution.export_requested")
    assert (requested.object_type, requested.object_id) == ("solutions.solution", str(incident.pk))
    assert requested.after == {"bump": "revision", "environment": incident.home_environment_id, "job": job.pk}

    job = job_run_now(job)

    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert _dev_version(emulator_org) == "1.0.0.3"
    version = SolutionVersion.objects.get(solution=incident)
    assert version.version_key == "1.0.0.3"
    assert version.flavours == ["managed", "unmanaged"]
    assert (version.source_kind, version.source_job_id, version.source_environment_id) == (
        "exported",
        job.pk,
        incident.home_environment_id,
    )
    assert version.created_by == maker and version.managed_uploaded_by == maker
    assert version.managed_manifest["managed"] == 1 and version.unmanaged_manifest["managed"] == 0
    assert job.result["version_id"] == version.pk
    assert job.result["previous_version"] == "1.0.0.2"
    assert job.result["managed_sha256"] == version.managed_sha256
    assert job.progress == 100

    bumped = AuditEvent.objects.get(action="solution.version_bumped")
    assert (bumped.object_type, bumped.object_id) == ("solutions.solution", str(incident.pk))
    assert bumped.before == {"version": "1.0.0.2"}
    assert bumped.after == {"version": "1.0.0.3", "job": job.pk, "bump": "revision"}
    assert bumped.actor_kind == "worker"
    created = AuditEvent.objects.get(action="solution_version.created")
    assert created.object_id == str(version.pk)
    assert created.after["source_kind"] == "exported" and created.after["source_job"] == job.pk
    added = AuditEvent.objects.get(action="solution_version.artifact_added")
    assert added.before["sha256"] == "" and added.after["flavour"] == "unmanaged"


def test_export_delivered_twice_registers_one_version(incident, emulator_org, maker, context_of):
    job = job_run_now(
        services.solution_export_request(solution=incident, bump="minor", user=maker, context=context_of(maker))
    )
    assert job.status == "succeeded", job.error_message
    exports_before = emulator_org.counters()

    again = services.solution_export_run(job=Job.objects.get(pk=job.pk), context=context_of(maker))

    assert emulator_org.counters() == exports_before  # the second run called nobody
    assert again == {key: job.result[key] for key in again}
    assert SolutionVersion.objects.filter(solution=incident).count() == 1
    assert _dev_version(emulator_org) == "1.1.0.0"
    assert AuditEvent.objects.filter(action="solution.version_bumped").count() == 1


def test_a_run_interrupted_after_the_bump_continues_without_bumping_again(incident, emulator_org, maker, context_of):
    """A worker that died after setting the version: the next run finds the step on the job row."""
    job = services.solution_export_request(solution=incident, bump="build", user=maker, context=context_of(maker))
    # What the job row holds after the first run chose and set the version, then died.
    emulator_org.patch(
        f"solutions({_solution_id(emulator_org)})", json={"version": "1.0.1.0"}, headers={"If-Match": "*"}
    )
    Job.objects.filter(pk=job.pk).update(
        result={"previous_version": "1.0.0.2", "target_version": "1.0.1.0", "bump": "build"}, step="version_chosen"
    )

    job = job_run_now(job)

    assert job.status == "succeeded", job.error_message
    assert _dev_version(emulator_org) == "1.0.1.0"
    assert list(SolutionVersion.objects.values_list("version_key", flat=True)) == ["1.0.1.0"]
    assert not AuditEvent.objects.filter(action="solution.version_bumped").exists()  # development had it already


def _solution_id(org, unique_name="IncidentReporting"):
    rows = org.get(f"solutions?$select=solutionid&$filter=uniquename eq '{unique_name}'").json()["value"]
    return rows[0]["solutionid"]


def test_bump_starts_above_every_version_seen_anywhere(incident, emulator_org, maker, upload, context_of):
    # A managed 1.0.0.5 is in the registry (uploaded); development still says 1.0.0.2.
    upload(maker, INCIDENT_105_MANAGED)

    job = job_run_now(
        services.solution_export_request(solution=incident, bump="revision", user=maker, context=context_of(maker))
    )

    assert job.status == "succeeded", job.error_message
    assert job.result["version"] == "1.0.0.6"
    assert _dev_version(emulator_org) == "1.0.0.6"


def test_bump_none_is_refused_when_development_is_not_above_everything(
    incident, emulator_org, maker, upload, context_of
):
    upload(maker, reversioned(INCIDENT_102_UNMANAGED, "1.0.0.7"))

    job = job_run_now(
        services.solution_export_request(solution=incident, bump="none", user=maker, context=context_of(maker))
    )

    assert job.status == "failed"
    assert job.error_code == "version_exists"
    assert "1.0.0.8" in job.error_message  # next allowed
    assert _dev_version(emulator_org) == "1.0.0.2"  # nothing changed in development
    assert SolutionVersion.objects.filter(solution=incident).count() == 1


def test_bump_none_exports_development_as_it_is_when_it_is_new(incident, emulator_org, maker, context_of):
    job = job_run_now(
        services.solution_export_request(solution=incident, bump="none", user=maker, context=context_of(maker))
    )

    assert job.status == "succeeded", job.error_message
    assert job.result["version"] == "1.0.0.2"
    assert not AuditEvent.objects.filter(action="solution.version_bumped").exists()


def test_bump_none_is_refused_at_once_when_the_inventory_already_shows_it(
    incident, dev_environment, maker, upload, context_of
):
    from django.utils import timezone

    from environments.models import InventoryInterval

    upload(maker, INCIDENT_102_UNMANAGED)  # 1.0.0.2 is in the registry
    InventoryInterval.objects.create(
        environment=dev_environment,
        unique_name="IncidentReporting",
        version="1.0.0.2",
        is_managed=False,
        valid_from=timezone.now(),
    )

    with pytest.raises(VersionExists) as refused:
        services.solution_export_request(solution=incident, bump="none", user=maker, context=context_of(maker))

    assert refused.value.details["next_allowed"] == "1.0.0.3"
    assert not Job.objects.filter(kind="export").exists()


def test_export_needs_a_home_environment(maker, upload, context_of):
    solution = upload(maker, INCIDENT_102_UNMANAGED).version.solution

    with pytest.raises(ValidationFailed, match="no home development environment"):
        services.solution_export_request(solution=solution, bump="revision", user=maker, context=context_of(maker))


def test_outsiders_and_auditors_cannot_export(incident, outsider, auditor, context_of):
    for user in (outsider, auditor):
        with pytest.raises(PermissionRefused):
            services.solution_export_request(solution=incident, bump="revision", user=user, context=context_of(user))
    assert not Job.objects.filter(kind="export").exists()


def test_export_of_a_solution_missing_in_development_fails_the_job(dev_environment, team, maker, context_of):
    ghost = services.solution_register(
        unique_name="NotThere", team=team, home_environment=dev_environment, user=maker, context=context_of(maker)
    )

    job = job_run_now(
        services.solution_export_request(solution=ghost, bump="revision", user=maker, context=context_of(maker))
    )

    assert (job.status, job.error_code) == ("failed", "solution_not_found")


def test_a_slow_export_is_a_chain_of_short_runs(incident, maker, context_of, settings):
    """No waiting inside the task: each run looks once and defers the job (not_before) until Dataverse is done."""
    settings.ALM_EXPORT_WAIT_IN_TASK_SECONDS = 0

    job = job_run_now(
        services.solution_export_request(solution=incident, bump="revision", user=maker, context=context_of(maker))
    )

    assert job.status == "succeeded", job.error_message
    assert job.attempts > 2  # claimed again after each deferral
    assert SolutionVersion.objects.get(solution=incident).flavours == ["managed", "unmanaged"]
