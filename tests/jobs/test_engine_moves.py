"""Every change of a job's status is a move of JOB_TRANSITIONS, and why a due job waits is a column."""

from __future__ import annotations

from typing import Any

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs import registry as job_registry
from alm_portal.jobs import services as jobs
from alm_portal.jobs.choices import JOB_TRANSITIONS, JobStatus, JobWaitingReason
from alm_portal.jobs.models import Job
from alm_portal.jobs.services.transitions import _move

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def environment(team: Any) -> Any:
    from environments.models import Environment

    return Environment.objects.create(
        name="contoso-test",
        url="https://contoso-test.crm4.dynamics.com",
        kind="test",
        tenant_id="00000000-0000-0000-0000-000000000001",
        team=team,
    )


def test_only_active_statuses_may_stay_where_they_are() -> None:
    staying = {status for status, moves in JOB_TRANSITIONS.items() if status in moves}
    assert staying == {JobStatus.CLAIMED, JobStatus.SUBMITTING, JobStatus.POLLING, JobStatus.FINISHING}


def test_a_move_the_table_does_not_allow_is_refused_before_the_database_is_touched(environment: Any) -> None:
    job = jobs.job_enqueue(kind=JobKind.HEALTH_CHECK, environment=environment, params={}, context=AuditContext.system())
    with pytest.raises(ValueError, match="not an allowed transition"):
        _move(job.pk, current=JobStatus.PENDING, to=JobStatus.PENDING)
    with pytest.raises(ValueError, match="not an allowed transition"):
        _move(job.pk, current=JobStatus.CANCELLED, to=JobStatus.PENDING)
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_a_job_waiting_for_the_slot_says_so_in_a_column_until_it_is_claimed(environment: Any, monkeypatch: Any) -> None:
    def defer_first(job: Job, context: AuditContext) -> dict[str, Any]:
        raise jobs.JobDeferred(0)

    monkeypatch.setattr("alm_portal.celery.publish_best_effort", lambda task, args=(), countdown=None: True)
    monkeypatch.setitem(job_registry._HANDLERS, JobKind.EXPORT, defer_first)
    monkeypatch.setitem(job_registry._HANDLERS, JobKind.IMPORT, lambda job, context: {})
    context = AuditContext.system()
    holder = jobs.job_enqueue(kind=JobKind.EXPORT, environment=environment, params={}, context=context)
    waiting = jobs.job_enqueue(kind=JobKind.IMPORT, environment=environment, params={}, context=context)
    jobs.job_run(holder.pk)  # holds the slot
    assert not jobs.job_run(waiting.pk).ran
    waiting.refresh_from_db()
    assert waiting.waiting_reason == JobWaitingReason.SOLUTION_SLOT
    assert waiting.progress_message == JobWaitingReason.SOLUTION_SLOT.label

    monkeypatch.setitem(job_registry._HANDLERS, JobKind.EXPORT, lambda job, context: {})
    assert jobs.job_run(holder.pk).status == JobStatus.SUCCEEDED  # frees the slot and wakes the waiting job
    assert jobs.job_run(waiting.pk).status == JobStatus.SUCCEEDED
    waiting.refresh_from_db()
    assert waiting.waiting_reason == ""
