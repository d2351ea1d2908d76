"""Notifications: a row for the team's pages (a later issue delivers them by mail or webhook) and a
WARNING log line. Never carries a secret."""

from __future__ import annotations

import logging
from typing import Any

from environments.models import Environment, EnvironmentNotification

logger = logging.getLogger("environments.notifications")


def notify(
    notes: list[EnvironmentNotification], environment: Environment, kind: str, message: str, details: dict[str, Any]
) -> None:
    """Log now and add an unsaved notification to `notes`; the caller bulk-creates them in its
    transaction, so a rolled-back change notifies nobody (the log line may remain)."""
    logger.warning("environment %s: %s", environment.name, message)
    notes.append(EnvironmentNotification(environment=environment, kind=kind, message=message[:500], details=details))
