"""What solutions reads from deployments, the app above it, provided by deployments at start-up.

solutions sits below deployments and never imports it (import-linter holds the layers). Two reads need
deployments' tables: where a solution is deployed (its succeeded promotions) and which pipeline a new
solution joins (the one whose development environment is its home). deployments registers how to answer
both (deployments/registrations.py, run from DeploymentsConfig.ready()).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Prefetch

from environments.models import Environment
from solutions.models import Solution


@dataclass(frozen=True)
class DeploymentReads:
    """How solutions asks deployments; every call answers in a fixed number of queries."""

    # A Prefetch for a page of solutions that `deployed` then reads without a query per solution.
    deployed_prefetch: Callable[[], Prefetch]
    # [{environment: {id, name}, version: {id, version}}]: the newest successful deployment per environment.
    deployed: Callable[[Solution], list[dict[str, Any]]]
    # The pipelines whose development environment is the given one, by name.
    pipelines_developing_in: Callable[[Environment], list[Any]]


_registered: list[DeploymentReads] = []


def deployment_reads_register(reads: DeploymentReads) -> None:
    """Called once by deployments at start-up; a second call replaces the first."""
    _registered[:] = [reads]


def deployment_reads() -> DeploymentReads:
    if not _registered:
        raise ImproperlyConfigured("deployments registers its reads at start-up: is it in INSTALLED_APPS?")
    return _registered[0]
