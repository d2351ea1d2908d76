"""Reading solution versions back from a Git repository: a folder at a branch, tag or commit, whether a branch
holds a commit, and what changed in a folder between two commits. Works in the same cache as committing
(repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import GitError
from .remotes import GitRemote
from .repository import NULL_SHA, CacheRepository, check_ref_name, clean_path, open_cache


@dataclass(frozen=True)
class FetchedFolder:
    commit: str
    ref_kind: Literal["branch", "tag", "commit"]
    files: dict[str, bytes]


@dataclass(frozen=True)
class FileChange:
    path: str
    status: Literal["added", "modified", "deleted"]
    old: bytes | None
    new: bytes | None


def _resolve_ref(cache: CacheRepository, ref: str) -> tuple[str, Literal["branch", "tag", "commit"]]:
    """A branch name, then a tag name, then a (possibly abbreviated) sha reachable from a branch or tag."""
    if ref and not ref.startswith("-") and "\0" not in ref:
        valid = cache.git.run(["check-ref-format", f"refs/heads/{ref}"], git_dir=None, check=False).returncode == 0
        if valid:
            branch = cache.branch_head(ref)
            if branch:
                return branch, "branch"
            tagged = cache.tag_commit(ref)
            if tagged:
                return tagged, "tag"
        commit = cache.resolve_commit(ref)
        if commit and cache.reachable_from_remote_refs(commit):
            return commit, "commit"
    raise GitError("git_ref_not_found", f"No branch, tag or commit {ref!r} in the repository.")


def _tree_entries(cache: CacheRepository, tree: str) -> list[tuple[str, str, int, str]]:
    """(mode, sha, size, path) of every file under ``tree``; submodule links are not files and are skipped."""
    entries = []
    for record in cache.run(["ls-tree", "-r", "-z", "--long", tree]).split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        if kind == "blob":
            entries.append((mode, sha, int(size), path.decode("utf-8", "surrogateescape")))
    return entries


def fetch_folder(remote: GitRemote, *, ref: str, folder: str, work_dir: Path, max_bytes: int) -> FetchedFolder:
    """Every file under ``folder`` at ``ref`` (paths relative to the folder), refusing more than ``max_bytes``."""
    folder = clean_path(folder, "folder")
    with open_cache(remote, work_dir) as cache:
        cache.fetch()
        commit, kind = _resolve_ref(cache, ref)
        tree = cache.folder_tree(commit, folder)
        if tree is None:
            raise GitError("git_folder_missing", f"Folder {folder} does not exist at {ref} ({commit[:12]}).")
        entries = _tree_entries(cache, tree)
        total = sum(size for _mode, _sha, size, _path in entries)
        if total > max_bytes:
            raise GitError(
                "git_folder_too_large",
                f"Folder {folder} at {ref} holds {total} bytes, more than the limit of {max_bytes} bytes.",
            )
        blobs = cache.read_blobs([sha for _mode, sha, _size, _path in entries])
        return FetchedFolder(commit=commit, ref_kind=kind, files={path: blobs[sha] for _m, sha, _s, path in entries})


def branch_contains(remote: GitRemote, *, branch: str, commit: str, work_dir: Path) -> bool:
    """Whether ``commit`` is the head of ``branch`` or one of its ancestors."""
    with open_cache(remote, work_dir) as cache:
        check_ref_name(cache.git, "heads", branch)
        cache.fetch()
        head = cache.branch_head(branch)
        if head is None:
            raise GitError("git_ref_not_found", f"Branch {branch} does not exist in the repository.")
        sha = cache.resolve_commit(commit)
        if sha is None:
            return False  # after fetching the branch, all of its history is here: an unknown commit is not in it
        result = cache.git.run(["merge-base", "--is-ancestor", sha, head], git_dir=cache.repo, check=False)
        if result.returncode not in (0, 1):
            raise cache.git.error_for("merge-base", result)
        return result.returncode == 0


_STATUS: dict[str, Literal["added", "modified", "deleted"]] = {
    "A": "added",
    "M": "modified",
    "T": "modified",
    "D": "deleted",
}


def folder_diff(
    remote: GitRemote,
    *,
    old_commit: str,
    new_commit: str,
    folder: str,
    work_dir: Path,
    max_bytes: int | None = None,
) -> list[FileChange]:
    """The files of ``folder`` that differ between two commits (paths relative to the folder, sorted).

    A folder absent from one side counts as empty. ``max_bytes`` bounds the total size of the old and new
    contents returned (``git_folder_too_large`` beyond it).
    """
    folder = clean_path(folder, "folder")
    with open_cache(remote, work_dir) as cache:
        cache.fetch()
        trees = []
        for ref in (old_commit, new_commit):
            sha = cache.resolve_commit(ref)
            if sha is None:
                raise GitError("git_ref_not_found", f"Commit {ref!r} is not in the repository.")
            trees.append(cache.folder_tree(sha, folder) or cache.empty_tree())
        output = cache.run(["diff-tree", "-r", "-z", "--no-renames", "--raw", trees[0], trees[1]])
        fields = output.split(b"\0")
        rows: list[tuple[str, str | None, str | None, str]] = []
        for index in range(0, len(fields) - 1, 2):
            meta = fields[index].decode().lstrip(":").split()
            old_mode, new_mode, old_sha, new_sha, status = meta[0], meta[1], meta[2], meta[3], meta[4][0]
            if "160000" in (old_mode, new_mode) or status not in _STATUS:
                continue  # submodule links carry no file content
            path = fields[index + 1].decode("utf-8", "surrogateescape")
            rows.append(
                (
                    path,
                    None if NULL_SHA.match(old_sha) else old_sha,
                    None if NULL_SHA.match(new_sha) else new_sha,
                    status,
                )
            )
        wanted = [sha for _path, old, new, _status in rows for sha in (old, new) if sha]
        if max_bytes is not None:
            sizes = cache.run(
                ["cat-file", "--batch-check=%(objectsize)"], input="".join(f"{s}\n" for s in wanted).encode()
            )
            total = sum(int(size) for size in sizes.split())
            if total > max_bytes:
                raise GitError("git_folder_too_large", f"The changes hold {total} bytes, more than {max_bytes}.")
        blobs = cache.read_blobs(wanted)
        changes = [
            FileChange(
                path=path,
                status=_STATUS[status],
                old=blobs[old] if old else None,
                new=blobs[new] if new else None,
            )
            for path, old, new, status in rows
        ]
        return sorted(changes, key=lambda change: change.path)
