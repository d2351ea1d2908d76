"""pytest fixtures that run a real Git host over HTTPS (``dataverse_emulator.git_host``).

tests/conftest.py loads this module (``pytest_plugins``), so any test can ask for:

``git_host_server`` (session scope) → :class:`dataverse_emulator.git_host.GitHost`
    One in-process host for the session on a free loopback port, with the emulator's certificate.

``git_host`` (function scope) → :class:`GitHostFixture`
    ``new_repository(name) -> https URL`` (an empty bare repository; the name is made unique per call),
    ``username``, ``token``, ``ca_bundle`` (path of the CA to trust), ``root`` (where the bare repositories
    live), ``remote(url, **overrides)`` (a :class:`alm_portal.sourcecontrol.GitRemote` with these credentials)
    and ``git(*args, cwd=...)`` (the git command line, authenticated, for playing "someone else").
"""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alm_portal.sourcecontrol import GitRemote
from dataverse_emulator.git_host import GitHost

GIT_HOST_USERNAME = "alm-bot"
GIT_HOST_TOKEN = "ghp_test-token-" + uuid.uuid4().hex


@dataclass
class GitHostFixture:
    server: GitHost
    username: str
    token: str
    ca_bundle: str
    root: Path

    _names = itertools.count(1)

    def new_repository(self, name: str = "repo") -> str:
        return self.server.create_repository(f"{name}-{next(self._names)}-{uuid.uuid4().hex[:6]}")

    def remote(self, url: str, **overrides: Any) -> GitRemote:
        values = {"url": url, "username": self.username, "token": self.token, "ca_bundle": self.ca_bundle}
        return GitRemote(**{**values, **overrides})

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git as another user of the host would (credentials in the environment, never on disk)."""
        header = "Authorization: Basic " + base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd or self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": "4",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": header,
            "GIT_CONFIG_KEY_1": "http.sslCAInfo",
            "GIT_CONFIG_VALUE_1": self.ca_bundle,
            "GIT_CONFIG_KEY_2": "user.name",
            "GIT_CONFIG_VALUE_2": "Someone Else",
            "GIT_CONFIG_KEY_3": "user.email",
            "GIT_CONFIG_VALUE_3": "someone@example.com",
        }
        result = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout


@pytest.fixture(scope="session")
def git_host_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHost]:
    base = tmp_path_factory.mktemp("git-host")
    with GitHost(
        base / "repositories", username=GIT_HOST_USERNAME, token=GIT_HOST_TOKEN, cert_dir=base / "certs"
    ) as server:
        yield server


@pytest.fixture
def git_host(git_host_server: GitHost) -> GitHostFixture:
    return GitHostFixture(
        server=git_host_server,
        username=git_host_server.username,
        token=git_host_server.token,
        ca_bundle=str(git_host_server.ca_bundle),
        root=git_host_server.root,
    )
