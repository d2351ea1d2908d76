"""Two people acting on one promotion at the same instant (PostgreSQL, real transactions in threads)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from alm_portal.errors import DomainError
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import workflow
from deployments.choices import PromotionStatus
from deployments.models import Approval
from tests.deployments.test_workflow_fixtures import (  # noqa: F401 - fixtures are found by name
    as_user,
    deployed,
    environments_fixture,
    fast_password_hashing,
    make_version,
    pipeline_fixture,
    preflight,
    published_fixture,
    request,
    solution_fixture,
    stage_prod_fixture,
    stage_test_fixture,
    version_fixture,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(calls: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Run each call in its own thread (own connection, own transaction), released together by a
    barrier; returns "ok" or the refusal code per call."""
    barrier = threading.Barrier(len(calls))
    outcomes: dict[str, str] = {}

    def run(name: str, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            call()
            outcomes[name] = "ok"
        except DomainError as refusal:
            outcomes[name] = refusal.code
        except Exception as exc:  # surfaced by the callers' assertions
            outcomes[name] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def approving(promotion, person):
    return lambda: workflow.promotion_approve(promotion=promotion, user=person, context=as_user(person))


def import_jobs_of(promotion):
    return Job.objects.filter(kind=JobKind.IMPORT, params__promotion_id=promotion.pk)


def test_the_last_two_approvals_at_the_same_instant_enqueue_exactly_one_run(
    published, version, stage_test, stage_prod, maker, approver, second_approver
):
    deployed(version, stage_test, maker, [approver])
    promotion = request(version, stage_prod, maker)
    preflight(promotion)
    published.clear()

    outcomes = race({"first": approving(promotion, approver), "second": approving(promotion, second_approver)})

    # Neither decision is lost: the second waits for the first's row lock and then counts both.
    assert outcomes == {"first": "ok", "second": "ok"}
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED
    (run_job,) = import_jobs_of(promotion)
    assert promotion.run_job_id == run_job.pk
    assert published == [run_job.pk]
    assert Approval.objects.filter(promotion=promotion, voided_at__isnull=True).count() == 2


def test_two_approvals_where_one_suffices_queue_once_and_the_second_is_refused(
    published, version, stage_test, maker, approver, second_approver
):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    published.clear()

    outcomes = race({"first": approving(promotion, approver), "second": approving(promotion, second_approver)})

    assert sorted(outcomes.values()) == ["invalid_state", "ok"]
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED
    assert import_jobs_of(promotion).count() == 1
    assert len(published) == 1
    assert Approval.objects.filter(promotion=promotion).count() == 1


@pytest.mark.parametrize("attempt", range(3))
def test_an_approval_racing_a_cancel_leaves_no_runnable_import_behind(
    attempt, published, solution, stage_test, maker, approver
):
    promotion = request(make_version(solution, f"1.0.0.{attempt + 1}", uploaded_by=maker), stage_test, maker)
    preflight(promotion)

    outcomes = race(
        {
            "approve": approving(promotion, approver),
            "cancel": lambda: workflow.promotion_cancel(
                promotion=promotion, user=maker, comment="race", context=as_user(maker)
            ),
        }
    )

    # Whichever committed first, the cancel wins (from pending, or from queued with the import job
    # still pending) and no import job is left that a worker could pick up.
    assert outcomes["cancel"] == "ok" and outcomes["approve"] in ("ok", "invalid_state")
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.CANCELLED
    assert not import_jobs_of(promotion).exclude(status=JobStatus.CANCELLED).exists()
