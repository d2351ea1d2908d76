"""The promotion page's "diff against the target": what the requested version changes compared with the
version the target environment has (or had, once the promotion has run), and the data an upgrade deletes.

The diff itself is the registry's (solutions.services.version_diff_against_installed, cached per artifact
pair); the data-loss rows and the time they were counted come from the pre-flight's report, the only place
that asked the target for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from alm_portal.errors import DomainError
from deployments.choices import PromotionStatus
from deployments.models import Promotion
from deployments.preflight import data_loss_entries
from solutions import selectors as solution_selectors
from solutions.services import version_diff_against_installed

logger = logging.getLogger(__name__)

# Once a promotion has installed its version, the target's inventory shows that very version; the
# meaningful comparison is then with what it replaced.
_INSTALLED_ALREADY = (PromotionStatus.SUCCEEDED, PromotionStatus.ROLLED_BACK)


@dataclass(frozen=True)
class _Before:
    """What the promotion replaced, in the shape of an inventory row."""

    version: str
    is_managed: bool = True
    installed_on: datetime | None = None


def _data_loss_from_preflight(promotion: Promotion) -> list[dict[str, Any]]:
    result = promotion.preflight_result if isinstance(promotion.preflight_result, dict) else {}
    entries = []
    for check in result.get("checks") or []:
        for entry in (check.get("details") or {}).get("data_loss") or []:
            as_of = parse_datetime(entry["as_of"]) if entry.get("as_of") else None
            entries.append(
                {
                    "where": f"{entry.get('table')}.{entry['column']}" if entry.get("column") else entry.get("table"),
                    "rows": entry.get("rows"),
                    "approximate": bool(entry.get("approximate")),
                    "as_of": as_of,
                }
            )
    return entries


def target_installed(*, promotion: Promotion) -> tuple[Any, str]:
    """What the target has to compare the promotion's version with, as an inventory row (or None), and
    whether that is what it has "now" or what it had "before" this promotion installed its version."""
    if promotion.status in _INSTALLED_ALREADY:
        before = _Before(version=promotion.previous_version) if promotion.previous_version else None
        return before, "before"
    installed = solution_selectors.installed_solution(
        environment_id=promotion.target_environment_id, unique_name=promotion.solution.unique_name
    )
    return installed, "now"


def promotion_target_diff(*, promotion: Promotion) -> dict[str, Any]:
    """{compared_with, diff, message, data_loss, data_loss_counted}: the diff of the promotion's version
    against its target, and the data-loss warnings with row counts and their as-of time when pre-flight
    counted them (otherwise the diff's own list, without counts)."""
    environment = promotion.target_environment
    installed, compared_with = target_installed(promotion=promotion)
    try:
        diff = version_diff_against_installed(
            version=promotion.version, installed=installed, environment_name=environment.name
        )
    except DomainError as problem:  # an artifact gone from storage: say so, the page still works
        logger.info("no target diff for promotion %s: %s", promotion.pk, problem.message)
        diff = {"in_registry": False, "message": problem.message}
    counted = _data_loss_from_preflight(promotion)
    # The same rule as pre-flight's: only custom tables and columns lose data (a system table the solution
    # stops listing stays, with its rows), so the page never warns where pre-flight found nothing.
    data_loss = counted or [
        {
            "where": f"{entry['table']}.{entry['column']}" if entry.get("column") else entry["table"],
            "rows": None,
            "approximate": True,
            "as_of": None,
        }
        for entry in data_loss_entries(diff.get("data_loss") or [])
    ]
    return {
        "compared_with": compared_with,
        "installed_version": installed.version if installed is not None else None,
        "diff": diff,
        "message": diff.get("message") or "",
        "data_loss": data_loss,
        "data_loss_counted": bool(counted),
    }
