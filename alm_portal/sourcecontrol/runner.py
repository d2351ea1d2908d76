"""Running the ``git`` command line safely: bounded in time, isolated from the machine's Git configuration,
with credentials passed only through the environment of the one process that needs them.

* ``HOME`` is a private temporary directory and system/global configuration is ignored, so nobody's
  ``~/.gitconfig``, credential helper or ``url.*.insteadOf`` can change what we do.
* https credentials travel as ``http.extraHeader: Authorization: Basic …`` through ``GIT_CONFIG_COUNT``/
  ``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``: never on a command line (visible in ``ps``), never on disk.
* The ssh key is written to a 0600 file in that private directory, removed with it afterwards.
* ``GIT_ALLOW_PROTOCOL`` names only this remote's transport; ``core.hooksPath=/dev/null`` keeps hooks from
  running, in our cache and in a local remote's receive-pack alike (it inherits the environment).
* Redirects are not followed: the caller checked the host named in the URL against its outbound policy.
* Every message that leaves this module has the token (and its Basic-auth form) removed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import GitError
from .remotes import GitRemote, local_path, remote_kind

GIT = "/usr/bin/git" if Path("/usr/bin/git").exists() else (shutil.which("git") or "git")
NETWORK_TIMEOUT_SECONDS = 600.0  # a fetch or push of a large repository over a slow link
LOCAL_TIMEOUT_SECONDS = 120.0  # commands that only read or write the local cache

# What git prints (LC_ALL=C) → our code. Checked in order; the first match wins.
_STDERR_CODES: tuple[tuple[str, str], ...] = (
    ("authentication failed", "git_auth_failed"),
    ("could not read username", "git_auth_failed"),
    ("could not read password", "git_auth_failed"),
    ("terminal prompts disabled", "git_auth_failed"),
    ("the requested url returned error: 401", "git_auth_failed"),
    ("the requested url returned error: 403", "git_auth_failed"),
    ("permission denied (publickey", "git_auth_failed"),
    ("host key verification failed", "git_auth_failed"),
    ("could not resolve host", "git_unreachable"),
    ("could not resolve hostname", "git_unreachable"),
    ("connection refused", "git_unreachable"),
    ("connection timed out", "git_unreachable"),
    ("timed out", "git_unreachable"),
    ("failed to connect", "git_unreachable"),
    ("couldn't connect to server", "git_unreachable"),
    ("network is unreachable", "git_unreachable"),
    ("no route to host", "git_unreachable"),
    ("connection reset", "git_unreachable"),
    ("the remote end hung up unexpectedly", "git_unreachable"),
    ("the requested url returned error: 5", "git_unreachable"),
)


@dataclass
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str


class GitRunner:
    """Runs git for one remote with the environment that remote needs; use as a context manager."""

    def __init__(self, remote: GitRemote) -> None:
        self.remote = remote
        self.kind = remote_kind(remote.url)
        self.fetch_url = str(local_path(remote)) if self.kind == "local" else remote.url
        self._secrets = [secret for secret in (remote.token, remote.ssh_private_key) if secret]
        if remote.token:
            self._secrets.append(self._basic_credentials())
        self._home: Path | None = None
        self._env: dict[str, str] = {}

    def __enter__(self) -> GitRunner:
        self._home = Path(tempfile.mkdtemp(prefix="alm-git-"))
        self._env = self._environment(self._home)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    # --- environment ------------------------------------------------------------------------------------
    def _basic_credentials(self) -> str:
        user = self.remote.username or "git"
        return base64.b64encode(f"{user}:{self.remote.token}".encode()).decode("ascii")

    def _environment(self, home: Path) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LC_ALL": "C",
            "LANG": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            # Only the transport this remote needs: an https remote can never be redirected to a local path.
            "GIT_ALLOW_PROTOCOL": {"https": "https", "ssh": "ssh", "local": "file"}[self.kind],
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
        }
        config: list[tuple[str, str]] = [
            ("credential.helper", ""),
            ("core.hooksPath", "/dev/null"),
            ("gc.autoDetach", "false"),
            ("http.followRedirects", "false"),
            ("http.lowSpeedLimit", "1000"),
            ("http.lowSpeedTime", "120"),
            ("protocol.file.allow", "always" if self.kind == "local" else "never"),
        ]
        if self.kind == "https":
            if self.remote.token:
                config.append(("http.extraHeader", f"Authorization: Basic {self._basic_credentials()}"))
            if self.remote.ca_bundle:
                config.append(("http.sslCAInfo", self.remote.ca_bundle))
        if self.kind == "ssh":
            env["GIT_SSH_COMMAND"] = self._ssh_command(home)
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def _ssh_command(self, home: Path) -> str:
        known_hosts = home / "known_hosts"
        known_hosts.write_text(self.remote.ssh_known_hosts + "\n" if self.remote.ssh_known_hosts else "")
        options = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=" + ("yes" if self.remote.ssh_known_hosts else "accept-new"),
            "-o",
            "ConnectTimeout=30",
        ]
        if self.remote.ssh_private_key:
            key_file = home / "id_key"
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(self.remote.ssh_private_key.strip() + "\n")  # OpenSSH wants the final newline
            options += ["-i", str(key_file)]
        return shlex.join(options)

    # --- running ----------------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def run(
        self,
        args: list[str],
        *,
        git_dir: Path | None,
        input: bytes | None = None,
        network: bool = False,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> GitResult:
        """Run ``git [--git-dir=…] args``; raise :class:`GitError` on failure unless ``check`` is false."""
        if self._home is None:
            raise RuntimeError("GitRunner must be used as a context manager")
        command = [GIT, *([f"--git-dir={git_dir}"] if git_dir else []), *args]
        timeout = NETWORK_TIMEOUT_SECONDS if network else LOCAL_TIMEOUT_SECONDS
        env = {**self._env, **(extra_env or {})}
        process = subprocess.Popen(  # noqa: S603 - fixed executable, arguments built by this module
            command,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self._home,
            start_new_session=True,  # so a timeout also ends ssh and remote helpers git started
        )
        try:
            stdout, stderr_bytes = process.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GitError("git_timeout", f"git {args[0]} did not finish within {timeout:.0f} seconds.") from None
        raw_stderr = stderr_bytes.decode("utf-8", "replace")
        result = GitResult(process.returncode, stdout, self.redact(raw_stderr))
        if check and result.returncode != 0:
            raise self.error_for(args[0], result, raw_stderr=raw_stderr)
        return result

    def error_for(self, command: str, result: GitResult, *, raw_stderr: str | None = None) -> GitError:
        # Classified on git's own words, before redaction could cut into them; the message is redacted.
        lowered = (result.stderr if raw_stderr is None else raw_stderr).lower()
        detail = " ".join(line.strip() for line in result.stderr.strip().splitlines()[-3:])
        for needle, code in _STDERR_CODES:
            if needle in lowered:
                if code == "git_auth_failed":
                    message = f"The repository refused the credentials (git {command}: {detail})"
                else:
                    message = f"git {command} failed: {detail}"
                return GitError(code, self.redact(message))
        return GitError("git_failed", self.redact(f"git {command} failed (exit {result.returncode}): {detail}"))

    @contextlib.contextmanager
    def temporary_file(self, name: str) -> Iterator[Path]:
        assert self._home is not None
        path = self._home / name
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
