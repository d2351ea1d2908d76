"""The job engine: one claim wins, the slot is data, deferral is a row, failures are recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.job_kinds import JobKind
from alm_portal.jobs import registry as job_registry
from alm_portal.jobs import services as jobs
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def environment(team):
    from environments.models import Environment

    return Environment.objects.create(
        name="contoso-test",
        url="https://contoso-test.crm4.dynamics.com",
        kind="test",
        tenant_id="00000000-0000-0000-0000-000000000001",
        team=team,
    )


@pytest.fixture
def handler_calls(monkeypatch):
    """Replace the export and health handlers with recording fakes for the engine's own tests."""
    calls: list[int] = []
    behaviour: dict[str, object] = {}

    def fake(job, context):
        calls.append(job.pk)
        action = behaviour.get(job.kind)
        if callable(action):
            return action(job)
        return {"ok": True}

    monkeypatch.setitem(job_registry._HANDLERS, JobKind.EXPORT, fake)
    monkeypatch.setitem(job_registry._HANDLERS, JobKind.HEALTH_CHECK, fake)
    monkeypatch.setitem(job_registry._HANDLERS, JobKind.IMPORT, fake)
    calls_and_behaviour = (calls, behaviour)
    return calls_and_behaviour


def _enqueue(kind, environment, **params):
    return jobs.job_enqueue(kind=kind, environment=environment, params=params, context=AuditContext.system())


def test_enqueue_writes_a_pending_row_and_one_audit_event(environment):
    job = _enqueue(JobKind.EXPORT, environment, bump="revision")
    assert job.status == JobStatus.PENDING
    assert job.uses_solution_slot is True
    assert AuditEvent.objects.filter(action="job.enqueued", object_id=str(job.pk)).count() == 1


def test_delivered_twice_runs_once(environment, handler_calls):
    calls, _ = handler_calls
    job = _enqueue(JobKind.EXPORT, environment)
    first = jobs.job_run(job.pk)
    second = jobs.job_run(job.pk)
    assert first.ran and first.status == JobStatus.SUCCEEDED
    assert not second.ran
    assert calls == [job.pk]
    job.refresh_from_db()
    assert job.progress == 100 and job.finished_at is not None and job.lease_owner == ""


def test_one_solution_operation_per_environment(environment, handler_calls):
    calls, behaviour = handler_calls
    behaviour[JobKind.EXPORT] = lambda job: (_ for _ in ()).throw(jobs.JobDeferred(30, step="waiting"))
    first = _enqueue(JobKind.EXPORT, environment)
    second = _enqueue(JobKind.IMPORT, environment)
    assert jobs.job_run(first.pk).reason == "deferred"
    first.refresh_from_db()
    assert first.status == JobStatus.POLLING  # still holds the slot while Dataverse works

    outcome = jobs.job_run(second.pk)
    assert not outcome.ran
    second.refresh_from_db()
    assert second.status == JobStatus.PENDING
    assert second.not_before is not None and second.not_before > timezone.now()
    assert calls == [first.pk]


def test_health_checks_do_not_take_the_slot(environment, handler_calls):
    _calls, behaviour = handler_calls
    behaviour[JobKind.EXPORT] = lambda job: (_ for _ in ()).throw(jobs.JobDeferred(30))
    export = _enqueue(JobKind.EXPORT, environment)
    jobs.job_run(export.pk)
    check = _enqueue(JobKind.HEALTH_CHECK, environment)
    assert jobs.job_run(check.pk).status == JobStatus.SUCCEEDED


def test_deferred_job_continues_when_due(environment, handler_calls):
    _calls, behaviour = handler_calls
    state = {"polls": 0}

    def poll_twice(job):
        state["polls"] += 1
        if state["polls"] < 3:
            raise jobs.JobDeferred(0, step=f"poll-{state['polls']}")
        return {"polls": state["polls"]}

    behaviour[JobKind.EXPORT] = poll_twice
    job = _enqueue(JobKind.EXPORT, environment)
    job = jobs.job_run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"polls": 3}
    assert job.attempts == 3


def test_not_due_job_is_not_claimed(environment, handler_calls):
    calls, _ = handler_calls
    job = jobs.job_enqueue(
        kind=JobKind.EXPORT,
        environment=environment,
        params={},
        context=AuditContext.system(),
        not_before=timezone.now() + timedelta(minutes=5),
    )
    assert not jobs.job_run(job.pk).ran
    assert calls == []


def test_failure_is_recorded_on_the_row_and_audited(environment, handler_calls):
    _, behaviour = handler_calls
    behaviour[JobKind.EXPORT] = lambda job: (_ for _ in ()).throw(jobs.JobFailed("version_exists", "Already there."))
    job = jobs.job_run_now(_enqueue(JobKind.EXPORT, environment))
    assert job.status == JobStatus.FAILED
    assert (job.error_code, job.error_message) == ("version_exists", "Already there.")
    event = AuditEvent.objects.get(action="job.failed", object_id=str(job.pk))
    assert event.outcome == "failed"


def test_unexpected_exception_fails_the_job_with_internal_error(environment, handler_calls):
    _, behaviour = handler_calls
    behaviour[JobKind.EXPORT] = lambda job: 1 / 0
    job = jobs.job_run_now(_enqueue(JobKind.EXPORT, environment))
    assert job.status == JobStatus.FAILED
    assert job.error_code == "internal_error"
    assert "ZeroDivisionError" in job.error_message


def test_a_dead_workers_job_is_taken_over_after_its_lease(environment, handler_calls):
    calls, _ = handler_calls
    job = _enqueue(JobKind.EXPORT, environment)
    # A worker claimed it and died: the row says claimed, with a lease nobody renews.
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.CLAIMED, lease_owner="dead-worker", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert not jobs.job_run(job.pk).ran  # the lease is still live
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs.job_run(job.pk).status == JobStatus.SUCCEEDED
    assert calls == [job.pk]


def test_needs_attention_keeps_the_slot_until_an_admin_resolves(environment, handler_calls, admin_user):
    _, behaviour = handler_calls
    behaviour[JobKind.IMPORT] = lambda job: (_ for _ in ()).throw(jobs.JobNeedsAttention("Still running after 6 h."))
    job = jobs.job_run_now(_enqueue(JobKind.IMPORT, environment))
    assert job.status == JobStatus.NEEDS_ATTENTION
    context = AuditContext.for_user(admin_user, auth_method="session")
    assert jobs.job_resolve_attention(job=job, succeeded=False, note="Checked in Dataverse: failed.", context=context)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert AuditEvent.objects.filter(action="job.attention_resolved", actor_id=admin_user.pk).count() == 1


def test_cancel_only_before_start(environment, handler_calls):
    job = _enqueue(JobKind.EXPORT, environment)
    assert jobs.job_cancel(job=job, context=AuditContext.system(), reason="not needed")
    assert not jobs.job_run(job.pk).ran
    started = _enqueue(JobKind.EXPORT, environment)
    jobs.job_run(started.pk)
    assert not jobs.job_cancel(job=started, context=AuditContext.system(), reason="too late")


def test_dispatcher_resends_only_stale_unheld_jobs(environment, handler_calls, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort", lambda task, args=(), countdown=None: sent.append(args[0]) or True
    )
    fresh = _enqueue(JobKind.HEALTH_CHECK, environment)
    stale = _enqueue(JobKind.HEALTH_CHECK, environment)
    held = _enqueue(JobKind.EXPORT, environment)
    long_ago = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk__in=[stale.pk, held.pk]).update(updated_at=long_ago)
    Job.objects.filter(pk=held.pk).update(
        status=JobStatus.CLAIMED, lease_owner="w", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    sent.clear()  # forget the publishes that enqueueing made
    assert jobs.jobs_dispatch() == 1
    assert sent == [stale.pk]
    assert fresh.pk not in sent


def test_broker_down_never_breaks_enqueue(environment, monkeypatch):
    from kombu.exceptions import OperationalError

    from alm_portal.jobs.tasks import run_job

    attempts: list[tuple] = []

    def broker_down(*args, **kwargs):
        attempts.append(args)
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(run_job, "apply_async", broker_down)
    job = _enqueue(JobKind.HEALTH_CHECK, environment)  # publish fails after commit; the row remains
    assert len(attempts) == 1  # tried once, no retry loop
    assert Job.objects.filter(pk=job.pk, status=JobStatus.PENDING).exists()


def test_scheduled_health_checks_are_not_audited_until_they_fail(environment, handler_calls):
    _, behaviour = handler_calls
    quiet = _enqueue(JobKind.HEALTH_CHECK, environment)
    jobs.job_run_now(quiet)
    assert not AuditEvent.objects.filter(object_type="deployments.job", object_id=str(quiet.pk)).exists()
    behaviour[JobKind.HEALTH_CHECK] = lambda job: (_ for _ in ()).throw(jobs.JobFailed("unreachable", "No answer."))
    failing = jobs.job_run_now(_enqueue(JobKind.HEALTH_CHECK, environment))
    assert list(
        AuditEvent.objects.filter(object_id=str(failing.pk), object_type="deployments.job").values_list(
            "action", flat=True
        )
    ) == ["job.failed"]


def test_a_job_waiting_for_the_slot_is_woken_when_the_slot_frees(environment, handler_calls, monkeypatch):
    _, behaviour = handler_calls
    state = {"first": True}

    def defer_once(job):
        if state["first"]:
            state["first"] = False
            raise jobs.JobDeferred(0)
        return {}

    behaviour[JobKind.EXPORT] = defer_once
    first = _enqueue(JobKind.EXPORT, environment)
    second = _enqueue(JobKind.IMPORT, environment)
    jobs.job_run(first.pk)  # holds the slot (polling)
    assert not jobs.job_run(second.pk).ran
    second.refresh_from_db()
    assert second.not_before is not None and second.progress_message == jobs.WAITING_FOR_SLOT

    published: list[int] = []
    monkeypatch.setattr(
        "alm_portal.celery.publish_best_effort", lambda task, args=(), countdown=None: published.append(args[0]) or True
    )
    assert jobs.job_run(first.pk).status == JobStatus.SUCCEEDED  # frees the slot
    second.refresh_from_db()
    assert second.not_before is None
    assert second.pk in published
    assert jobs.job_run(second.pk).status == JobStatus.SUCCEEDED


def test_an_unexpected_runner_error_fails_the_promotion_too(monkeypatch):
    """The import handler's safety net: a crash the runner did not anticipate still fails the promotion."""
    from deployments import tasks

    calls: list[dict] = []
    monkeypatch.setattr(tasks.runner, "promotion_run", lambda job, context: 1 / 0)
    monkeypatch.setattr(tasks.workflow, "promotion_mark_failed", lambda **kwargs: calls.append(kwargs))
    job = Job(kind=JobKind.IMPORT, params={"promotion_id": 7})
    with pytest.raises(ZeroDivisionError):
        tasks.import_handler(job, AuditContext.system())
    assert calls[0]["promotion_id"] == 7
    assert calls[0]["error_code"] == "internal_error"


def _lose_the_database_once(state: dict[str, int]):
    """A handler step that loses its database connection the first time (the socket really is closed)."""
    from django.db import OperationalError, connection

    def step(job):
        state["runs"] = state.get("runs", 0) + 1
        if state["runs"] == 1:
            connection.connection.close()  # what a restarted server leaves behind
            try:
                Job.objects.filter(pk=job.pk).update(progress=1)
            except OperationalError:
                raise
            except Exception as exc:  # the driver may call it an InterfaceError instead
                raise OperationalError(str(exc)) from exc
        return {"ok": True}

    return step


def test_a_step_that_loses_the_database_gives_the_lease_back_and_is_repeated_not_failed(environment, handler_calls):
    _, behaviour = handler_calls
    state: dict[str, int] = {}
    behaviour[JobKind.HEALTH_CHECK] = _lose_the_database_once(state)
    job = _enqueue(JobKind.HEALTH_CHECK, environment)

    outcome = jobs.job_run(job.pk, owner="host:1:lost")
    assert outcome.reason == "database_lost"
    job.refresh_from_db()
    assert job.status == JobStatus.CLAIMED  # status and step kept: the step is repeated
    assert job.lease_owner == "" and job.lease_expires_at is None  # given back, not left to expire
    assert job.not_before is not None and job.error_code == ""

    finished = jobs.job_run_now(job)
    assert finished.status == JobStatus.SUCCEEDED
    assert state["runs"] == 2


def test_a_step_that_loses_the_database_never_releases_another_workers_claim(environment, handler_calls):
    from django.db import OperationalError

    _, behaviour = handler_calls
    taken_at = timezone.now() + timedelta(minutes=10)

    def taken_over_then_lost(job):
        # Meanwhile this worker's lease ran out and another worker claimed the job.
        Job.objects.filter(pk=job.pk).update(lease_owner="host:2:other", lease_expires_at=taken_at)
        raise OperationalError("server closed the connection unexpectedly")

    behaviour[JobKind.HEALTH_CHECK] = taken_over_then_lost
    job = _enqueue(JobKind.HEALTH_CHECK, environment)

    jobs.job_run(job.pk, owner="host:1:late")
    job.refresh_from_db()
    assert job.lease_owner == "host:2:other"
    assert job.lease_expires_at == taken_at
    assert job.status == JobStatus.CLAIMED


def test_the_end_of_a_step_is_written_after_the_connection_was_lost(environment, handler_calls):
    from django.db import connection

    _, behaviour = handler_calls

    def lose_the_connection_at_the_end(job):
        connection.connection.close()  # the step's own work is done; the write of its end meets a dead socket
        return {"ok": True}

    behaviour[JobKind.HEALTH_CHECK] = lose_the_connection_at_the_end
    job = _enqueue(JobKind.HEALTH_CHECK, environment)

    outcome = jobs.job_run(job.pk, owner="host:1:writer")
    assert outcome.status == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.lease_owner == ""
