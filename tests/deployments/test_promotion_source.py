"""Promotions and source control (docs/source-control.md), against a real Git host over HTTPS.

- Approvers see the change as source: the promotion page and `GET /api/v1/promotions/{id}/source-diff/` show the
  version's commit and the per-file diff of the solution's folder against the commit of the version the target has.
- A stage's `require_source_branch` takes only versions built from a commit on that branch (409 source_policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from alm_portal import sourcecontrol as git
from alm_portal.audit.models import AuditEvent
from alm_portal.errors import Conflict
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from deployments import source
from deployments.models import Promotion
from deployments.services import stage_update
from environments.models import InventoryInterval
from solutions import services
from solutions.models import SolutionVersion, SourceBinding, VersionCommit
from tests.deployments.test_runner_fixtures import (  # noqa: F401 - fixtures are found by name
    SUCCESS,
    contoso_fixture,
    no_broker_for_inline_fixture,
    runner_settings_fixture,
    success_package,
)
from tests.deployments.test_workflow_fixtures import (  # noqa: F401 - fixtures are found by name
    approve,
    as_user,
    environments_fixture,
    fast_password_hashing,
    make_version,
    pipeline_fixture,
    preflight,
    published_fixture,
    request,
    run_to,
    solution_fixture,
    stage_test_fixture,
)
from tests.solutions.conftest import INCIDENT_102_MANAGED, INCIDENT_105_MANAGED, corpus_bytes, upload_file

pytestmark = pytest.mark.django_db(transaction=True)
FOLDER = "solutions/IncidentReporting/src"
# Nothing listens on port 1: Git cannot connect.
DEAD_REPOSITORY = "https://127.0.0.1:1/contoso.git"


@pytest.fixture
def git_settings(settings: Any, git_host: Any, tmp_path: Path) -> Any:
    settings.ALM_GIT_CA_BUNDLE = git_host.ca_bundle
    settings.ALM_GIT_WORK_DIR = tmp_path / "git-work"
    settings.ALM_ALLOW_LOOPBACK = True
    return settings


@pytest.fixture
def bound(solution: Any, git_host: Any, git_settings: Any, maker: Any) -> Any:
    """IncidentReporting (in the Contoso pipeline) bound to a new, empty repository on the Git host."""
    solution.publisher_unique_name = "Shaheer"  # the corpus packages' publisher
    solution.save(update_fields=["publisher_unique_name"])
    services.source_bind(
        solution=solution,
        url=git_host.new_repository("contoso"),
        username=git_host.username,
        token=git_host.token,
        user=maker,
        context=as_user(maker),
    )
    return solution


def upload_and_commit(user: Any, corpus_name: str) -> Any:
    outcome = services.solution_version_upload(
        file=upload_file(corpus_bytes(corpus_name)), user=user, context=as_user(user)
    )
    for job in Job.objects.filter(kind="source_commit", status="pending").order_by("pk"):
        ran = job_run_now(job)
        assert ran.status == "succeeded", (ran.error_code, ran.error_message)
    return outcome.version


def target_has(environment: Any, version: str) -> None:
    """The test environment's inventory, as its sync after the promotion would record it."""
    InventoryInterval.objects.create(
        environment=environment,
        unique_name="IncidentReporting",
        version=version,
        is_managed=True,
        valid_from=timezone.now(),
    )


@pytest.fixture
def newer_requested(bound: Any, stage_test: Any, environments: Any, maker: Any, approver: Any, published: Any) -> Any:
    """1.0.0.2 and 1.0.0.5 committed; 1.0.0.2 promoted to test (which now has it); 1.0.0.5 requested there."""
    older = upload_and_commit(maker, INCIDENT_102_MANAGED)
    newer = upload_and_commit(maker, INCIDENT_105_MANAGED)
    first = preflight(request(older, stage_test, maker))
    run_to(approve(first, approver), previous_version="")
    target_has(environments["test"], "1.0.0.2")
    return preflight(request(newer, stage_test, maker))


def commit_of(version: Any) -> VersionCommit:
    return VersionCommit.objects.get(version=version)


def test_the_promotion_page_shows_the_commit_and_the_changed_lines_against_the_targets_version(
    newer_requested, client, approver
):
    newer = commit_of(newer_requested.version)
    older = VersionCommit.objects.get(version__version_key="1.0.0.2")
    client.force_login(approver)

    page = client.get(f"/deploy/promotions/{newer_requested.pk}/").content.decode()
    # The page's Source section loads the diff from here once the page is shown.
    diff = client.get(f"/deploy/promotions/{newer_requested.pk}/source-diff/").content.decode()

    assert f"Source: commit <code>{newer.commit[:12]}</code> (tag <code>IncidentReporting/1.0.0.5</code>)" in page
    assert newer.repository_url in page
    assert f'hx-get="/deploy/promotions/{newer_requested.pk}/source-diff/"' in page
    assert f"Compared with commit <code>{older.commit[:12]}</code>" in diff
    # Solution.xml pretty-printed: the version is one changed line, old and new.
    assert "<code>Other/Solution.xml</code>" in diff
    assert "-    &lt;Version&gt;1.0.0.2&lt;/Version&gt;" in diff
    assert "+    &lt;Version&gt;1.0.0.5&lt;/Version&gt;" in diff
    # The Git host is neither GitHub nor Azure DevOps: no comparison link.
    assert "Open the comparison" not in diff


def test_the_api_gives_the_same_diff(newer_requested, api_client, token_for, approver):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(approver)}")

    answer = api_client.get(f"/api/v1/promotions/{newer_requested.pk}/source-diff/")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["new_commit"] == commit_of(newer_requested.version).commit
    assert body["old_commit"] == VersionCommit.objects.get(version__version_key="1.0.0.2").commit
    assert (body["old_version"], body["new_tag"], body["folder"]) == ("1.0.0.2", "IncidentReporting/1.0.0.5", FOLDER)
    assert body["compare_url"] is None and body["message"] is None and body["truncated"] is False
    files = {entry["path"]: entry for entry in body["files"]}
    solution_xml = files["Other/Solution.xml"]
    assert solution_xml["status"] == "modified"
    changed = [line for line in solution_xml["diff"].splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert "-    <Version>1.0.0.2</Version>" in changed and "+    <Version>1.0.0.5</Version>" in changed
    assert all(entry["diff"] == "" for entry in body["files"] if entry["status"] != "modified")


def test_an_unreachable_repository_leaves_the_page_working_and_says_why(newer_requested, client, approver):
    SourceBinding.objects.update(url=DEAD_REPOSITORY)
    VersionCommit.objects.update(repository_url=DEAD_REPOSITORY)
    client.force_login(approver)

    page = client.get(f"/deploy/promotions/{newer_requested.pk}/")
    diff = client.get(f"/deploy/promotions/{newer_requested.pk}/source-diff/")

    assert page.status_code == 200 and diff.status_code == 200
    assert f"Source: commit <code>{commit_of(newer_requested.version).commit[:12]}</code>" in page.content.decode()
    text = diff.content.decode()
    assert "source diff unavailable:" in text and "127.0.0.1" in text, text


def test_the_diff_of_two_commits_is_read_from_git_once(newer_requested, git_host):
    first = source.promotion_source_diff(promotion=newer_requested)
    # The repository leaves the host: commits never change, so the diff already read still answers.
    name = SourceBinding.objects.get().url.rsplit("/", 1)[1]
    (git_host.root / name).rename(git_host.root / f"moved-{name}")

    again = source.promotion_source_diff(promotion=newer_requested)

    assert first.compared and again.compared and not again.unavailable
    assert again.files == first.files and len(first.files) > 1


def test_a_version_without_a_commit_says_so(solution, stage_test, maker, published):
    promotion = preflight(request(make_version(solution, "1.0.0.7"), stage_test, maker))

    diff = source.promotion_source_diff(promotion=promotion)

    assert diff.new is None and not diff.compared
    assert diff.message == f"{promotion.version} has no commit in source control."


def test_a_github_binding_links_the_compare_page(
    solution, stage_test, environments, maker, approver, published, monkeypatch
):
    """Unit level: the rows as a GitHub-bound solution has them; the network is never reached."""
    url = "https://github.com/contoso/solutions.git"
    SourceBinding.objects.create(solution=solution, url=url, branch="main", root_folder="solutions")
    older, newer = make_version(solution, "1.0.0.2"), make_version(solution, "1.0.0.5")
    for version, sha in ((older, "a" * 40), (newer, "b" * 40)):
        VersionCommit.objects.create(
            version=version,
            repository_url=url,
            branch="main",
            folder=FOLDER,
            flavours="managed",
            commit=sha,
            tag=f"IncidentReporting/{version.version_key}",
            folder_tree="c" * 40,
        )
    target_has(environments["test"], "1.0.0.2")

    def unreachable(binding: Any) -> None:
        raise git.GitError("git_unreachable", "github.com cannot be reached: no network in this test")

    monkeypatch.setattr(source, "check_address", unreachable)
    promotion = preflight(request(newer, stage_test, maker))

    diff = source.promotion_source_diff(promotion=promotion)

    assert diff.compare_url == f"https://github.com/contoso/solutions/compare/{'a' * 40}...{'b' * 40}"
    assert diff.unavailable and diff.message == (
        "source diff unavailable: github.com cannot be reached: no network in this test"
    )


def test_a_version_committed_to_two_repositories_is_shown_in_the_one_its_solution_is_bound_to(solution):
    version = make_version(solution, "1.0.0.2")
    SourceBinding.objects.create(solution=solution, url="https://github.com/contoso/now.git")
    for url, sha in (
        ("https://github.com/contoso/now.git", "a" * 40),
        ("https://github.com/contoso/before.git", "b" * 40),
    ):
        VersionCommit.objects.create(
            version=version,
            repository_url=url,
            branch="main",
            folder=FOLDER,
            flavours="managed",
            commit=sha,
            tag="IncidentReporting/1.0.0.2",
            folder_tree="c" * 40,
        )

    point = source.version_source_point(version)

    assert (point.repository_url, point.commit) == ("https://github.com/contoso/now.git", "a" * 40)


def test_file_diffs_pretty_print_xml_and_json_and_cap_what_they_show():
    changes = [
        git.FileChange(
            path="Other/Customizations.xml",
            status="modified",
            old=b'<ImportExportXml><Entity Name="a" IsAudited="0"><Field/></Entity></ImportExportXml>',
            new=b'<ImportExportXml><Entity Name="a" IsAudited="1"><Field/></Entity></ImportExportXml>',
        ),
        git.FileChange(
            path="Workflows/flow.json", status="modified", old=b'{"a": 1, "b": [1, 2]}', new=b'{"a": 1, "b": [1, 3]}'
        ),
        git.FileChange(path="Other/new.xml", status="added", old=None, new=b"<a/>"),
        git.FileChange(path="Other/gone.xml", status="deleted", old=b"<a/>", new=None),
        *[
            git.FileChange(path=f"WebResources/file{index:03}.js", status="modified", old=b"a\n", new=b"b\n")
            for index in range(source.MAX_FILES_SHOWN)
        ],
    ]

    shown, more, truncated = source.file_diffs(changes)

    assert len(shown) == source.MAX_FILES_SHOWN and more == 4 and truncated
    xml_changes = [line for line in shown[0].diff.splitlines()[2:] if line[:1] in "+-"]
    assert xml_changes == ['-  <Entity Name="a" IsAudited="0">', '+  <Entity Name="a" IsAudited="1">']
    json_changes = [line for line in shown[1].diff.splitlines()[2:] if line[:1] in "+-"]
    assert json_changes == ["-    2", "+    3"]
    assert (shown[2].status, shown[2].diff, shown[3].status, shown[3].diff) == ("added", "", "deleted", "")


# --- the stage policy: only versions built from a commit on a protected branch ---------------------------


def require_branch(stage: Any, branch: str, admin: Any) -> Any:
    return stage_update(stage=stage, require_source_branch=branch, context=as_user(admin))


def built_from(solution: Any, text: str, commit: str) -> Any:
    """A version registered as built from `commit` of the solution's repository, with its managed package."""
    version = make_version(solution, text)
    binding = SourceBinding.objects.get(solution=solution)
    SolutionVersion.objects.filter(pk=version.pk).update(
        source_kind="built",
        source_repository_url=binding.url,
        source_ref=commit[:10],
        source_commit=commit,
        source_folder=binding.folder,
    )
    version.refresh_from_db()
    return version


@pytest.fixture
def branches(bound: Any, maker: Any, git_host: Any, tmp_path: Path) -> dict[str, str]:
    """A commit on main (the portal's, of 1.0.0.2) and one pushed by someone else only to a feature branch."""
    main = commit_of(upload_and_commit(maker, INCIDENT_102_MANAGED)).commit
    checkout = tmp_path / "someone-else"
    git_host.git("clone", "--quiet", bound.source_binding.url, str(checkout))
    git_host.git("checkout", "--quiet", "-b", "feature", cwd=checkout)
    solution_xml = checkout / FOLDER / "Other" / "Solution.xml"
    solution_xml.write_text(solution_xml.read_text().replace("1.0.0.2", "1.0.1.1"))
    git_host.git("commit", "--quiet", "-am", "Work in progress", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "feature", cwd=checkout)
    feature = git_host.git("rev-parse", "HEAD", cwd=checkout).strip()
    return {"main": main, "feature": feature}


def test_a_version_built_from_a_commit_on_the_protected_branch_is_accepted(
    bound, branches, stage_test, maker, admin_user, published
):
    require_branch(stage_test, "main", admin_user)

    promotion = request(built_from(bound, "1.0.1.0", branches["main"]), stage_test, maker)

    assert promotion.status == "pending_approval"


def test_a_version_built_from_another_branch_is_refused_naming_the_branch(
    bound, branches, stage_test, maker, admin_user, published
):
    require_branch(stage_test, "main", admin_user)
    version = built_from(bound, "1.0.1.1", branches["feature"])

    with pytest.raises(Conflict) as refused:
        request(version, stage_test, maker)

    assert refused.value.code == "source_policy"
    assert "built from a commit on the branch 'main'" in refused.value.message
    assert f"commit {branches['feature'][:12]} of {version} is not on 'main'" in refused.value.message
    assert refused.value.details["branch"] == "main"
    assert not Promotion.objects.filter(version=version).exists()


def test_a_version_not_built_from_source_is_refused(solution, stage_test, maker, admin_user, published):
    require_branch(stage_test, "main", admin_user)
    uploaded = make_version(solution, "1.0.0.9")

    with pytest.raises(Conflict) as refused:
        request(uploaded, stage_test, maker)

    assert refused.value.code == "source_policy"
    assert "was not built from source (source kind 'uploaded')" in refused.value.message


def test_a_repository_that_cannot_be_asked_refuses_saying_it_could_not_be_verified(
    bound, branches, stage_test, maker, admin_user, published
):
    require_branch(stage_test, "main", admin_user)
    version = built_from(bound, "1.0.1.0", branches["main"])  # on main, but Git cannot say so now
    SourceBinding.objects.update(url=DEAD_REPOSITORY)
    SolutionVersion.objects.filter(pk=version.pk).update(source_repository_url=DEAD_REPOSITORY)
    version.refresh_from_db()

    with pytest.raises(Conflict) as refused:
        request(version, stage_test, maker)

    assert refused.value.code == "source_policy"
    assert f"whether commit {branches['main'][:12]} is on it could not be verified:" in refused.value.message
    assert refused.value.details["reason"]


def test_the_api_answers_the_refusal_in_the_error_shape_and_admins_set_the_rule(
    solution, stage_test, maker, admin_user, published, api_client, token_for
):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(admin_user, ['read', 'admin'])}")
    invalid = api_client.patch(f"/api/v1/stages/{stage_test.pk}/", {"require_source_branch": "a..b"}, format="json")
    assert invalid.status_code == 400 and "require_source_branch" in invalid.json()["error"]["details"]
    changed = api_client.patch(f"/api/v1/stages/{stage_test.pk}/", {"require_source_branch": "main"}, format="json")
    assert changed.status_code == 200 and changed.json()["require_source_branch"] == "main"
    event = AuditEvent.objects.filter(action="stage.updated").order_by("seq").last()
    assert event.after["require_source_branch"] == "main"

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(maker, ['read', 'request'])}")
    version = make_version(solution, "1.0.0.9")
    answer = api_client.post(
        "/api/v1/promotions/", {"version": version.pk, "stage": stage_test.pk, "justification": "x"}, format="json"
    )

    assert answer.status_code == 409, answer.content
    error = answer.json()["error"]
    assert error["code"] == "source_policy" and "'main'" in error["message"]
    assert error["details"]["branch"] == "main"


def test_the_runner_checks_the_rule_again_before_the_import_starts(contoso):
    """Turned on after the promotion was approved: the run fails with the same refusal, nothing is imported."""
    promotion = contoso.approve(contoso.preflight(contoso.request(contoso.upload(success_package("1.0.0.0")), "test")))
    assert promotion.status == "queued"
    require_branch(contoso.stages["test"], "main", contoso.admin)

    promotion = contoso.run(promotion)

    assert (promotion.status, promotion.error_code) == ("failed", "source_policy")
    assert "accepts only versions built from a commit on the branch 'main'" in promotion.error_message
    assert contoso.orgs["test"].import_count(SUCCESS) == 0


def test_the_request_form_preview_says_so_before_anyone_submits(solution, stage_test, maker, admin_user, client):
    require_branch(stage_test, "main", admin_user)
    uploaded = make_version(solution, "1.0.0.9")
    built = make_version(solution, "1.0.1.0")
    SolutionVersion.objects.filter(pk=built.pk).update(
        source_kind="built", source_repository_url=DEAD_REPOSITORY, source_commit="d" * 40
    )
    client.force_login(maker)

    refused = client.get(f"/deploy/versions/{uploaded.pk}/promote/preview/?stage={stage_test.pk}").content.decode()
    asked = client.get(f"/deploy/versions/{built.pk}/promote/preview/?stage={stage_test.pk}").content.decode()

    assert "was not built from source" in refused and "&#x27;main&#x27;" in refused
    # The preview never calls Git (the repository here is unreachable): it says what the request will ask.
    assert f"whether commit {'d' * 12} is on it" in asked


def test_an_admin_sets_the_rule_on_the_stage_page_and_the_pipeline_shows_it(stage_test, admin_user, client):
    client.force_login(admin_user)
    form = client.get(f"/deploy/stages/{stage_test.pk}/").content.decode()
    assert 'name="require_source_branch"' in form
    values = {
        "name": stage_test.name,
        "target_environment": stage_test.target_environment_id,
        "required_approvals": stage_test.required_approvals,
        "approver_users": [user.pk for user in stage_test.approver_users.all()],
        "import_mode": stage_test.import_mode,
        "requires_previous_stage": "on",
        "activate_flows_and_plugins": "on",
    }

    refused = client.post(f"/deploy/stages/{stage_test.pk}/", {**values, "require_source_branch": "main..x"})
    saved = client.post(f"/deploy/stages/{stage_test.pk}/", {**values, "require_source_branch": "main"})

    assert "is not a valid branch name" in refused.content.decode()
    assert saved.status_code == 302
    stage_test.refresh_from_db()
    assert stage_test.require_source_branch == "main"
    pipeline = client.get(f"/deploy/pipelines/{stage_test.pipeline_id}/").content.decode()
    assert "only versions built from <code>main</code>" in pipeline
