"""Deployment settings (pac JSON shape, versions, ETags) and the stage services: windows, freezes, updates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from alm_portal.errors import DomainError
from deployments import services
from deployments.models import DeploymentSettings, StageFreeze, StageWindow
from tests.deployments.test_workflow_fixtures import (  # noqa: F401 - fixtures are found by name
    as_user,
    environments_fixture,
    events_of,
    fast_password_hashing,
    head_seq,
    pipeline_fixture,
    stage_prod_fixture,
    stage_test_fixture,
)

pytestmark = pytest.mark.django_db

PAC_FILE = {
    "EnvironmentVariables": [
        {"SchemaName": "contoso_ApiUrl", "Value": "https://api.contoso.test"},
        {"SchemaName": "contoso_ApiKey", "Value": "s3cr3t-value"},
    ],
    "ConnectionReferences": [
        {
            "LogicalName": "contoso_sharedcommondataserviceforapps_1",
            "ConnectionId": "",
            "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps",
        }
    ],
}


def refused(code, call, **kwargs):
    with pytest.raises(DomainError) as caught:
        call(**kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


# --- deployment settings -------------------------------------------------------------------------


def test_first_version_needs_no_etag_and_later_ones_need_the_current_one(stage_test, admin_user):
    context = as_user(admin_user)
    assert services.settings_current_etag(stage=stage_test) == ""
    first = services.settings_update(stage=stage_test, document=PAC_FILE, if_match="", context=context, user=admin_user)
    assert (first.version, first.created_by) == (1, admin_user)
    assert len(first.etag) == 64

    changed = json.loads(json.dumps(PAC_FILE))
    changed["EnvironmentVariables"][0]["Value"] = "https://api.contoso.com"
    error = refused(
        "precondition_failed",
        services.settings_update,
        stage=stage_test,
        document=changed,
        if_match="",
        context=context,
    )
    assert (error.status, error.details) == (412, {"current_etag": first.etag})
    refused(
        "precondition_failed",
        services.settings_update,
        stage=stage_test,
        document=changed,
        if_match="0" * 64,
        context=context,
    )
    # The HTTP forms of the same ETag are accepted; `*` is not (it would overwrite unseen changes).
    refused(
        "precondition_failed",
        services.settings_update,
        stage=stage_test,
        document=changed,
        if_match="*",
        context=context,
    )
    second = services.settings_update(stage=stage_test, document=changed, if_match=f'W/"{first.etag}"', context=context)
    assert second.version == 2 and second.etag != first.etag
    assert list(DeploymentSettings.objects.filter(stage=stage_test).values_list("version", flat=True)) == [2, 1]
    # Old versions never change.
    first.refresh_from_db()
    assert first.document == PAC_FILE


def test_a_settings_change_is_audited_by_name_never_by_value(stage_test, admin_user):
    context = as_user(admin_user)
    first = services.settings_update(stage=stage_test, document=PAC_FILE, if_match="", context=context)
    changed = json.loads(json.dumps(PAC_FILE))
    changed["EnvironmentVariables"][1]["Value"] = "another-secret"
    changed["EnvironmentVariables"].append({"SchemaName": "contoso_Region", "Value": "eu"})
    del changed["EnvironmentVariables"][0]
    since = head_seq()
    second = services.settings_update(stage=stage_test, document=changed, if_match=first.etag, context=context)

    (event,) = events_of(second, since=since)
    assert (event.action, event.actor_id, event.related_id) == (
        "deployment_settings.updated",
        admin_user.pk,
        str(stage_test.pk),
    )
    assert event.before == {"version": 1, "etag": first.etag}
    assert event.after == {
        "version": 2,
        "etag": second.etag,
        "names": {
            "EnvironmentVariables": ["contoso_ApiKey", "contoso_Region"],
            "ConnectionReferences": ["contoso_sharedcommondataserviceforapps_1"],
        },
        "added": ["EnvironmentVariables:contoso_Region"],
        "removed": ["EnvironmentVariables:contoso_ApiUrl"],
        "changed": ["EnvironmentVariables:contoso_ApiKey"],
    }
    dumped = json.dumps([e.before for e in AuditEvent.objects.all()] + [e.after for e in AuditEvent.objects.all()])
    assert "s3cr3t-value" not in dumped and "another-secret" not in dumped


@pytest.mark.parametrize(
    ("document", "errors"),
    [
        ([], {"document": ["Expected a JSON object."]}),
        (
            {"EnvironmentVariable": []},
            {
                "EnvironmentVariable": [
                    "Unknown key; a settings file has only EnvironmentVariables and ConnectionReferences."
                ]
            },
        ),
        ({"EnvironmentVariables": {}}, {"EnvironmentVariables": ["Expected a list."]}),
        ({"EnvironmentVariables": ["x"]}, {"EnvironmentVariables[0]": ["Expected an object."]}),
        (
            {"EnvironmentVariables": [{"Value": "1"}]},
            {"EnvironmentVariables[0].SchemaName": ["This field is required."]},
        ),
        (
            {"EnvironmentVariables": [{"SchemaName": "a", "Value": 3}]},
            {"EnvironmentVariables[0].Value": ["Must be a string."]},
        ),
        (
            {"EnvironmentVariables": [{"SchemaName": "a", "Value": "1", "Type": "x"}]},
            {"EnvironmentVariables[0].Type": ["Unknown key."]},
        ),
        (
            {"EnvironmentVariables": [{"SchemaName": "a", "Value": "1"}, {"SchemaName": "A", "Value": "2"}]},
            {"EnvironmentVariables[1].SchemaName": ["Duplicate of EnvironmentVariables[0]."]},
        ),
        (
            {"ConnectionReferences": [{"LogicalName": "c", "ConnectionId": ""}]},
            {"ConnectionReferences[0].ConnectorId": ["This field is required."]},
        ),
    ],
)
def test_the_pac_shape_is_validated_with_errors_by_json_path(stage_test, admin_user, document, errors):
    error = refused(
        "validation_error",
        services.settings_update,
        stage=stage_test,
        document=document,
        if_match="",
        context=as_user(admin_user),
    )
    assert error.details == errors
    assert not DeploymentSettings.objects.exists()


def test_missing_sections_and_values_are_filled_in_as_pac_writes_them(stage_test, admin_user):
    saved = services.settings_update(
        stage=stage_test,
        document={"ConnectionReferences": [{"LogicalName": "c", "ConnectorId": "/providers/x"}]},
        if_match="",
        context=as_user(admin_user),
    )
    assert saved.document == {
        "EnvironmentVariables": [],
        "ConnectionReferences": [{"LogicalName": "c", "ConnectionId": "", "ConnectorId": "/providers/x"}],
    }


def test_import_and_export_round_trip_the_pac_file(stage_test, stage_prod, environments, admin_user):
    context = as_user(admin_user)
    content = b"\xef\xbb\xbf" + json.dumps(PAC_FILE, indent=2).encode()  # with a BOM, as some editors save it
    imported = services.settings_import(stage=stage_test, content=content, if_match=None, context=context)
    exported, etag = services.settings_export(stage=stage_test)
    assert etag == imported.etag
    assert json.loads(exported) == PAC_FILE
    assert exported.decode().startswith('{\n  "EnvironmentVariables": [')

    # The exported file imports into another stage unchanged.
    services.settings_import(stage=stage_prod, content=exported, if_match="", context=context)
    assert services.settings_current(stage=stage_prod).document == PAC_FILE

    assert services.settings_export(stage=stage_prod, version=1)[0] == exported
    empty, no_etag = services.settings_export(
        stage=stage_test.pipeline.stages.create(name="uat", order=9, target_environment=environments["prod2"])
    )
    assert (json.loads(empty), no_etag) == ({"EnvironmentVariables": [], "ConnectionReferences": []}, "")


def test_import_refuses_what_is_not_a_json_settings_file(stage_test, admin_user):
    error = refused(
        "validation_error",
        services.settings_import,
        stage=stage_test,
        content=b"{not json",
        if_match="",
        context=as_user(admin_user),
    )
    assert "file" in error.details
    refused(
        "validation_error",
        services.settings_import,
        stage=stage_test,
        content=b"\xff\xfe",
        if_match="",
        context=as_user(admin_user),
    )


# --- stages ----------------------------------------------------------------------------------------


def test_stage_policy_fields_are_stored_and_audited(pipeline, environments, approver):
    since = head_seq()
    stage = services.stage_add(
        pipeline=pipeline,
        name="uat",
        target_environment=environments["prod2"],
        required_approvals=0,
        production_without_approval=True,  # a production target with no approval only on purpose
        approver_users=[approver],
        import_mode="update",
        overwrite_unmanaged_customizations=True,
        activate_flows_and_plugins=False,
        change_reference_required=True,
        change_reference_pattern=r"CHG\d+",
        backup_reference_required=True,
        require_source_branch=" main ",
        context=AuditContext.system(),
    )
    assert stage.order == 3
    (event,) = events_of(stage, since=since)
    assert event.action == "stage.created"
    assert event.after == {
        "name": "uat",
        "order": 3,
        "target_environment": environments["prod2"].pk,
        "required_approvals": 0,
        "production_without_approval": True,
        "requires_previous_stage": True,
        "import_mode": "update",
        "overwrite_unmanaged_customizations": True,
        "activate_flows_and_plugins": False,
        "change_reference_required": True,
        "change_reference_pattern": r"CHG\d+",
        "backup_reference_required": True,
        "require_source_branch": "main",
        "approver_users": [approver.pk],
        "approver_teams": [],
    }


def test_stage_validation(pipeline, environments):
    error = refused(
        "validation_error",
        services.stage_add,
        pipeline=pipeline,
        name="test",
        target_environment=environments["dev"],
        required_approvals=11,
        import_mode="replace",
        change_reference_pattern="CHG(",
        require_source_branch="main..release",
        context=AuditContext.system(),
    )
    assert set(error.details) == {
        "name",
        "target_environment",
        "required_approvals",
        "import_mode",
        "change_reference_pattern",
        "require_source_branch",
    }


def test_stage_update_audits_only_what_changed(stage_test, admin_user, second_approver):
    since = head_seq()
    services.stage_update(
        stage=stage_test,
        required_approvals=2,
        approver_users=[second_approver, admin_user],
        name="test",
        context=as_user(admin_user),
    )
    stage_test.refresh_from_db()
    assert stage_test.required_approvals == 2
    (event,) = events_of(stage_test, since=since)
    assert event.action == "stage.updated"
    assert event.after == {"required_approvals": 2, "approver_users": sorted([second_approver.pk, admin_user.pk])}
    assert event.before["required_approvals"] == 1
    refused("validation_error", services.stage_update, stage=stage_test, colour="red", context=as_user(admin_user))
    refused("validation_error", services.stage_update, stage=stage_test, name="prod", context=as_user(admin_user))


# --- windows and freezes -------------------------------------------------------------------------


def test_windows_are_validated_added_changed_and_removed_with_events(stage_test, admin_user):
    context = as_user(admin_user)
    error = refused(
        "validation_error",
        services.stage_window_add,
        stage=stage_test,
        weekdays=[0, 8],
        start_time="09:00",
        end_time=time(17),
        time_zone="Mars/Olympus",
        context=context,
    )
    assert set(error.details) == {"weekdays", "start_time", "time_zone"}

    since = head_seq()
    window = services.stage_window_add(
        stage=stage_test,
        weekdays=[5, 1, 1],
        start_time=time(22),
        end_time=time(4),
        time_zone="Europe/Berlin",
        context=context,
    )
    assert window.weekdays == [1, 5]
    services.stage_window_update(window=window, end_time=time(5), context=context)
    window_id = window.pk
    services.stage_window_remove(window=window, context=context)
    assert not StageWindow.objects.exists()
    events = list(AuditEvent.objects.filter(seq__gt=since).order_by("seq"))
    assert [(e.action, e.object_id) for e in events] == [
        ("stage_window.created", str(window_id)),
        ("stage_window.updated", str(window_id)),
        ("stage_window.deleted", str(window_id)),
    ]
    assert events[0].after == {
        "weekdays": [1, 5],
        "start_time": "22:00",
        "end_time": "04:00",
        "time_zone": "Europe/Berlin",
    }
    assert (events[1].before, events[1].after) == ({"end_time": "04:00"}, {"end_time": "05:00"})
    assert events[2].before == {
        "weekdays": [1, 5],
        "start_time": "22:00",
        "end_time": "05:00",
        "time_zone": "Europe/Berlin",
    }


def test_freezes_are_validated_added_ended_early_and_removed_with_events(stage_test, admin_user):
    context = as_user(admin_user)
    start = datetime(2026, 3, 30, tzinfo=UTC)
    error = refused(
        "validation_error",
        services.stage_freeze_add,
        stage=stage_test,
        starts_at=start,
        ends_at=start - timedelta(days=1),
        reason=" ",
        context=context,
    )
    assert set(error.details) == {"ends_at", "reason"}
    refused(
        "validation_error",
        services.stage_freeze_add,
        stage=stage_test,
        starts_at=datetime(2026, 3, 30),
        ends_at=start,
        reason="x",
        context=context,
    )

    since = head_seq()
    frozen = services.stage_freeze_add(
        stage=stage_test,
        starts_at=start,
        ends_at=start + timedelta(days=3),
        reason="Quarter-end close",
        context=context,
        created_by=admin_user,
    )
    services.stage_freeze_update(freeze=frozen, ends_at=start + timedelta(days=1), context=context)
    freeze_id = frozen.pk
    services.stage_freeze_remove(freeze=frozen, context=context)
    assert not StageFreeze.objects.exists()
    events = list(AuditEvent.objects.filter(seq__gt=since).order_by("seq"))
    assert [e.action for e in events] == ["stage_freeze.created", "stage_freeze.updated", "stage_freeze.deleted"]
    assert {e.object_id for e in events} == {str(freeze_id)}
    assert events[0].after == {
        "starts_at": "2026-03-30T00:00:00Z",
        "ends_at": "2026-04-02T00:00:00Z",
        "reason": "Quarter-end close",
    }
    assert (events[1].before, events[1].after) == (
        {"ends_at": "2026-04-02T00:00:00Z"},
        {"ends_at": "2026-03-31T00:00:00Z"},
    )
