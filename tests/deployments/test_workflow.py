"""The promotion lifecycle (docs/states.md §1): every transition with the exact audit events it writes."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.errors import DomainError
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments import workflow
from deployments.choices import PreflightStatus, PromotionStatus
from deployments.models import Approval, Promotion
from deployments.services import settings_update, stage_freeze_add, stage_update, stage_window_add
from tests.deployments.test_workflow_fixtures import (  # noqa: F401 - fixtures are found by name
    T0,
    WORKER,
    actions_of,
    actions_since,
    approve,
    as_user,
    clock_fixture,
    deployed,
    environments_fixture,
    events_of,
    fast_password_hashing,
    head_seq,
    make_version,
    pipeline_fixture,
    preflight,
    published_fixture,
    request,
    run_to,
    solution_fixture,
    stage_prod_fixture,
    stage_test_fixture,
    version_fixture,
)

pytestmark = pytest.mark.django_db


def refused(code: str, call, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def only_event(obj, action: str, since: int) -> AuditEvent:
    matching = [event for event in events_of(obj, since=since) if event.action == action]
    assert len(matching) == 1, [event.action for event in events_of(obj, since=since)]
    return matching[0]


# --- creation --------------------------------------------------------------------------------------


def test_request_creates_a_promotion_waiting_for_approval_with_a_preflight_job(
    clock, version, stage_test, maker, approver
):
    settings_update(stage=stage_test, document={}, if_match="", context=as_user(approver))
    since = head_seq()

    promotion = request(version, stage_test, maker, comment="First drop", change_reference="")

    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    assert promotion.artifact_sha256 == version.managed_sha256
    assert promotion.target_environment_id == stage_test.target_environment_id
    assert promotion.settings_version.version == 1
    assert promotion.preflight_status == PreflightStatus.PENDING
    assert promotion.attempt == 1
    job = promotion.preflight_job
    assert (job.kind, job.status, job.params) == (JobKind.PREFLIGHT, JobStatus.PENDING, {"promotion_id": promotion.pk})
    assert actions_since(since) == ["job.enqueued", "promotion.requested"]
    event = only_event(promotion, "promotion.requested", since)
    assert (event.actor_id, event.actor_kind, event.request_id) == (maker.pk, "user", "req-test")
    assert event.before is None
    assert event.after == {
        "status": "pending_approval",
        "kind": "promotion",
        "version": "1.0.0.1",
        "stage": "test",
        "target_environment": stage_test.target_environment_id,
        "artifact_sha256": version.managed_sha256,
        "settings_version": 1,
        "preflight_job": job.pk,
        "required_approvals": 1,
        "comment": "First drop",
    }
    assert event.related_type == "environments.environment"


def test_request_needs_a_stored_managed_artifact(version, solution, stage_test, maker):
    unmanaged_only = make_version(solution, "1.0.0.2", uploaded_by=maker, managed=False)
    since = head_seq()
    refused("artifact_missing", request, unmanaged_only, stage_test, maker)
    assert not Promotion.objects.exists()
    assert actions_since(since) == []


def test_request_refuses_a_stage_of_another_pipeline(version, team, environments, maker):
    from alm_portal.audit.context import AuditContext
    from deployments.services import pipeline_create, stage_add

    other = pipeline_create(
        name="Other", team=team, development_environment=environments["dev"], context=AuditContext.system()
    )
    foreign = stage_add(
        pipeline=other, name="test", target_environment=environments["test"], context=AuditContext.system()
    )
    error = refused("stage_not_in_pipeline", request, version, foreign, maker)
    assert error.status == 400


@pytest.mark.parametrize("persona", ["auditor", "outsider"])
def test_auditors_and_other_teams_cannot_request(request_fixture, persona, version, stage_test):
    user = request_fixture.getfixturevalue(persona)
    error = refused("permission_denied", request, version, stage_test, user)
    assert error.status == 403


@pytest.fixture
def request_fixture(request):
    return request


def test_approvers_and_admins_may_request(version, stage_test, approver, admin_user):
    first = request(version, stage_test, approver)
    assert first.status == PromotionStatus.PENDING_APPROVAL
    workflow.promotion_cancel(promotion=first, user=approver, comment="asked by mistake", context=as_user(approver))
    assert request(version, stage_test, admin_user).status == PromotionStatus.PENDING_APPROVAL


def test_gating_needs_the_same_version_to_have_succeeded_in_the_previous_stage(
    clock, version, solution, stage_test, stage_prod, maker, approver, second_approver
):
    error = refused("previous_stage_not_succeeded", request, version, stage_prod, maker)
    assert error.status == 409
    assert error.details == {"previous_stage": {"id": stage_test.pk, "name": "test"}}

    # Another version that succeeded in test does not open prod for this one.
    other = make_version(solution, "1.0.0.2", uploaded_by=maker)
    deployed(other, stage_test, maker, [approver])
    refused("previous_stage_not_succeeded", request, version, stage_prod, maker)

    deployed(version, stage_test, maker, [approver])
    assert request(version, stage_prod, maker).status == PromotionStatus.PENDING_APPROVAL


def test_gating_is_off_when_the_stage_says_so(version, stage_prod, maker):
    stage_update(stage=stage_prod, requires_previous_stage=False, context=as_user(maker))
    assert request(version, stage_prod, maker).status == PromotionStatus.PENDING_APPROVAL


def test_change_reference_required_and_matching_the_stage_pattern(version, stage_test, maker):
    stage_update(
        stage=stage_test,
        change_reference_required=True,
        change_reference_pattern=r"CHG\d{7}",
        backup_reference_required=True,
        context=as_user(maker),
    )
    error = refused("validation_error", request, version, stage_test, maker)
    assert set(error.details) == {"change_reference", "backup_reference"}
    error = refused(
        "validation_error", request, version, stage_test, maker, change_reference="CHG12", backup_reference="x"
    )
    assert error.details == {"change_reference": [r"Must match the pattern CHG\d{7}."]}
    promotion = request(version, stage_test, maker, change_reference="CHG0001234", backup_reference="snapshot 12:00")
    assert (promotion.change_reference, promotion.backup_reference) == ("CHG0001234", "snapshot 12:00")


def test_scheduled_for_must_be_in_the_future(clock, version, stage_test, maker):
    refused("validation_error", request, version, stage_test, maker, scheduled_for=T0 - timedelta(minutes=1))


def test_zero_required_approvals_are_approved_by_the_system_at_once(clock, version, stage_test, maker):
    stage_update(stage=stage_test, required_approvals=0, context=as_user(maker))
    since = head_seq()

    promotion = request(version, stage_test, maker)

    assert promotion.status == PromotionStatus.QUEUED
    run_job = promotion.run_job
    assert (run_job.kind, run_job.params, run_job.status) == (
        JobKind.IMPORT,
        {"promotion_id": promotion.pk},
        JobStatus.PENDING,
    )
    assert actions_since(since) == ["job.enqueued", "promotion.requested", "job.enqueued", "promotion.auto_approved"]
    auto = only_event(promotion, "promotion.auto_approved", since)
    assert (auto.actor_kind, auto.actor_id, auto.actor_display, auto.request_id) == (
        "system",
        None,
        "system",
        "req-test",
    )
    assert auto.before == {"status": "pending_approval"}
    assert auto.after == {"status": "queued", "run_job": run_job.pk, "approvals": 0, "required": 0}
    assert not promotion.approvals.exists()


def test_zero_required_approvals_outside_the_window_are_scheduled(clock, version, stage_test, maker):
    stage_update(stage=stage_test, required_approvals=0, context=as_user(maker))
    stage_window_add(
        stage=stage_test,
        weekdays=[6, 7],
        start_time=time(8),
        end_time=time(18),
        time_zone="UTC",
        context=as_user(maker),
    )
    since = head_seq()
    promotion = request(version, stage_test, maker)
    assert promotion.status == PromotionStatus.SCHEDULED and promotion.run_job is None
    auto = only_event(promotion, "promotion.auto_approved", since)
    assert auto.after == {"status": "scheduled", "scheduled_reason": "window_closed", "approvals": 0, "required": 0}


# --- approving -------------------------------------------------------------------------------------


def test_approve_waits_for_preflight_and_refuses_a_blocked_one(clock, version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker)
    error = refused("preflight_pending", approve, promotion, approver)
    assert error.status == 409

    since = head_seq()
    preflight(promotion, "blocked", [{"code": "missing_dependency", "severity": "blocker", "message": "x"}])
    event = only_event(promotion, "promotion.preflight_finished", since)
    assert (event.actor_kind, event.before, event.after) == (
        "worker",
        {"preflight_status": "pending"},
        {"preflight_status": "blocked", "blockers": ["missing_dependency"], "warnings": []},
    )
    error = refused("preflight_blocked", approve, promotion, approver)
    assert error.details["checks"][0]["code"] == "missing_dependency"
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL


def test_one_approval_approves_and_queues_the_import(clock, version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker)
    preflight(promotion, "warnings")
    since = head_seq()

    promotion = approve(promotion, approver, comment="Looks good")

    assert promotion.status == PromotionStatus.QUEUED
    assert actions_since(since) == ["job.enqueued", "promotion.approved"]
    approval = Approval.objects.get(promotion=promotion)
    assert (approval.artifact_sha256, approval.target_environment_id) == (
        promotion.artifact_sha256,
        promotion.target_environment_id,
    )
    assert approval.expires_at == T0 + timedelta(days=30)
    event = only_event(promotion, "promotion.approved", since)
    assert (event.actor_id, event.actor_kind) == (approver.pk, "user")
    assert event.before == {"status": "pending_approval", "approvals": 0, "required": 1}
    assert event.after == {
        "approval": approval.pk,
        "approvals": 1,
        "required": 1,
        "comment": "Looks good",
        "status": "queued",
        "run_job": promotion.run_job_id,
    }
    # approved was transient: the row never rests there.
    assert not Promotion.objects.filter(status=PromotionStatus.APPROVED).exists()


def test_two_required_approvals_come_from_distinct_people(
    clock, version, stage_test, stage_prod, maker, approver, second_approver
):
    deployed(version, stage_test, maker, [approver])
    promotion = request(version, stage_prod, maker)
    preflight(promotion)
    since = head_seq()

    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    recorded = only_event(promotion, "promotion.approval_recorded", since)
    assert recorded.before == {"approvals": 0, "required": 2}
    assert recorded.after["approvals"] == 2 - 1 and recorded.after["required"] == 2

    error = refused("already_decided", approve, promotion, approver)
    assert error.status == 409

    approve(promotion, second_approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED
    assert actions_of(promotion, since=since) == ["promotion.approval_recorded", "promotion.approved"]
    assert Job.objects.filter(kind=JobKind.IMPORT, params__promotion_id=promotion.pk).count() == 1


def test_requester_never_approves_their_own_promotion(version, stage_test, approver):
    promotion = request(version, stage_test, approver)
    preflight(promotion)
    error = refused("self_approval_forbidden", approve, promotion, approver)
    assert error.status == 403
    assert error.message == "You requested this promotion; someone else must approve it."


def test_uploader_of_the_artifact_never_approves(solution, stage_test, maker, approver):
    uploaded_by_approver = make_version(solution, "1.0.0.9", uploaded_by=approver)
    promotion = request(uploaded_by_approver, stage_test, maker)
    preflight(promotion)
    error = refused("uploader_approval_forbidden", approve, promotion, approver)
    assert error.status == 403


def test_only_people_named_on_the_stage_approve_admins_included(
    version, stage_test, maker, admin_user, auditor, make_user, team
):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    unnamed_approver = make_user("approver3", "approver", team)
    for person in (maker, auditor, unnamed_approver, admin_user):
        refused("permission_denied", approve, promotion, person)

    stage_update(stage=stage_test, approver_users=[admin_user], context=as_user(admin_user))
    assert approve(promotion, admin_user).status == PromotionStatus.QUEUED


def test_approvers_named_through_a_team_may_approve(version, stage_test, maker, make_user):
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    reviewers = services.team_create(name="Reviewers", slug="reviewers", context=AuditContext.system())
    reviewer = make_user("reviewer", "approver", reviewers)
    stage_update(stage=stage_test, approver_users=[], approver_teams=[reviewers], context=AuditContext.system())
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    assert approve(promotion, reviewer).status == PromotionStatus.QUEUED


def test_expired_approvals_no_longer_count_and_may_be_given_again(
    clock, version, stage_test, stage_prod, maker, approver, second_approver, settings
):
    settings.ALM_APPROVAL_TTL_DAYS = 7
    deployed(version, stage_test, maker, [approver])
    promotion = request(version, stage_prod, maker)
    preflight(promotion)
    first = approve(promotion, approver)
    first_approval = Approval.objects.get(promotion=promotion, approver=approver)
    assert first_approval.expires_at == T0 + timedelta(days=7)

    clock.advance(days=7, seconds=1)
    since = head_seq()
    approve(first, second_approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    event = only_event(promotion, "promotion.approval_recorded", since)
    assert event.after["expired_voided"] == [first_approval.pk]
    assert event.after["approvals"] == 1
    first_approval.refresh_from_db()
    assert first_approval.void_reason == "expired"

    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED


def test_approval_completing_outside_the_window_schedules_and_beat_releases_it(
    clock, version, stage_test, maker, approver
):
    # Mondays 22:00 to Tuesdays 02:00 in New York: crosses midnight; T0 is a Wednesday.
    stage_window_add(
        stage=stage_test,
        weekdays=[1],
        start_time=time(22),
        end_time=time(2),
        time_zone="America/New_York",
        context=as_user(approver),
    )
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    since = head_seq()
    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.SCHEDULED and promotion.run_job is None
    event = only_event(promotion, "promotion.approved", since)
    assert (event.after["status"], event.after["scheduled_reason"]) == ("scheduled", "window_closed")
    assert actions_since(since) == ["promotion.approved"]

    assert workflow.promotions_release_scheduled() == 0
    # Tuesday 01:30 in New York (EDT since 8 March, UTC-4) is 05:30 UTC: inside Monday's window.
    clock.set(T0.replace(day=10, hour=5, minute=30))
    since = head_seq()
    assert workflow.promotions_release_scheduled() == 1
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED
    queued = only_event(promotion, "promotion.queued", since)
    assert (queued.actor_kind, queued.before, queued.after) == (
        "system",
        {"status": "scheduled"},
        {"status": "queued", "run_job": promotion.run_job_id, "approvals": 1, "required": 1},
    )
    assert workflow.promotions_release_scheduled() == 0


def test_scheduled_for_holds_an_approved_promotion_until_then(clock, version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker, scheduled_for=T0 + timedelta(hours=2))
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.SCHEDULED
    clock.advance(hours=1)
    assert workflow.promotions_release_scheduled() == 0
    clock.advance(hours=1)
    assert workflow.promotions_release_scheduled() == 1
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED


def test_scheduled_promotion_whose_approvals_expired_goes_back_to_waiting(
    clock, version, stage_test, maker, approver, settings
):
    settings.ALM_APPROVAL_TTL_DAYS = 1
    promotion = request(version, stage_test, maker, scheduled_for=T0 + timedelta(days=3))
    preflight(promotion)
    approve(promotion, approver)
    clock.advance(days=3)
    since = head_seq()
    assert workflow.promotions_release_scheduled() == 0
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    event = only_event(promotion, "promotion.approvals_voided", since)
    approval = Approval.objects.get(promotion=promotion)
    assert (event.actor_kind, event.before, event.after) == (
        "system",
        {"status": "scheduled"},
        {"status": "pending_approval", "approvals_voided": [approval.pk], "reason": "expired"},
    )


# --- rejecting -------------------------------------------------------------------------------------


def test_reject_needs_a_comment_and_is_final(clock, version, stage_test, maker, approver, second_approver):
    promotion = request(version, stage_test, maker)
    reject = workflow.promotion_reject
    error = refused(
        "validation_error", reject, promotion=promotion, user=approver, comment="  ", context=as_user(approver)
    )
    assert error.details == {"comment": ["This field is required."]}
    refused(
        "validation_error", reject, promotion=promotion, user=approver, comment="x" * 2001, context=as_user(approver)
    )
    refused("permission_denied", reject, promotion=promotion, user=maker, comment="no", context=as_user(maker))

    since = head_seq()
    reject(promotion=promotion, user=approver, comment="Wrong tables", context=as_user(approver))
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.REJECTED and promotion.finished_at == T0
    approval = Approval.objects.get(promotion=promotion)
    assert approval.decision == "reject"
    event = only_event(promotion, "promotion.rejected", since)
    assert (event.actor_id, event.before, event.after) == (
        approver.pk,
        {"status": "pending_approval"},
        {"status": "rejected", "approval": approval.pk, "comment": "Wrong tables"},
    )
    # The pre-flight nobody needs any more is cancelled.
    assert actions_since(since) == ["job.cancelled", "promotion.rejected"]

    error = refused("invalid_state", approve, promotion, second_approver)
    assert error.details == {"current": "rejected", "allowed": ["pending_approval"]}


# --- cancelling ------------------------------------------------------------------------------------


def cancel(promotion, user, comment="Not needed"):
    return workflow.promotion_cancel(promotion=promotion, user=user, comment=comment, context=as_user(user))


def test_requester_cancels_a_waiting_promotion_with_a_comment(clock, version, stage_test, maker):
    promotion = request(version, stage_test, maker)
    refused("validation_error", cancel, promotion, maker, comment="")
    since = head_seq()
    cancel(promotion, maker)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.CANCELLED
    assert actions_since(since) == ["job.cancelled", "promotion.cancelled"]
    event = only_event(promotion, "promotion.cancelled", since)
    assert (event.actor_id, event.before, event.after) == (
        maker.pk,
        {"status": "pending_approval"},
        {"status": "cancelled", "comment": "Not needed"},
    )


def test_only_the_requester_or_an_admin_cancels(
    version, stage_test, maker, approver, auditor, admin_user, make_user, team
):
    promotion = request(version, stage_test, maker)
    teammate = make_user("maker3", "maker", team)
    for person in (approver, auditor, teammate):
        refused("permission_denied", cancel, promotion, person)
    cancel(promotion, admin_user)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.CANCELLED


def test_cancelling_a_queued_promotion_cancels_its_import_job(clock, version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    since = head_seq()
    cancel(promotion, maker)
    run_job = Job.objects.get(pk=promotion.run_job_id)
    assert run_job.status == JobStatus.CANCELLED
    event = only_event(promotion, "promotion.cancelled", since)
    assert event.before == {"status": "queued"}
    assert event.after["run_job_cancelled"] == run_job.pk
    # The import job, then the pre-flight job nobody ran (the test played the worker's part).
    assert actions_since(since) == ["job.cancelled", "job.cancelled", "promotion.cancelled"]


def test_a_queued_promotion_whose_import_was_picked_up_cannot_be_cancelled(version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    Job.objects.filter(pk=promotion.run_job_id).update(status=JobStatus.CLAIMED, lease_owner="worker-1")
    error = refused("invalid_state", cancel, promotion, maker)
    assert error.details["current"] == "running"
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED


def test_running_promotions_cannot_be_cancelled(version, stage_test, maker, approver, admin_user):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="1.0.0.0", context=WORKER
    )
    error = refused("invalid_state", cancel, promotion, admin_user)
    assert error.details == {
        "current": "running",
        "allowed": ["pending_approval", "approved", "scheduled", "queued"],
    }


# --- the runner's reports --------------------------------------------------------------------------


def queued_promotion(version, stage, maker, approver):
    promotion = request(version, stage, maker)
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    return promotion


def test_runner_moves_queued_to_running_to_succeeded(clock, version, stage_test, maker, approver):
    promotion = queued_promotion(version, stage_test, maker, approver)
    since = head_seq()
    refused(
        "invalid_state",
        workflow.promotion_mark_running,
        promotion_id=promotion.pk,
        job_id=promotion.preflight_job_id,
        previous_version="",
        context=WORKER,
    )
    clock.advance(seconds=5)
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="1.0.0.0", context=WORKER
    )
    clock.advance(seconds=30)
    workflow.promotion_mark_succeeded(promotion_id=promotion.pk, result={"components": 12}, context=WORKER)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.SUCCEEDED
    assert (promotion.started_at, promotion.finished_at) == (T0 + timedelta(seconds=5), T0 + timedelta(seconds=35))
    assert (promotion.previous_version, promotion.result) == ("1.0.0.0", {"components": 12})
    started, succeeded = events_of(promotion, since=since)
    assert (started.action, started.actor_kind, started.before, started.after) == (
        "promotion.started",
        "worker",
        {"status": "queued"},
        {"status": "running", "run_job": promotion.run_job_id, "previous_version": "1.0.0.0"},
    )
    assert (succeeded.action, succeeded.before, succeeded.after) == (
        "promotion.succeeded",
        {"status": "running"},
        {"status": "succeeded", "version": "1.0.0.1"},
    )
    refused("invalid_state", workflow.promotion_mark_succeeded, promotion_id=promotion.pk, result={}, context=WORKER)


def test_runner_fails_a_running_or_a_queued_promotion(clock, version, solution, stage_test, maker, approver):
    running = queued_promotion(version, stage_test, maker, approver)
    since = head_seq()
    run_to(running, "failed")
    running.refresh_from_db()
    assert (running.status, running.error_code) == (PromotionStatus.FAILED, "MissingDependency")
    event = only_event(running, "promotion.failed", since)
    assert (event.outcome, event.before, event.after) == (
        "failed",
        {"status": "running"},
        {"status": "failed", "error_code": "MissingDependency", "error_message": "The solution needs contoso_Core."},
    )

    queued = queued_promotion(make_version(solution, "1.0.0.2", uploaded_by=maker), stage_test, maker, approver)
    workflow.promotion_mark_failed(
        promotion_id=queued.pk,
        error_code="checksum_mismatch",
        error_message="The stored artifact changed.",
        result={},
        context=WORKER,
    )
    queued.refresh_from_db()
    assert queued.status == PromotionStatus.FAILED

    waiting = request(make_version(solution, "1.0.0.3", uploaded_by=maker), stage_test, maker)
    error = refused(
        "invalid_state",
        workflow.promotion_mark_failed,
        promotion_id=waiting.pk,
        error_code="x",
        error_message="x",
        result={},
        context=WORKER,
    )
    assert error.details == {"current": "pending_approval", "allowed": ["running", "queued"]}


def test_preflight_results_are_refused_once_the_promotion_is_over(version, stage_test, maker):
    promotion = request(version, stage_test, maker)
    cancel(promotion, maker)
    refused("invalid_state", preflight, promotion)


def test_attention_is_flagged_by_a_worker_and_resolved_by_an_admin_only(
    clock, version, stage_test, maker, approver, admin_user
):
    promotion = queued_promotion(version, stage_test, maker, approver)
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="", context=WORKER
    )
    since = head_seq()
    workflow.promotion_set_attention(
        promotion_id=promotion.pk, required=True, message="Still running after 6 h", context=WORKER
    )
    flagged = only_event(promotion, "promotion.attention_required", since)
    assert (flagged.before, flagged.after) == (
        {"attention_required": False},
        {"attention_required": True, "message": "Still running after 6 h"},
    )
    resolve = workflow.promotion_resolve_attention
    refused("permission_denied", resolve, promotion=promotion, succeeded=True, note="ok", context=as_user(approver))
    refused("validation_error", resolve, promotion=promotion, succeeded=True, note="", context=as_user(admin_user))

    since = head_seq()
    resolve(
        promotion=promotion,
        succeeded=True,
        note="Checked the target: 1.0.0.1 is installed.",
        context=as_user(admin_user),
    )
    promotion.refresh_from_db()
    assert (promotion.status, promotion.attention_required) == (PromotionStatus.SUCCEEDED, False)
    event = only_event(promotion, "promotion.attention_resolved", since)
    assert (event.actor_id, event.before, event.after) == (
        admin_user.pk,
        {"status": "running", "attention_required": True},
        {"status": "succeeded", "attention_required": False, "note": "Checked the target: 1.0.0.1 is installed."},
    )


def test_resolve_settles_the_import_job_waiting_for_attention(version, stage_test, maker, approver, admin_user):
    promotion = queued_promotion(version, stage_test, maker, approver)
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="", context=WORKER
    )
    Job.objects.filter(pk=promotion.run_job_id).update(status=JobStatus.NEEDS_ATTENTION)
    since = head_seq()
    workflow.promotion_resolve_attention(
        promotion=promotion, succeeded=False, note="Import failed on the target.", context=as_user(admin_user)
    )
    promotion.refresh_from_db()
    assert (promotion.status, promotion.error_code) == (PromotionStatus.FAILED, "resolved_as_failed")
    assert Job.objects.get(pk=promotion.run_job_id).status == JobStatus.FAILED
    assert actions_since(since) == ["job.attention_resolved", "promotion.attention_resolved"]


def test_requeue_gives_a_queued_promotion_back_to_the_schedule(clock, version, stage_test, maker, approver):
    promotion = queued_promotion(version, stage_test, maker, approver)
    run_job = promotion.run_job_id
    since = head_seq()
    workflow.promotion_requeue(promotion_id=promotion.pk, reason="window closed while waiting", context=WORKER)
    promotion.refresh_from_db()
    assert (promotion.status, promotion.run_job_id) == (PromotionStatus.SCHEDULED, None)
    event = only_event(promotion, "promotion.requeued", since)
    assert (event.before, event.after) == (
        {"status": "queued", "run_job": run_job},
        {"status": "scheduled", "reason": "window closed while waiting"},
    )
    assert workflow.promotions_release_scheduled() == 1
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED and promotion.run_job_id != run_job


# --- retrying --------------------------------------------------------------------------------------


def failed_promotion(version, stage, maker, approver):
    promotion = queued_promotion(version, stage, maker, approver)
    return run_to(promotion, "failed")


def retry(promotion, user, **kwargs):
    return workflow.promotion_retry(promotion=promotion, user=user, context=as_user(user), **kwargs)


def test_retry_with_valid_approvals_queues_again_with_a_fresh_preflight(clock, version, stage_test, maker, approver):
    promotion = failed_promotion(version, stage_test, maker, approver)
    old_run, old_preflight = promotion.run_job_id, promotion.preflight_job_id
    settings_update(stage=stage_test, document={}, if_match="", context=as_user(approver))
    clock.advance(hours=1)
    since = head_seq()

    retry(promotion, maker, comment="Dependency installed")

    promotion.refresh_from_db()
    assert (promotion.status, promotion.attempt) == (PromotionStatus.QUEUED, 2)
    assert promotion.run_job_id not in (None, old_run) and promotion.preflight_job_id != old_preflight
    assert promotion.preflight_status == PreflightStatus.PENDING
    assert (promotion.error_code, promotion.finished_at, promotion.settings_version.version) == ("", None, 1)
    assert actions_since(since) == ["job.enqueued", "job.enqueued", "promotion.retried"]
    event = only_event(promotion, "promotion.retried", since)
    assert event.before == {"status": "failed", "attempt": 1, "error_code": "MissingDependency"}
    assert event.after == {
        "attempt": 2,
        "preflight_job": promotion.preflight_job_id,
        "settings_version": 1,
        "comment": "Dependency installed",
        "approvals": 1,
        "required": 1,
        "status": "queued",
        "run_job": promotion.run_job_id,
    }


def test_retry_with_expired_approvals_waits_for_approval_again(clock, version, stage_test, maker, approver):
    promotion = failed_promotion(version, stage_test, maker, approver)
    clock.advance(days=31)
    since = head_seq()
    retry(promotion, maker)
    promotion.refresh_from_db()
    assert (promotion.status, promotion.attempt, promotion.run_job_id) == (PromotionStatus.PENDING_APPROVAL, 2, None)
    event = only_event(promotion, "promotion.retried", since)
    approval = Approval.objects.get(promotion=promotion)
    assert event.after["approvals_voided"] == [approval.pk]
    assert (event.after["status"], event.after["approvals"]) == ("pending_approval", 0)
    preflight(promotion)
    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED


def test_retry_after_the_artifact_changed_voids_the_approvals_bound_to_the_old_one(
    version, stage_test, maker, approver
):
    from solutions.models import SolutionVersion

    promotion = failed_promotion(version, stage_test, maker, approver)
    # A repaired artifact (e.g. restored from backup with another checksum): old approvals are void.
    SolutionVersion.objects.filter(pk=version.pk).update(managed_sha256="f" * 64)
    since = head_seq()
    retry(promotion, maker)
    promotion.refresh_from_db()
    assert (promotion.status, promotion.artifact_sha256) == (PromotionStatus.PENDING_APPROVAL, "f" * 64)
    event = only_event(promotion, "promotion.retried", since)
    approval = Approval.objects.get(promotion=promotion)
    assert event.before["artifact_sha256"] == version.managed_sha256
    assert (event.after["artifact_sha256"], event.after["approvals_voided"]) == ("f" * 64, [approval.pk])
    approval.refresh_from_db()
    assert approval.void_reason == "artifact or target changed"


def test_retry_after_the_stage_target_changed_voids_the_approvals_bound_to_the_old_one(
    version, stage_test, environments, maker, approver, admin_user
):
    promotion = failed_promotion(version, stage_test, maker, approver)
    stage_update(stage=stage_test, target_environment=environments["prod2"], context=as_user(admin_user))
    since = head_seq()
    retry(promotion, admin_user)
    promotion.refresh_from_db()
    assert (promotion.status, promotion.target_environment_id) == (
        PromotionStatus.PENDING_APPROVAL,
        environments["prod2"].pk,
    )
    assert promotion.preflight_job.environment_id == environments["prod2"].pk
    event = only_event(promotion, "promotion.retried", since)
    assert (event.before["target_environment"], event.after["target_environment"]) == (
        environments["test"].pk,
        environments["prod2"].pk,
    )


def test_retry_rules(version, stage_test, maker, approver, second_approver, auditor):
    promotion = request(version, stage_test, maker)
    error = refused("invalid_state", retry, promotion, maker)
    assert error.details == {"current": "pending_approval", "allowed": ["failed"]}
    preflight(promotion)
    approve(promotion, approver)
    run_to(promotion, "failed")
    for person in (approver, second_approver, auditor):
        refused("permission_denied", retry, promotion, person)


# --- voiding ---------------------------------------------------------------------------------------


def test_disabling_a_user_voids_their_pending_approvals(
    clock, version, solution, stage_test, stage_prod, maker, approver, second_approver, admin_user
):
    from alm_portal.accounts.services import user_disable

    deployed(version, stage_test, maker, [approver])
    waiting = request(version, stage_prod, maker)
    preflight(waiting)
    approve(waiting, approver)
    queued = queued_promotion(make_version(solution, "1.0.0.2", uploaded_by=maker), stage_test, maker, approver)
    done = Promotion.objects.get(stage=stage_test, version=version)
    since = head_seq()

    user_disable(user=approver, reason="left the company", context=as_user(admin_user))

    waiting.refresh_from_db()
    queued.refresh_from_db()
    assert waiting.status == PromotionStatus.PENDING_APPROVAL
    assert queued.status == PromotionStatus.PENDING_APPROVAL and queued.run_job_id is None
    assert not Approval.objects.filter(
        approver=approver, voided_at__isnull=True, promotion__in=[waiting, queued]
    ).exists()
    # The deployment that already succeeded keeps its record.
    assert Approval.objects.get(promotion=done).voided_at is None
    assert actions_since(since) == [
        "promotion.approvals_voided",
        "job.cancelled",
        "promotion.approvals_voided",
        "user.disabled",
    ]
    event = only_event(queued, "promotion.approvals_voided", since)
    assert (event.actor_id, event.before, event.after) == (
        admin_user.pk,
        {"status": "queued"},
        {
            "status": "pending_approval",
            "approvals_voided": [Approval.objects.get(promotion=queued).pk],
            "reason": "approver disabled",
            "approver": approver.pk,
        },
    )


def test_changing_a_stage_target_rebinds_waiting_promotions_and_voids_their_approvals(
    clock, version, stage_test, environments, maker, approver, admin_user
):
    promotion = queued_promotion(version, stage_test, maker, approver)
    old_run = promotion.run_job_id
    since = head_seq()
    stage_update(stage=stage_test, target_environment=environments["prod2"], context=as_user(admin_user))
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    assert promotion.target_environment_id == environments["prod2"].pk
    assert promotion.preflight_status == PreflightStatus.PENDING
    assert Job.objects.get(pk=old_run).status == JobStatus.CANCELLED
    assert actions_since(since) == ["job.cancelled", "job.enqueued", "promotion.approvals_voided", "stage.updated"]
    event = only_event(promotion, "promotion.approvals_voided", since)
    assert event.before == {"status": "queued", "target_environment": environments["test"].pk}
    assert event.after == {
        "status": "pending_approval",
        "target_environment": environments["prod2"].pk,
        "approvals_voided": [Approval.objects.get(promotion=promotion).pk],
        "reason": "target changed",
        "preflight_job": promotion.preflight_job_id,
    }
    # The approver may approve again, now for the new target.
    preflight(promotion)
    approve(promotion, approver)
    assert Approval.objects.filter(promotion=promotion, voided_at__isnull=True).get().target_environment_id == (
        environments["prod2"].pk
    )


def test_a_stage_target_cannot_change_under_a_running_import(version, stage_test, environments, maker, approver):
    promotion = queued_promotion(version, stage_test, maker, approver)
    workflow.promotion_mark_running(
        promotion_id=promotion.pk, job_id=promotion.run_job_id, previous_version="", context=WORKER
    )
    refused("invalid_state", stage_update, stage=stage_test, target_environment=environments["prod2"], context=WORKER)


def test_void_approvals_sends_a_scheduled_promotion_back(clock, version, stage_test, maker, approver, admin_user):
    promotion = request(version, stage_test, maker, scheduled_for=T0 + timedelta(days=1))
    preflight(promotion)
    approve(promotion, approver)
    since = head_seq()
    workflow.promotion_void_approvals(promotion=promotion, reason="wrong build", context=as_user(admin_user))
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    event = only_event(promotion, "promotion.approvals_voided", since)
    assert (event.before, event.after["status"], event.after["reason"]) == (
        {"status": "scheduled"},
        "pending_approval",
        "wrong build",
    )


# --- freezes ---------------------------------------------------------------------------------------


def override(promotion, user, reason="Security fix for CVE-2026-1234"):
    return workflow.promotion_override_freeze(promotion=promotion, user=user, reason=reason, context=as_user(user))


@pytest.fixture
def frozen_test(clock, stage_test, admin_user):
    return stage_freeze_add(
        stage=stage_test,
        starts_at=T0 - timedelta(days=1),
        ends_at=T0 + timedelta(days=2),
        reason="Quarter-end close",
        context=as_user(admin_user),
        created_by=admin_user,
    )


def test_a_freeze_schedules_approved_promotions_until_it_ends(frozen_test, clock, version, stage_test, maker, approver):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    since = head_seq()
    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.SCHEDULED
    assert only_event(promotion, "promotion.approved", since).after["scheduled_reason"] == "stage_frozen"
    assert workflow.promotions_release_scheduled() == 0
    clock.set(frozen_test.ends_at)
    assert workflow.promotions_release_scheduled() == 1


def test_an_admin_overrides_a_freeze_with_a_reason_as_one_extra_approval(
    frozen_test, clock, version, stage_test, maker, approver, second_approver, admin_user
):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    refused("permission_denied", override, promotion, second_approver)
    refused("validation_error", override, promotion, admin_user, reason=" ")

    # The override does not count as one of the stage's approvals.
    since = head_seq()
    override(promotion, admin_user)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.PENDING_APPROVAL
    assert promotion.freeze_override_reason == "Security fix for CVE-2026-1234"
    event = only_event(promotion, "promotion.freeze_overridden", since)
    override_approval = Approval.objects.get(promotion=promotion, freeze_override=True)
    assert (event.actor_id, event.before) == (
        admin_user.pk,
        {"status": "pending_approval", "freeze_override_reason": ""},
    )
    assert event.after == {
        "approval": override_approval.pk,
        "freeze_override_reason": "Security fix for CVE-2026-1234",
        "freeze": {
            "id": frozen_test.pk,
            "starts_at": "2026-03-03T10:00:00Z",
            "ends_at": "2026-03-06T10:00:00Z",
            "reason": "Quarter-end close",
        },
        "approvals": 0,
        "required": 1,
        "freeze_overrides": 1,
        "status": "pending_approval",
    }
    refused("already_decided", override, promotion, admin_user)

    approve(promotion, approver)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED


def test_overriding_releases_a_promotion_held_by_the_freeze(
    frozen_test, clock, version, stage_test, maker, approver, admin_user
):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    approve(promotion, approver)
    since = head_seq()
    override(promotion, admin_user)
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.QUEUED
    assert actions_since(since) == ["job.enqueued", "promotion.freeze_overridden"]
    event = only_event(promotion, "promotion.freeze_overridden", since)
    assert (event.before["status"], event.after["status"], event.after["run_job"]) == (
        "scheduled",
        "queued",
        promotion.run_job_id,
    )


def test_override_needs_a_freeze_and_keeps_the_four_eyes_rule(clock, version, stage_test, admin_user, maker):
    promotion = request(version, stage_test, maker)
    preflight(promotion)
    refused("not_frozen", override, promotion, admin_user)
    own = request(make_version(promotion.solution, "1.0.0.5", uploaded_by=maker), stage_test, admin_user)
    stage_freeze_add(
        stage=stage_test, starts_at=T0, ends_at=T0 + timedelta(hours=1), reason="x", context=as_user(admin_user)
    )
    preflight(own)
    refused("self_approval_forbidden", override, own, admin_user)


# --- rollback --------------------------------------------------------------------------------------


@pytest.fixture
def rollback_artifact(solution, version):
    """A re-versioned copy of `version` (1.0.0.1) already in the registry as 1.0.0.3, the highest version seen:
    deployments.rollback reuses it for a reversion rollback of a deployment that replaced 1.0.0.1 (no package
    is built), and uninstall_reinstall goes back to 1.0.0.1 itself."""
    from solutions.models import SolutionVersion

    restored = make_version(solution, "1.0.0.3", uploaded_by=None)
    SolutionVersion.objects.filter(pk=restored.pk).update(source_kind="reversioned", restores_version=version)
    restored.refresh_from_db()
    return restored


def deployed_over(version, stage, maker, approvers):
    """1.0.0.2 deployed in `stage` over `version` (1.0.0.1): a deployment a rollback can go back from."""
    return deployed(
        make_version(version.solution, "1.0.0.2", uploaded_by=maker),
        stage,
        maker,
        approvers,
        previous_version="1.0.0.1",
    )


def rollback(promotion, user, strategy="reversion_update", **kwargs):
    return workflow.rollback_request(
        promotion=promotion, strategy=strategy, requested_by=user, context=as_user(user), **kwargs
    )


def test_rollback_of_the_latest_deployment_needs_an_approval_and_marks_the_original(
    clock, rollback_artifact, version, solution, stage_test, maker, approver
):
    restored = rollback_artifact
    stage_update(stage=stage_test, required_approvals=0, context=as_user(maker))
    newer = make_version(solution, "1.0.0.2", uploaded_by=maker)
    first = run_to(request(version, stage_test, maker), previous_version="")
    clock.advance(minutes=5)
    second = run_to(request(newer, stage_test, maker), previous_version="1.0.0.1")

    refused("not_latest_deployment", rollback, first, maker)
    since = head_seq()
    back = rollback(second, maker, comment="Broke the form")
    assert (back.kind, back.status, back.version_id, back.rollback_of_id) == (
        "rollback",
        PromotionStatus.PENDING_APPROVAL,
        restored.pk,
        second.pk,
    )
    event = only_event(back, "promotion.requested", since)
    assert (event.after["kind"], event.after["rollback_of"], event.after["rollback_strategy"]) == (
        "rollback",
        second.pk,
        "reversion_update",
    )
    assert event.after["required_approvals"] == 1
    refused("invalid_state", rollback, second, maker)  # one rollback at a time

    preflight(back)
    approve(back, approver)
    since = head_seq()
    run_to(back)
    second.refresh_from_db()
    assert (second.status, second.rolled_back_by_id) == (PromotionStatus.ROLLED_BACK, back.pk)
    assert actions_since(since) == ["promotion.started", "promotion.succeeded", "promotion.rolled_back"]
    rolled = only_event(second, "promotion.rolled_back", since)
    assert (rolled.actor_kind, rolled.before, rolled.after) == (
        "worker",
        {"status": "succeeded"},
        {"status": "rolled_back", "rolled_back_by": back.pk, "strategy": "reversion_update"},
    )


def test_rollbacks_are_not_gated(clock, rollback_artifact, version, stage_prod, maker, approver, second_approver):
    stage_update(stage=stage_prod, requires_previous_stage=False, context=as_user(maker))
    deployed_prod = deployed_over(version, stage_prod, maker, [approver, second_approver])
    stage_update(stage=stage_prod, requires_previous_stage=True, context=as_user(maker))
    back = rollback(deployed_prod, maker)
    assert back.status == PromotionStatus.PENDING_APPROVAL


def test_uninstall_reinstall_is_admin_only_and_needs_the_unique_name(
    clock, rollback_artifact, version, stage_test, maker, approver, admin_user
):
    deployed_test = deployed_over(version, stage_test, maker, [approver])
    refused("permission_denied", rollback, deployed_test, maker, strategy="uninstall_reinstall")
    error = refused(
        "validation_error", rollback, deployed_test, admin_user, strategy="uninstall_reinstall", confirm="x"
    )
    assert "confirm" in error.details
    back = rollback(deployed_test, admin_user, strategy="uninstall_reinstall", confirm="IncidentReporting")
    assert (back.rollback_strategy, back.version_id) == ("uninstall_reinstall", version.pk)


def test_mark_rolled_back_needs_a_succeeded_rollback_of_that_promotion(
    clock, rollback_artifact, version, stage_test, maker, approver
):
    original = deployed_over(version, stage_test, maker, [approver])
    back = rollback(original, maker)
    refused("invalid_state", workflow.promotion_mark_rolled_back, promotion=original, rollback=back, context=WORKER)


# --- the map ---------------------------------------------------------------------------------------


def test_every_status_change_in_the_lifecycle_is_allowed_by_the_transition_map():
    """The functions above only ever move along PROMOTION_TRANSITIONS; _move refuses anything else."""
    from deployments.choices import PROMOTION_TRANSITIONS

    promotion = Promotion(status=PromotionStatus.SUCCEEDED)
    with pytest.raises(DomainError) as caught:
        workflow._move(promotion, to=PromotionStatus.QUEUED, now=T0, doing="queued")
    assert caught.value.code == "invalid_state"
    assert PromotionStatus.FAILED in PROMOTION_TRANSITIONS[PromotionStatus.QUEUED]
