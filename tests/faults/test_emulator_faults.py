"""Dataverse misbehaving (the emulator's faults), end to end with real workers.

The client's and runner's reactions to each fault are unit-tested in tests/dataverse and tests/deployments
(inline jobs); here the same faults hit a promotion run by Celery workers over Redis, and the invariants are
checked afterwards: a 429's Retry-After is honoured by every worker process, 5xx bursts and slow answers
are retried, a lost answer to an accepted import is adopted, not resubmitted, an operation that never ends
becomes needs_attention after the configured maximum, and a failed import fails with its log.
"""

from __future__ import annotations

import time

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_enqueue
from tests.deployments.test_runner_fixtures import SUCCESS, job_of, success_package
from tests.support.invariants import all_alive, check_invariants, settle

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]

RETRY_AFTER = 8  # longer than the runner sleeps through itself (5 s): the wait is persisted and shared


def requests_to(emulator, org) -> int:
    return int(emulator.counters()["requests"].get(org.name, 0))


def throttle_armed(org) -> bool:
    faults = org.server.admin("GET", f"/orgs/{org.name}/faults")
    return bool(faults.get("throttle")) and int(faults["throttle"].get("remaining", 0)) > 0


def test_a_429_keeps_every_worker_away_from_that_org_until_retry_after_has_passed(
    contoso, emulator, celery_worker_factory, worker_env
):
    org = contoso.orgs["test"]
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    workers = [celery_worker_factory(env=worker_env, name=name) for name in ("a", "b")]
    org.set_faults(throttle={"code": "requests", "retry_after": RETRY_AFTER, "count": 1})

    contoso.approve(promotion)  # the import job's first request to the org gets the 429
    deadline = time.monotonic() + 60
    while throttle_armed(org):
        assert time.monotonic() < deadline, "the throttle was never hit"
        time.sleep(0.05)
    throttled_at = time.monotonic()
    after_429 = requests_to(emulator, org)

    # Work for the same org on both workers while it is throttled: health checks on a fresh client each.
    checks = [
        job_enqueue(
            kind="health_check", environment=contoso.environments["test"], params={}, context=AuditContext.system()
        )
        for _ in range(4)
    ]
    while time.monotonic() < throttled_at + RETRY_AFTER - 1.0:  # a second's margin for our own lag
        assert requests_to(emulator, org) == after_429, "a request reached the org inside its Retry-After window"
        time.sleep(0.1)

    settle([job_of(promotion).pk, *(job.pk for job in checks)], timeout=120, alive=all_alive(*workers))
    promotion.refresh_from_db()
    assert promotion.status == "succeeded"
    assert requests_to(emulator, org) > after_429
    assert org.import_count(SUCCESS, "1.0.0.0") == 1
    check_invariants(emulator)


# (fault, extra worker settings, expected promotion status, expected imports)
CASES = {
    "5xx_burst": ({"server_errors": {"status": 503, "count": 6}}, {}, "succeeded", 1),
    "connection_dropped_after_import_accepted": ({"drop_after_import": {"count": 1}}, {}, "succeeded", 1),
    "slower_than_the_client_timeout": (
        {"delay": {"seconds": 4, "count": 2}},
        {"ALM_IMPORT_READ_TIMEOUT": "2"},
        "succeeded",
        1,
    ),
    "failed_import_with_its_log": (
        {"import_failure": {"code": "0x80048033", "message": "Missing dependency: ud_base", "count": 1}},
        {},
        "failed",
        1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_promotion_through_an_emulator_fault_ends_with_one_import(
    contoso, emulator, celery_worker_factory, worker_env, case
):
    faults, extra_env, expected_status, expected_imports = CASES[case]
    org = contoso.orgs["test"]
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    worker = celery_worker_factory(env={**worker_env, **extra_env}, name=case[:10])
    org.set_faults(**faults)

    contoso.approve(promotion)
    job = job_of(promotion)
    settle([job.pk], timeout=150, alive=all_alive(worker))

    promotion.refresh_from_db()
    job.refresh_from_db()
    assert promotion.status == expected_status, (promotion.error_code, promotion.error_message, job.error_message)
    assert org.import_count(SUCCESS, "1.0.0.0") == expected_imports
    remaining = org.server.admin("GET", f"/orgs/{org.name}/faults")
    assert all(not entry or int(entry.get("remaining", 0)) == 0 for entry in remaining.values()), remaining
    if case == "connection_dropped_after_import_accepted":
        assert promotion.result["adopted"]["async_operation_id"] == job.async_operation_id
    if case == "failed_import_with_its_log":
        assert promotion.error_code == "0x80048033"
        assert "Missing dependency" in promotion.error_message
        assert promotion.result["import_log"]["available"] is True
        assert job.status == "failed"
    check_invariants(emulator)


def test_an_operation_that_never_completes_needs_attention_after_the_configured_maximum(
    contoso, emulator, celery_worker_factory, worker_env
):
    org = contoso.orgs["test"]
    promotion = contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test"))
    # 60 s is the shortest ALM_IMPORT_MAX_WAIT the settings accept (6 h by default).
    worker = celery_worker_factory(env={**worker_env, "ALM_IMPORT_MAX_WAIT": "60"}, name="patient")
    org.set_faults(import_never_finishes={"count": 1})

    contoso.approve(promotion)
    job = job_of(promotion)
    settle([job.pk], timeout=150, alive=all_alive(worker))

    job.refresh_from_db()
    promotion.refresh_from_db()
    assert job.status == "needs_attention"
    assert (job.finished_at, job.lease_owner) == (None, "")
    assert job.async_operation_id  # the handle an admin needs to look it up
    assert promotion.status == "running" and promotion.attention_required
    assert (job.updated_at - job.submitted_at).total_seconds() >= 60
    assert org.import_count(SUCCESS, "1.0.0.0") == 1
    assert Job.objects.filter(kind="import").count() == 1
    check_invariants(emulator)
