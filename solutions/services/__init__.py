"""Use cases of the solution registry: the only code that writes solutions, versions and diffs.

- solution_register(): a new solution, joining the pipeline that starts at its home environment; its
  publisher and display name come from the first package stored (artifact_register).
- solution_version_upload(): a package from a person (page or API), validated, stored, registered.
- solution_export_request() / solution_export_run(): export from the home development environment as
  a job, bumping the version there first, both flavours, registered as one version.
- solution_version_reversion(): a managed artifact re-versioned above everything, for a rollback.
- version_diff() / version_diff_against_installed(): component-level diffs, cached per artifact pair.
- source_bind*() / source_unbind*() (bindings.py), source_commit_*() (source.py), source_build_*() (builds.py):
  every version committed to the solution's Git repository, and versions built from its commits.

Artifacts are immutable: a filled slot is never replaced (another checksum is `version_exists`), an
identical file is a no-op, and nothing here deletes a file or a row (see solutions/models.py).
Every change writes its audit event in the same transaction.
"""

from solutions.services.bindings import (
    RepositoryChoice,
    binding_for,
    source_bind,
    source_bind_pipeline,
    source_unbind,
    source_unbind_pipeline,
)
from solutions.services.builds import source_build_request, source_build_run
from solutions.services.diffs import InstalledSolution, version_diff, version_diff_against_installed
from solutions.services.export import (
    dataverse_client_for,
    solution_export_request,
    solution_export_run,
)
from solutions.services.registry import (
    DEFAULT_MAX_UPLOAD_BYTES,
    ArtifactOutcome,
    artifact_register,
    manifest_summary,
    max_upload_bytes,
    solution_register,
    solutions_fill_identity,
)
from solutions.services.source import source_commit_enqueue, source_commit_run
from solutions.services.uploads import solution_version_reversion, solution_version_upload

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "ArtifactOutcome",
    "InstalledSolution",
    "RepositoryChoice",
    "artifact_register",
    "binding_for",
    "dataverse_client_for",
    "manifest_summary",
    "max_upload_bytes",
    "solution_export_request",
    "solution_export_run",
    "solution_register",
    "solution_version_reversion",
    "solution_version_upload",
    "solutions_fill_identity",
    "source_bind",
    "source_bind_pipeline",
    "source_build_request",
    "source_build_run",
    "source_commit_enqueue",
    "source_commit_run",
    "source_unbind",
    "source_unbind_pipeline",
    "version_diff",
    "version_diff_against_installed",
]
