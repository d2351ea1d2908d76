"""Where a solution's versions are kept in Git: binding a solution (or a whole pipeline) to a repository, with a
write-only credential and the outbound policy's checks, and the remote and cache a Git call needs
(docs/source-control.md). source.py commits versions and builds.py builds them through these bindings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alm_portal import sourcecontrol as git
from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.services import record
from alm_portal.crypto import decrypt_secret, encrypt_secret
from alm_portal.errors import PermissionRefused, ValidationFailed
from alm_portal.jobs.errors import JobFailed
from alm_portal.outbound import OutboundRefused, Purpose, check_url, resolve_checked
from environments.choices import EnvironmentKind
from environments.models import Environment
from solutions.choices import SourceCredentialKind
from solutions.models import Solution, SourceBinding
from solutions.services.registry import may_change

# git check-ref-format's rules, kept to the characters branch, tag and commit names use in practice.
_REF = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*\.lock$)(?!.*/$)(?!-)[A-Za-z0-9._/+-]+$")


def valid_ref(name: str) -> bool:
    return bool(_REF.match(name)) and not any(part.startswith(".") for part in name.split("/"))


def _refuse_git_url(message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"url": [message]})


def check_remote(url: str) -> str:
    """Refuse a repository URL the portal may not reach; return its kind (https, ssh or local)."""
    try:
        kind = git.remote_kind(url)
    except git.GitError as exc:
        raise _refuse_git_url(exc.message) from None
    if kind == "local":
        if not settings.ALM_GIT_LOCAL_ROOT:
            raise _refuse_git_url(
                "Local repositories are not allowed here (ALM_GIT_LOCAL_ROOT is not set); use an https or ssh URL."
            )
        root = Path(settings.ALM_GIT_LOCAL_ROOT).resolve()
        path = Path(url.removeprefix("file://")).resolve()
        if path != root and root not in path.parents:
            raise _refuse_git_url(f"A local repository must be under {root}.")
        return kind
    host = git.remote_host(url)
    try:
        # The outbound policy judges the host name as for any other outside service (no IP literals, ASCII
        # names, loopback only where allowed); the address is checked again before every connection.
        check_url(f"https://{host}", purpose=Purpose.GIT)
    except OutboundRefused as exc:
        raise _refuse_git_url(f"The repository's host is not allowed: {exc.message}") from None
    return kind


def check_address(binding: SourceBinding) -> None:
    """Refuse, before git connects, a host whose addresses the outbound policy refuses (private networks)."""
    host = git.remote_host(binding.url)
    if not host:
        return
    port = 22 if git.remote_kind(binding.url) == "ssh" else 443
    try:
        resolve_checked(host, port)
    except OSError as exc:
        raise git.GitError("git_unreachable", f"{host} cannot be reached: {exc}") from None
    except OutboundRefused as refusal:
        raise JobFailed("outbound_refused", f"The repository's host is refused: {refusal.message}") from None


def git_remote_for(binding: SourceBinding) -> git.GitRemote:
    """The remote as the Git client needs it, with the decrypted credential (never stored elsewhere)."""
    secret = decrypt_secret(binding.secret_ciphertext) if binding.secret_ciphertext else ""
    return git.GitRemote(
        url=binding.url,
        username=binding.username,
        token=secret if binding.credential_kind == SourceCredentialKind.TOKEN else "",
        ssh_private_key=secret if binding.credential_kind == SourceCredentialKind.SSH_KEY else "",
        ca_bundle=settings.ALM_GIT_CA_BUNDLE,
        local_root=settings.ALM_GIT_LOCAL_ROOT,
    )


def work_dir_for(binding: SourceBinding) -> Path:
    name = hashlib.sha256(binding.url.encode()).hexdigest()[:24]
    path = Path(settings.ALM_GIT_WORK_DIR) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _binding_facts(binding: SourceBinding) -> dict[str, Any]:
    """What the audit log and the API may show of a binding: everything but the secret."""
    return {
        "url": binding.url,
        "branch": binding.branch,
        "root_folder": binding.root_folder,
        "username": binding.username,
        "credential_kind": binding.credential_kind,
        "credential_set": bool(binding.secret_ciphertext),
        "build_environment": binding.build_environment_id,
    }


def _clean_folder(root_folder: str) -> str:
    root = root_folder.strip().strip("/")
    parts = [part for part in root.split("/") if part]
    if any(part in (".", "..") or part.startswith(".git") for part in parts) or "\\" in root:
        raise ValidationFailed(
            "The root folder must be a plain relative path (no '..', no .git).",
            details={"root_folder": ["No '..', '.git' or backslashes."]},
        )
    return "/".join(parts)


def _check_branch(branch: str) -> str:
    branch = branch.strip()
    if not branch or not valid_ref(branch):
        raise ValidationFailed(f"{branch!r} is not a valid branch name.", details={"branch": ["Not a valid branch."]})
    return branch


@dataclass(frozen=True)
class RepositoryChoice:
    """What a person chose for a binding, checked by _checked_choice before anything is written."""

    url: str
    branch: str = "main"
    root_folder: str = "solutions"
    username: str = ""
    token: str | None = None
    ssh_private_key: str | None = None
    build_environment: Environment | None = None


def _checked_choice(
    choice: RepositoryChoice, *, team_id: int, development_environment_id: int | None
) -> tuple[RepositoryChoice, str]:
    """The choice with its text cleaned, and the URL's kind; ValidationFailed naming the field otherwise."""
    url = choice.url.strip()
    kind = check_remote(url)
    if choice.token and choice.ssh_private_key:
        raise ValidationFailed(
            "Give a token (https) or an SSH key (ssh), not both.", details={"token": ["Not with ssh_private_key."]}
        )
    if choice.token and kind != "https":
        raise ValidationFailed("A token is used only with an https URL.", details={"token": ["https URLs only."]})
    if choice.ssh_private_key and kind != "ssh":
        raise ValidationFailed(
            "An SSH key is used only with an ssh URL.", details={"ssh_private_key": ["ssh URLs only."]}
        )
    if choice.build_environment is not None:
        _check_build_environment(choice.build_environment, team_id, development_environment_id)
    cleaned = RepositoryChoice(
        url=url,
        branch=_check_branch(choice.branch),
        root_folder=_clean_folder(choice.root_folder),
        username=choice.username.strip(),
        token=choice.token,
        ssh_private_key=choice.ssh_private_key,
        build_environment=choice.build_environment,
    )
    return cleaned, kind


def _write_binding(
    existing: SourceBinding | None, fresh: SourceBinding, choice: RepositoryChoice, kind: str
) -> SourceBinding:
    """Apply a checked choice. A secret not given keeps the one stored while the URL's kind still uses it."""
    binding = existing or fresh
    same_kind = existing is not None and git.remote_kind(existing.url) == kind
    if choice.token:
        binding.credential_kind, binding.secret_ciphertext = SourceCredentialKind.TOKEN, encrypt_secret(choice.token)
    elif choice.ssh_private_key:
        binding.credential_kind = SourceCredentialKind.SSH_KEY
        binding.secret_ciphertext = encrypt_secret(choice.ssh_private_key)
    elif not same_kind:
        binding.credential_kind, binding.secret_ciphertext = SourceCredentialKind.NONE, ""
    binding.url, binding.branch, binding.root_folder = choice.url, choice.branch, choice.root_folder
    binding.username, binding.build_environment = choice.username, choice.build_environment
    binding.updated_at = timezone.now()
    binding.save()
    return binding


def source_bind(
    *,
    solution: Solution,
    url: str,
    user: User,
    context: AuditContext,
    branch: str = "main",
    root_folder: str = "solutions",
    username: str = "",
    token: str | None = None,
    ssh_private_key: str | None = None,
    build_environment: Environment | None = None,
) -> SourceBinding:
    """Bind (or re-bind) a solution to a repository; both secrets at once are refused. Versions registered from
    now on are committed there (a binding of the solution's pipeline no longer applies to it)."""
    if not may_change(user, solution):
        raise PermissionRefused(f"You cannot change where {solution.unique_name} is kept in source control.")
    choice, kind = _checked_choice(
        RepositoryChoice(url, branch, root_folder, username, token, ssh_private_key, build_environment),
        team_id=solution.team_id,
        development_environment_id=solution.home_environment_id,
    )
    with transaction.atomic():
        existing = SourceBinding.objects.select_for_update().filter(solution=solution).first()
        before = _binding_facts(existing) if existing is not None else None
        binding = _write_binding(existing, SourceBinding(solution=solution, created_by=user), choice, kind)
        after = _binding_facts(binding)
        if before != after or token or ssh_private_key:
            record(
                context=context,
                action="solution.source_bound",
                target=solution,
                related=binding,
                before=before,
                after={**after, "secret_changed": bool(token or ssh_private_key)},
            )
    return binding


def source_bind_pipeline(
    *, pipeline: Any, choice: RepositoryChoice, user: User, context: AuditContext
) -> SourceBinding:
    """Bind a whole pipeline (admins): each of its solutions without a binding of its own is committed to
    `<root>/<UniqueName>/src/` of this repository, including solutions that join the pipeline later."""
    if not policy.is_admin(user):
        raise PermissionRefused("Only admins bind a whole pipeline to a repository.")
    choice, kind = _checked_choice(
        choice, team_id=pipeline.team_id, development_environment_id=pipeline.development_environment_id
    )
    with transaction.atomic():
        existing = SourceBinding.objects.select_for_update().filter(pipeline_id=pipeline.pk).first()
        before = _binding_facts(existing) if existing is not None else None
        binding = _write_binding(existing, SourceBinding(pipeline_id=pipeline.pk, created_by=user), choice, kind)
        after = _binding_facts(binding)
        if before != after or choice.token or choice.ssh_private_key:
            record(
                context=context,
                action="pipeline.source_bound",
                target=pipeline,
                related=binding,
                before=before,
                after={**after, "secret_changed": bool(choice.token or choice.ssh_private_key)},
            )
    return binding


def source_unbind_pipeline(*, pipeline: Any, user: User, context: AuditContext) -> None:
    """Stop committing the versions of the pipeline's solutions that use its binding; history stays."""
    if not policy.is_admin(user):
        raise PermissionRefused("Only admins bind a whole pipeline to a repository.")
    with transaction.atomic():
        binding = SourceBinding.objects.select_for_update().filter(pipeline_id=pipeline.pk).first()
        if binding is None:
            return
        before = _binding_facts(binding)
        binding.delete()
        record(context=context, action="pipeline.source_unbound", target=pipeline, before=before)


def binding_for(solution: Solution) -> SourceBinding | None:
    """The repository a solution's versions go to: its own binding, else its pipeline's."""
    own = SourceBinding.objects.select_related("solution", "build_environment").filter(solution_id=solution.pk).first()
    if own is not None or solution.pipeline_id is None:
        return own
    return SourceBinding.objects.select_related("build_environment").filter(pipeline_id=solution.pipeline_id).first()


def _check_build_environment(environment: Environment, team_id: int, development_environment_id: int | None) -> None:
    """A build imports unmanaged content: never into the development environment (it would overwrite the makers'
    work) nor into production, and only into an environment of the same team."""
    refusal = ""
    if environment.team_id != team_id:
        refusal = "The build environment must belong to the solution's team."
    elif environment.pk == development_environment_id:
        refusal = (
            "The build environment cannot be the solution's development environment: the build would overwrite it."
        )
    elif environment.kind == EnvironmentKind.PRODUCTION:
        refusal = "A production environment cannot be a build environment."
    if refusal:
        raise ValidationFailed(refusal, details={"build_environment": [refusal]})


def source_unbind(*, solution: Solution, user: User, context: AuditContext) -> None:
    """Stop committing the solution's versions; what was committed stays recorded (VersionCommit rows)."""
    if not may_change(user, solution):
        raise PermissionRefused(f"You cannot change where {solution.unique_name} is kept in source control.")
    with transaction.atomic():
        binding = SourceBinding.objects.select_for_update().filter(solution=solution).first()
        if binding is None:
            return
        before = _binding_facts(binding)
        binding.delete()
        record(context=context, action="solution.source_unbound", target=solution, before=before)
