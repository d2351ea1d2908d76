"""Source control end to end on PostgreSQL with real Celery workers over Redis, the Dataverse emulator and a real
Git host over HTTPS: export from development → committed, tagged, pushed → a maker's later commit built into a
version (unmanaged, then managed through a build environment) → promoted to test. And a worker killed after its
push but before recording it makes no second commit (docs/source-control.md, "Durable and idempotent").
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from alm_portal.audit.context import AuditContext
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import jobs_dispatch
from solutions import services
from solutions.models import SolutionVersion, VersionCommit
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    as_user,
    contoso_fixture,
    no_broker_for_inline_fixture,
    register_environment,
    runner_settings_fixture,
)
from tests.solutions.conftest import INCIDENT_102_UNMANAGED, corpus_bytes, upload_file

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
FOLDER = "solutions/IncidentReporting/src"


@pytest.fixture
def worker_env(settings: Any, emulator: Any, git_host: Any, tmp_path: Path) -> dict[str, str]:
    """The test process and its workers trust the emulator and the Git host, and share one Git cache folder."""
    settings.ALM_GIT_CA_BUNDLE = git_host.ca_bundle
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    settings.ALM_EXPORT_POLL_SECONDS = 1
    return {
        "ALM_DATAVERSE_CA_BUNDLE": str(emulator.ca_file),
        "ALM_GIT_CA_BUNDLE": git_host.ca_bundle,
        "ALM_GIT_WORK_DIR": str(tmp_path / "git-work"),
        "ALM_EXPORT_POLL_SECONDS": "1",
    }


def _status(job_id: int) -> str:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).get()


def _done(job_id: int) -> bool:
    return _status(job_id) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.NEEDS_ATTENTION)


def _succeeded(job_id: int) -> None:
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, (job.kind, job.error_code, job.error_message)


def _settings_for(version: SolutionVersion) -> dict[str, Any]:
    """A value for every connection reference and environment variable the package declares (pre-flight blocks a
    promotion whose settings are incomplete; the emulator accepts any connection id)."""
    manifest = version.managed_manifest or {}
    return {
        "ConnectionReferences": [
            {"LogicalName": ref["logical_name"], "ConnectionId": "test", "ConnectorId": ref.get("connector_id") or ""}
            for ref in manifest.get("connection_references") or []
        ],
        "EnvironmentVariables": [
            {"SchemaName": var["schema_name"], "Value": str(var.get("default_value") or "test")}
            for var in manifest.get("environment_variables") or []
        ],
    }


def _commit_job_of(version: SolutionVersion) -> Job:
    return Job.objects.filter(kind="source_commit", params__version_id=version.pk).latest("pk")


def test_export_commit_build_managed_and_promote_with_a_real_worker(
    contoso, emulator, git_host, celery_worker_factory, worker_env, tmp_path, client
):
    dev = contoso.orgs["dev"]
    dev.install(corpus_bytes(INCIDENT_102_UNMANAGED))
    solution = services.solution_register(
        unique_name="IncidentReporting",
        team=contoso.pipeline.team,
        home_environment=contoso.environments["dev"],
        user=contoso.maker,
        context=as_user(contoso.maker),
    )
    build_org = emulator.new_org()
    build_environment = register_environment(
        build_org, contoso.pipeline.team, name=f"build-{build_org.name}", kind="other"
    )
    url = git_host.new_repository("story")
    services.source_bind(
        solution=solution,
        url=url,
        username=git_host.username,
        token=git_host.token,
        build_environment=build_environment,
        user=contoso.maker,
        context=as_user(contoso.maker),
    )
    worker = celery_worker_factory(env=worker_env)

    # 1. Export from development: the worker exports both flavours, then commits, tags and pushes the version.
    export = services.solution_export_request(
        solution=solution, bump="revision", user=contoso.maker, context=as_user(contoso.maker)
    )
    worker.wait_for(lambda: _done(export.pk), timeout=120)
    _succeeded(export.pk)
    exported = SolutionVersion.objects.get(solution=solution, version_key="1.0.0.3")
    worker.wait_for(lambda: VersionCommit.objects.filter(version=exported).exists(), timeout=120)
    pushed = VersionCommit.objects.get(version=exported)
    assert (pushed.tag, pushed.flavours, pushed.diverged) == ("IncidentReporting/1.0.0.3", "managed+unmanaged", False)
    tags = git_host.git("ls-remote", "--tags", url)
    assert f"{pushed.commit}\trefs/tags/IncidentReporting/1.0.0.3" in tags

    # 2. A maker raises the version in Git; the portal builds it from that commit, managed through the build
    #    environment, and commits the result in turn.
    checkout = tmp_path / "maker"
    git_host.git("clone", "--quiet", url, str(checkout))
    solution_xml = checkout / FOLDER / "Other" / "Solution.xml"
    solution_xml.write_text(
        re.sub(r"<Version>[^<]+</Version>", "<Version>1.0.1.0</Version>", solution_xml.read_text(), count=1)
    )
    git_host.git("commit", "--quiet", "-am", "Raise to 1.0.1.0", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "HEAD:main", cwd=checkout)
    source_commit = git_host.git("rev-parse", "HEAD", cwd=checkout).strip()

    build = services.source_build_request(
        solution=solution, ref="main", user=contoso.maker, context=as_user(contoso.maker)
    )
    assert build.environment_id == build_environment.pk
    worker.wait_for(lambda: _done(build.pk), timeout=180)
    _succeeded(build.pk)
    built = SolutionVersion.objects.get(solution=solution, version_key="1.0.1.0")
    assert built.source_kind == "built" and built.flavours == ["managed", "unmanaged"]
    assert (built.source_commit, built.source_ref, built.source_repository_url) == (source_commit, "main", url)
    assert built.managed_manifest["managed"] == 1
    installed = build_org.get("solutions?$filter=uniquename eq 'IncidentReporting'&$select=version,ismanaged").json()
    assert [(row["version"], row["ismanaged"]) for row in installed["value"]] == [("1.0.1.0", False)]
    worker.wait_for(lambda: VersionCommit.objects.filter(version=built).exists(), timeout=120)
    built_commit = VersionCommit.objects.get(version=built)
    assert built_commit.parent == source_commit and not built_commit.diverged

    # 3. Promote the built version to test: the managed package built from the commit is what is imported.
    contoso.set_settings("test", _settings_for(built))
    promotion = contoso.request(built, "test")
    worker.wait_for(lambda: Job.objects.get(pk=promotion.preflight_job_id).status == "succeeded", timeout=120)
    promotion.refresh_from_db()
    blockers = [check for check in promotion.preflight_result["checks"] if check["severity"] == "blocker"]
    assert promotion.preflight_status in ("passed", "warnings"), blockers
    contoso.approve(promotion)
    worker.wait_for(lambda: (promotion.refresh_from_db() or promotion.status) == "succeeded", timeout=180)
    assert contoso.installed("test", "IncidentReporting")["version"] == "1.0.1.0"

    client.force_login(contoso.maker)
    page = client.get(f"/solutions/versions/{built.pk}/").content.decode()
    assert source_commit[:12] in page and built_commit.commit[:12] in page
    # The promotion names the commit it deployed, and its source diff (against what test had: nothing yet).
    promotion_page = client.get(f"/deploy/promotions/{promotion.pk}/").content.decode()
    assert built_commit.commit[:12] in promotion_page and "IncidentReporting/1.0.1.0" in promotion_page
    diff = client.get(f"/api/v1/promotions/{promotion.pk}/source-diff/").json()
    assert diff["new_commit"] == built_commit.commit and diff["old_commit"] is None
    assert "has no version of IncidentReporting to compare with" in diff["message"]
    assert worker.process.poll() is None, worker.log()[-3000:]


def test_a_worker_killed_after_its_push_makes_no_second_commit(
    contoso, git_host, celery_worker_factory, worker_env, tmp_path
):
    solution = services.solution_register(
        unique_name="IncidentReporting", team=contoso.pipeline.team, user=contoso.maker, context=as_user(contoso.maker)
    )
    url = git_host.new_repository("crash")
    services.source_bind(
        solution=solution,
        url=url,
        username=git_host.username,
        token=git_host.token,
        user=contoso.maker,
        context=as_user(contoso.maker),
    )
    crashing = celery_worker_factory(env={**worker_env, "ALM_TEST_CRASH_AT": "after_git_push"}, name="crashing")
    outcome = services.solution_version_upload(
        file=upload_file(corpus_bytes(INCIDENT_102_UNMANAGED)),
        user=contoso.maker,
        context=AuditContext.system(),
        solution=solution,
    )
    job = _commit_job_of(outcome.version)
    crashing.process.wait(timeout=90)
    assert "ALM_TEST_CRASH_AT=after_git_push reached" in crashing.log()
    # Pushed, but the portal has not recorded it: the job is still the dead worker's.
    assert "refs/tags/IncidentReporting/1.0.0.2" in git_host.git("ls-remote", "--tags", url)
    assert not VersionCommit.objects.exists() and _status(job.pk) == JobStatus.CLAIMED

    # Time runs the dead worker's lease out; the dispatcher hands the job to a new worker.
    past = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=past, not_before=None, updated_at=past)
    worker = celery_worker_factory(env=worker_env, name="restarted")
    assert jobs_dispatch() >= 1
    worker.wait_for(lambda: _done(job.pk), timeout=90)
    _succeeded(job.pk)

    recorded = VersionCommit.objects.get()
    checkout = tmp_path / "check"
    git_host.git("clone", "--quiet", url, str(checkout))
    assert git_host.git("log", "--format=%H", cwd=checkout).split() == [recorded.commit]
    assert Job.objects.get(pk=job.pk).result["commit"] == recorded.commit
