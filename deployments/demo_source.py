"""The demo's Git repository (docs/demo.md, "The demo's Git repository"): Contoso's solutions bound to a bare
repository under ALM_GIT_LOCAL_ROOT, the history committed there, and a version built from a maker's commit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings

from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.jobs.choices import ACTIVE_JOB_STATUSES, JobStatus
from alm_portal.jobs.models import Job
from alm_portal.jobs.services import job_run_now
from environments.models import Environment
from solutions.choices import SolutionJobKind
from solutions.models import Solution, SolutionVersion, SourceBinding, VersionCommit
from solutions.selectors import version_find
from solutions.services.bindings import source_bind
from solutions.services.builds import source_build_request


def _as(user: User) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session", request_id="seed-demo")


def _person(username: str) -> User:
    return User.objects.get(username=username)


# --- source control (docs/demo.md, "The demo's Git repository") ---------------------------------------------

# A bare repository under ALM_GIT_LOCAL_ROOT (make run sets it to var/git-repositories): no account, no host.
DEMO_REPOSITORY = "contoso.git"
DEMO_BRANCH = "main"
DEMO_ROOT_FOLDER = "solutions"
# The version Max Maker's commit raises IncidentReporting to; no other step of the demo uses it.
BUILT_SOLUTION = "IncidentReporting"
BUILT_VERSION = "1.0.2.0"
GIT = shutil.which("git") or "/usr/bin/git"


def demo_repository() -> Path | None:
    """Where the demo keeps Contoso's solutions in Git; None where local repositories are not allowed."""
    if not settings.ALM_GIT_LOCAL_ROOT:
        return None
    return Path(settings.ALM_GIT_LOCAL_ROOT).resolve() / DEMO_REPOSITORY


def _git(*args: str, cwd: Path | None = None, person: User | None = None) -> str:
    """The git command line as a person at their own machine would use it, without this machine's configuration."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    if person is not None:
        name, email = person.shown_name, person.email or f"{person.username}@example.com"
        environment.update(
            GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email
        )
    completed = subprocess.run(  # noqa: S603 - fixed executable, arguments built by this module
        [GIT, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"demo: git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


DEMO_BUILD_ENVIRONMENT = "contoso-build"


def bind_to_demo_repository(solutions: list[Solution], maker: User) -> None:
    """Create the bare repository (once) and bind each solution to it, as a maker does on the solution's page."""
    path = demo_repository()
    if path is None:
        return
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "--quiet", f"--initial-branch={DEMO_BRANCH}", str(path))
    # Builds are imported into contoso-build and exported managed there, so a version built from a commit can be
    # promoted like any other.
    build_environment = Environment.objects.filter(name=DEMO_BUILD_ENVIRONMENT).first()
    for solution in solutions:
        if not SourceBinding.objects.filter(solution=solution).exists():
            source_bind(
                solution=solution,
                url=str(path),
                branch=DEMO_BRANCH,
                root_folder=DEMO_ROOT_FOLDER,
                build_environment=build_environment,
                user=maker,
                context=_as(maker),
            )


def _run_queued_commits() -> None:
    """Carry out the waiting source_commit jobs inline, oldest first, so the history is in Git before the banner."""
    waiting = Job.objects.filter(
        kind=SolutionJobKind.SOURCE_COMMIT, status__in=(JobStatus.PENDING, *ACTIVE_JOB_STATUSES)
    ).order_by("pk")
    for queued in waiting:
        job = job_run_now(queued)
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"demo commit of version {job.params.get('version')} failed: {job.error_message}")


def _maker_commit(path: Path, solution: Solution, maker: User) -> None:
    """Max Maker's change, made as a maker makes it: a clone, the solution's newest unpacked unmanaged source (the
    derived 1.0.1.0 is managed only, nothing to build from), the version raised in Other/Solution.xml, a push to
    main. Nothing when main already holds that version (a demo seeded before)."""
    commits = VersionCommit.objects.filter(version__solution=solution, repository_url=str(path))
    source = commits.filter(flavours__contains="unmanaged").order_by("-committed_at", "-id").first()
    if source is None:
        raise RuntimeError(f"demo: no unmanaged source of {solution.unique_name} was committed to {path}")
    folder = f"{DEMO_ROOT_FOLDER}/{solution.unique_name}/src"
    with tempfile.TemporaryDirectory(prefix="alm-demo-maker-") as scratch:
        clone = Path(scratch) / "contoso"
        _git("clone", "--quiet", "--branch", DEMO_BRANCH, str(path), str(clone))
        manifest = clone / folder / "Other" / "Solution.xml"
        if manifest.exists() and f"<Version>{BUILT_VERSION}</Version>" in manifest.read_text(encoding="utf-8"):
            return
        _git("rm", "-r", "--quiet", "--ignore-unmatch", folder, cwd=clone)
        _git("checkout", source.commit, "--", folder, cwd=clone)
        text = manifest.read_text(encoding="utf-8")
        text = re.sub(r"<Version>[^<]+</Version>", f"<Version>{BUILT_VERSION}</Version>", text, count=1)
        manifest.write_text(text, encoding="utf-8")
        _git("add", "--all", folder, cwd=clone)
        message = f"{solution.unique_name} {BUILT_VERSION}: continue from {source.tag}, version raised to build it"
        _git("commit", "--quiet", "-m", message, cwd=clone, person=maker)
        _git("push", "--quiet", "origin", DEMO_BRANCH, cwd=clone)


def _build_from_main(solution: Solution, maker: User) -> SolutionVersion:
    job = job_run_now(source_build_request(solution=solution, ref=DEMO_BRANCH, user=maker, context=_as(maker)))
    if job.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"demo build of {solution.unique_name} failed: {job.error_code} {job.error_message}")
    return SolutionVersion.objects.get(pk=job.result["version_id"])


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def seed_demo_source() -> list[str]:
    """Put the history's versions in the demo's repository (the commit jobs the uploads and exports queued, run
    here), then build IncidentReporting from a maker's commit on main and commit the built version. Returns
    seed_demo's lines. Idempotent: a built version already registered is not built again."""
    path = demo_repository()
    if path is None:
        return []
    _run_queued_commits()
    built_lines = []
    solution = Solution.objects.filter(unique_name__iexact=BUILT_SOLUTION, source_binding__url=str(path)).first()
    if solution is not None and version_find(solution=solution, version=BUILT_VERSION) is None:
        maker = _person("maker")
        _maker_commit(path, solution, maker)
        built = _build_from_main(solution, maker)
        _run_queued_commits()
        built_lines.append(
            f"  build {solution.unique_name} {built.version} from {built.source_ref} @ {built.source_commit[:12]}"
            f" (commit by {maker.shown_name})"
        )
    lines = []
    for bound in Solution.objects.filter(source_binding__url=str(path)).order_by("pk"):
        folder = bound.source_binding.folder
        commits = _git("-C", str(path), "rev-list", "--count", DEMO_BRANCH, "--", folder)
        tags = _git("-C", str(path), "tag", "--list", "--sort=creatordate", f"{bound.unique_name}/*").split()
        noun = "commit" if commits == "1" else "commits"
        lines.append(f"  source {bound.unique_name} → {_shown(path)}: {commits} {noun}, tags {', '.join(tags)}")
    return [*lines, *built_lines]
