"""Where a repository lives and how we are allowed to reach it.

Only three kinds of remote are accepted: ``https://`` (credentials travel in a header, never in the URL),
``ssh://`` or the scp-like ``user@host:path`` (a private key), and a local path (only under a configured
root, for tests and the demo). Everything else (``http://`` in clear text, ``git://``, transport helpers
such as ``ext::`` that run commands, URLs carrying a password) is refused before git ever sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from .errors import GitError

RemoteKind = Literal["https", "ssh", "local"]

# A host name or IPv4 address; IPv6 literals are written [..] in URLs.
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*|\[[0-9A-Fa-f:.]+\])"
_HOST_RE = re.compile(rf"^{_HOST}$")
# git@host:owner/repo.git — the user part is required so "C:stuff" or "dir:file" are never read as ssh.
_SCP_RE = re.compile(rf"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@(?P<host>{_HOST}):(?P<path>[^/\\].*|/.+)$")
# Never starting with '-': ssh would read such a user name as an option.
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class GitRemote:
    """A remote repository and the credentials to reach it (kept out of ``repr`` so they never reach a log)."""

    url: str
    username: str = ""
    token: str = field(default="", repr=False)
    ssh_private_key: str = field(default="", repr=False)
    ca_bundle: str = ""
    local_root: str = ""
    # OpenSSH known_hosts lines for the ssh host; empty = trust the host key seen on first connection.
    ssh_known_hosts: str = ""


def _invalid(reason: str) -> GitError:
    return GitError("git_url_invalid", f"Repository URL refused: {reason}.")


def _check_text(url: str) -> None:
    if not url or url != url.strip():
        raise _invalid("it is empty or has surrounding spaces")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise _invalid("it contains spaces or control characters")
    if url.startswith("-"):
        raise _invalid("it starts with '-'")
    if "::" in url.split("/", 1)[0] or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*::", url):
        raise _invalid("transport helpers (such as ext::) are not allowed")


def remote_kind(url: str) -> RemoteKind:
    """Classify ``url`` as ``https``, ``ssh`` or ``local``; raise ``GitError("git_url_invalid")`` otherwise."""
    _check_text(url)
    if url.startswith("/"):
        if "\\" in url:
            raise _invalid("a local path may not contain backslashes")
        return "local"
    scp = _SCP_RE.match(url)
    if scp and "://" not in url:
        if scp.group("host").startswith("-"):
            raise _invalid("the host may not start with '-'")
        return "ssh"
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise _invalid("file URLs must be file:///absolute/path")
        return "local"
    if scheme not in ("https", "ssh"):
        shown = f"'{scheme}://'" if scheme else "this form"
        raise _invalid(f"{shown} is not supported; use https://, ssh://, git@host:path or a local path")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise _invalid("it has a query or a fragment")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if scheme == "https" and "@" in parts.netloc:
        raise _invalid("credentials (user@ or user:password@) do not belong in an https URL; set them on the remote")
    if scheme == "ssh" and userinfo and not _USER_RE.match(userinfo):
        raise _invalid("an ssh URL may name a user but never carry a password")
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise _invalid("the port is not a number") from None
    if not host or not (_HOST_RE.match(host) or hostport.startswith("[")):
        raise _invalid("the host name is missing or malformed")
    if parts.path in ("", "/"):
        raise _invalid("the repository path is missing")
    return "https" if scheme == "https" else "ssh"


def remote_host(url: str) -> str:
    """The host name git will connect to (for the caller's outbound policy); ``""`` for a local path."""
    kind = remote_kind(url)
    if kind == "local":
        return ""
    scp = _SCP_RE.match(url)
    if scp and "://" not in url:
        return scp.group("host").strip("[]").lower()
    return (urlsplit(url).hostname or "").lower()


def local_path(remote: GitRemote) -> Path:
    """The resolved directory of a local remote, refused unless it lies under ``remote.local_root``."""
    url = remote.url
    raw = urlsplit(url).path if url.startswith("file://") else url
    if not remote.local_root:
        raise _invalid("local repositories are not allowed here")
    root = Path(remote.local_root).resolve()
    path = Path(raw).resolve()  # follows symlinks, so a link pointing outside the root is caught below
    if path == root or not path.is_relative_to(root):
        raise _invalid(f"local repositories must live under {root}")
    return path


def compare_url(url: str, old_commit: str, new_commit: str) -> str | None:
    """The web page comparing two commits on GitHub or Azure DevOps; ``None`` for any other host."""
    try:
        kind = remote_kind(url)
    except GitError:
        return None
    if kind == "local":
        return None
    host = remote_host(url)
    scp = _SCP_RE.match(url)
    path = scp.group("path") if scp and "://" not in url else urlsplit(url).path
    segments = [unquote(segment) for segment in path.strip("/").split("/") if segment]
    old, new = quote(old_commit, safe=""), quote(new_commit, safe="")
    if host == "github.com" and len(segments) == 2:
        owner, repo = segments[0], segments[1].removesuffix(".git")
        return f"https://github.com/{quote(owner)}/{quote(repo)}/compare/{old}...{new}"
    azure: tuple[str, str, str] | None = None
    if host == "dev.azure.com" and len(segments) == 4 and segments[2] == "_git":
        azure = (segments[0], segments[1], segments[3])
    elif host == "ssh.dev.azure.com" and len(segments) == 4 and segments[0] == "v3":
        azure = (segments[1], segments[2], segments[3])
    if azure is None:
        return None
    org, project, repo = azure
    return (
        f"https://dev.azure.com/{quote(org)}/{quote(project)}/_git/{quote(repo.removesuffix('.git'))}"
        f"/branchCompare?baseVersion=GC{old}&targetVersion=GC{new}"
    )
