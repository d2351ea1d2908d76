"""One open promotion per version and stage, and stale promotions cancelled as superseded (issue 13, item 3).

The rules through the workflow and the database (the user-side journeys are in
tests/e2e/test_duplicate_requests_in_the_browser.py):

- a second request of the same kind for the same version and stage while one is open (pending approval,
  approved, scheduled, queued, running) is refused with 409 duplicate_request naming the open one; the
  partial unique index refuses what slips past the check, and a retry that would reopen a duplicate;
- migration 0007 cancels duplicates stored before the index, each through the state machine with its
  own audit event, and 0007 then creates the index;
- a promotion overtaken by a newer deployment is cancelled by the system as superseded at pre-flight;
- delivery metrics count only deployments that ran.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.errors import DomainError
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from deployments import selectors, workflow
from deployments.metrics import delivery_metrics
from deployments.models import Promotion

pytestmark = pytest.mark.django_db


def _request(world: Any, version: str = "1.1", stage: str = "test", user: str = "maker") -> Promotion:
    person = world.users[user]
    return workflow.promotion_request(
        version=world.objects["versions"][version],
        stage=world.objects["stages"][stage],
        requested_by=person,
        context=AuditContext.for_user(person, auth_method="session"),
        comment="again",
    )


def _refused(call: Any, *args: Any, **kwargs: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == "duplicate_request", caught.value.message
    assert caught.value.status == 409
    return caught.value


def test_a_second_request_while_one_is_open_is_refused_naming_it(api_world: Any) -> None:
    first = Promotion.objects.get(pk=api_world.ids["promotion"])  # 1.1 → test, waiting for approval
    error = _refused(_request, api_world)
    assert error.details["existing"]["id"] == first.pk
    assert error.details["existing"]["status"] == "pending_approval"
    assert f"#{first.pk}" in error.message and "waiting for approval" in error.message
    assert Promotion.objects.count() == 1
    # Another person, the same request: the same answer.
    assert _refused(_request, api_world, user="approver").details["existing"]["id"] == first.pk
    # Another version, or once the first is closed, is fine.
    assert _request(api_world, version="1.0").status == "pending_approval"
    workflow.promotion_cancel(
        promotion=first, user=api_world.users["maker"], comment="wrong build", context=AuditContext.system()
    )
    assert _request(api_world).status == "pending_approval"


def test_the_database_refuses_a_duplicate_that_slips_past_the_check(api_world: Any, monkeypatch: Any) -> None:
    first = Promotion.objects.get(pk=api_world.ids["promotion"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Promotion.objects.create(
            kind=first.kind,
            status="approved",
            solution=first.solution,
            version=first.version,
            stage=first.stage,
            target_environment=first.target_environment,
            artifact_sha256=first.artifact_sha256,
            requested_by=first.requested_by,
        )
    # The workflow turns the same violation into duplicate_request when its check loses a race.
    original = selectors.open_duplicate_of
    calls: list[int] = []

    def blind_first_time(**kwargs: Any) -> Any:
        calls.append(1)
        return None if len(calls) == 1 else original(**kwargs)

    monkeypatch.setattr(selectors, "open_duplicate_of", blind_first_time)
    error = _refused(_request, api_world)
    assert error.details["existing"]["id"] == first.pk and len(calls) == 2


def test_a_retry_that_would_reopen_a_duplicate_is_refused(api_world: Any) -> None:
    first = Promotion.objects.get(pk=api_world.ids["promotion"])
    Promotion.objects.filter(pk=first.pk).update(status="failed", finished_at=timezone.now())
    second = _request(api_world)
    error = _refused(
        workflow.promotion_retry, promotion=first, user=api_world.users["maker"], context=AuditContext.system()
    )
    assert error.details["existing"]["id"] == second.pk
    first.refresh_from_db()
    assert first.status == "failed"


def test_a_promotion_overtaken_before_its_preflight_is_cancelled_as_superseded(api_world: Any) -> None:
    stale = Promotion.objects.get(pk=api_world.ids["promotion"])  # 1.1 → test
    newer = _request(api_world, version="1.0")
    # 1.0 lands in test after 1.1 was requested… and the target says it has 1.1.0.0 now (say, a retry).
    Promotion.objects.filter(pk=newer.pk).update(
        status="succeeded", finished_at=timezone.now(), result={"installed_version": "1.1.0.0"}
    )
    since = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    job = job_run_now(Job.objects.get(pk=stale.preflight_job_id))
    assert job.status == "succeeded" and job.result["superseded_by"] == newer.pk
    stale.refresh_from_db()
    assert (stale.status, stale.error_code) == ("cancelled", "superseded")
    events = AuditEvent.objects.filter(seq__gt=since, object_id=str(stale.pk), object_type="deployments.promotion")
    (cancelled,) = [event for event in events if event.action == "promotion.cancelled"]
    assert cancelled.actor_kind == "system"
    assert cancelled.after["reason"] == "superseded" and cancelled.after["superseded_by"] == newer.pk
    assert cancelled.before == {"status": "pending_approval"}


def test_a_lower_version_deployed_later_does_not_overtake(api_world: Any) -> None:
    pending = Promotion.objects.get(pk=api_world.ids["promotion"])  # 1.1 → test
    older = _request(api_world, version="1.0")
    Promotion.objects.filter(pk=older.pk).update(status="succeeded", finished_at=timezone.now())
    assert workflow.promotion_cancel_if_overtaken(promotion=pending, context=AuditContext.system()) is None
    pending.refresh_from_db()
    assert pending.status == "pending_approval"


def test_metrics_count_only_failures_of_deployments_that_ran(api_world: Any) -> None:
    prod = api_world.objects["stages"]["prod"]
    version = api_world.objects["versions"]["1.1"]
    now = timezone.now()

    def row(status: str, **extra: Any) -> Promotion:
        return Promotion.objects.create(
            status=status,
            solution=version.solution,
            version=version,
            stage=prod,
            target_environment=prod.target_environment,
            artifact_sha256="0" * 64,
            requested_by=api_world.users["maker"],
            requested_at=now - timedelta(hours=1),
            finished_at=now - timedelta(minutes=10),
            **extra,
        )

    row("succeeded", started_at=now - timedelta(minutes=20))
    row("failed", started_at=now - timedelta(minutes=15))  # ran on the target and failed
    refused = row("failed", error_code="preflight_blocked")  # refused from queued: nothing ran
    row("cancelled", error_code="superseded")
    metrics = delivery_metrics(promotions=Promotion.objects.all(), since=now - timedelta(days=1), until=now)
    assert (metrics.failed_or_rolled_back, metrics.production_outcomes) == (1, 2)
    assert metrics.change_failure_rate == 0.5
    assert refused.started_at is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_upgrade_from_before_the_index_with_duplicates_is_refused_naming_them_and_changes_nothing(
    api_world: Any,
) -> None:
    """Migration 0007 cancels duplicates with today's state machine only when the tables already have today's
    columns; a database from before 0006 has not (later migrations added some), so the upgrade stops with the
    duplicates named and nothing changed (docs/upgrading.md). Cancelled by hand, the upgrade goes through."""
    first = Promotion.objects.get(pk=api_world.ids["promotion"])  # 1.1 → test, waiting for approval
    executor = MigrationExecutor(connection)
    before_index = [("deployments", "0006_stage_production_without_approval")]
    # Every app's latest migration: going back to deployments 0006 also unapplies other apps' migrations that
    # depend on a later deployments one, and the rest of the suite needs them back.
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before_index)
    try:
        # Rows as they were stored then: the models of that migration state, not today's.
        then = (
            MigrationExecutor(connection).loader.project_state(before_index).apps.get_model("deployments", "Promotion")
        )
        duplicates = [
            then.objects.create(
                kind=first.kind,
                status=status,
                solution_id=first.solution_id,
                version_id=first.version_id,
                stage_id=first.stage_id,
                target_environment_id=first.target_environment_id,
                artifact_sha256=first.artifact_sha256,
                requested_by_id=first.requested_by_id,
                requested_at=first.requested_at + timedelta(seconds=index + 1),
            )
            for index, status in enumerate(("pending_approval", "scheduled"))
        ]
        since = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
        with pytest.raises(RuntimeError) as refused:
            MigrationExecutor(connection).migrate(latest)
        assert "must be cancelled before this upgrade" in str(refused.value)
        assert f"{first.pk}, {duplicates[0].pk}, {duplicates[1].pk}" in str(refused.value)
        assert set(
            then.objects.filter(pk__in=[first.pk, *(row.pk for row in duplicates)]).values_list("status", flat=True)
        ) == {
            "pending_approval",
            "scheduled",
        }
        assert not AuditEvent.objects.filter(seq__gt=since or 0).exists()
        # The operator cancels all but one in the release that runs, then migrates again.
        then.objects.filter(pk__in=[first.pk, duplicates[0].pk]).update(status="cancelled")
        MigrationExecutor(connection).migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    # …and now the database holds the rule.
    with pytest.raises(IntegrityError), transaction.atomic():
        Promotion.objects.filter(pk=first.pk).update(status="pending_approval")
