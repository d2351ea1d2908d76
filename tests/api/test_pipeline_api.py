"""Pipeline and stage writes over the API: PUT/PATCH/DELETE, reorder, nested windows and freezes,
refusals with their codes, mass assignment refused, and admins only."""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from deployments.models import Pipeline, Stage, StageFreeze, StageWindow

pytestmark = pytest.mark.django_db


def _environment(world, name, kind="test"):
    from environments.models import Environment

    return Environment.objects.create(
        name=name,
        url=f"https://{name}.crm4.dynamics.com",
        kind=kind,
        tenant_id="t",
        team=world.objects["environments"]["test"].team,
    )


def _error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


def test_an_admin_replaces_and_patches_a_pipeline(api_world):
    admin = api_world.client("admin")
    url = f"/api/v1/pipelines/{api_world.ids['pipeline']}/"
    team = api_world.objects["pipeline"].team
    dev = api_world.objects["environments"]["dev"]
    body = {"name": "Contoso apps", "team": team.pk, "development_environment": dev.pk, "description": "Main line"}
    replaced = admin.put(url, body, format="json")
    assert replaced.status_code == 200, replaced.json()
    assert (replaced.json()["name"], replaced.json()["description"]) == ("Contoso apps", "Main line")
    assert [stage["name"] for stage in replaced.json()["stages"]] == ["test", "prod"]

    patched = admin.patch(url, {"description": ""}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == ""
    event = AuditEvent.objects.filter(action="pipeline.updated").order_by("-seq").first()
    assert event.after == {"description": ""}

    incomplete = admin.put(url, {"name": "Only a name"}, format="json")
    assert set(_error(incomplete, 400, "validation_error")["details"]) == {"team", "development_environment"}


def test_mass_assignment_on_pipelines_and_stages_is_refused(api_world):
    admin = api_world.client("admin")
    pipeline = admin.patch(
        f"/api/v1/pipelines/{api_world.ids['pipeline']}/", {"id": 99, "created_at": "x"}, format="json"
    )
    assert set(_error(pipeline, 400, "validation_error")["details"]) == {"id", "created_at"}
    stage = admin.patch(f"/api/v1/stages/{api_world.ids['stage']}/", {"order": 5, "pipeline": 1}, format="json")
    assert set(_error(stage, 400, "validation_error")["details"]) == {"order", "pipeline"}
    assert Stage.objects.get(pk=api_world.ids["stage"]).order == 1


@pytest.mark.parametrize("persona", ["maker", "approver", "auditor", "readonly"])
def test_only_admins_write_pipelines_and_stages(api_world, persona):
    client = api_world.client(persona)
    pipeline_url = f"/api/v1/pipelines/{api_world.ids['pipeline']}/"
    stage_url = f"/api/v1/stages/{api_world.ids['stage_prod']}/"
    for response in (
        client.patch(pipeline_url, {"description": "mine"}, format="json"),
        client.delete(stage_url),
        client.post(f"{pipeline_url}reorder/", {"stages": [1]}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] in ("permission_denied", "scope_insufficient")
    assert Stage.objects.filter(pk=api_world.ids["stage_prod"]).exists()


def test_a_pipeline_in_use_is_not_deleted_and_an_unused_one_is(api_world):
    admin = api_world.client("admin")
    used = admin.delete(f"/api/v1/pipelines/{api_world.ids['pipeline']}/")
    error = _error(used, 409, "invalid_state")
    assert error["details"]["promotions"] == 1
    created = admin.post(
        "/api/v1/pipelines/",
        {
            "name": "Scratch",
            "team": api_world.objects["pipeline"].team_id,
            "development_environment": _environment(api_world, "scratch-dev", "development").pk,
        },
        format="json",
    )
    assert created.status_code == 201
    assert admin.delete(f"/api/v1/pipelines/{created.json()['id']}/").status_code == 204
    assert not Pipeline.objects.filter(name="Scratch").exists()


def test_stages_are_reordered_and_a_stage_with_history_stays(api_world):
    admin = api_world.client("admin")
    test, prod = api_world.ids["stage"], api_world.ids["stage_prod"]
    url = f"/api/v1/pipelines/{api_world.ids['pipeline']}/reorder/"
    # The world's promotion into test is waiting for approval: it was gated under this order.
    _error(admin.post(url, {"stages": [prod, test]}, format="json"), 409, "invalid_state")
    _error(admin.post(url, {"stages": [prod]}, format="json"), 400, "validation_error")
    _error(admin.delete(f"/api/v1/stages/{test}/"), 409, "invalid_state")

    from alm_portal.audit.context import AuditContext
    from deployments import workflow

    maker = api_world.users["maker"]
    for promotion in Stage.objects.get(pk=test).promotions.all():
        context = AuditContext.for_user(maker, auth_method="session")
        workflow.promotion_cancel(promotion=promotion, user=maker, comment="Not now", context=context)
    reordered = admin.post(url, {"stages": [prod, test]}, format="json")
    assert reordered.status_code == 200
    assert [(s["name"], s["order"]) for s in reordered.json()["stages"]] == [("prod", 1), ("test", 2)]

    assert admin.delete(f"/api/v1/stages/{prod}/").status_code == 204
    assert list(Stage.objects.filter(pipeline_id=api_world.ids["pipeline"]).values_list("name", "order")) == [
        ("test", 1)
    ]


def test_put_of_a_stage_replaces_its_fields_windows_and_freezes(api_world):
    admin = api_world.client("admin")
    url = f"/api/v1/stages/{api_world.ids['stage_prod']}/"
    assert admin.patch(url, {"activate_flows_and_plugins": False}, format="json").status_code == 200
    body = {
        "name": "production",
        "environment": api_world.objects["environments"]["prod"].pk,
        "required_approvals": 1,
        "approver_users": [api_world.users["approver"].pk],
        "import_mode": "update",
        "change_reference_required": True,
        "change_reference_pattern": r"CHG\d+",
        "windows": [{"days": [1, 2, 3, 4, 5], "start": "18:00", "end": "06:00", "time_zone": "America/New_York"}],
        "freezes": [],
    }
    response = admin.put(url, body, format="json")
    assert response.status_code == 200, response.json()
    stage = response.json()
    assert (stage["name"], stage["required_approvals"], stage["import_mode"]) == ("production", 1, "update")
    assert stage["activate_flows_and_plugins"] is True  # omitted from the PUT: back to its default
    assert [w["time_zone"] for w in stage["windows"]] == ["America/New_York"]
    assert stage["freezes"] == []
    assert StageFreeze.objects.filter(stage_id=api_world.ids["stage_prod"]).count() == 0

    too_many = admin.patch(url, {"required_approvals": 3}, format="json")
    assert "required_approvals" in _error(too_many, 400, "validation_error")["details"]
    taken = admin.patch(url, {"environment": api_world.objects["environments"]["test"].pk}, format="json")
    assert "target_environment" in _error(taken, 400, "validation_error")["details"]
    bad_zone = admin.patch(
        url,
        {"windows": [{"days": [1], "start": "08:00", "end": "09:00", "time_zone": "Europe/Atlantis"}]},
        format="json",
    )
    _error(bad_zone, 400, "validation_error")
    assert StageWindow.objects.get(stage_id=api_world.ids["stage_prod"]).time_zone == "America/New_York"


def test_a_window_is_changed_through_its_own_endpoint(api_world):
    admin = api_world.client("admin")
    url = f"/api/v1/stages/{api_world.ids['stage_prod']}/windows/{api_world.ids['window']}/"
    changed = admin.patch(url, {"start": "07:30", "end": "19:00"}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["start"], changed.json()["end"], changed.json()["time_zone"]) == (
        "07:30",
        "19:00",
        "Europe/Berlin",
    )
    _error(admin.patch(url, {"time_zone": "Nowhere/Land"}, format="json"), 400, "validation_error")
    other_stage = f"/api/v1/stages/{api_world.ids['stage']}/windows/{api_world.ids['window']}/"
    _error(admin.patch(other_stage, {"start": "07:30"}, format="json"), 404, "not_found")


def test_a_ci_checks_the_stage_settings_against_a_version_before_requesting(api_world):
    from alm_portal.audit.context import AuditContext
    from solutions.services import solution_version_upload
    from tests.support.api import corpus_file

    maker = api_world.users["maker"]
    version = solution_version_upload(
        file=corpus_file("flow-excel-groupbyemail-notification-example.v1_0_0_7.zip"),
        user=maker,
        context=AuditContext.for_user(maker, auth_method="session"),
        home_environment=api_world.objects["environments"]["dev"],
    ).version
    url = f"/api/v1/stages/{api_world.ids['stage_prod']}/settings/check/"
    client = api_world.client("maker")
    before = client.get(url, {"version": version.pk})
    assert before.status_code == 200
    body = before.json()
    assert body["settings_version"] is None and body["complete"] is False
    assert len(body["missing"]["ConnectionReferences"]) == 3
    assert body["version"] == {"id": version.pk, "version": "1.0.0.7", "solution": version.solution.unique_name}

    admin = api_world.client("admin")
    settings_url = f"/api/v1/stages/{api_world.ids['stage_prod']}/settings/"
    document = {"EnvironmentVariables": [{"SchemaName": "gsllc_Excel_Tabel_Name", "Value": "typo"}]}
    assert admin.put(settings_url, document, format="json", HTTP_IF_MATCH='""').status_code == 200
    after = client.get(url, {"version": version.pk}).json()
    assert after["settings_version"] == 1
    assert after["unknown"] == {"EnvironmentVariables": ["gsllc_Excel_Tabel_Name"], "ConnectionReferences": []}

    for unknown in ("999999", "abc", ""):
        _error(client.get(url, {"version": unknown}), 400, "validation_error")
