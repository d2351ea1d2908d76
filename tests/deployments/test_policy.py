"""deployments/policy.py: the rules as pure functions of their inputs and an explicit time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from deployments import policy
from deployments.models import Approval, Promotion, Stage, StageFreeze, StageWindow
from environments.models import Environment
from tests.deployments.test_workflow_fixtures import fast_password_hashing  # noqa: F401 - autouse fixture

UTC_NOON_WEDNESDAY = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def window(days, start, end, zone="UTC"):
    return StageWindow(weekdays=days, start_time=start, end_time=end, time_zone=zone)


# --- windows -------------------------------------------------------------------------------------


def test_a_stage_without_windows_is_always_open():
    assert policy.windows_open([], at=UTC_NOON_WEDNESDAY)
    assert policy.next_window_opening([], after=UTC_NOON_WEDNESDAY) == UTC_NOON_WEDNESDAY


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (datetime(2026, 3, 4, 8, 59, tzinfo=UTC), False),
        (datetime(2026, 3, 4, 9, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 4, 16, 59, tzinfo=UTC), True),
        (datetime(2026, 3, 4, 17, 0, tzinfo=UTC), False),  # the end is exclusive
        (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_office_hours_window(at, is_open):
    office_hours = window([1, 2, 3, 4, 5], time(9), time(17))
    assert policy.window_is_open(office_hours, at=at) is is_open


def test_windows_are_read_on_their_own_wall_clock():
    # 09:00–17:00 in Tokyo (UTC+9) is 00:00–08:00 UTC.
    tokyo = window([3], time(9), time(17), "Asia/Tokyo")
    assert policy.window_is_open(tokyo, at=datetime(2026, 3, 4, 1, 0, tzinfo=UTC))
    assert not policy.window_is_open(tokyo, at=UTC_NOON_WEDNESDAY)
    # 12:00 UTC on a Tuesday is 21:00 in Tokyo: Tuesday there too, but after hours.
    assert not policy.window_is_open(tokyo, at=datetime(2026, 3, 3, 12, 0, tzinfo=UTC))


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    # Fridays 22:00 until Saturdays 04:00 in Berlin (CET, UTC+1 in early March).
    night = window([5], time(22), time(4), "Europe/Berlin")
    friday_2230 = datetime(2026, 3, 6, 21, 30, tzinfo=UTC)
    saturday_0330 = datetime(2026, 3, 7, 2, 30, tzinfo=UTC)
    saturday_0400 = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)
    thursday_2300 = datetime(2026, 3, 5, 22, 0, tzinfo=UTC)
    sunday_0100 = datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    assert policy.window_is_open(night, at=friday_2230)
    assert policy.window_is_open(night, at=saturday_0330)
    assert not policy.window_is_open(night, at=saturday_0400)
    assert not policy.window_is_open(night, at=thursday_2300)
    assert not policy.window_is_open(night, at=sunday_0100)


def test_a_sunday_night_window_wraps_into_monday():
    sunday_night = window([7], time(23), time(2))
    assert policy.window_is_open(sunday_night, at=datetime(2026, 3, 9, 1, 0, tzinfo=UTC))  # Monday 01:00
    assert not policy.window_is_open(sunday_night, at=datetime(2026, 3, 10, 1, 0, tzinfo=UTC))  # Tuesday


def test_equal_start_and_end_means_the_whole_day():
    whole_wednesday = window([3], time(0), time(0))
    assert policy.window_is_open(whole_wednesday, at=datetime(2026, 3, 4, 0, 0, tzinfo=UTC))
    assert policy.window_is_open(whole_wednesday, at=datetime(2026, 3, 4, 23, 59, tzinfo=UTC))
    assert not policy.window_is_open(whole_wednesday, at=datetime(2026, 3, 5, 0, 0, tzinfo=UTC))


def test_windows_follow_daylight_saving_time():
    # 09:00–10:00 New York: 14:00 UTC in winter (EST), 13:00 UTC after 8 March 2026 (EDT).
    morning = window([1, 2, 3, 4, 5], time(9), time(10), "America/New_York")
    assert policy.window_is_open(morning, at=datetime(2026, 3, 6, 14, 30, tzinfo=UTC))
    assert not policy.window_is_open(morning, at=datetime(2026, 3, 6, 13, 30, tzinfo=UTC))
    assert policy.window_is_open(morning, at=datetime(2026, 3, 9, 13, 30, tzinfo=UTC))
    assert not policy.window_is_open(morning, at=datetime(2026, 3, 9, 14, 30, tzinfo=UTC))


def test_any_one_window_opens_the_stage():
    windows = [window([1], time(9), time(10)), window([3], time(11), time(13))]
    assert policy.windows_open(windows, at=UTC_NOON_WEDNESDAY)
    assert not policy.windows_open(windows, at=UTC_NOON_WEDNESDAY + timedelta(hours=2))


def test_next_window_opening():
    windows = [window([5], time(22), time(4), "Europe/Berlin"), window([1], time(6), time(8))]
    # From Wednesday noon the next opening is Friday 22:00 Berlin = 21:00 UTC.
    assert policy.next_window_opening(windows, after=UTC_NOON_WEDNESDAY) == datetime(2026, 3, 6, 21, 0, tzinfo=UTC)
    # From Saturday 05:00 UTC it is Monday 06:00 UTC.
    after = datetime(2026, 3, 7, 5, 0, tzinfo=UTC)
    assert policy.next_window_opening(windows, after=after) == datetime(2026, 3, 9, 6, 0, tzinfo=UTC)
    # Inside a window: now.
    inside = datetime(2026, 3, 7, 1, 0, tzinfo=UTC)
    assert policy.next_window_opening(windows, after=inside) == inside
    assert policy.next_window_opening([window([], time(9), time(17))], after=UTC_NOON_WEDNESDAY) is None


# --- freezes and the start decision ----------------------------------------------------------------


def freeze(starts, ends, reason="Quarter-end close"):
    return StageFreeze(pk=7, starts_at=starts, ends_at=ends, reason=reason)


def test_a_freeze_covers_its_start_but_not_its_end():
    quarter_end = freeze(UTC_NOON_WEDNESDAY, UTC_NOON_WEDNESDAY + timedelta(days=2))
    assert policy.active_freeze([quarter_end], at=UTC_NOON_WEDNESDAY) is quarter_end
    assert policy.active_freeze([quarter_end], at=UTC_NOON_WEDNESDAY - timedelta(seconds=1)) is None
    assert policy.active_freeze([quarter_end], at=UTC_NOON_WEDNESDAY + timedelta(days=2)) is None


def test_start_refusal_names_the_first_reason_to_wait():
    quarter_end = freeze(UTC_NOON_WEDNESDAY, UTC_NOON_WEDNESDAY + timedelta(days=2))
    closed = [window([6], time(9), time(17))]
    later = UTC_NOON_WEDNESDAY + timedelta(hours=1)

    def start(**kwargs):
        arguments = {
            "windows": [],
            "freezes": [],
            "scheduled_for": None,
            "freeze_overridden": False,
            "at": UTC_NOON_WEDNESDAY,
        }
        refusal = policy.start_refusal(**{**arguments, **kwargs})
        return refusal.code if refusal else None

    assert start() is None
    assert start(scheduled_for=later) == "scheduled_later"
    assert start(scheduled_for=UTC_NOON_WEDNESDAY) is None
    assert start(freezes=[quarter_end]) == "stage_frozen"
    assert start(freezes=[quarter_end], freeze_overridden=True) is None
    assert start(windows=closed) == "window_closed"
    # An override lifts the freeze, not the window.
    assert start(windows=closed, freezes=[quarter_end], freeze_overridden=True) == "window_closed"


# --- references ----------------------------------------------------------------------------------


def test_reference_rules():
    stage = Stage(name="prod", change_reference_required=True, change_reference_pattern=r"CHG\d{4}")
    refusal = policy.references_refusal(stage=stage, change_reference="", backup_reference="")
    assert refusal.code == "validation_error" and list(refusal.details) == ["change_reference"]
    assert policy.references_refusal(stage=stage, change_reference="CHG123", backup_reference="").details == {
        "change_reference": [r"Must match the pattern CHG\d{4}."]
    }
    # The whole reference must match, not a prefix of it.
    assert policy.references_refusal(stage=stage, change_reference="CHG12345", backup_reference="") is not None
    assert policy.references_refusal(stage=stage, change_reference=" CHG1234 ", backup_reference="") is None

    optional = Stage(name="test", change_reference_pattern=r"CHG\d{4}", backup_reference_required=True)
    assert policy.references_refusal(stage=optional, change_reference="", backup_reference="").details == {
        "backup_reference": ["The stage 'test' requires a pre-deployment backup reference."]
    }
    # Optional, but when given it must still match.
    assert policy.references_refusal(stage=optional, change_reference="x", backup_reference="b") is not None
    assert policy.references_refusal(stage=optional, change_reference="", backup_reference="snapshot") is None


def test_comments_are_one_to_two_thousand_characters():
    assert policy.comment_refusal("").details == {"comment": ["This field is required."]}
    assert policy.comment_refusal("", required=False) is None
    assert policy.comment_refusal("x" * 2000) is None
    assert policy.comment_refusal("x" * 2001).code == "validation_error"


# --- refusals as errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("permission_denied", 403),
        ("self_approval_forbidden", 403),
        ("uploader_approval_forbidden", 403),
        ("already_decided", 409),
        ("artifact_missing", 409),
        ("preflight_pending", 409),
        ("preflight_blocked", 409),
        ("not_latest_deployment", 409),
        ("invalid_state", 409),
        ("stage_not_in_pipeline", 400),
        ("validation_error", 400),
    ],
)
def test_each_refusal_code_answers_with_its_http_status(code, status):
    error = policy.Refusal(code, "message", {"x": 1}).error()
    assert (error.code, error.status, error.message, error.details) == (code, status, "message", {"x": 1})


# --- approvals -----------------------------------------------------------------------------------


def approval(approver_id, *, sha="a" * 64, target=1, expires=None, voided=None, decision="approve", override=False):
    return Approval(
        approver_id=approver_id,
        artifact_sha256=sha,
        target_environment_id=target,
        expires_at=expires or UTC_NOON_WEDNESDAY + timedelta(days=1),
        voided_at=voided,
        decision=decision,
        freeze_override=override,
    )


def promotion_for(required, *, kind="promotion", environment_kind="test", without_approval=False):
    return Promotion(
        kind=kind,
        artifact_sha256="a" * 64,
        target_environment=Environment(pk=1, kind=environment_kind),
        stage=Stage(required_approvals=required, production_without_approval=without_approval),
    )


def test_only_live_unexpired_approvals_bound_to_the_artifact_and_target_count():
    promotion = promotion_for(2)
    approvals = [
        approval(1),
        approval(1),  # the same person twice counts once
        approval(2, sha="b" * 64),  # another artifact
        approval(3, target=2),  # another target
        approval(4, expires=UTC_NOON_WEDNESDAY),  # expired at this very instant
        approval(5, voided=UTC_NOON_WEDNESDAY),
        approval(6, decision="reject"),
        approval(7, override=True),  # a freeze override is extra, not one of the N
    ]
    count = policy.approvals_count(promotion=promotion, approvals=approvals, at=UTC_NOON_WEDNESDAY)
    assert count.ordinary == (1,) and count.freeze_overrides == (7,)
    assert not count.complete and count.freeze_overridden
    assert policy.approvals_count(
        promotion=promotion, approvals=[*approvals, approval(8)], at=UTC_NOON_WEDNESDAY
    ).complete


def test_a_rollback_needs_one_approval_even_where_the_stage_needs_none():
    assert policy.approvals_required(promotion=promotion_for(0)) == 0
    assert policy.approvals_required(promotion=promotion_for(0, kind="rollback")) == 1
    assert policy.approvals_required(promotion=promotion_for(2, kind="rollback")) == 2


def test_production_needs_one_approval_unless_the_stage_explicitly_allows_none():
    assert policy.approvals_required(promotion=promotion_for(0, environment_kind="production")) == 1
    assert policy.approvals_required(promotion=promotion_for(3, environment_kind="production")) == 3
    allowed = promotion_for(0, environment_kind="production", without_approval=True)
    assert policy.approvals_required(promotion=allowed) == 0


def test_gating_rules():
    test_stage, prod = Stage(pk=1, name="test"), Stage(pk=2, name="prod", requires_previous_stage=True)
    gated = policy.gating_refusal(kind="promotion", stage=prod, previous_stage=test_stage, succeeded_in_previous=False)
    assert gated.code == "previous_stage_not_succeeded"
    assert (
        policy.gating_refusal(kind="promotion", stage=prod, previous_stage=test_stage, succeeded_in_previous=True)
        is None
    )
    assert (
        policy.gating_refusal(kind="rollback", stage=prod, previous_stage=test_stage, succeeded_in_previous=False)
        is None
    )
    assert (
        policy.gating_refusal(kind="promotion", stage=test_stage, previous_stage=None, succeeded_in_previous=False)
        is None
    )
    prod.requires_previous_stage = False
    assert (
        policy.gating_refusal(kind="promotion", stage=prod, previous_stage=test_stage, succeeded_in_previous=False)
        is None
    )


# --- people (these need rows: teams and stage approvers are relations) ---------------------------


@pytest.mark.django_db
def test_who_may_request(team, maker, approver, admin_user, auditor, outsider):
    from solutions.models import Solution

    solution = Solution(unique_name="IncidentReporting", team=team)
    assert policy.request_refusal(user=maker, solution=solution) is None
    assert policy.request_refusal(user=approver, solution=solution) is None
    assert policy.request_refusal(user=admin_user, solution=solution) is None  # admins act on every team
    assert policy.request_refusal(user=auditor, solution=solution).code == "permission_denied"
    assert policy.request_refusal(user=outsider, solution=solution).code == "permission_denied"
    maker.is_active = False
    assert policy.request_refusal(user=maker, solution=solution).message == "Your account is disabled."


@pytest.mark.django_db
def test_cancel_and_retry_belong_to_the_requester_and_admins(maker, approver, admin_user, auditor):
    promotion = Promotion(requested_by=maker)
    assert policy.requester_or_admin_refusal(user=maker, promotion=promotion, action="cancel") is None
    assert policy.requester_or_admin_refusal(user=admin_user, promotion=promotion, action="cancel") is None
    refusal = policy.requester_or_admin_refusal(user=approver, promotion=promotion, action="cancel")
    assert refusal.message == "Only the requester or an admin may cancel this promotion."
    assert policy.requester_or_admin_refusal(user=auditor, promotion=promotion, action="retry").code == (
        "permission_denied"
    )
