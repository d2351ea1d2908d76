"""What pre-flight (and the runner) read: the promotion's import mode and settings, its stored artifact,
a client for its target, and what the target has installed."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alm_portal import outbound
from alm_portal.dataverse.client import DataverseClient, RetryPolicy, Timeouts
from alm_portal.dataverse.client import Solution as LiveSolution
from alm_portal.dataverse.settings_document import DeploymentSettings as SettingsDocument
from alm_portal.dataverse.settings_document import DeploymentSettingsError
from alm_portal.jobs.errors import JobFailed
from alm_portal.jobs.models import Job
from deployments.choices import ImportMode, PromotionKind, RollbackStrategy
from deployments.models import DeploymentSettings, Promotion
from environments import clients
from environments import selectors as environment_selectors
from solutions.models import SolutionVersion
from solutions.storage import CHUNK_BYTES, artifact_storage

if TYPE_CHECKING:
    from environments.models import Environment


logger = logging.getLogger(__name__)

ClientFactory = Callable[["Environment"], DataverseClient]

# Pre-flight may sleep through a short Retry-After; a longer one defers the job.
PREFLIGHT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0, max_retry_after=5.0)
PREFLIGHT_TIMEOUTS = Timeouts(connect=10.0, read=60.0, transfer_read=600.0)
HOLDING_SUFFIX = "_Upgrade"


# --- what a promotion does on its target ------------------------------------------------------------------


def promotion_import_mode(*, promotion: Promotion) -> str | None:
    """How the promotion's package is imported: upgrade / update, or None when nothing is imported
    (the holding strategies run DeleteAndPromote or an uninstall instead)."""
    strategy = promotion.rollback_strategy if promotion.kind == PromotionKind.ROLLBACK else ""
    if strategy == RollbackStrategy.REVERSION_UPGRADE:
        return ImportMode.UPGRADE
    if strategy in (RollbackStrategy.REVERSION_UPDATE, RollbackStrategy.UNINSTALL_REINSTALL):
        # Reinstalling after the uninstall is a fresh install; update is the plain ImportSolutionAsync.
        return ImportMode.UPDATE
    if strategy in (RollbackStrategy.HOLDING_APPLY, RollbackStrategy.HOLDING_REMOVE):
        return None
    return promotion.stage.import_mode


def promotion_strategy(*, promotion: Promotion) -> str:
    """The rollback strategy of a rollback promotion, "" for an ordinary promotion."""
    return promotion.rollback_strategy if promotion.kind == PromotionKind.ROLLBACK else ""


def current_settings_of(*, promotion: Promotion) -> DeploymentSettings | None:
    """The newest deployment-settings version of the promotion's stage (what pre-flight checks against)."""
    return DeploymentSettings.objects.filter(stage_id=promotion.stage_id).order_by("-version").first()


def settings_document_of(row: DeploymentSettings | None) -> SettingsDocument:
    """The parsed `pac solution create-settings` document of a settings version (empty when there is none)."""
    if row is None:
        return SettingsDocument()
    try:
        return SettingsDocument.from_dict(row.document or {})
    except DeploymentSettingsError as exc:
        raise JobFailed("settings_invalid", f"{row} is not a valid deployment-settings document: {exc}") from None


# --- artifacts ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalArtifact:
    """A local copy of a stored artifact and the SHA-256 of the bytes copied (the re-hash of docs/states.md §3.6)."""

    path: Path
    sha256: str
    size: int


@contextmanager
def local_artifact(*, version: SolutionVersion) -> Iterator[LocalArtifact]:
    """Copy the version's managed artifact from storage to a temporary file, hashing on the way.

    The client streams the upload from a local file; the hash of the very bytes copied is what the
    runner compares with the SHA-256 the approvals were bound to. The file is removed afterwards.
    """
    slot = version.slot("managed")
    if not slot.stored:
        raise JobFailed("artifact_missing", f"{version} has no managed artifact.")
    storage = artifact_storage()
    fd, name = tempfile.mkstemp(prefix="alm-import-", suffix=".zip")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                source = storage.open(slot.path, "rb")
            except FileNotFoundError:
                raise JobFailed(
                    "artifact_missing", f"The managed artifact of {version} is missing from storage."
                ) from None
            with source:
                while chunk := source.read(CHUNK_BYTES):
                    size += len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
        yield LocalArtifact(path=path, sha256=digest.hexdigest(), size=size)
    finally:
        path.unlink(missing_ok=True)


def deployment_client_for(
    environment: Environment,
    *,
    retry_policy: RetryPolicy = PREFLIGHT_RETRY,
    timeouts: Timeouts = PREFLIGHT_TIMEOUTS,
) -> DataverseClient:
    """A client for the target with its active credential, through the environments app (outbound policy,
    pinned connections, the environment's persisted Retry-After)."""
    credential = environment_selectors.active_credential(environment=environment)
    if credential is None:
        raise JobFailed("no_credential", f"{environment} has no active credential.")
    try:
        client, _material = clients.client_for(environment, credential, retry_policy=retry_policy, timeouts=timeouts)
    except outbound.OutboundRefused as refusal:
        raise JobFailed("outbound_refused", refusal.message) from None
    return client


# --- what the target has ------------------------------------------------------------------------------------


@dataclass
class TargetFacts:
    """What the target has now, read once per pre-flight."""

    installed: LiveSolution | None
    holding: LiveSolution | None


def read_target(*, client: DataverseClient, unique_name: str) -> TargetFacts:
    """The installed solution and any holding solution of `unique_name` (raises the client's errors)."""
    return TargetFacts(
        installed=client.get_solution(unique_name),
        holding=client.get_solution(unique_name + HOLDING_SUFFIX),
    )


def promotion_for_job(*, job: Job) -> Promotion | None:
    """The promotion a pre-flight or run job works for: `params.promotion_id`, else the row that names the job."""
    queryset = Promotion.objects.select_related("solution", "version", "stage", "target_environment")
    promotion_id = (job.params or {}).get("promotion_id")
    if promotion_id:
        return queryset.filter(pk=promotion_id).first()
    return queryset.filter(preflight_job_id=job.pk).first() or queryset.filter(run_job_id=job.pk).first()
