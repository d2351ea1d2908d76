"""Pipeline and stage services: each refusal in words with its code, and the audit event of each change."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.errors import DomainError
from deployments import services
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow
from tests.deployments.test_workflow_fixtures import (  # noqa: F401 - fixtures are found by name
    as_user,
    environments_fixture,
    events_of,
    fast_password_hashing,
    head_seq,
    make_environment,
    pipeline_fixture,
    preflight,
    published_fixture,
    request,
    solution_fixture,
    stage_prod_fixture,
    stage_test_fixture,
    version_fixture,
)

pytestmark = pytest.mark.django_db


def refused(code, call, **kwargs):
    with pytest.raises(DomainError) as caught:
        call(**kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def actions_since(since):
    return list(AuditEvent.objects.filter(seq__gt=since).order_by("seq").values_list("action", flat=True))


# --- pipelines ---------------------------------------------------------------------------------------


def test_a_pipeline_is_renamed_and_described_with_only_the_changes_audited(pipeline, admin_user):
    since = head_seq()
    services.pipeline_update(
        pipeline=pipeline, name="Contoso main", description="Apps of Contoso", context=as_user(admin_user)
    )
    pipeline.refresh_from_db()
    assert (pipeline.name, pipeline.description) == ("Contoso main", "Apps of Contoso")
    (event,) = events_of(pipeline, since=since)
    assert event.action == "pipeline.updated"
    assert event.before == {"name": "Contoso", "description": ""}
    assert event.after == {"name": "Contoso main", "description": "Apps of Contoso"}
    # Saving the same values again is not a change.
    services.pipeline_update(pipeline=pipeline, name="Contoso main", context=as_user(admin_user))
    assert actions_since(since) == ["pipeline.updated"]


def test_pipeline_update_refuses_unknown_fields_taken_names_and_a_foreign_development_environment(
    pipeline, team, admin_user, make_user
):
    from alm_portal.accounts import services as accounts

    other = services.pipeline_create(
        name="Other",
        team=team,
        development_environment=make_environment("other-dev", team, "development"),
        context=AuditContext.system(),
    )
    refused("validation_error", services.pipeline_update, pipeline=pipeline, status="x", context=as_user(admin_user))
    error = refused(
        "validation_error", services.pipeline_update, pipeline=pipeline, name="other", context=as_user(admin_user)
    )
    assert "name" in error.details
    fabrikam = accounts.team_create(name="Fabrikam", slug="fabrikam", context=AuditContext.system())
    error = refused(
        "validation_error",
        services.pipeline_update,
        pipeline=other,
        development_environment=make_environment("fabrikam-dev", fabrikam, "development"),
        context=as_user(admin_user),
    )
    assert "belongs to another team" in error.details["development_environment"][0]


def test_the_development_environment_cannot_be_a_stage_target(pipeline, environments, admin_user):
    error = refused(
        "validation_error",
        services.pipeline_update,
        pipeline=pipeline,
        development_environment=environments["test"],
        context=as_user(admin_user),
    )
    assert "target of a stage" in error.details["development_environment"][0]


def test_team_and_development_environment_stay_while_solutions_use_the_pipeline(pipeline, solution, team, admin_user):
    from alm_portal.accounts.services import team_create

    error = refused(
        "invalid_state",
        services.pipeline_update,
        pipeline=pipeline,
        development_environment=make_environment("new-dev", team, "development"),
        context=as_user(admin_user),
    )
    assert "1 solution(s)" in error.message
    other_team = team_create(name="Fabrikam", slug="fabrikam", context=AuditContext.system())
    refused(
        "invalid_state",
        services.pipeline_update,
        pipeline=pipeline,
        team=other_team,  # with a development environment of that team, else the pair is invalid anyway
        development_environment=make_environment("fabrikam-dev", other_team, "development"),
        context=as_user(admin_user),
    )
    pipeline.refresh_from_db()
    assert (pipeline.team_id, pipeline.development_environment.name) == (team.pk, "contoso-dev")


def test_an_unused_pipeline_is_deleted_with_its_stages_and_the_event_keeps_what_it_was(
    team, environments, admin_user, approver
):
    fresh = services.pipeline_create(
        name="Trial", team=team, development_environment=environments["dev"], context=AuditContext.system()
    )
    stage = services.stage_add(
        pipeline=fresh, name="qa", target_environment=environments["test"], context=AuditContext.system()
    )
    services.stage_window_add(
        stage=stage, weekdays=[1], start_time=time(8), end_time=time(9), time_zone="UTC", context=AuditContext.system()
    )
    pipeline_id = fresh.pk
    since = head_seq()
    services.pipeline_delete(pipeline=fresh, context=as_user(admin_user))
    assert not Pipeline.objects.filter(pk=pipeline_id).exists()
    assert not StageWindow.objects.filter(stage_id=stage.pk).exists()
    (event,) = AuditEvent.objects.filter(seq__gt=since)
    assert (event.action, event.object_id) == ("pipeline.deleted", str(pipeline_id))
    assert event.before["name"] == "Trial"
    assert event.before["stages"] == [{"name": "qa", "order": 1, "target_environment": environments["test"].pk}]


def test_a_pipeline_with_history_or_solutions_is_not_deleted(pipeline, solution, version, maker, admin_user):
    error = refused("invalid_state", services.pipeline_delete, pipeline=pipeline, context=as_user(admin_user))
    assert error.details["solutions"] == 1 and error.details["promotions"] == 0
    request(version, pipeline.stages.get(name="test"), maker, comment="first")
    error = refused("invalid_state", services.pipeline_delete, pipeline=pipeline, context=as_user(admin_user))
    assert "1 promotion(s)" in error.message
    assert Pipeline.objects.filter(pk=pipeline.pk).exists()


# --- stages: target, approvers -----------------------------------------------------------------------


def test_an_environment_is_the_target_of_one_stage_per_pipeline(pipeline, environments, stage_test, admin_user):
    error = refused(
        "validation_error",
        services.stage_add,
        pipeline=pipeline,
        name="uat",
        target_environment=environments["test"],
        context=AuditContext.system(),
    )
    assert error.details["target_environment"] == ["contoso-test is already the target of stage 'test'."]
    refused(
        "validation_error",
        services.stage_update,
        stage=pipeline.stages.get(name="prod"),
        target_environment=environments["test"],
        context=as_user(admin_user),
    )


def test_the_database_backs_up_one_stage_per_environment(pipeline, environments):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Stage.objects.create(pipeline=pipeline, name="again", order=9, target_environment=environments["test"])


def test_required_approvals_cannot_exceed_the_people_who_can_approve(stage_prod, approver, maker, admin_user):
    error = refused(
        "validation_error",
        services.stage_update,
        stage=stage_prod,
        approver_users=[approver],
        context=as_user(admin_user),
    )
    assert error.details["required_approvals"][0].startswith("2 approval(s) required but only 1 person(s)")
    error = refused(
        "validation_error", services.stage_update, stage=stage_prod, required_approvals=3, context=as_user(admin_user)
    )
    assert "only 2 person(s)" in error.details["required_approvals"][0]
    error = refused(
        "validation_error",
        services.stage_update,
        stage=stage_prod,
        approver_users=[approver, maker],
        context=as_user(admin_user),
    )
    assert "maker" in error.details["approver_users"][0]


def test_a_team_of_approvers_counts_its_approving_members(stage_prod, team, approver, second_approver, admin_user):
    since = head_seq()
    services.stage_update(stage=stage_prod, approver_users=[], approver_teams=[team], context=as_user(admin_user))
    stage_prod.refresh_from_db()
    assert services.eligible_approvers(users=[], teams=[team]) == [approver, second_approver]
    (event,) = events_of(stage_prod, since=since)
    assert event.after == {"approver_users": [], "approver_teams": [team.pk]}
    approver.is_active = False
    approver.save()
    refused(
        "validation_error", services.stage_update, stage=stage_prod, approver_teams=[team], context=as_user(admin_user)
    )


# --- stages: delete and reorder ------------------------------------------------------------------------


def test_a_stage_without_history_is_deleted_and_the_later_stages_move_up(pipeline, environments, admin_user):
    uat = services.stage_add(
        pipeline=pipeline, name="uat", target_environment=environments["prod2"], context=AuditContext.system()
    )
    test = pipeline.stages.get(name="test")
    since = head_seq()
    services.stage_delete(stage=test, context=as_user(admin_user))
    assert list(pipeline.stages.order_by("order").values_list("name", "order")) == [("prod", 1), ("uat", 2)]
    (event,) = AuditEvent.objects.filter(seq__gt=since)
    assert event.action == "stage.deleted" and event.before["name"] == "test"
    assert uat.pk in set(pipeline.stages.values_list("pk", flat=True))


def test_a_stage_with_promotions_in_flight_or_history_is_not_deleted(stage_test, version, maker, admin_user):
    from deployments import workflow

    promotion = request(version, stage_test, maker, comment="to test")
    error = refused("invalid_state", services.stage_delete, stage=stage_test, context=as_user(admin_user))
    assert error.details["current"] == "promotions_in_flight"
    workflow.promotion_cancel(promotion=promotion, user=maker, comment="not now", context=as_user(maker))
    error = refused("invalid_state", services.stage_delete, stage=stage_test, context=as_user(admin_user))
    assert error.details["current"] == "has_history"
    assert Stage.objects.filter(pk=stage_test.pk).exists()


def test_stages_are_reordered_with_contiguous_orders_and_one_event(pipeline, environments, admin_user):
    uat = services.stage_add(
        pipeline=pipeline, name="uat", target_environment=environments["prod2"], context=AuditContext.system()
    )
    test, prod = pipeline.stages.get(name="test"), pipeline.stages.get(name="prod")
    since = head_seq()
    services.stage_reorder(pipeline=pipeline, stage_ids=[uat.pk, test.pk, prod.pk], context=as_user(admin_user))
    assert list(pipeline.stages.order_by("order").values_list("name", "order")) == [
        ("uat", 1),
        ("test", 2),
        ("prod", 3),
    ]
    (event,) = AuditEvent.objects.filter(seq__gt=since)
    assert event.action == "pipeline.stages_reordered"
    assert event.before == {"stages": ["test", "prod", "uat"]}
    assert event.after == {"stages": ["uat", "test", "prod"], "gated_on_previous": ["test", "prod"]}

    services.stage_move(stage=prod, offset=-1, context=as_user(admin_user))
    assert list(pipeline.stages.order_by("order").values_list("name", flat=True)) == ["uat", "prod", "test"]
    error = refused("validation_error", services.stage_move, stage=uat, offset=-1, context=as_user(admin_user))
    assert "already first" in error.message


@pytest.mark.parametrize("ids", ["none", "missing", "duplicate", "foreign"])
def test_a_reorder_must_name_every_stage_of_the_pipeline_once(pipeline, team, environments, admin_user, ids):
    test, prod = pipeline.stages.get(name="test"), pipeline.stages.get(name="prod")
    other = services.pipeline_create(
        name="Other", team=team, development_environment=environments["prod2"], context=AuditContext.system()
    )
    foreign = services.stage_add(
        pipeline=other, name="x", target_environment=environments["test"], context=AuditContext.system()
    )
    given = {
        "none": [],
        "missing": [test.pk],
        "duplicate": [test.pk, prod.pk, prod.pk],
        "foreign": [test.pk, foreign.pk],
    }[ids]
    refused("validation_error", services.stage_reorder, pipeline=pipeline, stage_ids=given, context=as_user(admin_user))


def test_reordering_waits_for_promotions_in_flight(pipeline, version, maker, admin_user):
    test, prod = pipeline.stages.get(name="test"), pipeline.stages.get(name="prod")
    request(version, test, maker, comment="to test")
    error = refused(
        "invalid_state",
        services.stage_reorder,
        pipeline=pipeline,
        stage_ids=[prod.pk, test.pk],
        context=as_user(admin_user),
    )
    assert "gated under the current order" in error.message


# --- windows and freezes -----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus", "posixrules", "", "../etc/passwd"])
def test_window_time_zones_must_be_iana_names(stage_test, admin_user, zone):
    error = refused(
        "validation_error",
        services.stage_window_add,
        stage=stage_test,
        weekdays=[1],
        start_time=time(8),
        end_time=time(17),
        time_zone=zone,
        context=as_user(admin_user),
    )
    assert set(error.details) == {"time_zone"}


def test_the_calendar_of_a_stage_is_replaced_keeping_equal_entries(stage_test, admin_user):
    context = as_user(admin_user)
    start = datetime(2030, 12, 20, tzinfo=UTC)
    kept = services.stage_window_add(
        stage=stage_test, weekdays=[1, 2], start_time=time(8), end_time=time(17), time_zone="UTC", context=context
    )
    services.stage_window_add(
        stage=stage_test, weekdays=[6], start_time=time(8), end_time=time(9), time_zone="UTC", context=context
    )
    since = head_seq()
    services.stage_calendar_replace(
        stage=stage_test,
        windows=[
            {"weekdays": [2, 1], "start_time": time(8), "end_time": time(17), "time_zone": "UTC"},
            {"weekdays": [7], "start_time": time(10), "end_time": time(12), "time_zone": "Europe/Berlin"},
        ],
        freezes=[{"starts_at": start, "ends_at": start + timedelta(days=10), "reason": "Holidays"}],
        context=context,
    )
    assert StageWindow.objects.filter(pk=kept.pk).exists()
    assert StageWindow.objects.filter(stage=stage_test).count() == 2
    assert StageFreeze.objects.get(stage=stage_test).reason == "Holidays"
    assert actions_since(since) == ["stage_window.deleted", "stage_window.created", "stage_freeze.created"]
    # A bad entry refuses the whole replacement.
    before = head_seq()
    refused(
        "validation_error",
        services.stage_calendar_replace,
        stage=stage_test,
        windows=[],
        freezes=[{"starts_at": start, "ends_at": start, "reason": "x"}],
        context=context,
    )
    assert head_seq() == before
    assert StageWindow.objects.filter(stage=stage_test).count() == 2
