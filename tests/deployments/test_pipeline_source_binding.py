"""A whole pipeline bound to one Git repository (docs/source-control.md, "Binding a pipeline"): its solutions
without a binding of their own are committed each to its own folder, including one registered after the binding;
a solution's own binding wins; only admins bind a pipeline. Against a real Git host over HTTPS."""

from __future__ import annotations

from typing import Any

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from solutions import services as solution_services
from solutions.models import VersionCommit
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    as_user,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def git_settings(settings: Any, git_host: Any, tmp_path: Any) -> Any:
    settings.ALM_GIT_CA_BUNDLE = git_host.ca_bundle
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    return settings


def _commit_all() -> None:
    for job in Job.objects.filter(kind="source_commit", status="pending").order_by("pk"):
        finished = job_run_now(job)
        assert finished.status == "succeeded", (finished.error_code, finished.error_message)


def test_a_bound_pipeline_commits_each_of_its_solutions_in_its_own_folder(
    contoso, git_host, git_settings, token_for, api_client, tmp_path
):
    url = git_host.new_repository("pipeline")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(contoso.admin, scopes=['read', 'admin'])}")
    bound = api_client.put(
        f"/api/v1/pipelines/{contoso.pipeline.pk}/source/",
        {"url": url, "username": git_host.username, "token": git_host.token, "root_folder": "apps"},
        format="json",
    )
    assert bound.status_code == 200, bound.content
    assert bound.json()["folder"] == "apps/<UniqueName>/src" and bound.json()["credential_set"] is True
    assert AuditEvent.objects.filter(action="pipeline.source_bound", object_id=str(contoso.pipeline.pk)).exists()

    # A solution registered after the binding (its home is the pipeline's development environment) is covered.
    version = contoso.upload(success_package("1.0.0.0"))
    assert version.solution.pipeline_id == contoso.pipeline.pk
    _commit_all()
    committed = VersionCommit.objects.get(version=version)
    assert (committed.repository_url, committed.folder, committed.tag) == (url, "apps/Success/src", "Success/1.0.0.0")

    maker_view = api_client.get(f"/api/v1/solutions/{version.solution_id}/source/").json()
    assert maker_view["folder"] == "apps/Success/src"
    assert maker_view["pipeline"] == {"id": contoso.pipeline.pk, "name": contoso.pipeline.name}

    # The solution's own binding wins over the pipeline's.
    own = git_host.new_repository("own")
    solution_services.source_bind(
        solution=version.solution,
        url=own,
        username=git_host.username,
        token=git_host.token,
        user=contoso.maker,
        context=as_user(contoso.maker),
    )
    second = contoso.upload(success_package("1.1.0.0"))
    _commit_all()
    assert VersionCommit.objects.get(version=second).repository_url == own

    # Makers do not bind pipelines.
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(contoso.maker, scopes=['read', 'request'])}")
    refused = api_client.put(f"/api/v1/pipelines/{contoso.pipeline.pk}/source/", {"url": url}, format="json")
    assert refused.status_code == 403

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(contoso.admin, scopes=['read', 'admin'])}")
    assert api_client.delete(f"/api/v1/pipelines/{contoso.pipeline.pk}/source/").status_code == 204
    assert api_client.get(f"/api/v1/pipelines/{contoso.pipeline.pk}/source/").status_code == 404
    assert VersionCommit.objects.filter(repository_url=url).count() == 1  # the history stays


def test_a_pipeline_build_environment_follows_the_same_rules(contoso, git_host, git_settings, token_for, api_client):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(contoso.admin, scopes=['read', 'admin'])}")
    body = {"url": git_host.new_repository("rules"), "build_environment": contoso.environments["dev"].pk}
    refused = api_client.put(f"/api/v1/pipelines/{contoso.pipeline.pk}/source/", body, format="json")
    assert refused.status_code == 400
    assert "development environment" in refused.json()["error"]["details"]["build_environment"][0]
    body["build_environment"] = contoso.environments["prod"].pk
    refused = api_client.put(f"/api/v1/pipelines/{contoso.pipeline.pk}/source/", body, format="json")
    assert refused.json()["error"]["details"]["build_environment"] == [
        "A production environment cannot be a build environment."
    ]
