"""The dev → test → prod → rollback story through the API only, on the emulator (issue 6 "must show").

Every step a person or a CI pipeline takes is an HTTP request with a bearer token; the only thing
outside the API is the worker, played inline: the test runs the jobs the API responses name with
job_run_now (a real worker would pick up the same rows).
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    BASE_TABLES,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
    upload_file,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
WITH_EXTRA = (*BASE_TABLES, "ud_testentity9")


class Caller:
    """One persona's API client; every response is checked for its expected status."""

    def __init__(self, token: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def get(self, url: str, status: int = 200) -> Any:
        response = self.client.get(url)
        assert response.status_code == status, response.json()
        return response.json()

    def post(self, url: str, body: Any = None, status: int = 200, **kwargs: Any) -> Any:
        fmt = "multipart" if "file" in (body or {}) else "json"
        response = self.client.post(url, body or {}, format=fmt, **kwargs)
        assert response.status_code == status, response.json()
        return response.json()


def run_jobs(promotion: dict[str, Any], kind: str) -> None:
    """The worker's part: run the promotion's job of `kind` to its end."""
    [job] = [job for job in promotion["jobs"] if job["kind"] == kind]
    assert job_run_now(Job.objects.get(pk=job["id"])).status == "succeeded"


@pytest.fixture
def people(contoso, token_for):
    return {
        "maker": Caller(token_for(contoso.maker, scopes=["read", "request"])),
        "approver": Caller(token_for(contoso.approvers[0], scopes=["read", "approve"])),
        "approver2": Caller(token_for(contoso.approvers[1], scopes=["read", "approve"])),
    }


def test_dev_to_test_to_prod_and_back_through_the_api_only(contoso, people):
    maker, approver, approver2 = people["maker"], people["approver"], people["approver2"]
    dev = contoso.environments["dev"]

    def upload(version: str, tables=BASE_TABLES) -> dict[str, Any]:
        package = upload_file(success_package(version, tables), f"Success_{version.replace('.', '_')}_managed.zip")
        return maker.post("/api/v1/versions/", {"file": package, "home_environment": dev.pk}, status=201)

    def promote(version_id: int, stage: str, approvers: list[Caller]) -> dict[str, Any]:
        pipeline = maker.get(f"/api/v1/pipelines/{contoso.pipeline.pk}/")
        stage_id = next(row["id"] for row in pipeline["stages"] if row["name"] == stage)
        promotion = maker.post(
            "/api/v1/promotions/",
            {"version": version_id, "stage": stage_id, "justification": f"Release to {stage}"},
            status=201,
            HTTP_IDEMPOTENCY_KEY=f"promote-{version_id}-{stage}",
        )
        assert (promotion["kind"], promotion["status"]) == ("deploy", "pending_approval")
        run_jobs(promotion, "preflight")
        url = f"/api/v1/promotions/{promotion['id']}/"
        assert maker.get(url)["preflight"]["status"] in ("passed", "warnings")
        for person in approvers:
            promotion = person.post(url + "approve/", {"comment": "ok"})
        assert promotion["status"] == "queued"
        run_jobs(promotion, "import")
        done = maker.get(url)
        assert done["status"] == "succeeded", done["error"]
        return done

    first = upload("1.1.0.0")
    assert first["solution"]["unique_name"] == "Success"
    in_test = promote(first["id"], "test", [approver])
    assert in_test["previous_version"] == ""
    in_prod = promote(first["id"], "prod", [approver, approver2])
    assert contoso.installed("prod")["version"] == "1.1.0.0"

    second = upload("1.2.0.0", WITH_EXTRA)
    promote(second["id"], "test", [approver])
    replaced = promote(second["id"], "prod", [approver, approver2])
    assert replaced["previous_version"] == "1.1.0.0"
    assert contoso.installed("prod")["version"] == "1.2.0.0"
    job = maker.get(f"/api/v1/jobs/{next(j['id'] for j in replaced['jobs'] if j['kind'] == 'import')}/")
    assert job["dataverse"]["async_operation_id"] and job["import_results"]

    url = f"/api/v1/promotions/{replaced['id']}/"
    plan = {entry["strategy"]: entry for entry in maker.get(url + "rollback-plan/")["strategies"]}
    assert plan["reversion_update"]["available"] is True
    assert plan["uninstall_reinstall"]["requires_admin"] is True
    old_url = f"/api/v1/promotions/{in_prod['id']}/"
    refused = maker.client.post(old_url + "rollback/", {"strategy": "reversion_update", "justification": "x"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_latest_deployment"

    rollback = maker.post(
        url + "rollback/", {"strategy": "reversion_update", "justification": "1.2 breaks reports"}, status=201
    )
    assert (rollback["kind"], rollback["rollback_of"], rollback["required_approvals"]) == (
        "rollback",
        replaced["id"],
        2,
    )
    run_jobs(rollback, "preflight")
    rollback_url = f"/api/v1/promotions/{rollback['id']}/"
    approver.post(rollback_url + "approve/")
    rollback = approver2.post(rollback_url + "approve/")
    run_jobs(rollback, "import")

    assert maker.get(rollback_url)["status"] == "succeeded"
    assert maker.get(url)["status"] == "rolled_back"
    assert contoso.installed("prod")["version"] == plan["reversion_update"]["resulting_version"] == "1.2.0.1"
    listed = maker.get(f"/api/v1/promotions/?solution={first['solution']['id']}&page_size=200")
    assert [row["status"] for row in listed["results"]].count("succeeded") == 4
