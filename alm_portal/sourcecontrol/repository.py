"""Committing solution versions to a Git repository and reading them back.

Each call works in a local bare repository under ``work_dir`` (a cache: delete it whenever you like)
that mirrors the remote's branches and tags under ``refs/remote-cache/``; every call fetches first, so
the cache never decides anything on its own. Commits are built with ``git fast-import`` straight from
the bytes we are given (no working tree), and a version's branch update and tag travel in one
``git push --atomic``. An ``fcntl`` lock in ``work_dir`` serialises processes sharing that cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import GitError
from .remotes import GitRemote
from .runner import GitRunner

HEADS = "refs/remote-cache/heads/"
TAGS = "refs/remote-cache/tags/"
PENDING_REF = "refs/alm/pending"
PUSH_ATTEMPTS = 3
LOCK_TIMEOUT_SECONDS = 900.0
_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
NULL_SHA = re.compile(r"^0+$")


@dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True)
class CommitOutcome:
    commit: str
    tag: str
    created: bool
    diverged: bool
    folder_tree: str
    parent: str | None


# --- validation ----------------------------------------------------------------------------------------
def clean_path(path: str, what: str) -> str:
    """A repository-relative path with forward slashes; refuses anything that could step outside or into .git."""
    cleaned = path.strip("/")
    parts = cleaned.split("/")
    if (
        not cleaned
        or any(part in ("", ".", "..") or part.lower() == ".git" for part in parts)
        or any(ch in cleaned for ch in "\\\0\n\r")
        or cleaned.startswith('"')
    ):
        raise GitError(
            "git_failed", f"Invalid {what} {path!r}: use a relative path with '/' and no '.', '..' or '.git'."
        )
    return cleaned


def _check_person(person: Person, role: str) -> None:
    for value in (person.name, person.email):
        if not value or any(ch in value for ch in "<>\n\r\0"):
            raise GitError("git_failed", f"Invalid {role} {person.name!r} <{person.email}>.")


def _check_trailers(trailers: dict[str, str]) -> None:
    for key, value in trailers.items():
        if not _TRAILER_KEY.match(key) or not value or value != value.strip() or any(ch in value for ch in "\n\r\0"):
            raise GitError("git_failed", f"Invalid commit trailer {key!r}: {value!r}.")


def check_ref_name(git: GitRunner, kind: Literal["heads", "tags"], name: str) -> None:
    result = git.run(["check-ref-format", f"refs/{kind}/{name}"], git_dir=None, check=False)
    if result.returncode != 0 or name.startswith("-"):
        noun = "branch" if kind == "heads" else "tag"
        raise GitError("git_failed", f"Invalid {noun} name {name!r}.")


def full_message(message: str, trailers: dict[str, str]) -> str:
    """The commit message: the text, a blank line, then one ``Key: value`` trailer per line."""
    text = message.strip()
    if trailers:
        text += "\n\n" + "\n".join(f"{key}: {value}" for key, value in trailers.items())
    return text + "\n"


# --- the cache -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GitError("git_timeout", "Another process held the Git cache lock for too long.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CacheRepository:
    """The locked bare repository in ``work_dir`` and the git commands run against it."""

    def __init__(self, git: GitRunner, repo: Path) -> None:
        self.git = git
        self.repo = repo
        self._empty_tree: str | None = None

    def run(self, args: list[str], **kwargs: object) -> bytes:
        return self.git.run(args, git_dir=self.repo, **kwargs).stdout  # type: ignore[arg-type]

    def fetch(self) -> None:
        """Mirror the remote's branches and tags (pruning what the remote deleted)."""
        self.git.run(
            [
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                self.git.fetch_url,
                f"+refs/heads/*:{HEADS}*",
                f"+refs/tags/*:{TAGS}*",
            ],
            git_dir=self.repo,
            network=True,
        )

    def rev(self, expression: str) -> str | None:
        result = self.git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", expression], git_dir=self.repo, check=False
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def branch_head(self, branch: str) -> str | None:
        return self.rev(f"{HEADS}{branch}^{{commit}}")

    def tag_commit(self, tag: str) -> str | None:
        return self.rev(f"{TAGS}{tag}^{{commit}}")

    def empty_tree(self) -> str:
        if self._empty_tree is None:
            self._empty_tree = self.run(["hash-object", "-t", "tree", "--stdin"], input=b"").decode().strip()
        return self._empty_tree

    def folder_tree(self, commit: str | None, folder: str) -> str | None:
        """The tree sha of ``folder`` in ``commit``, or None when the folder is absent (or not a folder)."""
        if commit is None:
            return None
        sha = self.rev(f"{commit}:{folder}")
        if sha is None:
            return None
        kind = self.run(["cat-file", "-t", sha]).decode().strip()
        return sha if kind == "tree" else None

    def first_parent(self, commit: str) -> str | None:
        return self.rev(f"{commit}^1")

    def trailers(self, commit: str) -> list[tuple[str, str]]:
        text = self.run(["log", "-1", "--format=%(trailers:only=true,unfold=true)", commit, "--"]).decode()
        return _parse_trailers(text)

    def find_commit_with_trailers(self, head: str, trailers: dict[str, str]) -> str | None:
        greps = [f"--grep={key}: {value}" for key, value in trailers.items()]
        output = self.run(
            [
                "log",
                "--fixed-strings",
                "--all-match",
                *greps,
                "--format=%H%x00%(trailers:only=true,unfold=true)%x01",
                head,
            ]
        ).decode()
        for record in output.split("\x01"):
            sha, _, text = record.strip("\n").partition("\x00")
            if sha and _trailers_match(_parse_trailers(text), trailers):
                return sha
        return None

    def reachable_from_remote_refs(self, commit: str) -> bool:
        output = self.run(["for-each-ref", "--count=1", "--contains", commit, "refs/remote-cache/"])
        return bool(output.strip())

    def read_blobs(self, shas: list[str]) -> dict[str, bytes]:
        """Contents of the given blobs through one ``git cat-file --batch``."""
        unique = list(dict.fromkeys(shas))
        if not unique:
            return {}
        output = self.run(["cat-file", "--batch"], input="".join(f"{sha}\n" for sha in unique).encode())
        blobs: dict[str, bytes] = {}
        position = 0
        for sha in unique:
            header_end = output.index(b"\n", position)
            header = output[position:header_end].decode().split()
            if len(header) != 3 or header[1] != "blob":
                raise GitError("git_failed", f"Object {sha} is not a file in the repository.")
            size = int(header[2])
            start = header_end + 1
            blobs[sha] = output[start : start + size]
            position = start + size + 1
        return blobs

    def resolve_commit(self, ref: str) -> str | None:
        """A full sha for a full or abbreviated commit sha known to the cache, else None."""
        if not _HEX.match(ref):
            return None
        return self.rev(f"{ref}^{{commit}}")


def _parse_trailers(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            pairs.append((key.strip(), value.strip()))
    return pairs


def _trailers_match(found: list[tuple[str, str]], wanted: dict[str, str]) -> bool:
    present = {(key.lower(), value) for key, value in found}
    return bool(wanted) and all((key.lower(), value) in present for key, value in wanted.items())


@contextlib.contextmanager
def open_cache(remote: GitRemote, work_dir: Path) -> Iterator[CacheRepository]:
    work_dir.mkdir(parents=True, exist_ok=True)
    with _locked(work_dir / ".lock"), GitRunner(remote) as git:
        repo = work_dir / "cache.git"
        if not (repo / "HEAD").is_file() or not (repo / "objects").is_dir():
            shutil.rmtree(repo, ignore_errors=True)  # half-deleted or never made: start over, it is only a cache
            git.run(["init", "--bare", "--quiet", str(repo)], git_dir=None)
        yield CacheRepository(git, repo)


# --- committing ----------------------------------------------------------------------------------------
def _fast_import_stream(
    *,
    parent: str | None,
    folder: str,
    files: dict[str, bytes],
    author: Person,
    committer: Person,
    message: str,
) -> bytes:
    now = int(time.time())
    encoded = message.encode()
    chunks = [
        f"commit {PENDING_REF}\n".encode(),
        f"author {author.name} <{author.email}> {now} +0000\n".encode(),
        f"committer {committer.name} <{committer.email}> {now} +0000\n".encode(),
        f"data {len(encoded)}\n".encode(),
        encoded,
        b"\n",
    ]
    if parent:
        chunks.append(f"from {parent}\n".encode())
    chunks.append(f"D {folder}\n".encode())  # the folder is replaced as a whole: files we are not given go
    for path in sorted(files):
        content = files[path]
        chunks += [f"M 100644 inline {folder}/{path}\n".encode(), f"data {len(content)}\n".encode(), content, b"\n"]
    chunks.append(b"done\n")
    return b"".join(chunks)


def _push(cache: CacheRepository, refspecs: list[str]) -> bool:
    """Push atomically; True when it landed, False when the remote moved under us (fetch and try again)."""
    arguments = ["push", "--porcelain", "--no-verify", cache.git.fetch_url, *refspecs]
    result = cache.git.run(["push", "--atomic", *arguments[1:]], git_dir=cache.repo, network=True, check=False)
    if result.returncode != 0 and "does not support --atomic" in result.stderr:
        # Without atomic pushes the branch may land without its tag; the next call finds the commit by its
        # trailers and tags it, so the outcome is the same.
        result = cache.git.run(arguments, git_dir=cache.repo, network=True, check=False)
    if result.returncode == 0:
        return True
    rejected = [line for line in result.stdout.decode("utf-8", "replace").splitlines() if line.startswith("!")]
    refused = [line for line in rejected if "[remote rejected]" in line and "atomic" not in line]
    if refused:
        reason = cache.git.redact(refused[0].split("\t")[-1])
        raise GitError("git_push_rejected", f"The remote refused the push: {reason}")
    if rejected:
        return False
    raise cache.git.error_for("push", result)


def _replayed(
    cache: CacheRepository, commit: str, tag: str, folder: str, expected_folder_tree: str | None
) -> CommitOutcome:
    parent = cache.first_parent(commit)
    return CommitOutcome(
        commit=commit,
        tag=tag,
        created=False,
        diverged=_diverged(cache, parent, folder, expected_folder_tree),
        folder_tree=cache.folder_tree(commit, folder) or cache.empty_tree(),
        parent=parent,
    )


def _diverged(cache: CacheRepository, head: str | None, folder: str, expected_folder_tree: str | None) -> bool:
    if expected_folder_tree is None:
        return False
    current = cache.folder_tree(head, folder)
    if current is None and expected_folder_tree == cache.empty_tree():
        return False  # an empty folder does not exist in Git; writing nothing leaves nothing
    return current != expected_folder_tree


def commit_version(
    remote: GitRemote,
    *,
    branch: str,
    folder: str,
    files: dict[str, bytes],
    author: Person,
    committer: Person,
    message: str,
    trailers: dict[str, str],
    tag: str,
    expected_folder_tree: str | None,
    work_dir: Path,
) -> CommitOutcome:
    """Commit ``files`` as the whole content of ``folder`` on ``branch``, tag it, and push both atomically.

    Safe to call again for the same version: when ``tag`` already names a commit whose trailers carry the
    same values, that commit is returned (``created=False``) and nothing is pushed; a tag on any other
    commit is a ``git_tag_conflict``. When the branch moved between our fetch and our push, we fetch and
    commit on top of the new head, up to three times, then give up with ``git_push_rejected``.
    Without trailers a replay cannot be recognised, so an existing tag is then always a conflict.
    """
    folder = clean_path(folder, "folder")
    cleaned_files = {clean_path(path, "file path"): content for path, content in files.items()}
    if len(cleaned_files) != len(files):
        raise GitError("git_failed", "Two file paths name the same file.")
    _check_person(author, "author")
    _check_person(committer, "committer")
    _check_trailers(trailers)
    text = full_message(message, trailers)
    with open_cache(remote, work_dir) as cache:
        check_ref_name(cache.git, "heads", branch)
        check_ref_name(cache.git, "tags", tag)
        for _attempt in range(PUSH_ATTEMPTS):
            cache.fetch()
            head = cache.branch_head(branch)
            tagged = cache.tag_commit(tag)
            if tagged is None and cache.rev(f"{TAGS}{tag}") is not None:
                raise GitError("git_tag_conflict", f"Tag {tag} already exists and does not name a commit.")
            if tagged is not None:
                if _trailers_match(cache.trailers(tagged), trailers):
                    return _replayed(cache, tagged, tag, folder, expected_folder_tree)
                raise GitError(
                    "git_tag_conflict", f"Tag {tag} already exists on commit {tagged[:12]}, which is not this version."
                )
            committed = cache.find_commit_with_trailers(head, trailers) if head and trailers else None
            if committed is not None:
                # The branch holds this version but its tag never arrived (a push that was not atomic).
                if _push(cache, [f"{committed}:refs/tags/{tag}"]):
                    return _replayed(cache, committed, tag, folder, expected_folder_tree)
                continue
            stream = _fast_import_stream(
                parent=head, folder=folder, files=cleaned_files, author=author, committer=committer, message=text
            )
            cache.run(["fast-import", "--quiet", "--done", "--force"], input=stream)
            commit = cache.rev(f"{PENDING_REF}^{{commit}}")
            if commit is None:
                raise GitError("git_failed", "git fast-import did not produce a commit.")
            try:
                landed = _push(cache, [f"{commit}:refs/heads/{branch}", f"{commit}:refs/tags/{tag}"])
            finally:
                cache.git.run(["update-ref", "-d", PENDING_REF], git_dir=cache.repo, check=False)
            if landed:
                return CommitOutcome(
                    commit=commit,
                    tag=tag,
                    created=True,
                    diverged=_diverged(cache, head, folder, expected_folder_tree),
                    folder_tree=cache.folder_tree(commit, folder) or cache.empty_tree(),
                    parent=head,
                )
    raise GitError(
        "git_push_rejected", f"Branch {branch} kept moving while we pushed; gave up after {PUSH_ATTEMPTS} attempts."
    )
