"""Which remotes the Git client accepts, and the compare pages it links to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from alm_portal.sourcecontrol import GitError, GitRemote, compare_url, fetch_folder, remote_host, remote_kind
from tests.sourcecontrol.conftest import FOLDER, CommitVersion, solution_files


@pytest.mark.parametrize(
    ("url", "kind", "host"),
    [
        ("https://github.com/contoso/alm.git", "https", "github.com"),
        ("https://dev.azure.com/contoso/Power/_git/alm", "https", "dev.azure.com"),
        ("https://git.contoso.example:8443/alm.git", "https", "git.contoso.example"),
        ("ssh://git@github.com/contoso/alm.git", "ssh", "github.com"),
        ("ssh://git@git.contoso.example:2222/alm.git", "ssh", "git.contoso.example"),
        ("git@github.com:contoso/alm.git", "ssh", "github.com"),
        ("git@ssh.dev.azure.com:v3/contoso/Power/alm", "ssh", "ssh.dev.azure.com"),
        ("/srv/git/alm.git", "local", ""),
        ("file:///srv/git/alm.git", "local", ""),
    ],
)
def test_accepted_urls(url: str, kind: str, host: str):
    assert remote_kind(url) == kind
    assert remote_host(url) == host


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/contoso/alm.git",
        "git://github.com/contoso/alm.git",
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "https://user:secret@github.com/contoso/alm.git",
        "https://x-access-token@github.com/contoso/alm.git",
        "ssh://git:secret@github.com/contoso/alm.git",
        "ssh://-oProxyCommand@github.com/contoso/alm.git",
        "ssh://git@-oProxyCommand/contoso/alm.git",
        "file://otherhost/srv/git/alm.git",
        "relative/path.git",
        "github.com:contoso/alm.git",
        "-uhttps://github.com/contoso/alm.git",
        "https://github.com",
        "https://github.com/contoso/alm.git?x=1",
        "https:///contoso/alm.git",
        "https://github.com/contoso/alm .git",
        "ftp://github.com/contoso/alm.git",
        "",
    ],
)
def test_refused_urls(url: str):
    with pytest.raises(GitError) as raised:
        remote_kind(url)
    assert raised.value.code == "git_url_invalid"
    assert "secret" not in str(raised.value)


def test_compare_urls():
    old, new = "a" * 40, "b" * 40
    assert compare_url("https://github.com/contoso/alm.git", old, new) == (
        f"https://github.com/contoso/alm/compare/{old}...{new}"
    )
    assert compare_url("git@github.com:contoso/alm.git", old, new) == (
        f"https://github.com/contoso/alm/compare/{old}...{new}"
    )
    expected_azure = f"https://dev.azure.com/contoso/Power%20Platform/_git/alm/branchCompare?baseVersion=GC{old}&targetVersion=GC{new}"
    assert compare_url("https://dev.azure.com/contoso/Power%20Platform/_git/alm", old, new) == expected_azure
    assert compare_url("git@ssh.dev.azure.com:v3/contoso/Power/alm", old, new) == (
        f"https://dev.azure.com/contoso/Power/_git/alm/branchCompare?baseVersion=GC{old}&targetVersion=GC{new}"
    )
    assert compare_url("https://git.contoso.example/alm.git", old, new) is None
    assert compare_url("/srv/git/alm.git", old, new) is None
    assert compare_url("http://github.com/contoso/alm.git", old, new) is None


def _bare_repository(path: Path) -> Path:
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True, timeout=30)
    return path


def test_a_local_repository_under_the_local_root(commit: CommitVersion, tmp_path: Path):
    root = tmp_path / "repositories"
    repository = _bare_repository(root / "alm.git")
    remote = GitRemote(url=f"file://{repository}", local_root=str(root))

    outcome = commit(remote, "1.0.0.0")

    fetched = fetch_folder(remote, ref=outcome.tag, folder=FOLDER, work_dir=tmp_path / "read", max_bytes=10**6)
    assert fetched.files == solution_files("1.0.0.0")
    plain_path = GitRemote(url=str(repository), local_root=str(root))
    assert fetch_folder(plain_path, ref="main", folder=FOLDER, work_dir=tmp_path / "r2", max_bytes=10**6).files


@pytest.mark.parametrize("where", ["outside", "symlink out", "no local root", "the root itself"])
def test_local_repositories_elsewhere_are_refused(commit: CommitVersion, tmp_path: Path, where: str):
    root = tmp_path / "repositories"
    root.mkdir()
    outside = _bare_repository(tmp_path / "elsewhere.git")
    (root / "link.git").symlink_to(outside)
    url, local_root = {
        "outside": (str(outside), str(root)),
        "symlink out": (str(root / "link.git"), str(root)),
        "no local root": (str(outside), ""),
        "the root itself": (str(root), str(root)),
    }[where]

    with pytest.raises(GitError) as raised:
        commit(GitRemote(url=url, local_root=local_root), "1.0.0.0")

    assert raised.value.code == "git_url_invalid"


def test_an_unreachable_host_is_classified_on_gits_words_even_when_the_token_is_short(tmp_path):
    """Redaction must not cut into the words the error is recognised by ("t" is in "Failed to connect")."""
    from alm_portal.sourcecontrol import GitError, GitRemote, fetch_folder

    remote = GitRemote(url="https://127.0.0.1:9/contoso.git", token="t")
    try:
        fetch_folder(remote, ref="main", folder="x", work_dir=tmp_path / "work", max_bytes=100)
    except GitError as refusal:
        assert (refusal.code, refusal.transient) == ("git_unreachable", True)
    else:
        raise AssertionError("a fetch from a port nobody listens on succeeded")
