"""Source control (docs/source-control.md): every version committed to the solution's repository, versions built
from commits with their provenance, against a real Git host over HTTPS (git http-backend behind basic auth).

Jobs run inline here (job_run_now); tests/solutions/test_source_control_worker.py runs the same path through a
real Celery worker on PostgreSQL and Redis, with a crash after the push.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.errors import PermissionRefused, ValidationFailed
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run, job_run_now
from solutions import services
from solutions.models import SolutionVersion, SourceBinding, VersionCommit
from tests.solutions.conftest import (
    INCIDENT_102_MANAGED,
    INCIDENT_102_UNMANAGED,
    INCIDENT_104_UNMANAGED,
    corpus_bytes,
    reversioned,
)

pytestmark = pytest.mark.django_db(transaction=True)
FOLDER = "solutions/IncidentReporting/src"


@pytest.fixture
def git_settings(settings: Any, git_host: Any, tmp_path: Path) -> Any:
    settings.ALM_GIT_CA_BUNDLE = git_host.ca_bundle
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    settings.ALM_ALLOW_LOOPBACK = True
    return settings


@pytest.fixture
def incident(team: Any, maker: Any, context_of: Any) -> Any:
    return services.solution_register(unique_name="IncidentReporting", team=team, user=maker, context=context_of(maker))


@pytest.fixture
def bound(incident: Any, git_host: Any, git_settings: Any, maker: Any, context_of: Any) -> Any:
    """IncidentReporting bound to a new, empty repository on the Git host, with a token."""
    url = git_host.new_repository("contoso")
    services.source_bind(
        solution=incident,
        url=url,
        username=git_host.username,
        token=git_host.token,
        user=maker,
        context=context_of(maker),
    )
    return incident


def run_source_jobs(kind: str = "source_commit") -> list[Job]:
    """Carry out every waiting job of `kind`, oldest first, as a worker would."""
    ran = []
    for job in Job.objects.filter(kind=kind, status="pending").order_by("pk"):
        ran.append(job_run_now(job))
    return ran


def clone(git_host: Any, url: str, into: Path) -> Path:
    git_host.git("clone", "--quiet", url, str(into))
    return into


def log_of(git_host: Any, checkout: Path, *args: str) -> str:
    return git_host.git("log", *args, cwd=checkout)


def test_every_uploaded_flavour_is_committed_tagged_and_pushed(bound, git_host, maker, upload, tmp_path):
    unmanaged = upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED)).version
    (first,) = run_source_jobs()
    assert first.status == "succeeded", (first.error_code, first.error_message)
    managed = upload(maker, corpus_bytes(INCIDENT_102_MANAGED)).version
    assert managed.pk == unmanaged.pk
    (second,) = run_source_jobs()
    assert second.status == "succeeded", (second.error_code, second.error_message)

    commits = list(VersionCommit.objects.filter(version=unmanaged).order_by("pk"))
    assert [(row.flavours, row.tag) for row in commits] == [
        ("unmanaged", "IncidentReporting/1.0.0.2"),
        ("managed+unmanaged", "IncidentReporting/1.0.0.2+managed-unmanaged"),
    ]
    assert commits[1].parent == commits[0].commit and not any(row.diverged for row in commits)

    checkout = clone(git_host, bound.source_binding.url, tmp_path / "checkout")
    head = git_host.git("rev-parse", "HEAD", cwd=checkout).strip()
    assert head == commits[1].commit
    tags = git_host.git("tag", "--list", cwd=checkout).split()
    assert sorted(tags) == ["IncidentReporting/1.0.0.2", "IncidentReporting/1.0.0.2+managed-unmanaged"]
    # SolutionPackager's layout, a "Both" unpack once both flavours are in.
    solution_xml = (checkout / FOLDER / "Other" / "Solution.xml").read_text()
    assert "<UniqueName>IncidentReporting</UniqueName>" in solution_xml
    assert "<Managed>2</Managed>" in solution_xml
    assert (checkout / FOLDER / "Other" / "Customizations.xml").is_file()
    # Author the uploader, committer the portal, and a trailer naming the portal's version.
    people = log_of(git_host, checkout, "-1", "--format=%an <%ae>|%cn <%ce>")
    # A person without an e-mail address gets one that says so (RFC 2606 .invalid), never an empty one.
    assert (
        people.strip()
        == f"{maker.username} <{maker.username}@users.alm-portal.invalid>|ALM Portal <alm-portal@localhost>"
    )
    message = log_of(git_host, checkout, "-1", "--format=%B")
    assert message.startswith("IncidentReporting 1.0.0.2 (managed and unmanaged)")
    assert f"ALM-Portal-Version-Id: {unmanaged.pk}/managed+unmanaged" in message

    committed = AuditEvent.objects.filter(action="solution_version.committed").order_by("seq")
    assert [event.after["commit"] for event in committed] == [row.commit for row in commits]
    assert committed.last().after["repository_url"] == bound.source_binding.url


def test_a_commit_job_run_again_commits_nothing_more(bound, git_host, maker, upload, tmp_path):
    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    (job,) = run_source_jobs()
    # The row as a worker that pushed and died before recording would leave it: running again pushes nothing.
    VersionCommit.objects.all().delete()
    Job.objects.filter(pk=job.pk).update(status="pending", finished_at=None)
    again = job_run_now(Job.objects.get(pk=job.pk))

    assert again.status == "succeeded", (again.error_code, again.error_message)
    checkout = clone(git_host, bound.source_binding.url, tmp_path / "checkout")
    assert log_of(git_host, checkout, "--format=%H").split() == [VersionCommit.objects.get().commit]


def test_a_remote_that_moved_gets_the_commit_on_top_and_outside_changes_are_source_drift(
    bound, git_host, maker, upload, tmp_path, client
):
    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    run_source_jobs()
    url = bound.source_binding.url
    # Someone else adds a README at the root: the branch moved, the solution's folder did not.
    other = clone(git_host, url, tmp_path / "other")
    (other / "README.md").write_text("Contoso solutions\n")
    git_host.git("add", "README.md", cwd=other)
    git_host.git("commit", "--quiet", "-m", "Add a README", cwd=other)
    git_host.git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    moved_head = git_host.git("rev-parse", "HEAD", cwd=other).strip()

    upload(maker, corpus_bytes(INCIDENT_104_UNMANAGED))
    run_source_jobs()
    on_top = VersionCommit.objects.get(version__version_key="1.0.0.4")
    assert on_top.parent == moved_head and not on_top.diverged

    # Now someone edits the solution's own folder by hand, outside the portal.
    git_host.git("pull", "--quiet", "origin", "main", cwd=other)
    (other / FOLDER / "Other" / "Solution.xml").write_text(
        (other / FOLDER / "Other" / "Solution.xml").read_text().replace("1.0.0.4", "1.0.0.40")
    )
    git_host.git("commit", "--quiet", "-am", "Hand edit", cwd=other)
    git_host.git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    upload(maker, corpus_bytes(INCIDENT_102_MANAGED))  # 1.0.0.2 gains its managed flavour
    run_source_jobs()
    drifted = VersionCommit.objects.get(version__version_key="1.0.0.2", flavours="managed+unmanaged")
    assert drifted.diverged

    client.force_login(maker)
    page = client.get(f"/solutions/{bound.pk}/").content.decode()
    assert 'id="source-drift"' in page and "outside the portal" in page
    assert drifted.commit[:12] in page
    # Beside environment drift on the dashboard, until the portal commits the solution again.
    home = client.get("/").content.decode().split('id="drift"')[1]
    assert 'id="source-drift"' in home and "IncidentReporting" in home and drifted.commit[:12] in home
    upload(maker, reversioned(INCIDENT_102_MANAGED, "1.0.0.7"))
    run_source_jobs()
    assert 'id="source-drift"' not in client.get("/").content.decode().split('id="drift"')[1]


def _push_source_change(git_host: Any, url: str, tmp_path: Path, *, version: str) -> str:
    """A maker's commit in Git: the solution's version raised in Other/Solution.xml. Returns the commit."""
    checkout = clone(git_host, url, tmp_path / f"maker-{version}")
    solution_xml = checkout / FOLDER / "Other" / "Solution.xml"
    text = solution_xml.read_text()
    text = re.sub(r"<Version>[^<]+</Version>", f"<Version>{version}</Version>", text, count=1)
    solution_xml.write_text(text)
    git_host.git("commit", "--quiet", "-am", f"Raise to {version}", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "HEAD:main", cwd=checkout)
    return git_host.git("rev-parse", "HEAD", cwd=checkout).strip()


def test_a_version_built_from_a_commit_carries_its_provenance_and_is_committed_in_turn(
    bound, git_host, maker, upload, tmp_path, context_of, client
):
    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    run_source_jobs()
    commit = _push_source_change(git_host, bound.source_binding.url, tmp_path, version="1.0.1.0")

    job = services.source_build_request(solution=bound, ref=commit[:10], user=maker, context=context_of(maker))
    (built_job,) = run_source_jobs("source_build")
    assert built_job.pk == job.pk and built_job.status == "succeeded", (built_job.error_code, built_job.error_message)

    version = SolutionVersion.objects.get(solution=bound, version_key="1.0.1.0")
    assert version.source_kind == "built" and version.flavours == ["unmanaged"]
    assert (version.source_repository_url, version.source_ref, version.source_commit, version.source_folder) == (
        bound.source_binding.url,
        commit[:10],
        commit,
        FOLDER,
    )
    assert built_job.result["commit"] == commit and built_job.result["ref_kind"] == "commit"
    created = AuditEvent.objects.get(action="solution_version.created", object_id=str(version.pk))
    assert created.after["source_commit"] == commit and created.after["source_kind"] == "built"

    (committed,) = run_source_jobs()
    assert committed.status == "succeeded"
    row = VersionCommit.objects.get(version=version)
    # Built from the branch itself: that is not drift.
    assert row.tag == "IncidentReporting/1.0.1.0" and row.parent == commit and not row.diverged

    # Building the same commit again registers nothing new: the same source packs to the same bytes.
    services.source_build_request(solution=bound, ref=commit, user=maker, context=context_of(maker))
    (again,) = run_source_jobs("source_build")
    assert again.status == "succeeded" and again.result["created"] is False
    assert again.result["version_id"] == version.pk
    assert not Job.objects.filter(kind="source_commit", status="pending").exists()

    client.force_login(maker)
    page = client.get(f"/solutions/versions/{version.pk}/").content.decode()
    assert 'id="provenance"' in page and commit[:12] in page and bound.source_binding.url in page
    body = client.get(f"/api/v1/versions/{version.pk}/").json()
    assert body["source"]["repository"] == {
        "url": bound.source_binding.url,
        "ref": commit[:10],
        "commit": commit,
        "folder": FOLDER,
    }
    assert [entry["tag"] for entry in body["commits"]] == ["IncidentReporting/1.0.1.0"]


def test_builds_that_cannot_be_made_fail_with_a_message_that_says_why(
    bound, git_host, maker, upload, context_of, tmp_path
):
    services.source_build_request(solution=bound, ref="main", user=maker, context=context_of(maker))
    (empty,) = run_source_jobs("source_build")
    assert (empty.status, empty.error_code) == ("failed", "git_ref_not_found")

    upload(maker, corpus_bytes(INCIDENT_102_MANAGED))  # only the managed flavour is in Git
    run_source_jobs()
    services.source_build_request(
        solution=bound, ref="IncidentReporting/1.0.0.2", user=maker, context=context_of(maker)
    )
    (managed_only,) = run_source_jobs("source_build")
    assert (managed_only.status, managed_only.error_code) == ("failed", "no_unmanaged_source")
    assert "only a managed solution" in managed_only.error_message

    services.source_build_request(solution=bound, ref="no-such-branch", user=maker, context=context_of(maker))
    (missing,) = run_source_jobs("source_build")
    assert (missing.status, missing.error_code) == ("failed", "git_ref_not_found")
    assert "no-such-branch" in missing.error_message

    with pytest.raises(ValidationFailed) as refused:
        services.source_build_request(solution=bound, ref="main..other", user=maker, context=context_of(maker))
    assert "ref" in refused.value.details


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:1/repo.git", "https"),
        ("git://example.com/repo.git", ""),
        ("https://user:secret@example.com/repo.git", ""),
        ("https://10.0.0.7/repo.git", "IP"),
        ("/srv/git/repo.git", "Local repositories are not allowed"),
        ("ext::sh -c touch% /tmp/pwned", ""),
    ],
)
def test_remotes_outside_the_policy_are_refused_with_a_reason(incident, git_settings, maker, context_of, url, why):
    with pytest.raises(ValidationFailed) as refused:
        services.source_bind(solution=incident, url=url, user=maker, context=context_of(maker))
    assert "url" in refused.value.details
    assert why in refused.value.message
    assert not SourceBinding.objects.exists()


def test_local_repositories_only_under_the_configured_root(incident, git_settings, maker, context_of, tmp_path):
    git_settings.ALM_GIT_LOCAL_ROOT = str(tmp_path / "repositories")
    inside = tmp_path / "repositories" / "contoso.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(inside)], check=True)
    binding = services.source_bind(solution=incident, url=str(inside), user=maker, context=context_of(maker))
    assert binding.url == str(inside)
    with pytest.raises(ValidationFailed) as refused:
        services.source_bind(
            solution=incident,
            url=str(tmp_path / "repositories" / ".." / "elsewhere.git"),
            user=maker,
            context=context_of(maker),
        )
    assert "must be under" in refused.value.message


def test_the_token_is_write_only_and_kept_when_not_given_again(bound, git_host, maker, context_of, client):
    binding = bound.source_binding
    assert binding.secret_ciphertext and git_host.token not in binding.secret_ciphertext
    services.source_bind(
        solution=bound,
        url=binding.url,
        branch="release",
        username=git_host.username,
        user=maker,
        context=context_of(maker),
    )
    binding.refresh_from_db()
    assert binding.branch == "release" and binding.credential_kind == "token" and binding.secret_ciphertext

    client.force_login(maker)
    shown = client.get(f"/api/v1/solutions/{bound.pk}/source/")
    assert shown.status_code == 200
    assert shown.json()["credential_set"] is True and git_host.token not in shown.content.decode()
    assert git_host.token not in client.get(f"/solutions/{bound.pk}/").content.decode()
    for event in AuditEvent.objects.filter(action="solution.source_bound"):
        assert git_host.token not in json.dumps([event.before, event.after])
    assert AuditEvent.objects.filter(action="solution.source_bound").count() == 2


def test_only_those_who_may_change_the_solution_bind_and_build(bound, outsider, auditor, context_of):
    for person in (outsider, auditor):
        with pytest.raises(PermissionRefused):
            services.source_bind(
                solution=bound, url="https://example.com/x.git", user=person, context=context_of(person)
            )
        with pytest.raises(PermissionRefused):
            services.source_build_request(solution=bound, ref="main", user=person, context=context_of(person))
        with pytest.raises(PermissionRefused):
            services.source_unbind(solution=bound, user=person, context=context_of(person))


def test_unbinding_stops_commits_and_keeps_what_was_committed(bound, maker, upload, context_of):
    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    run_source_jobs()
    services.source_unbind(solution=bound, user=maker, context=context_of(maker))
    upload(maker, corpus_bytes(INCIDENT_104_UNMANAGED))

    assert not Job.objects.filter(kind="source_commit", status="pending").exists()
    assert VersionCommit.objects.count() == 1
    assert AuditEvent.objects.filter(action="solution.source_unbound").count() == 1


def test_the_api_binds_builds_and_unbinds(bound, git_host, maker, token_for, api_client, upload):
    token = token_for(maker, scopes=["read", "request"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = git_host.new_repository("api")
    changed = api_client.put(
        f"/api/v1/solutions/{bound.pk}/source/",
        {"url": url, "branch": "main", "root_folder": "apps", "username": git_host.username, "token": git_host.token},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["folder"] == "apps/IncidentReporting/src" and "token" not in changed.json()

    refused = api_client.put(
        f"/api/v1/solutions/{bound.pk}/source/", {"url": "http://example.com/x.git"}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["error"]["details"]["url"]

    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    run_source_jobs()
    accepted = api_client.post(f"/api/v1/solutions/{bound.pk}/source/builds/", {"ref": "main"}, format="json")
    assert accepted.status_code == 202 and accepted["Location"].endswith(f"/jobs/{accepted.json()['job']['id']}/")
    assert accepted.json()["job"]["kind"] == "source_build"

    gone = api_client.delete(f"/api/v1/solutions/{bound.pk}/source/")
    assert gone.status_code == 204
    assert api_client.get(f"/api/v1/solutions/{bound.pk}/source/").status_code == 404

    reader = token_for(maker, scopes=["read"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")
    denied = api_client.put(f"/api/v1/solutions/{bound.pk}/source/", {"url": url}, format="json")
    assert denied.status_code == 403


def test_a_build_environment_is_one_of_the_teams_and_never_production(
    bound, git_host, maker, make_environment, emulator, make_user, token_for, api_client, client
):
    from alm_portal.accounts.models import Team

    build = make_environment(emulator.new_org(), bound.team, name="contoso-build", kind="other")
    production = make_environment(emulator.new_org(), bound.team, name="contoso-prod", kind="production")
    elsewhere = make_environment(emulator.new_org(), Team.objects.create(name="Fabrikam"), name="fabrikam-build")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(maker, scopes=['read', 'request'])}")
    url = bound.source_binding.url

    def put(environment_id: int | None) -> Any:
        body = {"url": url, "username": git_host.username, "build_environment": environment_id}
        return api_client.put(f"/api/v1/solutions/{bound.pk}/source/", body, format="json")

    refused = put(production.pk)
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["build_environment"] == [
        "A production environment cannot be a build environment."
    ]
    unknown = put(elsewhere.pk)
    assert (
        unknown.status_code == 400
        and "No such environment" in unknown.json()["error"]["details"]["build_environment"][0]
    )
    accepted = put(build.pk)
    assert accepted.status_code == 200
    assert accepted.json()["build_environment"] == {"id": build.pk, "name": "contoso-build"}
    assert accepted.json()["credential_set"] is True  # the token was kept

    client.force_login(maker)
    page = client.get(f"/solutions/{bound.pk}/").content.decode()
    assert "Builds are made managed in contoso-build." in page
    # The page offers the team's environments that may build, and no other.
    choices = re.findall(r'<option value="(\d+)"', page.split('id="source-bind-form"')[1])
    assert str(build.pk) in choices and str(production.pk) not in choices and str(elsewhere.pk) not in choices


def test_an_unreachable_host_is_retried_then_the_commit_fails_saying_why(
    incident, git_settings, maker, upload, context_of
):
    # Nothing listens on this loopback port: git cannot connect, which is worth retrying.
    services.source_bind(
        solution=incident,
        url="https://127.0.0.1:9/contoso.git",
        token="ghp_unused",
        user=maker,
        context=context_of(maker),
    )
    upload(maker, corpus_bytes(INCIDENT_102_UNMANAGED))
    job = Job.objects.get(kind="source_commit")
    job_run(job.pk)  # one step, as a worker takes it
    job.refresh_from_db()
    assert job.status != "failed" and job.not_before is not None, (job.error_code, job.error_message)
    assert "retrying" in job.progress_message and "127.0.0.1" in job.progress_message

    # After the last attempt it fails, saying why.
    Job.objects.filter(pk=job.pk).update(attempts=10, not_before=None, lease_owner="", lease_expires_at=None)
    job_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "git_unreachable")
    assert "Failed to connect to 127.0.0.1 port 9" in job.error_message
    assert not VersionCommit.objects.exists()
