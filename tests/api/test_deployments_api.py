"""Promotions, pipelines, stage settings and jobs over the API: the contract's fields, the actions,
mass assignment refused, visibility, ETags, and SQL per list request independent of the page size."""

from __future__ import annotations

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.models import Job
from deployments import workflow
from deployments.models import Promotion

pytestmark = pytest.mark.django_db

WORKER = AuditContext.worker(request_id="req-api-test")
PROMOTION_FIELDS = {
    "id",
    "kind",
    "status",
    "solution",
    "version",
    "stage",
    "target_environment",
    "requested_by",
    "requested_at",
    "scheduled_for",
    "change_reference",
    "required_approvals",
    "approvals",
    "preflight",
    "jobs",
    "result",
    "previous_version",
    "rollback_of",
    "attention_required",
}


def preflight_passed(promotion_id: int) -> None:
    workflow.promotion_preflight_finished(
        promotion_id=promotion_id, status="passed", result={"status": "passed", "checks": []}, context=WORKER
    )


def test_a_promotion_has_the_contract_fields(api_world):
    body = api_world.client("maker").get(f"/api/v1/promotions/{api_world.ids['promotion']}/").json()
    assert set(body) >= PROMOTION_FIELDS
    assert body["kind"] == "deploy" and body["status"] == "pending_approval"
    assert body["solution"] == {"id": api_world.ids["solution"], "unique_name": "Success"}
    assert body["version"] == {"id": api_world.ids["version"], "version": "1.1.0.0"}
    assert body["stage"]["name"] == "test" and body["target_environment"]["name"] == "contoso-test"
    assert body["requested_by"]["username"] == "maker"
    assert body["required_approvals"] == 1 and body["approvals"] == []
    assert body["preflight"]["status"] == "pending"
    assert [job["kind"] for job in body["jobs"]] == ["preflight"]
    assert body["requested_at"].endswith("Z")


def test_approve_answers_the_full_promotion_and_maps_the_decision(api_world):
    preflight_passed(api_world.ids["promotion"])
    response = api_world.client("approver").post(
        f"/api/v1/promotions/{api_world.ids['promotion']}/approve/", {"comment": "Looks good"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= PROMOTION_FIELDS
    assert body["status"] == "queued"
    [approval] = body["approvals"]
    assert (approval["decision"], approval["comment"], approval["approver"]["username"]) == (
        "approved",
        "Looks good",
        "approver",
    )
    assert {job["kind"] for job in body["jobs"]} == {"preflight", "import"}


@pytest.mark.parametrize("action", ["reject", "cancel"])
@pytest.mark.parametrize("comment", [None, "", "x" * 2001])
def test_reject_and_cancel_need_a_comment_of_1_to_2000_characters(api_world, action, comment):
    preflight_passed(api_world.ids["promotion"])
    persona = "approver" if action == "reject" else "maker"
    body = {} if comment is None else {"comment": comment}
    response = api_world.client(persona).post(
        f"/api/v1/promotions/{api_world.ids['promotion']}/{action}/", body, format="json"
    )
    assert response.status_code == 400
    assert "comment" in response.json()["error"]["details"]


def test_reject_is_final_and_shows_the_rejection(api_world):
    preflight_passed(api_world.ids["promotion"])
    response = api_world.client("approver").post(
        f"/api/v1/promotions/{api_world.ids['promotion']}/reject/", {"comment": "Not this week"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["approvals"][0]["decision"] == "rejected"
    again = api_world.client("approver").post(
        f"/api/v1/promotions/{api_world.ids['promotion']}/approve/", {}, format="json"
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    assert again.json()["error"]["details"] == {"current": "rejected", "allowed": ["pending_approval"]}


def test_a_requester_cannot_approve_their_own_promotion(api_world):
    from alm_portal.accounts import services

    preflight_passed(api_world.ids["promotion"])
    approver = api_world.users["approver"]
    own = workflow.promotion_request(
        version=api_world.objects["versions"]["1.0"],
        stage=api_world.objects["stages"]["test"],
        requested_by=approver,
        context=AuditContext.for_user(approver, auth_method="session"),
        comment="mine",
    )
    preflight_passed(own.pk)
    del services
    response = api_world.client("approver").post(f"/api/v1/promotions/{own.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "self_approval_forbidden"


def test_mass_assignment_is_refused(api_world):
    maker = api_world.client("maker")
    world = api_world.ids
    cancelled = maker.post(f"/api/v1/promotions/{world['promotion']}/cancel/", {"comment": "redo"}, format="json")
    assert cancelled.status_code == 200
    response = maker.post(
        "/api/v1/promotions/",
        {
            "version": world["version"],
            "stage": world["stage"],
            "justification": "try",
            "status": "succeeded",
            "approvals": [{"approver": 1, "decision": "approved"}],
            "target_environment": world["environment"],
        },
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"status", "approvals", "target_environment"}
    assert not Promotion.objects.filter(status="succeeded").exists()

    environment_url = maker.patch(
        f"/api/v1/environments/{world['environment']}/", {"url": "https://evil.example.com"}, format="json"
    )
    assert environment_url.status_code == 403
    approve_self = maker.post(f"/api/v1/promotions/{world['promotion']}/approve/", {"comment": "me"}, format="json")
    assert approve_self.status_code == 403


def test_a_stage_of_another_pipeline_is_refused(api_world, make_user):
    from deployments.services import pipeline_create, stage_add
    from environments.models import Environment

    team = api_world.users["maker"].teams.get()
    dev = Environment.objects.create(
        name="other-dev", url="https://other-dev.crm4.dynamics.com", kind="development", tenant_id="t", team=team
    )
    target = Environment.objects.create(
        name="other-test", url="https://other-test.crm4.dynamics.com", kind="test", tenant_id="t", team=team
    )
    other = pipeline_create(name="Other", team=team, development_environment=dev, context=AuditContext.system())
    stage = stage_add(pipeline=other, name="test", target_environment=target, context=AuditContext.system())
    response = api_world.client("maker").post(
        "/api/v1/promotions/",
        {"version": api_world.ids["old_version"], "stage": stage.pk, "justification": "wrong pipeline"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "stage_not_in_pipeline"


def test_approvers_of_another_team_see_the_promotions_of_stages_naming_them(api_world, make_user):
    from alm_portal.accounts import services
    from deployments.services import stage_update

    fabrikam = api_world.users["maker2"].teams.get()
    outside_approver = make_user("fabrikam-approver", "approver", fabrikam)
    token = services.api_token_create(user=outside_approver, scopes=["read"], context=AuditContext.system())[1]
    client = api_world.client("anonymous")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/v1/promotions/{api_world.ids['promotion']}/"
    assert client.get(url).status_code == 404

    stage = api_world.objects["stages"]["test"]
    stage_update(
        stage=stage, approver_users=[api_world.users["approver"], outside_approver], context=AuditContext.system()
    )
    assert client.get(url).status_code == 200
    assert client.get("/api/v1/promotions/").json()["count"] == 1


def test_list_filters_and_the_kind_mapping(api_world):
    maker = api_world.client("maker")
    assert maker.get("/api/v1/promotions/?kind=deploy").json()["count"] == 1
    assert maker.get("/api/v1/promotions/?kind=rollback").json()["count"] == 0
    assert maker.get("/api/v1/promotions/?status=pending_approval&stage_name=test").json()["count"] == 1
    assert maker.get("/api/v1/promotions/?status=succeeded").json()["count"] == 0
    bad = maker.get("/api/v1/promotions/?kind=promotion")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


def test_stage_settings_use_etags(api_world):
    admin = api_world.client("admin")
    url = f"/api/v1/stages/{api_world.ids['stage']}/settings/"
    first = admin.get(url)
    assert first.status_code == 200
    assert first.json() == {"EnvironmentVariables": [], "ConnectionReferences": []}
    document = {"EnvironmentVariables": [{"SchemaName": "contoso_ApiUrl", "Value": "https://api.contoso.com"}]}

    saved = admin.put(url, document, format="json", HTTP_IF_MATCH=first["ETag"])
    assert saved.status_code == 200
    assert saved.json()["EnvironmentVariables"][0]["SchemaName"] == "contoso_ApiUrl"
    assert saved["ETag"] != first["ETag"]

    stale = admin.put(url, {"EnvironmentVariables": []}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["details"]["current_etag"] == saved["ETag"].strip('"')
    missing = admin.put(url, {"EnvironmentVariables": []}, format="json")
    assert missing.status_code == 412
    assert admin.get(url)["ETag"] == saved["ETag"]


def test_admins_create_a_pipeline_with_nested_stages_windows_and_freezes(api_world):
    world = api_world.objects
    team = api_world.users["maker"].teams.get()
    from environments.models import Environment

    dev = Environment.objects.create(
        name="new-dev", url="https://new-dev.crm4.dynamics.com", kind="development", tenant_id="t", team=team
    )
    response = api_world.client("admin").post(
        "/api/v1/pipelines/",
        {
            "name": "New line",
            "team": team.pk,
            "development_environment": dev.pk,
            "stages": [
                {
                    "name": "uat",
                    "environment": world["environments"]["test"].pk,
                    "required_approvals": 2,
                    "approver_users": [api_world.users["approver"].pk, api_world.users["approver2"].pk],
                    "change_reference_required": True,
                    "import_mode": "update",
                    "windows": [{"days": [1, 2, 3], "start": "08:00", "end": "17:00", "time_zone": "Europe/Berlin"}],
                    "freezes": [{"start": "2030-12-20T00:00:00Z", "end": "2031-01-02T00:00:00Z", "reason": "Holidays"}],
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    [stage] = response.json()["stages"]
    assert stage["environment"]["name"] == "contoso-test"
    assert (stage["required_approvals"], stage["import_mode"], stage["change_reference_required"]) == (
        2,
        "update",
        True,
    )
    assert stage["approvers"]["users"][0]["username"] == "approver"
    assert stage["windows"][0] | {"id": 0} == {
        "id": 0,
        "days": [1, 2, 3],
        "start": "08:00",
        "end": "17:00",
        "time_zone": "Europe/Berlin",
    }
    assert stage["freezes"][0]["reason"] == "Holidays"

    invalid = api_world.client("admin").post(
        "/api/v1/pipelines/",
        {
            "name": "Broken",
            "team": team.pk,
            "development_environment": dev.pk,
            "stages": [{"name": "x", "environment": 999999}],
        },
        format="json",
    )
    assert invalid.status_code == 400
    from deployments.models import Pipeline

    assert not Pipeline.objects.filter(name="Broken").exists()  # all or nothing


def test_job_detail_shows_dataverse_handles_results_errors_and_log(api_world):
    job = Job.objects.get(pk=api_world.ids["job"])
    Job.objects.filter(pk=job.pk).update(
        async_operation_id="a1b2",
        error_code="MissingDependency",
        error_message="Needs contoso_Core",
        result={
            "import_job_id": "c3d4",
            "components": [{"name": "ud_x", "type": 1, "result": "failure", "message": "m"}],
        },
    )
    body = api_world.client("maker").get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["dataverse"] == {"async_operation_id": "a1b2", "import_job_key": "c3d4"}
    assert body["error"] == {"code": "MissingDependency", "message": "Needs contoso_Core"}
    assert body["import_results"] == [{"component": "ud_x", "type": "1", "result": "failure", "message": "m"}]
    assert [entry["action"] for entry in body["log"]] == ["job.enqueued"]
    assert 0 <= body["progress"] <= 100 and "started_at" in body and "attempts" in body


def test_an_admin_resolves_a_job_that_needs_attention_and_its_promotion_with_it(api_world):
    promotion_id = api_world.ids["promotion"]
    preflight_passed(promotion_id)
    workflow.promotion_approve(
        promotion=Promotion.objects.get(pk=promotion_id),
        user=api_world.users["approver"],
        context=AuditContext.for_user(api_world.users["approver"], auth_method="session"),
    )
    promotion = Promotion.objects.get(pk=promotion_id)
    workflow.promotion_mark_running(
        promotion_id=promotion_id, job_id=promotion.run_job_id, previous_version="1.0.0.0", context=WORKER
    )
    Job.objects.filter(pk=promotion.run_job_id).update(status="needs_attention")
    url = f"/api/v1/jobs/{promotion.run_job_id}/resolve/"

    not_admin = api_world.client("approver").post(url, {"succeeded": True, "note": "checked"}, format="json")
    assert not_admin.status_code == 403
    response = api_world.client("admin").post(url, {"succeeded": True, "note": "Installed, checked"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert Promotion.objects.get(pk=promotion_id).status == "succeeded"
    again = api_world.client("admin").post(url, {"succeeded": True, "note": "again"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"


# --- SQL per list request ---------------------------------------------------------------------------


def _more_promotions(api_world, count: int) -> None:
    versions = api_world.objects["versions"]
    stage = api_world.objects["stages"]["test"]
    for index in range(count):
        promotion = workflow.promotion_request(
            version=versions["1.0"],
            stage=stage,
            requested_by=api_world.users["maker"],
            context=AuditContext.system(),
            comment=f"#{index}",
        )
        preflight_passed(promotion.pk)
        workflow.promotion_approve(
            promotion=promotion,
            user=api_world.users["approver"],
            context=AuditContext.for_user(api_world.users["approver"], auth_method="session"),
        )
        # One open promotion per version and stage: close this one before asking again.
        workflow.promotion_cancel(
            promotion=promotion, user=api_world.users["maker"], comment="next", context=AuditContext.system()
        )


@pytest.mark.parametrize(
    ("url", "queries"),
    [("/api/v1/promotions/", 6), ("/api/v1/pipelines/", 8), ("/api/v1/jobs/", 3), ("/api/v1/audit-events/", 8)],
)
def test_queries_per_list_request_do_not_depend_on_the_page_size(api_world, url, queries, django_assert_num_queries):
    from deployments.services import pipeline_create, stage_add
    from environments.models import Environment

    _more_promotions(api_world, 3)
    team = api_world.objects["environments"]["test"].team
    uat = Environment.objects.create(
        name="contoso-uat", url="https://contoso-uat.crm4.dynamics.com", kind="test", tenant_id="t", team=team
    )
    stage_add(
        pipeline=api_world.objects["pipeline"],
        name="uat",
        target_environment=uat,
        approver_users=[api_world.users["approver"]],
        context=AuditContext.system(),
    )
    # A second pipeline, so that a page of one leaves pipelines out too.
    hotfix_dev = Environment.objects.create(
        name="hotfix-dev", url="https://hotfix-dev.crm4.dynamics.com", kind="development", tenant_id="t", team=team
    )
    hotfix = pipeline_create(
        name="Hotfix", team=team, development_environment=hotfix_dev, context=AuditContext.system()
    )
    stage_add(pipeline=hotfix, name="test", target_environment=uat, context=AuditContext.system())
    client = api_world.client("admin")
    client.get(url)  # the first call of a minute also records the token's last use
    for size in (1, 200):
        with django_assert_num_queries(queries):
            response = client.get(f"{url}?page_size={size}")
        assert response.status_code == 200
        body = response.json()
        if size == 1:
            assert len(body["results"]) == 1 and body["next"]  # more rows than the page holds
        else:
            assert len(body["results"]) > 1 and body["next"] is None  # every row on one page


# --- names where almctl has names (issue 13, item 11) ----------------------------------------------------


def test_a_promotion_may_name_its_solution_version_pipeline_and_stage(api_world):
    maker = api_world.client("maker")
    by_names = maker.post(
        "/api/v1/promotions/",
        {"solution": "success", "version": "1.0.0.0", "pipeline": "contoso", "stage": "TEST", "justification": "CI"},
        format="json",
    )
    assert by_names.status_code == 201, by_names.json()
    body = by_names.json()
    assert body["version"] == {"id": api_world.ids["old_version"], "version": "1.0.0.0"}
    assert body["stage"] == {"id": api_world.ids["stage"], "name": "test"}
    # Without a pipeline the solution's own is meant; a short version string is a version too.
    prod = maker.post(
        "/api/v1/promotions/", {"solution": "Success", "version": "1.1", "stage": "prod", "justification": "CI"}
    )
    assert prod.status_code == 409 and prod.json()["error"]["code"] == "previous_stage_not_succeeded"


def test_numeric_ids_keep_working_as_numbers_and_as_digit_strings(api_world):
    maker = api_world.client("maker")
    version, stage = api_world.ids["old_version"], api_world.ids["stage"]
    created = maker.post("/api/v1/promotions/", {"version": str(version), "stage": str(stage), "justification": "x"})
    assert created.status_code == 201, created.json()
    assert created.json()["version"]["id"] == version
    # Ids and names may be mixed; a name that contradicts an id is refused.
    mixed = maker.post(
        "/api/v1/promotions/",
        {"version": version, "solution": "Other", "stage": "test", "justification": "x"},
        format="json",
    )
    assert mixed.status_code == 400
    assert mixed.json()["error"]["details"] == {"solution": [f"Version {version} is of Success, not Other."]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"version": "1.0.0.0", "stage": "test"}, "solution", "Required when `version` is a version string"),
        ({"solution": "Nope", "version": "1.0.0.0", "stage": "test"}, "solution", "No solution 'Nope' among yours."),
        ({"solution": "Success", "version": "9.9", "stage": "test"}, "version", "Success has no version 9.9"),
        ({"solution": "Success", "version": "1.0.0.0", "stage": "uat"}, "stage", "(stages: test, prod)"),
        ({"solution": "Success", "version": "1.0.0.0", "stage": "test", "pipeline": "X"}, "pipeline", "No pipeline"),
        ({"solution": "Success", "version": True, "stage": "test"}, "version", "Give an id (an integer) or a name"),
    ],
)
def test_names_that_match_nothing_are_refused_per_field(api_world, body, field, message):
    response = api_world.client("maker").post("/api/v1/promotions/", {**body, "justification": "x"}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error" and list(error["details"]) == [field]
    assert message in error["details"][field][0]


def test_the_schema_documents_ids_or_names(api_world):
    schema = api_world.client("maker").get("/api/schema/?format=json").json()
    create = schema["components"]["schemas"]["PromotionCreate"]["properties"]
    assert {choice["type"] for choice in create["version"]["oneOf"]} == {"integer", "string"}
    assert {choice["type"] for choice in create["stage"]["oneOf"]} == {"integer", "string"}
    assert "solution" in create and "pipeline" in create


def test_the_schema_names_every_job_kind_for_the_jobs_api(api_world):
    # Each app registers its own kinds with the job engine, so the model's field is open; the API still tells
    # its clients every kind a job can have, in the response and in the ?kind= filter.
    schema = api_world.client("auditor").get("/api/schema/?format=json").json()
    every_kind = sorted(JobKind.values)

    assert sorted(schema["components"]["schemas"]["JobKindEnum"]["enum"]) == every_kind
    assert schema["components"]["schemas"]["Job"]["properties"]["kind"]["allOf"] == [
        {"$ref": "#/components/schemas/JobKindEnum"}
    ]
    kind_filter = next(p for p in schema["paths"]["/api/v1/jobs/"]["get"]["parameters"] if p["name"] == "kind")
    assert sorted(kind_filter["schema"]["enum"]) == every_kind
