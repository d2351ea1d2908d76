"""Use cases of environments: the only code that writes their tables (docs/architecture.md §3 rule 2).

Every change writes its audit event with `record()` in the same transaction, called last. Calls to
Dataverse (health, verification, inventory) happen outside transactions; only their results are
written, in one short transaction each. Secrets never leave alm_portal/crypto.py and
environments/clients.py in plain text: audit payloads, logs, notifications and stored error texts
carry client ids, kinds, thumbprints and expiry dates only, and error texts are redacted.

Modules: registry (environments, job requests, beat fan-out), credentials (lifecycle), health,
inventory (sync, history, drift). Import the functions from here.
"""

from environments.services.credentials import (
    credential_activate,
    credential_add,
    credential_discard,
    credential_rotate,
    credential_set_expiry,
    credential_verify,
    credentials_reencrypt,
)
from environments.services.errors import CredentialVerificationFailed, InventorySyncFailed
from environments.services.health import HealthReport, environment_check_health
from environments.services.inventory import InventorySyncReport, environment_sync_inventory
from environments.services.registry import environment_create, environment_update
from environments.services.scheduling import (
    environment_request_health_check,
    environment_request_inventory_sync,
    environments_enqueue_scheduled,
)

__all__ = [
    "CredentialVerificationFailed",
    "HealthReport",
    "InventorySyncFailed",
    "InventorySyncReport",
    "credential_activate",
    "credential_add",
    "credential_discard",
    "credential_rotate",
    "credential_set_expiry",
    "credential_verify",
    "credentials_reencrypt",
    "environment_check_health",
    "environment_create",
    "environment_request_health_check",
    "environment_request_inventory_sync",
    "environment_sync_inventory",
    "environment_update",
    "environments_enqueue_scheduled",
]
