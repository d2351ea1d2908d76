"""Source control as approvers and stage policy see it (docs/source-control.md, "Provenance everywhere").

- promotion_source_diff(): the commit of the promotion's version and a per-file diff of the solution's folder
  between the commit of the version the target has and that one, read from the repository with
  alm_portal.sourcecontrol.folder_diff. Git being unreachable never breaks a page: the result then says why
  there is no diff.
- source_policy_refusal(): a stage's `require_source_branch` rule, checked against the repository when a
  promotion is requested and again just before its import starts (deployments.policy.source_branch_refusal).

Reads only: nothing here writes a row.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.dom.minidom import Node
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException
from defusedxml.minidom import parseString
from django.core.cache import cache

from alm_portal import sourcecontrol as git
from alm_portal.jobs.errors import JobFailed
from deployments import policy
from deployments.models import Promotion, Stage
from deployments.target_diff import target_installed
from solutions import selectors as solution_selectors
from solutions.choices import SourceKind
from solutions.models import Solution, SolutionVersion, SourceBinding, VersionCommit
from solutions.services.bindings import binding_for, check_address, git_remote_for, work_dir_for

logger = logging.getLogger(__name__)

# What a page can show: the old and new contents read from Git, the files with a diff, the lines of one
# file's diff and of all of them. Beyond these the rest is counted, not shown.
MAX_CHANGED_BYTES = 20 * 1024 * 1024
MAX_FILES_SHOWN = 50
MAX_LINES_PER_FILE = 400
MAX_LINES_IN_ALL = 3000
# Commits never change, so a diff between two of them holds as long as the cache keeps it.
CACHE_SECONDS = 7 * 24 * 3600
_XML_SUFFIXES = (".xml", ".xaml", ".resx", ".xsd", ".svg")


@dataclass(frozen=True)
class SourcePoint:
    """Where a version is in source control: a commit of a repository, and the solution's folder in it."""

    repository_url: str
    commit: str
    folder: str
    tag: str = ""
    branch: str = ""


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # added, modified or deleted
    diff: str  # unified diff of a modified file; "" for an added or deleted one


@dataclass
class PromotionSourceDiff:
    """The promotion's version in source control and what changed in its folder since the target's version.

    `message` says why part of it is missing (no commit, nothing to compare with, Git unreachable);
    `unavailable` is true when the repository could not be read.
    """

    new: SourcePoint | None
    old: SourcePoint | None = None
    old_version: str = ""
    compare_url: str | None = None
    files: list[FileDiff] = field(default_factory=list)
    more_files: int = 0
    truncated: bool = False
    message: str = ""
    unavailable: bool = False
    compared: bool = False


def version_source_point(version: SolutionVersion, *, repository_url: str | None = None) -> SourcePoint | None:
    """The version's newest commit by the portal (in `repository_url` when given, else preferably in the repository
    its solution is bound to now), else the commit it was built from; None when it is in no repository."""
    if repository_url is None:
        binding = binding_for(version.solution)
        bound_to = binding.url if binding is not None else None
        in_bound = version_source_point(version, repository_url=bound_to) if bound_to else None
        if in_bound is not None:
            return in_bound
    commits = VersionCommit.objects.filter(version=version).order_by("-committed_at", "-id")
    if repository_url is not None:
        commits = commits.filter(repository_url=repository_url)
    row = commits.first()
    if row is not None:
        return SourcePoint(row.repository_url, row.commit, row.folder, tag=row.tag, branch=row.branch)
    if version.source_commit and repository_url in (None, version.source_repository_url):
        return SourcePoint(
            version.source_repository_url, version.source_commit, version.source_folder, branch=version.source_ref
        )
    return None


def _binding_for(solution: Solution, repository_url: str) -> SourceBinding:
    """The binding that holds the credential for `repository_url`; refused when the solution left it."""
    binding = binding_for(solution)
    if binding is None or binding.url != repository_url:
        raise git.GitError(
            "git_auth_failed", f"the solution is no longer bound to {repository_url}, so the portal has no credential"
        )
    return binding


# --- the diff ---------------------------------------------------------------------------------------------


def _pretty_xml(text: str) -> str:
    """One element per line, attributes on their element's line: a changed attribute is one changed line."""
    document = parseString(text.encode("utf-8"), forbid_dtd=True)

    def strip_blank(node: Any) -> None:
        for child in list(node.childNodes):
            if child.nodeType == Node.TEXT_NODE and not child.data.strip():
                node.removeChild(child)
            else:
                strip_blank(child)

    strip_blank(document)
    return str(document.toprettyxml(indent="  "))


def _readable_lines(path: str, content: bytes | None) -> list[str] | None:
    """The file as lines to diff, XML and JSON pretty-printed; None for a file that is not text."""
    if content is None:
        return []
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lowered = path.lower()
    try:
        if lowered.endswith(_XML_SUFFIXES):
            text = _pretty_xml(text)
        elif lowered.endswith(".json"):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, ExpatError, DefusedXmlException) as exc:  # a file that does not parse is diffed as it is
        logger.debug("%s not pretty-printed: %s", path, exc)
    return text.splitlines()


def _file_diff(change: git.FileChange) -> list[str]:
    if change.status != "modified":
        return []
    old, new = _readable_lines(change.path, change.old), _readable_lines(change.path, change.new)
    if old is None or new is None:
        return ["Binary file: not shown."]
    lines = list(difflib.unified_diff(old, new, f"a/{change.path}", f"b/{change.path}", lineterm=""))
    return lines or ["Only whitespace or formatting changed."]


def file_diffs(changes: list[git.FileChange]) -> tuple[list[FileDiff], int, bool]:
    """The files to show with their diffs, how many more changed files are not shown, and whether anything
    (files or lines) was left out."""
    shown: list[FileDiff] = []
    lines_left = MAX_LINES_IN_ALL
    truncated = False
    for change in changes[:MAX_FILES_SHOWN]:
        lines = _file_diff(change)
        budget = min(MAX_LINES_PER_FILE, max(lines_left, 0))
        if len(lines) > budget:
            lines = [*lines[:budget], f"… {len(lines) - budget} more lines not shown"]
            truncated = True
        lines_left -= len(lines)
        shown.append(FileDiff(path=change.path, status=change.status, diff="\n".join(lines)))
    more = max(len(changes) - MAX_FILES_SHOWN, 0)
    return shown, more, truncated or more > 0


def _cache_key(repository_url: str, folder: str, old: str, new: str) -> str:
    digest = hashlib.sha256(f"{repository_url}\0{folder}\0{old}\0{new}".encode()).hexdigest()
    return f"promotion-source-diff:{digest}"


def _folder_diff(*, binding: SourceBinding, folder: str, old: str, new: str) -> tuple[list[FileDiff], int, bool]:
    key = _cache_key(binding.url, folder, old, new)
    cached = cache.get(key)
    if cached is not None:
        files, more, truncated = cached
        return [FileDiff(**entry) for entry in files], more, truncated
    check_address(binding)
    changes = git.folder_diff(
        git_remote_for(binding),
        old_commit=old,
        new_commit=new,
        folder=folder,
        work_dir=work_dir_for(binding),
        max_bytes=MAX_CHANGED_BYTES,
    )
    files, more, truncated = file_diffs(changes)
    cache.set(key, ([asdict(entry) for entry in files], more, truncated), CACHE_SECONDS)
    return files, more, truncated


def promotion_source_diff(*, promotion: Promotion) -> PromotionSourceDiff:
    """The promotion's version in source control and the per-file diff of its folder against the commit of the
    version the target has (per the portal's inventory, or what it had before this promotion ran)."""
    new = version_source_point(promotion.version)
    if new is None:
        return PromotionSourceDiff(new=None, message=f"{promotion.version} has no commit in source control.")
    result = PromotionSourceDiff(new=new)
    installed, _compared_with = target_installed(promotion=promotion)
    where = promotion.target_environment.name
    if installed is None:
        result.message = f"{where} has no version of {promotion.solution.unique_name} to compare with."
        return result
    result.old_version = installed.version
    old_version = solution_selectors.version_find(solution=promotion.solution, version=installed.version)
    old = version_source_point(old_version, repository_url=new.repository_url) if old_version is not None else None
    if old is None:
        result.message = (
            f"{where} has {installed.version}, which has no commit in {new.repository_url}: no source diff."
        )
        return result
    result.old = old
    result.compare_url = git.compare_url(new.repository_url, old.commit, new.commit)
    try:
        binding = _binding_for(promotion.solution, new.repository_url)
        files, more, truncated = _folder_diff(binding=binding, folder=new.folder, old=old.commit, new=new.commit)
    except (git.GitError, JobFailed) as exc:
        logger.info("no source diff for promotion %s: %s", promotion.pk, exc.message)
        result.unavailable = True
        result.message = f"source diff unavailable: {exc.message}"
        return result
    result.files, result.more_files, result.truncated, result.compared = files, more, truncated, True
    return result


# --- the stage's branch rule ------------------------------------------------------------------------------


def _on_branch(version: SolutionVersion, branch: str) -> tuple[bool | None, str]:
    """Whether the version's source commit is on `branch` of its repository; (None, why) when Git cannot say."""
    try:
        binding = _binding_for(version.solution, version.source_repository_url)
        check_address(binding)
        contained = git.branch_contains(
            git_remote_for(binding), branch=branch, commit=version.source_commit, work_dir=work_dir_for(binding)
        )
    except (git.GitError, JobFailed) as exc:
        return None, exc.message
    return contained, ""


def source_policy_refusal(*, stage: Stage, version: SolutionVersion) -> policy.Refusal | None:
    """The stage's `require_source_branch` rule for `version`: asks the repository only when the rule is on and
    the version was built from a commit."""
    branch = stage.require_source_branch
    if not branch:
        return None
    on_branch: bool | None = None
    unverified = ""
    if version.source_kind == SourceKind.BUILT and version.source_commit:
        on_branch, unverified = _on_branch(version, branch)
    return policy.source_branch_refusal(stage=stage, version=version, on_branch=on_branch, unverified=unverified)
