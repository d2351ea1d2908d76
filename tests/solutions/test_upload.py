"""Uploading solution zips: validated, streamed, hashed, stored once, immutable per flavour, audited."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import storages

from alm_portal.audit.models import AuditEvent
from alm_portal.errors import PermissionRefused, ValidationFailed
from solutions import services
from solutions.errors import InvalidPackage, PayloadTooLarge, VersionExists
from solutions.models import Solution, SolutionVersion
from tests.solutions.conftest import (
    INCIDENT_102_MANAGED,
    INCIDENT_102_UNMANAGED,
    INCIDENT_104_UNMANAGED,
    corpus_bytes,
    reversioned,
    upload_file,
)

pytestmark = pytest.mark.django_db


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_upload_registers_solution_version_and_artifact(maker, team, upload):
    data = corpus_bytes(INCIDENT_102_UNMANAGED)

    outcome = upload(maker, data, release_notes="First drop")

    assert outcome.created and outcome.added and outcome.flavour == "unmanaged"
    version = outcome.version
    solution = version.solution
    assert (solution.unique_name, solution.team, solution.publisher_unique_name) == (
        "IncidentReporting",
        team,
        "Shaheer",
    )
    assert solution.created_by == maker
    assert (version.version, version.version_key, version.source_kind) == ("1.0.0.2", "1.0.0.2", "uploaded")
    assert version.unmanaged_sha256 == hashlib.sha256(data).hexdigest()
    assert version.unmanaged_size == len(data)
    assert version.unmanaged_uploaded_by == maker
    assert version.managed_sha256 == "" and version.managed_size is None
    assert (
        version.unmanaged_path == f"solutions/IncidentReporting/1.0.0.2/unmanaged-{version.unmanaged_sha256[:12]}.zip"
    )
    assert storages["artifacts"].open(version.unmanaged_path).read() == data
    assert version.unmanaged_manifest["unique_name"] == "IncidentReporting"
    summary = version.manifest_summary
    assert summary["components"]["table"] == 3
    assert summary["publisher"] == {"unique_name": "Shaheer", "prefix": "sa"}
    assert solution.publisher_prefix == "sa"
    assert version.release_notes == "First drop"

    [registered] = _events("solution.registered")
    assert (registered.object_type, registered.object_id) == ("solutions.solution", str(solution.pk))
    assert registered.after["unique_name"] == "IncidentReporting" and registered.after["team"] == team.pk
    [created] = _events("solution_version.created")
    assert (created.object_type, created.object_id) == ("solutions.solutionversion", str(version.pk))
    assert (created.related_type, created.related_id) == ("solutions.solution", str(solution.pk))
    assert created.before is None
    assert created.after["flavour"] == "unmanaged"
    assert created.after["sha256"] == version.unmanaged_sha256
    assert created.after["version_key"] == "1.0.0.2"
    assert created.actor_display == "maker"


def test_identical_reupload_is_an_accepted_no_op(maker, upload):
    first = upload(maker, INCIDENT_102_UNMANAGED)
    events_before = AuditEvent.objects.count()

    again = upload(maker, INCIDENT_102_UNMANAGED)

    assert again.unchanged and again.version.pk == first.version.pk
    assert SolutionVersion.objects.count() == 1
    assert AuditEvent.objects.count() == events_before  # nothing changed, nothing to audit


def test_same_version_with_other_bytes_is_refused_with_next_allowed(maker, upload):
    upload(maker, INCIDENT_104_UNMANAGED)
    original = upload(maker, INCIDENT_102_UNMANAGED).version
    # The 1.0.0.4 content re-versioned to 1.0.0.2: same version and flavour, other checksum.
    impostor = reversioned(INCIDENT_104_UNMANAGED, "1.0.0.2")

    with pytest.raises(VersionExists) as refused:
        upload(maker, impostor)

    assert refused.value.code == "version_exists" and refused.value.status == 409
    details = refused.value.details
    assert details["next_allowed"] == "1.0.0.5"  # above everything seen: 1.0.0.4 + 1 revision
    assert details["stored_sha256"] == original.unmanaged_sha256
    assert details["offered_sha256"] == hashlib.sha256(impostor).hexdigest()
    original.refresh_from_db()
    assert original.unmanaged_sha256 == details["stored_sha256"]  # the stored artifact never changes


def test_missing_flavour_is_added_and_audited(maker, upload):
    first = upload(maker, INCIDENT_102_UNMANAGED)

    second = upload(maker, INCIDENT_102_MANAGED, release_notes="managed build")

    assert second.added and not second.created and second.flavour == "managed"
    version = second.version
    assert version.pk == first.version.pk
    assert version.flavours == ["managed", "unmanaged"]
    assert version.managed_sha256 == hashlib.sha256(corpus_bytes(INCIDENT_102_MANAGED)).hexdigest()
    assert version.managed_path.startswith("solutions/IncidentReporting/1.0.0.2/managed-")
    [added] = _events("solution_version.artifact_added")
    assert (added.object_type, added.object_id) == ("solutions.solutionversion", str(version.pk))
    assert added.before == {"flavour": "managed", "sha256": "", "release_notes": ""}
    assert added.after["flavour"] == "managed" and added.after["sha256"] == version.managed_sha256
    assert added.after["release_notes"] == "managed build"


def test_bad_zip_is_refused_with_the_package_readers_message(maker, upload):
    with pytest.raises(InvalidPackage) as refused:
        upload(maker, b"this is not a zip at all")

    assert refused.value.status == 400 and refused.value.code == "validation_error"
    assert "zip" in refused.value.message.lower()
    assert refused.value.details == {"file": [refused.value.message]}
    assert not Solution.objects.exists()


def test_wrong_solution_is_refused(maker, upload):
    incident = upload(maker, INCIDENT_102_UNMANAGED).version.solution

    with pytest.raises(InvalidPackage, match="not 'IncidentReporting'"):
        upload(maker, "UpdateCreatedBy_1_0_0_1.zip", solution=incident)


def test_too_large_is_refused_before_anything_is_stored(maker, upload, settings):
    settings.ALM_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(PayloadTooLarge) as refused:
        upload(maker, INCIDENT_102_UNMANAGED)

    assert refused.value.status == 413 and refused.value.details == {"limit": 1000}
    assert not Solution.objects.exists()
    assert not storages["artifacts"].exists("solutions")


def test_the_configured_limit_applies(settings):
    settings.ALM_MAX_UPLOAD_BYTES = 1234567
    assert services.max_upload_bytes() == 1234567


def test_a_solution_of_another_team_cannot_get_versions(maker, outsider, upload):
    upload(maker, INCIDENT_102_UNMANAGED)

    with pytest.raises(PermissionRefused):
        upload(outsider, INCIDENT_104_UNMANAGED)
    assert SolutionVersion.objects.count() == 1


def test_auditor_cannot_upload(auditor, upload):
    with pytest.raises(PermissionRefused):
        upload(auditor, INCIDENT_102_UNMANAGED)


def test_admin_must_name_the_team_of_a_new_solution(admin_user, team, upload):
    with pytest.raises(ValidationFailed) as refused:
        upload(admin_user, INCIDENT_102_UNMANAGED)
    assert "team" in refused.value.details

    outcome = upload(admin_user, INCIDENT_102_UNMANAGED, team=team)
    assert outcome.version.solution.team == team


def test_publisher_must_match_the_registered_one(maker, upload):
    upload(maker, INCIDENT_102_UNMANAGED)
    Solution.objects.update(publisher_unique_name="SomeoneElse")

    with pytest.raises(InvalidPackage, match="publisher"):
        upload(maker, INCIDENT_104_UNMANAGED)


def test_upload_spools_without_reading_the_stream_whole(maker, context_of):
    """The service reads the stream in fixed-size chunks (never `read()` of everything)."""
    sizes: list[int] = []
    data = corpus_bytes(INCIDENT_102_UNMANAGED)
    stream = upload_file(data)
    original_read = stream.read

    def read(size: int = -1) -> bytes:
        sizes.append(size)
        return original_read(size)

    stream.read = read  # type: ignore[method-assign]
    services.solution_version_upload(file=stream, user=maker, context=context_of(maker))
    assert sizes and all(0 < size <= 1024 * 1024 for size in sizes)


def test_home_environment_must_be_a_development_environment_of_the_team(maker, outsider, team, context_of):
    from environments.models import Environment

    theirs = Environment.objects.create(
        name="fab-dev", url="https://f.crm.dynamics.com", tenant_id="t", team=outsider.teams.get()
    )
    prod = Environment.objects.create(
        name="contoso-prod", url="https://p.crm.dynamics.com", tenant_id="t", team=team, kind="production"
    )
    for environment, message in ((theirs, "another team"), (prod, "production")):
        with pytest.raises(ValidationFailed, match=message):
            services.solution_register(
                unique_name="X", team=team, home_environment=environment, context=context_of(maker)
            )
    assert not Solution.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_both_flavours_of_a_new_solution_make_one_version(maker, context_of):
    """Two people upload the two flavours of a solution nobody registered yet, at the same moment."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def worker(name: str) -> None:
        try:
            barrier.wait(timeout=120)
            outcomes.append(
                services.solution_version_upload(
                    file=upload_file(corpus_bytes(name)), user=maker, context=context_of(maker)
                )
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in (INCIDENT_102_UNMANAGED, INCIDENT_102_MANAGED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)  # a guard against a hang only (pytest-timeout is 300 s)

    assert not any(thread.is_alive() for thread in threads), "an upload never finished"
    assert errors == []
    assert Solution.objects.count() == 1
    version = SolutionVersion.objects.get()
    assert version.flavours == ["managed", "unmanaged"]
    assert sorted((outcome.created, outcome.added) for outcome in outcomes) == [(False, True), (True, True)]
    assert AuditEvent.objects.filter(action="solution.registered").count() == 1


def test_an_upload_that_loses_the_race_to_register_adds_its_file_to_the_winners_solution(
    maker, context_of, monkeypatch
):
    """The other upload registered the solution between this one's lookup and its own registration: the
    name check refuses the second registration, and the upload goes on with the registered solution."""
    from solutions import selectors

    services.solution_version_upload(
        file=upload_file(corpus_bytes(INCIDENT_102_UNMANAGED)), user=maker, context=context_of(maker)
    )
    real_find = selectors.solution_find
    lookups: list[str] = []

    def find_too_early(*, unique_name: str):  # the first lookup happened before the winner committed
        lookups.append(unique_name)
        return None if len(lookups) == 1 else real_find(unique_name=unique_name)

    monkeypatch.setattr(selectors, "solution_find", find_too_early)
    outcome = services.solution_version_upload(
        file=upload_file(corpus_bytes(INCIDENT_102_MANAGED)), user=maker, context=context_of(maker)
    )

    assert len(lookups) == 2
    assert (outcome.created, outcome.added) == (False, True)
    assert Solution.objects.count() == 1
    assert SolutionVersion.objects.get().flavours == ["managed", "unmanaged"]
