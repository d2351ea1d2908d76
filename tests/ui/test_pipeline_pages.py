"""The pipeline editor in the browser: admins create and change pipelines and stages, refusals appear
in words next to the field they concern, and the deployment settings editor checks a version's manifest
and imports and exports the pac file. Everyone else is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent
from deployments.models import DeploymentSettings, Pipeline, Stage, StageFreeze, StageWindow
from tests.support.api import corpus_file

pytestmark = pytest.mark.django_db

FLOW_EXCEL = "flow-excel-groupbyemail-notification-example.v1_0_0_7.zip"


def _as(world: Any, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def _stage_form(world: Any, **overrides: Any) -> dict[str, Any]:
    stage = Stage.objects.get(pk=world.ids["stage_prod"])
    data: dict[str, Any] = {
        "name": stage.name,
        "target_environment": stage.target_environment_id,
        "required_approvals": stage.required_approvals,
        "approver_users": list(stage.approver_users.values_list("pk", flat=True)),
        "import_mode": stage.import_mode,
        "requires_previous_stage": "on",
        "activate_flows_and_plugins": "on",
        "change_reference_pattern": "",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _settings_rows(variables: list[tuple[str, str]], references: list[tuple[str, str, str]], etag: str) -> dict:
    data: dict[str, Any] = {
        "etag": etag,
        "ev-TOTAL_FORMS": len(variables),
        "ev-INITIAL_FORMS": 0,
        "cr-TOTAL_FORMS": len(references),
        "cr-INITIAL_FORMS": 0,
    }
    for index, (name, value) in enumerate(variables):
        data[f"ev-{index}-SchemaName"], data[f"ev-{index}-Value"] = name, value
    for index, (name, connection, connector) in enumerate(references):
        data[f"cr-{index}-LogicalName"] = name
        data[f"cr-{index}-ConnectionId"] = connection
        data[f"cr-{index}-ConnectorId"] = connector
    return data


def test_an_admin_creates_a_pipeline_and_sees_field_errors_in_words(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    team = api_world.objects["pipeline"].team
    fabrikam_dev = api_world.objects["environments"]["fabrikam"]
    url = reverse("deployments:pipeline-create")
    refused = admin.post(url, {"name": "Line two", "team": team.pk, "development_environment": fabrikam_dev.pk})
    assert refused.status_code == 200
    body = refused.content.decode()
    assert 'id="id_development_environment_error"' in body
    assert "fabrikam-dev belongs to another team." in body
    assert not Pipeline.objects.filter(name="Line two").exists()

    from environments.models import Environment

    dev = Environment.objects.create(
        name="line-two-dev", url="https://line-two-dev.crm4.dynamics.com", kind="development", tenant_id="t", team=team
    )
    created = admin.post(url, {"name": "Line two", "team": team.pk, "development_environment": dev.pk})
    pipeline = Pipeline.objects.get(name="Line two")
    assert created["Location"] == reverse("deployments:pipeline-detail", args=[pipeline.pk])
    assert AuditEvent.objects.filter(action="pipeline.created", object_id=str(pipeline.pk)).exists()


def test_an_admin_edits_a_stage_and_a_policy_refusal_stands_next_to_its_field(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    url = reverse("deployments:stage-edit", args=[api_world.ids["stage_prod"]])
    page = admin.get(url).content.decode()
    assert '<label for="id_required_approvals">Required approvals</label>' in page
    refused = admin.post(url, _stage_form(api_world, required_approvals=3))
    assert refused.status_code == 200
    assert "3 approval(s) required but only 2 person(s) named on the stage can approve" in refused.content.decode()
    assert Stage.objects.get(pk=api_world.ids["stage_prod"]).required_approvals == 2

    saved = admin.post(url, _stage_form(api_world, import_mode="update", change_reference_required="on"))
    assert saved.status_code == 302
    stage = Stage.objects.get(pk=api_world.ids["stage_prod"])
    assert (stage.import_mode, stage.change_reference_required) == ("update", True)
    event = AuditEvent.objects.filter(action="stage.updated", object_id=str(stage.pk)).latest("seq")
    assert event.after == {"import_mode": "update", "change_reference_required": True}


def test_windows_and_freezes_are_added_refused_and_removed_on_the_stage_page(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    stage_id = api_world.ids["stage_prod"]
    window_url = reverse("deployments:window-create", args=[stage_id])
    added = admin.post(
        window_url, {"weekdays": ["1", "3"], "start_time": "06:00", "end_time": "08:30", "time_zone": "Asia/Tokyo"}
    )
    assert added.status_code == 302
    window = StageWindow.objects.filter(stage_id=stage_id).latest("pk")
    assert (window.weekdays, window.time_zone) == ([1, 3], "Asia/Tokyo")
    bad = admin.post(
        window_url, {"weekdays": ["1"], "start_time": "6 o'clock", "end_time": "08:30", "time_zone": "Mars/Base"}
    )
    assert bad.status_code == 200 and 'id="id_start_time_error"' in bad.content.decode()

    freeze_url = reverse("deployments:freeze-create", args=[stage_id])
    backwards = admin.post(
        freeze_url, {"starts_at": "2031-01-02T00:00", "ends_at": "2031-01-01T00:00", "reason": "Year end"}
    )
    assert backwards.status_code == 200
    assert 'id="id_ends_at_error">Must be after the start.' in backwards.content.decode()
    admin.post(freeze_url, {"starts_at": "2031-01-01T00:00", "ends_at": "2031-01-02T00:00", "reason": "Year end"})
    freeze = StageFreeze.objects.get(stage_id=stage_id, reason="Year end")
    assert freeze.starts_at.isoformat() == "2031-01-01T00:00:00+00:00"

    changed = admin.post(
        reverse("deployments:window-edit", args=[window.pk]),
        {
            f"window-{window.pk}-weekdays": ["2"],
            f"window-{window.pk}-start_time": "07:00",
            f"window-{window.pk}-end_time": "08:30",
            f"window-{window.pk}-time_zone": "Asia/Tokyo",
        },
    )
    assert changed.status_code == 302
    window.refresh_from_db()
    assert (window.weekdays, window.start_time.hour) == ([2], 7)
    ended = f"freeze-{freeze.pk}"
    early = {f"{ended}-starts_at": "2031-01-01T00:00", f"{ended}-reason": "Year end"}
    refused = admin.post(
        reverse("deployments:freeze-edit", args=[freeze.pk]), {**early, f"{ended}-ends_at": "2030-12-31T00:00"}
    )
    assert f'id="id_{ended}-ends_at_error">Must be after the start.' in refused.content.decode()
    admin.post(reverse("deployments:freeze-edit", args=[freeze.pk]), {**early, f"{ended}-ends_at": "2031-01-01T12:00"})
    freeze.refresh_from_db()
    assert freeze.ends_at.isoformat() == "2031-01-01T12:00:00+00:00"
    event = AuditEvent.objects.filter(action="stage_freeze.updated", object_id=str(freeze.pk)).get()
    assert event.after == {"ends_at": "2031-01-01T12:00:00Z"}

    assert admin.post(reverse("deployments:window-delete", args=[window.pk])).status_code == 302
    assert admin.post(reverse("deployments:freeze-delete", args=[freeze.pk])).status_code == 302
    assert not StageWindow.objects.filter(pk=window.pk).exists()
    assert not StageFreeze.objects.filter(pk=freeze.pk).exists()


def test_stages_move_and_a_stage_with_history_is_kept_with_the_reason_shown(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    detail = reverse("deployments:pipeline-detail", args=[api_world.ids["pipeline"]])
    moved = admin.post(reverse("deployments:stage-move", args=[api_world.ids["stage_prod"]]), {"direction": "up"})
    assert moved["Location"] == detail
    page = admin.get(detail).content.decode()
    assert "reorder once they have finished or been cancelled" in page  # the world's promotion is in flight

    admin.post(reverse("deployments:stage-delete", args=[api_world.ids["stage"]]))
    page = admin.get(detail).content.decode()
    assert "promotion(s) into this stage are in flight" in page
    assert Stage.objects.filter(pk=api_world.ids["stage"]).exists()


def test_the_settings_editor_checks_a_version_and_saves_a_new_version_under_its_etag(api_world: Any) -> None:
    from solutions.services import solution_version_upload

    maker = api_world.users["maker"]
    outcome = solution_version_upload(
        file=corpus_file(FLOW_EXCEL),
        user=maker,
        context=AuditContext.for_user(maker, auth_method="session"),
        home_environment=api_world.objects["environments"]["dev"],
    )
    admin = _as(api_world, "admin")
    url = reverse("deployments:stage-settings", args=[api_world.ids["stage_prod"]])
    checked = admin.get(url, {"version": outcome.version.pk}).content.decode()
    assert "Checked against flowexcelgroupbyemailnotificationexample 1.0.0.7" in checked
    assert "gsllc_sharedoffice365_d6869" in checked and "no connection; pre-flight will block" in checked

    filled = admin.get(url, {"version": outcome.version.pk, "fill": "1"}).content.decode()
    assert 'value="gsllc_Excel_Table_Name"' in filled  # a row to fill in, not saved yet
    assert not DeploymentSettings.objects.filter(stage_id=api_world.ids["stage_prod"]).exists()

    rows = _settings_rows(
        [("gsllc_Excel_Table_Name", "Orders"), ("gsllc_Excel_Tabel_Nmae", "typo"), ("", "")],
        [("gsllc_sharedoffice365_d6869", "conn-1", "/providers/Microsoft.PowerApps/apis/shared_office365")],
        etag="",
    )
    saved = admin.post(url, {**rows, "version": outcome.version.pk})
    assert saved.status_code == 302
    current = DeploymentSettings.objects.get(stage_id=api_world.ids["stage_prod"])
    assert [item["SchemaName"] for item in current.document["EnvironmentVariables"]] == [
        "gsllc_Excel_Table_Name",
        "gsllc_Excel_Tabel_Nmae",
    ]
    page = admin.get(saved["Location"]).content.decode()
    assert "Not in flowexcelgroupbyemailnotificationexample 1.0.0.7." in page  # next to the misspelt row

    stale = admin.post(url, rows)  # still the empty ETag of before the first version
    assert "changed by somebody else" in stale.content.decode()
    duplicate = _settings_rows([("A", "1"), ("a", "2")], [], etag=current.etag)
    refused = admin.post(url, duplicate)
    assert "Duplicate of EnvironmentVariables[0]." in refused.content.decode()
    assert DeploymentSettings.objects.filter(stage_id=api_world.ids["stage_prod"]).count() == 1


def test_the_pac_settings_file_is_imported_and_exported(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    stage_id = api_world.ids["stage_prod"]
    document = {
        "EnvironmentVariables": [{"SchemaName": "contoso_ApiUrl", "Value": "https://api.contoso.com"}],
        "ConnectionReferences": [],
    }
    upload = SimpleUploadedFile("settings.json", json.dumps(document).encode(), content_type="application/json")
    imported = admin.post(reverse("deployments:stage-settings-import", args=[stage_id]), {"file": upload, "etag": ""})
    assert imported.status_code == 302
    exported = admin.get(reverse("deployments:stage-settings-export", args=[stage_id]))
    assert exported["Content-Disposition"] == 'attachment; filename="Contoso-prod-settings.json"'
    assert json.loads(exported.content) == document
    assert exported["ETag"].strip('"') == DeploymentSettings.objects.get(stage_id=stage_id).etag

    broken = SimpleUploadedFile("settings.json", b"{not json", content_type="application/json")
    refused = admin.post(
        reverse("deployments:stage-settings-import", args=[stage_id]),
        {"file": broken, "etag": exported["ETag"].strip('"')},
    )
    assert refused.status_code == 200 and "The settings file is not valid JSON." in refused.content.decode()


@pytest.mark.parametrize("persona", ["maker", "approver", "auditor"])
def test_people_who_are_not_admins_change_nothing(api_world: Any, persona: str) -> None:
    client = _as(api_world, persona)
    stage_id = api_world.ids["stage_prod"]
    assert client.post(reverse("deployments:stage-edit", args=[stage_id]), _stage_form(api_world)).status_code == 403
    rows = _settings_rows([("contoso_ApiUrl", "x")], [], etag="")
    assert client.post(reverse("deployments:stage-settings", args=[stage_id]), rows).status_code == 403
    assert client.post(reverse("deployments:pipeline-delete", args=[api_world.ids["pipeline"]])).status_code == 403
    assert not DeploymentSettings.objects.filter(stage_id=stage_id).exists()
    body = client.get(reverse("deployments:pipeline-detail", args=[api_world.ids["pipeline"]])).content.decode()
    assert "Edit pipeline" not in body and "Add a stage" not in body


def test_the_pipeline_history_tab_lists_stage_changes_and_only_readers_get_the_audit_link(api_world: Any) -> None:
    admin = _as(api_world, "admin")
    admin.post(
        reverse("deployments:stage-edit", args=[api_world.ids["stage_prod"]]),
        _stage_form(api_world, import_mode="update"),
    )
    detail = reverse("deployments:pipeline-detail", args=[api_world.ids["pipeline"]])
    auditor_page = _as(api_world, "auditor").get(detail)
    body = auditor_page.content.decode()
    assert 'id="history"' in body
    assert "stage.updated" in [row["action"] for row in auditor_page.context["history"].object_list]
    assert auditor_page.context["history_audit_link"]
    maker_page = _as(api_world, "maker").get(detail)
    assert 'id="history"' in maker_page.content.decode() and maker_page.context["history_audit_link"] == ""
    # prod needs 2 approvals and names exactly 2 people who can approve.
    assert "needs every named approver" in body
