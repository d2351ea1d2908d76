"""GET /api/v1/jobs/: people see the jobs of their teams' environments; others get 404."""

from __future__ import annotations

import pytest

from alm_portal.audit.context import AuditContext
from alm_portal.job_kinds import JobKind
from alm_portal.jobs.services import job_enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(team):
    from environments.models import Environment

    environment = Environment.objects.create(
        name="contoso-test", url="https://contoso-test.crm4.dynamics.com", kind="test", tenant_id="t", team=team
    )
    return job_enqueue(kind=JobKind.HEALTH_CHECK, environment=environment, params={}, context=AuditContext.system())


def _get(api_client, token, path):
    return api_client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_team_member_sees_the_job(api_client, maker, token_for, job):
    response = _get(api_client, token_for(maker), f"/api/v1/jobs/{job.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "health_check" and body["status"] == "pending"
    assert body["environment"] == {"id": job.environment_id, "name": "contoso-test"}


def test_other_team_gets_404(api_client, outsider, token_for, job):
    response = _get(api_client, token_for(outsider), f"/api/v1/jobs/{job.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert _get(api_client, token_for(outsider), "/api/v1/jobs/").json()["count"] == 0


def test_an_auditor_sees_the_jobs_of_a_team_they_are_not_in(api_client, auditor, token_for, job):
    assert _get(api_client, token_for(auditor), "/api/v1/jobs/").json()["count"] == 1


def test_anonymous_gets_401(api_client, job):
    assert api_client.get(f"/api/v1/jobs/{job.pk}/").status_code == 401


def test_list_query_count_does_not_grow_with_page_size(api_client, auditor, token_for, job, django_assert_num_queries):
    from alm_portal.jobs.models import Job

    for _ in range(5):
        Job.objects.create(kind=JobKind.HEALTH_CHECK, environment=job.environment, created_by=auditor)
    token = token_for(auditor)
    _get(api_client, token, "/api/v1/jobs/")  # the first call of a minute also records last_used_at
    with django_assert_num_queries(3):
        assert len(_get(api_client, token, "/api/v1/jobs/?page_size=1").json()["results"]) == 1
    with django_assert_num_queries(3):
        assert len(_get(api_client, token, "/api/v1/jobs/?page_size=50").json()["results"]) == 6
