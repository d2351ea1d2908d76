"""Closed vocabularies of the environments app (stored values are part of the API contract)."""

from django.db import models


class EnvironmentKind(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    TEST = "test", "Test"
    PRODUCTION = "production", "Production"
    OTHER = "other", "Other"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNREACHABLE = "unreachable", "Unreachable"
    UNAUTHORIZED = "unauthorized", "Unauthorized"
    CREDENTIAL_EXPIRING = "credential_expiring", "Credential expiring"


class CredentialKind(models.TextChoices):
    SECRET = "secret", "Client secret"
    CERTIFICATE = "certificate", "Certificate"


class CredentialStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PENDING_VERIFICATION = "pending_verification", "Pending verification"
    RETIRED = "retired", "Retired"


# A credential moves only along these edges, through services.credentials._credential_move (a new credential
# starts pending, or active when an environment is registered with it).
CREDENTIAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    CredentialStatus.PENDING_VERIFICATION: (CredentialStatus.ACTIVE, CredentialStatus.RETIRED),
    CredentialStatus.ACTIVE: (CredentialStatus.RETIRED,),
    CredentialStatus.RETIRED: (),
}


class DriftKind(models.TextChoices):
    VERSION_CHANGED = "version_changed", "Version changed outside the portal"
    MISSING = "missing", "Deployed solution is gone"
    UNMANAGED = "unmanaged", "Unmanaged where managed was deployed"
    HOLDING_STUCK = "holding_stuck", "Holding solution (_Upgrade) left behind"
    UNREGISTERED = "unregistered", "Solution nobody registered"


class NotificationKind(models.TextChoices):
    CREDENTIAL_EXPIRING = "credential_expiring", "Credential expiring"
    DRIFT_DETECTED = "drift_detected", "Drift detected"
    DRIFT_RESOLVED = "drift_resolved", "Drift resolved"
    HEALTH_CHANGED = "health_changed", "Health changed"


class HistoryOperation(models.IntegerChoices):
    """msdyn_solutionhistory.msdyn_operation (docs/dataverse.md §9)."""

    IMPORT = 0, "Import"
    UNINSTALL = 1, "Uninstall"
    EXPORT = 2, "Export"


class HistorySuboperation(models.IntegerChoices):
    NONE = 0, "None"
    NEW = 1, "New"
    UPGRADE = 2, "Upgrade"
    UPDATE = 3, "Update"
    DELETE = 4, "Delete"


class EnvironmentJobKind(models.TextChoices):
    """The job kinds this app registers with the job engine (environments/tasks.py)."""

    INVENTORY_SYNC = "inventory_sync", "Inventory sync"
    HEALTH_CHECK = "health_check", "Health check"
