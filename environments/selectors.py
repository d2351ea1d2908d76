"""Reads for environments: what a user may see, what is installed where (and when), drift."""

from __future__ import annotations

from datetime import datetime

from django.apps import apps
from django.core.exceptions import FieldError
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower

from alm_portal.accounts import policy
from alm_portal.accounts.models import User
from alm_portal.errors import NotFound
from environments.choices import CredentialStatus
from environments.drift import Expected
from environments.models import (
    Credential,
    DriftFinding,
    Environment,
    EnvironmentNotification,
    InventoryInterval,
    SolutionHistoryEntry,
)


def environments_visible_to(*, user: User) -> QuerySet[Environment]:
    """Admins and auditors see every environment; everyone else their teams' environments.

    The active credential is prefetched into `active_credentials` (a list of at most one), so a
    page of environments costs the same number of queries whatever its size.
    """
    queryset = Environment.objects.select_related("team").prefetch_related(
        Prefetch(
            "credentials",
            queryset=Credential.objects.filter(status=CredentialStatus.ACTIVE).defer("secret_ciphertext"),
            to_attr="active_credentials",
        )
    )
    team_ids = policy.team_ids_visible_to(user)
    if team_ids is None:
        return queryset
    return queryset.filter(team_id__in=team_ids)


def environment_visible_to(*, user: User, pk: int) -> Environment:
    """The environment if `user` may see it; NotFound otherwise (never a 403 that confirms it exists)."""
    environment = environments_visible_to(user=user).filter(pk=pk).first()
    if environment is None:
        raise NotFound("No such environment.")
    return environment


def active_credential(*, environment: Environment) -> Credential | None:
    return Credential.objects.filter(environment=environment, status=CredentialStatus.ACTIVE).first()


def credentials_of(*, environment: Environment) -> QuerySet[Credential]:
    """Every credential of the environment, newest first, without the encrypted secret."""
    return Credential.objects.filter(environment=environment).defer("secret_ciphertext").order_by("-created_at", "-id")


def inventory_current(*, environment: Environment) -> QuerySet[InventoryInterval]:
    """What the last sync saw installed."""
    return InventoryInterval.objects.filter(environment=environment, valid_to__isnull=True).order_by("unique_name")


def inventory_at(*, environment: Environment, when: datetime) -> QuerySet[InventoryInterval]:
    """What was installed at `when`: intervals with valid_from <= when < valid_to (or still open).

    Answers only for times the portal was watching: before the first sync there is nothing.
    """
    return InventoryInterval.objects.filter(
        Q(valid_to__isnull=True) | Q(valid_to__gt=when), environment=environment, valid_from__lte=when
    ).order_by("unique_name")


def inventory_history_of(*, environment: Environment, unique_name: str) -> QuerySet[InventoryInterval]:
    """Every interval of one solution in one environment, oldest first."""
    return InventoryInterval.objects.filter(environment=environment, unique_name=unique_name).order_by("valid_from")


def solution_history(*, environment: Environment) -> QuerySet[SolutionHistoryEntry]:
    return SolutionHistoryEntry.objects.filter(environment=environment).order_by("-start_time", "-id")


def drift_findings(*, environment: Environment, include_resolved: bool = False) -> QuerySet[DriftFinding]:
    queryset = DriftFinding.objects.filter(environment=environment)
    if not include_resolved:
        queryset = queryset.filter(resolved_at__isnull=True)
    return queryset.order_by("resolved_at", "kind", "unique_name")


def notifications_of(*, environment: Environment) -> QuerySet[EnvironmentNotification]:
    return EnvironmentNotification.objects.filter(environment=environment).order_by("-created_at", "-id")


def expected_installations(*, environment: Environment) -> dict[str, Expected]:
    """What the portal deployed to `environment` and believes is installed: {unique_name: Expected}.

    The newest succeeded promotion (deploy or rollback) per solution on this target; the portal only
    ever installs managed packages. Its expected version is the one the runner saw installed right
    after its operations (`result.installed_version`: a holding solution applied by a rollback leaves
    the holding's version), else the promoted version. A rolled-back promotion is no longer
    `succeeded`, so its rollback is what counts.

    A promotion running on this target right now is the portal's own doing too: its version is
    accepted beside the last deployed one (the runner syncs the inventory before it reports success,
    and a scheduled sync may come while it imports), so the portal never reports its own deployment
    as drift. Read through the app registry: deployments imports environments, not the reverse.
    """
    promotion_model = apps.get_model("deployments", "Promotion")
    rows = (
        promotion_model.objects.filter(target_environment=environment, status="succeeded")
        .order_by("solution_id", "-finished_at", "-id")
        .values_list("solution__unique_name", "version__version_key", "result")
    )
    expected: dict[str, Expected] = {}
    for unique_name, version, result in rows:
        if unique_name in expected:
            continue
        installed = result.get("installed_version") if isinstance(result, dict) else None
        expected[unique_name] = Expected(version=str(installed or version), is_managed=True)
    running = (
        promotion_model.objects.filter(target_environment=environment, status="running")
        .order_by("solution_id", "id")
        .values_list("solution__unique_name", "version__version_key", "rollback_strategy")
    )
    for unique_name, version, strategy in running:
        deployed = expected.get(unique_name)
        expected[unique_name] = Expected(
            version=deployed.version if deployed else version,
            is_managed=True,
            also_accepted=(*(deployed.also_accepted if deployed else ()), version),
            # Before a first install the solution is absent; uninstall_reinstall removes it first.
            may_be_absent=deployed is None or strategy == "uninstall_reinstall" or deployed.may_be_absent,
            # DeleteAndPromote leaves the holding solution's version, which only the run's end records.
            any_version=strategy == "holding_apply" or (deployed is not None and deployed.any_version),
        )
    return expected


def registered_solution_names(*, names: set[str]) -> set[str] | None:
    """The subset of `names` the solution registry knows, or None while there is no registry.

    Read through the app registry so environments does not import solutions (which imports us).
    """
    try:
        solution_model = apps.get_model("solutions", "Solution")
    except LookupError:
        return None
    if not names:
        return set()
    try:
        # Dataverse unique names are case-insensitive.
        lowered = {name.lower() for name in names}
        return set(
            solution_model.objects.annotate(unique_name_lower=Lower("unique_name"))
            .filter(unique_name_lower__in=lowered)
            .values_list("unique_name", flat=True)
        )
    except FieldError:
        return None
