"""The solutions/ and versions/ API: contract fields, status codes, visibility, scopes and query counts."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_portal.jobs.models import Job
from environments.models import Environment, InventoryInterval
from solutions import services
from solutions.models import Solution, SolutionVersion
from tests.solutions.conftest import (
    INCIDENT_102_MANAGED,
    INCIDENT_102_UNMANAGED,
    INCIDENT_104_UNMANAGED,
    corpus_bytes,
    reversioned,
    upload_file,
)

pytestmark = pytest.mark.django_db

SOLUTIONS = "/api/v1/solutions/"
VERSIONS = "/api/v1/versions/"


def _bearer(text: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {text}"}


@pytest.fixture
def as_user(api_client, token_for):
    """as_user(user, scopes=None) -> an API client authenticated with a token of the user's role scopes."""

    from alm_portal.accounts import policy

    tokens: dict[int, str] = {}

    def _as(user):
        if user.pk not in tokens:
            tokens[user.pk] = token_for(user, sorted(policy.role_scopes(user.role)), name=f"tests-{user.username}")
        api_client.credentials(**_bearer(tokens[user.pk]))
        return api_client

    return _as


@pytest.fixture
def incident(maker, upload):
    """IncidentReporting with 1.0.0.2 (both flavours) and 1.0.0.4 (unmanaged), owned by Contoso."""
    upload(maker, INCIDENT_102_UNMANAGED, release_notes="first")
    upload(maker, INCIDENT_102_MANAGED)
    upload(maker, INCIDENT_104_UNMANAGED)
    return Solution.objects.get(unique_name="IncidentReporting")


def _version(solution, key):
    return SolutionVersion.objects.get(solution=solution, version_key=key)


def _post_zip(client, data, url=VERSIONS, **fields):
    return client.post(url, {"file": upload_file(data, "package.zip"), **fields}, format="multipart")


# --- solutions/ -----------------------------------------------------------------------------------


def test_solution_list_has_the_contract_fields(as_user, maker, incident, team):
    response = as_user(maker).get(SOLUTIONS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    [item] = body["results"]
    assert item == {
        "id": incident.pk,
        "unique_name": "IncidentReporting",
        "display_name": incident.display_name,
        "publisher": {"unique_name": "Shaheer", "prefix": "sa"},
        "team": {"id": team.pk, "name": "Contoso"},
        "pipeline": None,
        "home_environment": None,
        "latest_version": {"id": _version(incident, "1.0.0.4").pk, "version": "1.0.0.4"},
        "deployed": [],
        "created_at": item["created_at"],
    }
    assert item["created_at"].endswith("Z")


def test_solutions_of_other_teams_are_invisible(as_user, outsider, incident):
    client = as_user(outsider)
    assert client.get(SOLUTIONS).json()["count"] == 0
    for url in (f"{SOLUTIONS}{incident.pk}/", f"{SOLUTIONS}{incident.pk}/versions/"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_admins_and_auditors_see_every_solution(as_user, admin_user, auditor, incident):
    for user in (admin_user, auditor):
        assert as_user(user).get(SOLUTIONS).json()["count"] == 1
        assert as_user(user).get(f"{SOLUTIONS}{incident.pk}/").status_code == 200


def test_anonymous_gets_401_everywhere(api_client, incident):
    version = _version(incident, "1.0.0.2")
    for method, url in [
        ("get", SOLUTIONS),
        ("post", SOLUTIONS),
        ("get", f"{SOLUTIONS}{incident.pk}/"),
        ("get", f"{SOLUTIONS}{incident.pk}/versions/"),
        ("post", f"{SOLUTIONS}{incident.pk}/export/"),
        ("get", VERSIONS),
        ("post", VERSIONS),
        ("post", f"{VERSIONS}upload/"),
        ("get", f"{VERSIONS}{version.pk}/"),
        ("get", f"{VERSIONS}{version.pk}/download/"),
        ("get", f"{VERSIONS}{version.pk}/diff/?against={version.pk}"),
        ("get", f"{VERSIONS}{version.pk}/diff/{version.pk}/"),
    ]:
        response = getattr(api_client, method)(url)
        assert response.status_code == 401, (method, url)
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_solution_versions_are_listed_highest_first(as_user, maker, incident):
    response = as_user(maker).get(f"{SOLUTIONS}{incident.pk}/versions/")

    assert response.status_code == 200
    assert [item["version"] for item in response.json()["results"]] == ["1.0.0.4", "1.0.0.2"]


def test_register_a_solution(as_user, maker, team):
    response = as_user(maker).post(SOLUTIONS, {"unique_name": "NewThing", "team": team.pk}, format="json")

    assert response.status_code == 201
    assert response.json()["unique_name"] == "NewThing" and response.json()["team"] == {
        "id": team.pk,
        "name": "Contoso",
    }


def test_register_refuses_teams_and_environments_of_others(as_user, maker, outsider, team):
    other_team = outsider.teams.get()
    environment = Environment.objects.create(
        name="fab-dev", url="https://fab.crm.dynamics.com", tenant_id="t", team=other_team
    )
    client = as_user(maker)
    assert client.post(SOLUTIONS, {"unique_name": "X", "team": other_team.pk}, format="json").status_code == 400
    response = client.post(
        SOLUTIONS, {"unique_name": "X", "team": team.pk, "home_environment": environment.pk}, format="json"
    )
    assert response.status_code == 400 and "home_environment" in response.json()["error"]["details"]


def test_auditor_cannot_register(as_user, auditor, team):
    response = as_user(auditor).post(SOLUTIONS, {"unique_name": "X", "team": team.pk}, format="json")
    assert response.status_code == 403


def test_register_joins_the_pipeline_of_its_home_environment(as_user, maker, team):
    from deployments.models import Pipeline

    dev = Environment.objects.create(name="dev", url="https://dev.crm.dynamics.com", tenant_id="t", team=team)
    pipeline = Pipeline.objects.create(name="Contoso", team=team, development_environment=dev)
    client = as_user(maker)

    response = client.post(SOLUTIONS, {"unique_name": "A", "team": team.pk, "home_environment": dev.pk}, format="json")
    assert response.status_code == 201
    assert response.json()["pipeline"] == {"id": pipeline.pk, "name": "Contoso"}
    assert response.json()["home_environment"] == {"id": dev.pk, "name": "dev"}

    Pipeline.objects.create(name="Contoso hotfix", team=team, development_environment=dev)
    response = client.post(SOLUTIONS, {"unique_name": "B", "team": team.pk, "home_environment": dev.pk}, format="json")
    assert response.status_code == 400
    assert "several pipelines (Contoso, Contoso hotfix)" in response.json()["error"]["message"]


# --- export ---------------------------------------------------------------------------------------


@pytest.fixture
def home(team):
    return Environment.objects.create(
        name="contoso-dev", url="https://contoso-dev.crm.dynamics.com", tenant_id="t", team=team
    )


def test_export_returns_202_with_the_job_and_its_location(as_user, maker, incident, home):
    Solution.objects.filter(pk=incident.pk).update(home_environment=home)

    response = as_user(maker).post(f"{SOLUTIONS}{incident.pk}/export/", {"bump": "minor"}, format="json")

    assert response.status_code == 202
    job = Job.objects.get(kind="export")
    assert response.json() == {"job": {"id": job.pk, "kind": "export", "status": "pending", "progress": 0}}
    assert response["Location"].endswith(f"/jobs/{job.pk}/")
    assert job.params == {"solution_id": incident.pk, "unique_name": "IncidentReporting", "bump": "minor"}
    assert job.environment == home and job.created_by.username == "maker"


def test_export_defaults_to_a_revision_bump(as_user, maker, incident, home):
    Solution.objects.filter(pk=incident.pk).update(home_environment=home)
    assert as_user(maker).post(f"{SOLUTIONS}{incident.pk}/export/", {}, format="json").status_code == 202
    assert Job.objects.get(kind="export").params["bump"] == "revision"


def test_export_without_bump_when_development_is_not_new_is_409_with_next_allowed(as_user, maker, incident, home):
    Solution.objects.filter(pk=incident.pk).update(home_environment=home)
    InventoryInterval.objects.create(
        environment=home,
        unique_name="IncidentReporting",
        version="1.0.0.4",
        is_managed=False,
        valid_from=timezone.now(),
    )

    response = as_user(maker).post(f"{SOLUTIONS}{incident.pk}/export/", {"bump": "none"}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "version_exists" and error["details"]["next_allowed"] == "1.0.0.5"


def test_export_refusals(as_user, maker, outsider, auditor, incident, home, token_for, api_client):
    Solution.objects.filter(pk=incident.pk).update(home_environment=home)
    url = f"{SOLUTIONS}{incident.pk}/export/"
    assert as_user(outsider).post(url, {}, format="json").status_code == 404
    assert as_user(auditor).post(url, {}, format="json").status_code == 403
    api_client.credentials(**_bearer(token_for(maker, ["read"])))
    response = api_client.post(url, {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "scope_insufficient"
    assert as_user(maker).post(url, {"bump": "patch"}, format="json").status_code == 400
    assert not Job.objects.filter(kind="export").exists()


# --- versions/ ------------------------------------------------------------------------------------


def test_version_has_the_contract_fields(as_user, maker, incident):
    version = _version(incident, "1.0.0.2")

    body = as_user(maker).get(f"{VERSIONS}{version.pk}/").json()

    assert body["id"] == version.pk
    assert body["solution"] == {"id": incident.pk, "unique_name": "IncidentReporting"}
    assert body["version"] == "1.0.0.2"
    assert body["managed_sha256"] == hashlib.sha256(corpus_bytes(INCIDENT_102_MANAGED)).hexdigest()
    assert body["unmanaged_sha256"] == hashlib.sha256(corpus_bytes(INCIDENT_102_UNMANAGED)).hexdigest()
    assert body["managed_size"] == len(corpus_bytes(INCIDENT_102_MANAGED))
    assert body["unmanaged_size"] == len(corpus_bytes(INCIDENT_102_UNMANAGED))
    assert body["manifest_summary"]["components"]["table"] == 3
    assert body["source"] == {
        "kind": "uploaded",
        "environment": None,
        "job": None,
        "user": {"id": maker.pk, "username": "maker", "display_name": maker.shown_name},
        "restores_version": None,
        "repository": None,
    }
    assert body["release_notes"] == "first"
    assert body["created_by"]["username"] == "maker"
    assert body["created_at"].endswith("Z")


def test_upload_answers_201_then_200_identical_then_200_added(as_user, maker):
    client = as_user(maker)

    created = _post_zip(client, corpus_bytes(INCIDENT_102_UNMANAGED), release_notes="notes")
    assert created.status_code == 201
    assert created.json()["upload"] == {"flavour": "unmanaged", "outcome": "created"}
    assert created.json()["release_notes"] == "notes"

    identical = _post_zip(client, corpus_bytes(INCIDENT_102_UNMANAGED))
    assert identical.status_code == 200 and identical.json()["upload"]["outcome"] == "identical"

    added = _post_zip(client, corpus_bytes(INCIDENT_102_MANAGED), url=f"{VERSIONS}upload/")
    assert added.status_code == 200 and added.json()["upload"] == {"flavour": "managed", "outcome": "added"}
    assert added.json()["id"] == created.json()["id"]
    assert SolutionVersion.objects.count() == 1


def test_upload_of_another_checksum_is_409_version_exists(as_user, maker, incident):
    response = _post_zip(as_user(maker), reversioned(INCIDENT_104_UNMANAGED, "1.0.0.2"))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "version_exists"
    assert error["details"]["next_allowed"] == "1.0.0.5"
    assert error["details"]["flavour"] == "unmanaged"


def test_upload_of_a_bad_zip_is_400_with_the_readers_message(as_user, maker):
    response = _post_zip(as_user(maker), b"PK\x03\x04 definitely broken")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["file"] == [error["message"]]


def test_upload_without_a_file_is_400(as_user, maker):
    response = as_user(maker).post(VERSIONS, {"release_notes": "x"}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["details"]


def test_upload_above_the_limit_is_413(as_user, maker, settings):
    settings.ALM_MAX_UPLOAD_BYTES = 10_000

    response = _post_zip(as_user(maker), corpus_bytes(INCIDENT_102_UNMANAGED))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not SolutionVersion.objects.exists()


def test_upload_declaring_a_huge_body_is_refused_before_it_is_read(as_user, maker, settings):
    settings.ALM_MAX_UPLOAD_BYTES = 10_000
    client = as_user(maker)

    response = client.generic(
        "POST", VERSIONS, b"", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(5 * 1024 * 1024)
    )

    assert response.status_code == 413


def test_upload_refusals_by_role_team_and_scope(as_user, maker, outsider, auditor, incident, token_for, api_client):
    data = corpus_bytes("IncidentReporting_1_0_0_5_managed.zip")
    assert _post_zip(as_user(auditor), data).status_code == 403
    assert _post_zip(as_user(outsider), data).status_code == 403  # the zip names a solution of another team
    api_client.credentials(**_bearer(token_for(maker, ["read"])))
    response = _post_zip(api_client, data)
    assert response.status_code == 403 and response.json()["error"]["code"] == "scope_insufficient"
    response = _post_zip(as_user(outsider), data, solution=incident.pk)
    assert response.status_code == 404
    assert SolutionVersion.objects.count() == 2


def test_download_streams_the_stored_bytes(as_user, maker, incident):
    version = _version(incident, "1.0.0.2")
    client = as_user(maker)

    for flavour, name, expected_file in [
        ("managed", INCIDENT_102_MANAGED, "IncidentReporting_1_0_0_2_managed.zip"),
        ("unmanaged", INCIDENT_102_UNMANAGED, "IncidentReporting_1_0_0_2.zip"),
    ]:
        response = client.get(f"{VERSIONS}{version.pk}/download/?flavour={flavour}")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == corpus_bytes(name)
        assert response["Content-Type"] == "application/zip"
        assert expected_file in response["Content-Disposition"]
        assert response["X-Checksum-SHA256"] == hashlib.sha256(corpus_bytes(name)).hexdigest()
    # `flavor` is accepted as well, and managed is the default.
    response = client.get(f"{VERSIONS}{version.pk}/download/?flavor=managed")
    assert b"".join(response.streaming_content) == corpus_bytes(INCIDENT_102_MANAGED)
    response = client.get(f"{VERSIONS}{version.pk}/download/")
    assert b"".join(response.streaming_content) == corpus_bytes(INCIDENT_102_MANAGED)


def test_download_of_a_flavour_never_stored_is_409_artifact_missing(as_user, maker, incident):
    version = _version(incident, "1.0.0.4")

    response = as_user(maker).get(f"{VERSIONS}{version.pk}/download/?flavour=managed")

    assert response.status_code == 409 and response.json()["error"]["code"] == "artifact_missing"
    assert as_user(maker).get(f"{VERSIONS}{version.pk}/download/?flavour=both").status_code == 400


def test_versions_of_other_teams_are_404(as_user, outsider, incident):
    version = _version(incident, "1.0.0.2")
    other = _version(incident, "1.0.0.4")
    client = as_user(outsider)
    assert client.get(VERSIONS).json()["count"] == 0
    for url in (
        f"{VERSIONS}{version.pk}/",
        f"{VERSIONS}{version.pk}/download/",
        f"{VERSIONS}{other.pk}/diff/?against={version.pk}",
        f"{VERSIONS}{other.pk}/diff/{version.pk}/",
    ):
        assert client.get(url).status_code == 404, url


def test_diff_endpoints(as_user, maker, incident):
    old, new = _version(incident, "1.0.0.2"), _version(incident, "1.0.0.4")
    client = as_user(maker)

    by_path = client.get(f"{VERSIONS}{new.pk}/diff/{old.pk}/")
    by_query = client.get(f"{VERSIONS}{new.pk}/diff/?against={old.pk}")

    assert by_path.status_code == 200 and by_query.status_code == 200
    assert by_path.json() == by_query.json()
    body = by_path.json()
    assert (body["old"]["version"], body["new"]["version"]) == ("1.0.0.2", "1.0.0.4")
    assert len(body["data_loss"]) == 1
    assert client.get(f"{VERSIONS}{new.pk}/diff/").status_code == 400
    assert client.get(f"{VERSIONS}{new.pk}/diff/999999/").status_code == 404


def test_version_filters(as_user, maker, incident, upload):
    upload(maker, "UpdateCreatedBy_1_0_0_1.zip")
    client = as_user(maker)

    assert client.get(f"{VERSIONS}?solution={incident.pk}").json()["count"] == 2
    assert client.get(f"{VERSIONS}?unique_name=updatecreatedby").json()["count"] == 1
    assert client.get(f"{VERSIONS}?version=1.0.0.4&solution={incident.pk}").json()["count"] == 1


# --- query counts ---------------------------------------------------------------------------------


@pytest.fixture
def many_solutions(maker, team, upload, context_of):
    for index in range(6):
        solution = services.solution_register(
            unique_name=f"Bulk{index}", team=team, user=maker, context=context_of(maker)
        )
        for revision in (1, 2):
            # Rows only (the list endpoints never open artifacts), so the fixture stays fast.
            SolutionVersion.objects.create(
                solution=solution,
                version=f"1.0.0.{revision}",
                version_key=f"1.0.0.{revision}",
                major=1,
                minor=0,
                build=0,
                revision=revision,
                source_kind="uploaded",
                created_by=maker,
                unmanaged_path=f"solutions/Bulk{index}/x.zip",
                unmanaged_sha256="a" * 64,
                unmanaged_size=1,
            )


@pytest.mark.parametrize("url", [SOLUTIONS, VERSIONS])
def test_list_query_count_does_not_grow_with_page_size(as_user, maker, many_solutions, url):
    client = as_user(maker)

    def queries(page_size):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{url}?page_size={page_size}")
        assert response.status_code == 200
        return len(captured), len(response.json()["results"])

    queries(1)  # the first use of a token records last_used_at (a write at most once a minute)
    small, small_rows = queries(1)
    large, large_rows = queries(50)
    assert small_rows == 1 and large_rows > 1
    assert small == large


def test_re_versioned_rows_cost_the_versions_list_no_extra_query(as_user, maker, many_solutions):
    """A re-versioned copy shows the version it restores; the list reads it with the row, not one by one."""
    client = as_user(maker)

    def queries() -> tuple[int, list[dict]]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{VERSIONS}?page_size=50")
        assert response.status_code == 200
        return len(captured), response.json()["results"]

    queries()  # the first use of a token records last_used_at
    plain, _ = queries()
    restored = SolutionVersion.objects.order_by("pk").first()
    assert restored is not None
    SolutionVersion.objects.exclude(pk=restored.pk).update(restores_version=restored)
    reversioned, rows = queries()

    assert reversioned == plain
    shown = {"id": restored.pk, "version": restored.version_key}
    assert sum(row["source"]["restores_version"] == shown for row in rows) == len(rows) - 1


def test_large_uploads_that_django_spooled_to_disk_are_hashed_in_place(as_user, maker, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # anything larger goes to a TemporaryUploadedFile

    response = _post_zip(as_user(maker), corpus_bytes(INCIDENT_102_UNMANAGED))

    assert response.status_code == 201
    assert response.json()["unmanaged_sha256"] == hashlib.sha256(corpus_bytes(INCIDENT_102_UNMANAGED)).hexdigest()
