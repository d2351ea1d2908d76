"""Reading versions back: fetch_folder, branch_contains and folder_diff against a real Git host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alm_portal.sourcecontrol import FileChange, GitError, branch_contains, fetch_folder, folder_diff
from tests.sourcecontrol.conftest import FOLDER, CommitVersion, solution_files
from tests.support.git_host import GitHostFixture


@pytest.fixture
def two_versions(git_host: GitHostFixture, commit: CommitVersion):
    remote = git_host.remote(git_host.new_repository())
    first = commit(remote, "1.0.0.0", files={**solution_files("1.0.0.0"), "Workflows/Old.xaml": b"old"})
    second = commit(remote, "1.1.0.0", files={**solution_files("1.1.0.0"), "WebResources/new.js": b"new"})
    return remote, first, second


def test_fetch_folder_by_branch_tag_and_sha(two_versions, tmp_path: Path):
    remote, first, second = two_versions
    cache = tmp_path / "read"

    by_branch = fetch_folder(remote, ref="main", folder=FOLDER, work_dir=cache, max_bytes=10**6)
    by_tag = fetch_folder(remote, ref=first.tag, folder=FOLDER, work_dir=cache, max_bytes=10**6)
    by_sha = fetch_folder(remote, ref=first.commit, folder=FOLDER, work_dir=cache, max_bytes=10**6)
    by_short_sha = fetch_folder(remote, ref=first.commit[:9], folder=FOLDER, work_dir=cache, max_bytes=10**6)

    assert (by_branch.commit, by_branch.ref_kind) == (second.commit, "branch")
    assert by_branch.files == {**solution_files("1.1.0.0"), "WebResources/new.js": b"new"}
    assert (by_tag.commit, by_tag.ref_kind) == (first.commit, "tag")
    assert by_tag.files == {**solution_files("1.0.0.0"), "Workflows/Old.xaml": b"old"}
    assert (by_sha.commit, by_sha.ref_kind, by_sha.files) == (first.commit, "commit", by_tag.files)
    assert (by_short_sha.commit, by_short_sha.ref_kind) == (first.commit, "commit")


@pytest.mark.parametrize("ref", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567", "deadbee"])
def test_fetch_folder_of_an_unknown_ref(two_versions, tmp_path: Path, ref: str):
    remote, _first, _second = two_versions

    with pytest.raises(GitError) as raised:
        fetch_folder(remote, ref=ref, folder=FOLDER, work_dir=tmp_path / "read", max_bytes=10**6)

    assert raised.value.code == "git_ref_not_found"


def test_fetch_folder_that_is_not_there(two_versions, tmp_path: Path):
    remote, _first, _second = two_versions

    with pytest.raises(GitError) as raised:
        fetch_folder(remote, ref="main", folder="solutions/Other/src", work_dir=tmp_path / "read", max_bytes=10**6)

    assert raised.value.code == "git_folder_missing"


def test_fetch_folder_larger_than_allowed(two_versions, tmp_path: Path):
    remote, _first, _second = two_versions
    size = sum(len(content) for content in solution_files("1.1.0.0").values()) + len(b"new")

    fetched = fetch_folder(remote, ref="main", folder=FOLDER, work_dir=tmp_path / "read", max_bytes=size)
    with pytest.raises(GitError) as raised:
        fetch_folder(remote, ref="main", folder=FOLDER, work_dir=tmp_path / "read", max_bytes=size - 1)

    assert len(fetched.files) == 4
    assert raised.value.code == "git_folder_too_large"
    assert str(size) in str(raised.value)


def test_branch_contains(git_host: GitHostFixture, two_versions, commit: CommitVersion, tmp_path: Path):
    remote, first, second = two_versions
    other_branch = commit(remote, "9.0.0.0", branch="hotfix")
    cache = tmp_path / "read"

    assert branch_contains(remote, branch="main", commit=first.commit, work_dir=cache) is True
    assert branch_contains(remote, branch="main", commit=second.commit, work_dir=cache) is True
    assert branch_contains(remote, branch="main", commit=second.commit[:10], work_dir=cache) is True
    assert branch_contains(remote, branch="main", commit=other_branch.commit, work_dir=cache) is False
    assert branch_contains(remote, branch="hotfix", commit=second.commit, work_dir=cache) is False
    assert branch_contains(remote, branch="main", commit="0" * 40, work_dir=cache) is False
    with pytest.raises(GitError) as raised:
        branch_contains(remote, branch="release", commit=first.commit, work_dir=cache)
    assert raised.value.code == "git_ref_not_found"


def test_folder_diff(two_versions, tmp_path: Path):
    remote, first, second = two_versions

    changes = folder_diff(
        remote, old_commit=first.commit, new_commit=second.commit, folder=FOLDER, work_dir=tmp_path / "read"
    )

    assert changes == [
        FileChange(
            path="Other/Solution.xml",
            status="modified",
            old=solution_files("1.0.0.0")["Other/Solution.xml"],
            new=solution_files("1.1.0.0")["Other/Solution.xml"],
        ),
        FileChange(path="WebResources/new.js", status="added", old=None, new=b"new"),
        FileChange(path="Workflows/Old.xaml", status="deleted", old=b"old", new=None),
    ]
    assert folder_diff(remote, old_commit=first.commit, new_commit=first.commit, folder=FOLDER, work_dir=tmp_path) == []


def test_folder_diff_bounded_in_size_and_of_unknown_commits(two_versions, tmp_path: Path):
    remote, first, second = two_versions

    with pytest.raises(GitError) as too_large:
        folder_diff(
            remote, old_commit=first.commit, new_commit=second.commit, folder=FOLDER, work_dir=tmp_path, max_bytes=10
        )
    with pytest.raises(GitError) as unknown:
        folder_diff(remote, old_commit="f" * 40, new_commit=second.commit, folder=FOLDER, work_dir=tmp_path)

    assert too_large.value.code == "git_folder_too_large"
    assert unknown.value.code == "git_ref_not_found"


def test_the_cache_may_be_deleted_between_calls(two_versions, tmp_path: Path):
    remote, _first, second = two_versions
    cache = tmp_path / "read"
    fetch_folder(remote, ref="main", folder=FOLDER, work_dir=cache, max_bytes=10**6)

    shutil.rmtree(cache / "cache.git" / "objects")  # a half-deleted cache is rebuilt, not trusted

    assert fetch_folder(remote, ref="main", folder=FOLDER, work_dir=cache, max_bytes=10**6).commit == second.commit
