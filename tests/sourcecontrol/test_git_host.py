"""The test Git host itself: it authenticates, streams large pushes, and creates repositories from its CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import requests

from alm_portal.sourcecontrol import fetch_folder
from tests.sourcecontrol.conftest import FOLDER, CommitVersion
from tests.support.git_host import GitHostFixture


def test_requests_without_the_token_get_401_with_a_challenge(git_host: GitHostFixture):
    url = git_host.new_repository()
    refs = f"{url}/info/refs?service=git-upload-pack"

    anonymous = requests.get(refs, verify=git_host.ca_bundle, timeout=10)
    wrong = requests.get(refs, auth=(git_host.username, "wrong"), verify=git_host.ca_bundle, timeout=10)
    right = requests.get(refs, auth=(git_host.username, git_host.token), verify=git_host.ca_bundle, timeout=10)

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert right.status_code == 200
    assert right.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_a_push_of_several_megabytes_is_streamed(git_host: GitHostFixture, commit: CommitVersion, tmp_path: Path):
    # Above git's http.postBuffer (1 MiB) the pack travels with Transfer-Encoding: chunked.
    files = {f"WebResources/blob{index}.bin": os.urandom(1024 * 1024) for index in range(6)}
    remote = git_host.remote(git_host.new_repository())

    outcome = commit(remote, "1.0.0.0", files=files)

    fetched = fetch_folder(remote, ref=outcome.tag, folder=FOLDER, work_dir=tmp_path / "read", max_bytes=10**8)
    assert fetched.files == files


def _pkt_line(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


def test_a_gzipped_chunked_request_reaches_git_whole(git_host: GitHostFixture, commit: CommitVersion):
    # git compresses large fetch negotiations (Content-Encoding: gzip); http-backend inflates them itself.
    url = git_host.new_repository()
    outcome = commit(git_host.remote(url), "1.0.0.0")
    request = _pkt_line(f"want {outcome.commit} no-progress\n") + b"0000" + _pkt_line("done\n")
    compressed = gzip.compress(request)

    answer = requests.post(
        f"{url}/git-upload-pack",
        data=(compressed[index : index + 7] for index in range(0, len(compressed), 7)),  # a generator: chunked
        headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        auth=(git_host.username, git_host.token),
        verify=git_host.ca_bundle,
        timeout=30,
    )

    assert answer.status_code == 200
    assert answer.content.startswith(b"0008NAK\nPACK")


def test_the_cli_creates_bare_repositories(tmp_path: Path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataverse_emulator.git_host",
            "--root",
            str(tmp_path / "root"),
            "--cert-dir",
            str(tmp_path / "certs"),
            "--username",
            "demo",
            "--create",
            "solutions",
            "--create-only",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "root" / "solutions.git" / "HEAD").read_text() == "ref: refs/heads/main\n"


def test_the_cli_serves_until_terminated(tmp_path: Path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataverse_emulator.git_host",
            "--root",
            str(tmp_path / "root"),
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path / "certs"),
            "--username",
            "demo",
            "--create",
            "solutions",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GIT_HOST_TOKEN": "demo-token"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("git-host listening on https://127.0.0.1:")
        base_url = banner.split()[3]
        ca_bundle = banner.split("ca=")[1].strip()
        answer = requests.get(
            f"{base_url}/solutions.git/info/refs?service=git-receive-pack",
            auth=("demo", "demo-token"),
            verify=ca_bundle,
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/x-git-receive-pack-advertisement"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
