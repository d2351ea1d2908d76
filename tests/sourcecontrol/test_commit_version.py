"""Committing solution versions to a real Git host over HTTPS."""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from alm_portal.sourcecontrol import GitError, GitRemote, fetch_folder, runner
from tests.sourcecontrol.conftest import FOLDER, CommitVersion, solution_files
from tests.support.git_host import GitHostFixture


def clone(git_host: GitHostFixture, url: str, into: Path) -> Path:
    git_host.git("clone", "--quiet", url, str(into))
    return into


def test_first_commit_creates_the_branch_and_the_tag(git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path):
    url = git_host.new_repository()

    outcome = commit(git_host.remote(url), "1.0.0.0")

    assert outcome.created is True
    assert outcome.parent is None
    assert outcome.diverged is False
    assert outcome.tag == "IncidentReporting-1.0.0.0"
    heads = git_host.git("ls-remote", url)
    assert f"{outcome.commit}\trefs/heads/main" in heads
    assert f"{outcome.commit}\trefs/tags/IncidentReporting-1.0.0.0" in heads
    checkout = clone(git_host, url, tmp_path / "clone")
    message = git_host.git("log", "-1", "--format=%B", cwd=checkout)
    assert message == "IncidentReporting 1.0.0.0\n\nSolution: IncidentReporting\nSolution-Version: 1.0.0.0\n\n"
    assert git_host.git("log", "-1", "--format=%an <%ae> / %cn <%ce>", cwd=checkout).strip() == (
        "Maria Maker <maria@contoso.example> / ALM Portal <alm-portal@contoso.example>"
    )
    written = (checkout / FOLDER / "Other" / "Solution.xml").read_bytes()
    assert written == solution_files("1.0.0.0")["Other/Solution.xml"]
    assert git_host.git("rev-parse", f"HEAD:{FOLDER}", cwd=checkout).strip() == outcome.folder_tree


def test_the_folder_is_replaced_and_the_rest_of_the_repository_left_alone(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    first = commit(remote, "1.0.0.0", files={**solution_files("1.0.0.0"), "Workflows/Old.xaml": b"old"})
    checkout = clone(git_host, url, tmp_path / "clone")
    (checkout / "README.md").write_text("team notes\n")
    git_host.git("add", "README.md", cwd=checkout)
    git_host.git("commit", "--quiet", "-m", "Add notes", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "main", cwd=checkout)

    second = commit(remote, "1.0.1.0", expected_folder_tree=first.folder_tree)

    git_host.git("pull", "--quiet", "--ff-only", cwd=checkout)
    assert not (checkout / FOLDER / "Workflows").exists()
    assert (checkout / "README.md").read_text() == "team notes\n"
    assert second.created is True
    assert second.diverged is False  # the folder was what we last wrote; only README.md changed
    assert second.parent == git_host.git("rev-parse", "HEAD~1", cwd=checkout).strip()


def test_an_unchanged_version_still_gets_its_own_commit(git_host: GitHostFixture, commit: CommitVersion):
    remote = git_host.remote(git_host.new_repository())
    first = commit(remote, "1.0.0.0")

    second = commit(remote, "1.0.0.1", files=solution_files("1.0.0.0"))
    third = commit(remote, "1.0.0.2", files=solution_files("1.0.0.0"))

    assert second.parent == first.commit and third.parent == second.commit
    assert second.folder_tree == first.folder_tree == third.folder_tree


def test_replaying_a_version_returns_the_same_commit_without_pushing(git_host: GitHostFixture, commit: CommitVersion):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    first = commit(remote, "1.0.0.0")
    refs_before = git_host.git("ls-remote", url)

    again = commit(remote, "1.0.0.0")

    assert again.created is False
    assert (again.commit, again.folder_tree, again.parent, again.tag) == (
        first.commit,
        first.folder_tree,
        first.parent,
        first.tag,
    )
    assert git_host.git("ls-remote", url) == refs_before


def test_a_tag_on_another_commit_is_a_conflict(git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    commit(remote, "1.0.0.0")
    checkout = clone(git_host, url, tmp_path / "clone")
    git_host.git("tag", "IncidentReporting-2.0.0.0", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "IncidentReporting-2.0.0.0", cwd=checkout)

    with pytest.raises(GitError) as raised:
        commit(remote, "2.0.0.0")

    assert raised.value.code == "git_tag_conflict"
    assert raised.value.transient is False


def test_a_version_on_the_branch_without_its_tag_gets_tagged(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    first = commit(remote, "1.0.0.0")
    checkout = clone(git_host, url, tmp_path / "clone")
    git_host.git("push", "--quiet", "origin", ":refs/tags/IncidentReporting-1.0.0.0", cwd=checkout)

    again = commit(remote, "1.0.0.0")

    assert again.created is False and again.commit == first.commit
    assert f"{first.commit}\trefs/tags/IncidentReporting-1.0.0.0" in git_host.git("ls-remote", url)


def test_when_the_branch_moved_the_version_goes_on_top_of_the_new_head(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    first = commit(remote, "1.0.0.0")  # the cache now knows the old head
    checkout = clone(git_host, url, tmp_path / "clone")
    (checkout / "CHANGELOG.md").write_text("moved\n")
    git_host.git("add", ".", cwd=checkout)
    git_host.git("commit", "--quiet", "-m", "Someone else's commit", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "main", cwd=checkout)
    moved_head = git_host.git("rev-parse", "HEAD", cwd=checkout).strip()

    second = commit(remote, "1.1.0.0", expected_folder_tree=first.folder_tree)

    assert second.parent == moved_head
    assert second.diverged is False


def test_someone_changing_the_folder_is_reported_as_diverged(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    first = commit(remote, "1.0.0.0")
    checkout = clone(git_host, url, tmp_path / "clone")
    (checkout / FOLDER / "Other" / "Customizations.xml").write_text("<edited by hand/>")
    git_host.git("commit", "--quiet", "-am", "Hand edit", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "main", cwd=checkout)

    second = commit(remote, "1.1.0.0", expected_folder_tree=first.folder_tree)

    assert second.created is True
    assert second.diverged is True
    assert fetch_folder(remote, ref="main", folder=FOLDER, work_dir=tmp_path / "read", max_bytes=10**6).files == (
        solution_files("1.1.0.0")
    )


def test_a_wrong_token_is_an_authentication_failure_that_never_shows_the_token(
    git_host: GitHostFixture, commit: CommitVersion
):
    wrong_token = "ghp_wrong-token-that-must-not-leak"
    remote = git_host.remote(git_host.new_repository(), token=wrong_token)

    with pytest.raises(GitError) as raised:
        commit(remote, "1.0.0.0")

    assert raised.value.code == "git_auth_failed"
    assert wrong_token not in str(raised.value) and wrong_token not in repr(raised.value)
    assert wrong_token not in repr(remote)


@pytest.mark.parametrize("shared_cache", [False, True], ids=["two caches", "one shared cache"])
def test_two_versions_committed_at_the_same_time_both_land(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path, shared_cache: bool
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    commit(remote, "1.0.0.0")
    outcomes = {}
    errors: list[BaseException] = []

    def publish(version: str) -> None:
        cache = tmp_path / ("shared" if shared_cache else version)
        try:
            outcomes[version] = commit(remote, version, work_dir=cache)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(version,)) for version in ("1.1.0.0", "1.2.0.0")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert {outcome.created for outcome in outcomes.values()} == {True}
    refs = git_host.git("ls-remote", url)
    for outcome in outcomes.values():
        assert f"{outcome.commit}\trefs/tags/{outcome.tag}" in refs
    history = git_host.git("log", "--format=%H", "main", cwd=clone(git_host, url, tmp_path / "clone")).split()
    assert {outcome.commit for outcome in outcomes.values()} <= set(history)


def test_two_processes_sharing_one_cache_both_land(git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path):
    url = git_host.new_repository()
    commit(git_host.remote(url), "1.0.0.0")
    script = """
import sys
from pathlib import Path
from alm_portal.sourcecontrol import GitRemote, Person, commit_version
url, token, ca, version, cache = sys.argv[1:]
outcome = commit_version(
    GitRemote(url=url, username="alm-bot", token=token, ca_bundle=ca),
    branch="main", folder="solutions/IncidentReporting/src", files={"Other/Solution.xml": version.encode()},
    author=Person("Maria Maker", "maria@contoso.example"), committer=Person("ALM Portal", "alm@contoso.example"),
    message=f"IncidentReporting {version}", trailers={"Solution-Version": version}, tag=f"IncidentReporting-{version}",
    expected_folder_tree=None, work_dir=Path(cache),
)
print(outcome.commit)
"""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, git_host.token, git_host.ca_bundle, version, str(tmp_path / "shared")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for version in ("2.0.0.0", "2.1.0.0")
    ]
    results = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [stderr for _out, stderr in results]
    refs = git_host.git("ls-remote", url)
    for (stdout, _stderr), version in zip(results, ("2.0.0.0", "2.1.0.0"), strict=True):
        assert f"{stdout.strip()}\trefs/tags/IncidentReporting-{version}" in refs


def test_a_tag_naming_something_other_than_a_commit_is_a_conflict(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path
):
    url = git_host.new_repository()
    remote = git_host.remote(url)
    commit(remote, "1.0.0.0")
    checkout = clone(git_host, url, tmp_path / "clone")
    git_host.git("tag", "IncidentReporting-2.0.0.0", "HEAD^{tree}", cwd=checkout)
    git_host.git("push", "--quiet", "origin", "IncidentReporting-2.0.0.0", cwd=checkout)

    with pytest.raises(GitError) as raised:
        commit(remote, "2.0.0.0")

    assert raised.value.code == "git_tag_conflict"


def test_a_host_whose_certificate_is_not_trusted_is_refused(git_host: GitHostFixture, commit: CommitVersion):
    remote = git_host.remote(git_host.new_repository(), ca_bundle="")

    with pytest.raises(GitError) as raised:
        commit(remote, "1.0.0.0")

    assert raised.value.code == "git_failed"
    assert "certificate" in str(raised.value)
    assert git_host.token not in str(raised.value)


def test_an_ssh_host_that_does_not_answer_is_unreachable_and_the_key_does_not_stay_on_disk(
    commit: CommitVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    private_homes = tmp_path / "tmp"
    private_homes.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_homes))
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"
    remote = GitRemote(url="ssh://git@127.0.0.1:9/contoso/alm.git", ssh_private_key=key)

    with pytest.raises(GitError) as raised:
        commit(remote, "1.0.0.0")

    assert raised.value.code == "git_unreachable"
    assert raised.value.transient is True
    assert "not-a-real-key" not in str(raised.value)
    assert list(private_homes.iterdir()) == []


def test_the_token_is_never_on_a_command_line_nor_on_disk(
    git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    commands: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(command, *args, **kwargs):
        commands.append(list(command))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(runner.subprocess, "Popen", recording_popen)
    basic = base64.b64encode(f"{git_host.username}:{git_host.token}".encode()).decode()

    outcome = commit(git_host.remote(git_host.new_repository()), "1.0.0.0", work_dir=tmp_path / "cache")

    assert outcome.created and any("push" in command for command in commands)
    for command in commands:
        assert not any(git_host.token in argument or basic in argument for argument in command)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert git_host.token.encode() not in content and basic.encode() not in content, path
