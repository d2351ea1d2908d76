"""Registration and health against the emulator over HTTPS: each failure maps to one status."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from environments import services
from environments.choices import CredentialStatus, HealthStatus
from environments.models import Credential, Environment, EnvironmentNotification
from tests.environments.conftest import events, only_event

pytestmark = pytest.mark.django_db


def test_registration_with_a_good_credential_is_healthy(emulator_org, team, admin_context):
    environment = services.environment_create(
        name="contoso-test",
        url=emulator_org.url,
        kind="test",
        tenant_id=emulator_org.tenant_id,
        authority=emulator_org.authority,
        team=team,
        client_id=emulator_org.client_id,
        credential_type="secret",
        client_secret=emulator_org.client_secret,
        context=admin_context,
    )
    job = Job.objects.get(environment=environment, kind=JobKind.HEALTH_CHECK)
    job = job_run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["status"] == HealthStatus.HEALTHY
    environment.refresh_from_db()
    assert environment.health_status == HealthStatus.HEALTHY
    assert environment.dataverse_version.startswith("9.")
    assert environment.health_checked_at is not None
    assert environment.health_error == ""

    created = only_event("environment.created", object_id=str(environment.pk))
    assert created.after["url"] == emulator_org.url
    assert created.after["name"] == "contoso-test"
    added = only_event("credential.added", related_id=str(environment.pk))
    assert added.after == {
        "client_id": emulator_org.client_id,
        "kind": "secret",
        "status": "active",
        "expires_at": None,
        "thumbprint": None,
    }
    changed = only_event("environment.health_changed", object_id=str(environment.pk))
    assert changed.before == {"health_status": "unknown", "health_error_code": ""}
    assert changed.after == {"health_status": "healthy", "health_error_code": ""}
    assert changed.actor_kind == "worker"


def test_wrong_secret_is_unauthorized_with_the_aadsts_code(emulator_org, register, admin_context):
    environment = register(emulator_org, client_secret="not-the-secret-at-all")
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert report.status == HealthStatus.UNAUTHORIZED
    assert report.error_code.startswith("AADSTS")
    environment.refresh_from_db()
    assert environment.health_status == HealthStatus.UNAUTHORIZED
    assert environment.health_error_code == report.error_code
    assert environment.health_error_seen_at is not None
    assert "not-the-secret-at-all" not in environment.health_error
    changed = only_event("environment.health_changed", object_id=str(environment.pk))
    assert changed.after == {"health_status": "unauthorized", "health_error_code": report.error_code}


def test_a_closed_port_is_unreachable(emulator_org, register, admin_context):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # Nothing listens there: neither the token authority nor the Web API can be reached.
    environment = register(
        emulator_org,
        url=f"https://127.0.0.1:{closed_port}/{emulator_org.name}",
        authority=f"https://127.0.0.1:{closed_port}/{emulator_org.tenant_id}",
    )
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert report.status == HealthStatus.UNREACHABLE
    environment.refresh_from_db()
    assert environment.health_status == HealthStatus.UNREACHABLE


def test_server_errors_are_degraded(emulator_org, register, admin_context):
    environment = register(emulator_org)
    assert services.environment_check_health(environment=environment, context=admin_context).status == "healthy"
    emulator_org.set_faults(server_errors={"status": 503, "count": 20})
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert report.status == HealthStatus.DEGRADED
    environment.refresh_from_db()
    assert environment.health_error_code
    transitions = [(e.before["health_status"], e.after["health_status"]) for e in events("environment.health_changed")]
    assert transitions == [("unknown", "healthy"), ("healthy", "degraded")]


def test_throttling_is_degraded_and_the_retry_after_is_persisted(emulator_org, register, admin_context):
    environment = register(emulator_org)
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 120, "count": 5})
    before = timezone.now()
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert report.status == HealthStatus.DEGRADED
    environment.refresh_from_db()
    assert environment.throttled_until is not None
    assert environment.throttled_until >= before + timedelta(seconds=100)


def test_every_429_received_is_counted_on_the_environment(emulator_org, register, admin_context):
    environment = register(emulator_org)
    counted_before = Environment.objects.get(pk=environment.pk).throttled_responses
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 120, "count": 1})
    services.environment_check_health(environment=environment, context=admin_context)
    environment.refresh_from_db()
    assert environment.throttled_responses == counted_before + 1
    assert environment.last_throttled_at is not None


def test_a_short_retry_after_is_shared_through_the_environment_row(emulator_org, register):
    """A Retry-After short enough for this process to sleep through still reaches every other process."""
    from environments.clients import SYNC_RETRY, client_for

    environment = register(emulator_org)
    emulator_org.set_faults(throttle={"code": "requests", "retry_after": 2, "count": 1})
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    client, _ = client_for(environment, environment.credentials.get(), retry_policy=SYNC_RETRY, sleep=sleep)
    before = timezone.now()
    client.who_am_i()  # throttled once, sleeps through it, then answered
    environment.refresh_from_db()
    assert slept and environment.throttled_until is not None
    assert before + timedelta(seconds=2) <= environment.throttled_until <= timezone.now()


def test_a_shared_throttle_only_moves_later(emulator_org, register):
    from environments.throttling import environment_count_throttled_response

    environment = register(emulator_org)
    counted_before = environment.throttled_responses
    environment_count_throttled_response(environment_id=environment.pk, retry_after=60)
    environment.refresh_from_db()
    later = environment.throttled_until
    environment_count_throttled_response(environment_id=environment.pk, retry_after=2)
    environment.refresh_from_db()
    assert environment.throttled_until == later and environment.throttled_responses == counted_before + 2


def test_an_unchanged_status_writes_no_audit_event(emulator_org, register, admin_context):
    environment = register(emulator_org)
    services.environment_check_health(environment=environment, context=admin_context)
    services.environment_check_health(environment=environment, context=admin_context)
    assert len(events("environment.health_changed")) == 1


@pytest.mark.parametrize(("days", "threshold"), [(25, 30), (5, 7)])
def test_credential_expiring_is_shown_and_notified_once_per_threshold(
    emulator_org, register, admin_context, days, threshold
):
    environment = register(emulator_org, credential_expires_at=timezone.now() + timedelta(days=days))
    first = services.environment_check_health(environment=environment, context=admin_context)
    second = services.environment_check_health(environment=environment, context=admin_context)
    assert first.status == second.status == HealthStatus.CREDENTIAL_EXPIRING
    warning = only_event("credential.expiring")
    assert warning.after["threshold_days"] == threshold
    credential = Credential.objects.get(environment=environment)
    assert warning.object_id == str(credential.pk)
    assert warning.related_id == str(environment.pk)
    notes = EnvironmentNotification.objects.filter(environment=environment, kind="credential_expiring")
    assert notes.count() == 1


def test_the_seven_day_warning_follows_the_thirty_day_one(emulator_org, register, admin_context):
    environment = register(emulator_org, credential_expires_at=timezone.now() + timedelta(days=20))
    services.environment_check_health(environment=environment, context=admin_context)
    Credential.objects.filter(environment=environment).update(expires_at=timezone.now() + timedelta(days=6))
    services.environment_check_health(environment=environment, context=admin_context)
    services.environment_check_health(environment=environment, context=admin_context)
    assert [e.after["threshold_days"] for e in events("credential.expiring")] == [30, 7]


def test_a_far_expiry_is_healthy_without_warning(emulator_org, register, admin_context):
    environment = register(emulator_org, credential_expires_at=timezone.now() + timedelta(days=365))
    assert services.environment_check_health(environment=environment, context=admin_context).status == "healthy"
    assert events("credential.expiring") == []


def test_without_an_active_credential_the_environment_is_unauthorized(emulator_org, register, admin_context):
    environment = register(emulator_org)
    Credential.objects.filter(environment=environment).update(status=CredentialStatus.RETIRED)
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert (report.status, report.error_code) == (HealthStatus.UNAUTHORIZED, "no_credential")


def test_turning_loopback_off_makes_the_emulator_unreachable(emulator_org, register, admin_context, settings):
    environment = register(emulator_org)
    settings.ALM_ALLOW_LOOPBACK = False
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert (report.status, report.error_code) == (HealthStatus.UNREACHABLE, "outbound_refused")


def test_a_health_check_delivered_twice_runs_once(emulator_org, register, admin_context):
    from alm_portal.jobs.services import job_run

    environment = register(emulator_org)
    job = services.environment_request_health_check(environment=environment, context=admin_context)
    first, second = job_run(job.pk), job_run(job.pk)
    assert (first.ran, second.ran) == (True, False)
    assert len(events("environment.health_changed")) == 1


def test_beat_queues_one_health_check_per_active_environment(emulator, register, admin_context):
    from environments.tasks import schedule_health_checks

    active = register(emulator.new_org())
    inactive = register(emulator.new_org())
    services.environment_update(environment=inactive, is_active=False, context=admin_context)
    assert schedule_health_checks() == 1
    assert schedule_health_checks() == 0
    assert list(Job.objects.filter(kind=JobKind.HEALTH_CHECK).values_list("environment_id", flat=True)) == [active.pk]


# --- the deploying identity's privileges -------------------------------------------------------------------------


def test_the_health_check_reads_the_privileges_each_operation_needs(
    emulator_org, register, admin_context, client, admin_user
):
    """RetrieveUserPrivileges of the WhoAmI user against what the portal's operations need: System
    Customizer lacks prvWriteOrganization, which "ImportSolution message privileges" lists
    (https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8))
    and "ExportSolution message privileges" does not
    (https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg328430(v=crm.8))."""
    emulator_org.server.admin(
        "POST", f"/orgs/{emulator_org.name}/users/{emulator_org.client_id}/roles", {"roles": ["System Customizer"]}
    )
    environment = register(emulator_org)
    report = services.environment_check_health(environment=environment, context=admin_context)
    assert report.status == HealthStatus.HEALTHY  # it answers; what it may do is shown apart

    environment.refresh_from_db()
    privileges = environment.privileges
    assert privileges["read"] is True and privileges["user_id"]
    missing = {operation: [need["privilege"] for need in needs] for operation, needs in privileges["missing"].items()}
    assert missing["export"] == []
    assert missing["import"] == ["prvWriteOrganization"]
    assert missing["stage_and_upgrade"] == ["prvWriteOrganization"]
    assert missing["delete_and_promote"] == missing["uninstall"] == []
    need = privileges["missing"]["import"][0]
    assert (need["source"], need["component_types"]) == ("documented", [])

    client.force_login(admin_user)
    page = client.get(f"/environments/{environment.pk}/").content.decode()
    assert "ImportSolutionAsync: missing <code>prvWriteOrganization</code>" in page
    assert "ExportSolutionAsync: every privilege it needs is held" in page
    api = client.get(f"/api/v1/environments/{environment.pk}/").json()
    assert api["health"]["privileges"]["missing"]["import"][0]["privilege"] == "prvWriteOrganization"


def test_privileges_needed_only_for_some_components_are_shown_apart(
    emulator_org, register, admin_context, client, admin_user
):
    """ "The exact set of privileges needed depends on the entity types specified in the request": a role
    without prvReadWebResource can import solutions without web resources; the page says which need it."""
    server = emulator_org.server
    everything = next(
        r for r in server.admin("GET", f"/orgs/{emulator_org.name}/roles") if r["name"] == "System Administrator"
    )
    granted = [name for name in everything["privileges"] if name != "prvReadWebResource"]
    server.admin("POST", f"/orgs/{emulator_org.name}/roles", {"name": "No web resources", "privileges": granted})
    server.admin(
        "POST", f"/orgs/{emulator_org.name}/users/{emulator_org.client_id}/roles", {"roles": ["No web resources"]}
    )
    environment = register(emulator_org)
    services.environment_check_health(environment=environment, context=admin_context)

    environment.refresh_from_db()
    needs = environment.privileges["missing"]["import"]
    assert [(need["privilege"], need["component_types"]) for need in needs] == [("prvReadWebResource", [61])]
    client.force_login(admin_user)
    page = client.get(f"/environments/{environment.pk}/").content.decode()
    assert "for solutions with some components, also missing" in page and "prvReadWebResource" in page


def test_a_failed_check_keeps_the_last_privileges_it_read(emulator_org, register, admin_context):
    environment = register(emulator_org)
    services.environment_check_health(environment=environment, context=admin_context)
    environment.refresh_from_db()
    read = environment.privileges
    assert read["read"] is True
    emulator_org.set_faults(server_errors={"count": 10})
    services.environment_check_health(environment=environment, context=admin_context)
    environment.refresh_from_db()
    assert environment.health_status == HealthStatus.DEGRADED
    assert environment.privileges == read
