"""Choices of the solution registry: artifact flavours, where a version came from, how export bumps."""

from django.db import models


class Flavour(models.TextChoices):
    """The two artifact slots of a version: managed (what downstream gets) and unmanaged (the source)."""

    MANAGED = "managed", "Managed"
    UNMANAGED = "unmanaged", "Unmanaged"


class SourceKind(models.TextChoices):
    """How a version reached the registry."""

    EXPORTED = "exported", "Exported from its development environment"
    UPLOADED = "uploaded", "Uploaded"
    REVERSIONED = "reversioned", "Re-versioned rollback package"
    BUILT = "built", "Built from source control"


class Bump(models.TextChoices):
    """Which part of the version an export increments in the development environment first."""

    REVISION = "revision", "Revision (1.0.0.x)"
    BUILD = "build", "Build (1.0.x.0)"
    MINOR = "minor", "Minor (1.x.0.0)"
    MAJOR = "major", "Major (x.0.0.0)"
    NONE = "none", "None (export the version development has)"


class SolutionJobKind(models.TextChoices):
    """The job kinds this app registers with the job engine (solutions/tasks.py)."""

    EXPORT = "export", "Export"
    SOURCE_COMMIT = "source_commit", "Commit to source control"
    SOURCE_BUILD = "source_build", "Build from source control"


class SourceCredentialKind(models.TextChoices):
    """How the portal signs in to a bound Git repository."""

    NONE = "none", "None (a local repository, or a public one read-only)"
    TOKEN = "token", "HTTPS with a personal access token"
    SSH_KEY = "ssh_key", "SSH with a private key"
