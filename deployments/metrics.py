"""Delivery metrics (issue 7) over production promotions, computed from our own rows.

- deployment frequency: succeeded production promotions per ISO week (by finished_at);
- lead time: version created → production success (median and p90);
- change failure rate: production promotions that failed or were rolled back ÷ production promotions
  that reached an outcome (succeeded, failed or rolled back). Only real deployments count: a promotion
  refused before anything ran on the target (failed from queued: preflight_blocked, checksum_mismatch)
  is neither a failure nor an outcome, and one the portal cancelled as superseded never ran at all;
- time to restore: a production failure (finished_at) or rollback request (requested_at) → the next
  succeeded production deployment of the same solution into the same environment (median).

"Production" is the target environment's kind. Rollbacks (kind rollback) restore service but are not
deployments of new work: they count for time to restore only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import QuerySet

from deployments.choices import PromotionKind, PromotionStatus
from deployments.models import Promotion

PRODUCTION = "production"
OUTCOMES = (PromotionStatus.SUCCEEDED, PromotionStatus.FAILED, PromotionStatus.ROLLED_BACK)
SUCCESSES = (PromotionStatus.SUCCEEDED, PromotionStatus.ROLLED_BACK)  # rolled back ones did succeed first


@dataclass(frozen=True)
class DeliveryMetrics:
    since: datetime
    until: datetime
    deployments_per_week: list[tuple[str, int]] = field(default_factory=list)
    lead_time_median: timedelta | None = None
    lead_time_p90: timedelta | None = None
    change_failure_rate: float | None = None
    failed_or_rolled_back: int = 0
    production_outcomes: int = 0
    time_to_restore_median: timedelta | None = None
    restores: int = 0
    failures_per_week: list[tuple[str, int]] = field(default_factory=list)


def deployed(promotion: Promotion) -> bool:
    """Whether the promotion reached its target: every success did; a failure only when it started (a
    failure straight from queued was refused before anything ran)."""
    return promotion.status != PromotionStatus.FAILED or promotion.started_at is not None


def _percentile(values: list[timedelta], fraction: float) -> timedelta | None:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2; p90 of ten values is the ninth)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _production_rows(
    *,
    promotions: QuerySet[Promotion],
    since: datetime,
    until: datetime,
    solution_id: int | None = None,
    environment_id: int | None = None,
) -> tuple[list[Promotion], list[Promotion]]:
    """Production promotions that reached an outcome (any time: restores may end after `until`) and the
    rollbacks requested in the window: two queries."""
    production = promotions.filter(target_environment__kind=PRODUCTION).select_related(
        "version", "solution", "target_environment"
    )
    if solution_id is not None:
        production = production.filter(solution_id=solution_id)
    if environment_id is not None:
        production = production.filter(target_environment_id=environment_id)
    rows = list(production.filter(status__in=OUTCOMES, finished_at__isnull=False).order_by("finished_at", "pk"))
    rollbacks = list(
        production.filter(kind=PromotionKind.ROLLBACK, requested_at__gte=since, requested_at__lt=until).order_by(
            "requested_at", "pk"
        )
    )
    return rows, rollbacks


def _metrics_of(
    rows: list[Promotion], rollbacks: list[Promotion], *, since: datetime, until: datetime
) -> DeliveryMetrics:
    """The four metrics over already loaded rows (see the module docstring)."""
    window = [row for row in rows if since <= row.finished_at < until and deployed(row)]  # type: ignore[operator]
    work = [row for row in window if row.kind == PromotionKind.PROMOTION]
    succeeded = [row for row in work if row.status in SUCCESSES]

    weeks: dict[str, int] = {}
    for row in succeeded:
        weeks[_week(row.finished_at)] = weeks.get(_week(row.finished_at), 0) + 1  # type: ignore[arg-type]
    lead_times = [row.finished_at - row.version.created_at for row in succeeded]  # type: ignore[operator]
    failed = [row for row in work if row.status in (PromotionStatus.FAILED, PromotionStatus.ROLLED_BACK)]
    failed_weeks: dict[str, int] = {}
    for row in failed:
        failed_weeks[_week(row.finished_at)] = failed_weeks.get(_week(row.finished_at), 0) + 1  # type: ignore[arg-type]

    incidents = [(row.finished_at, row) for row in work if row.status == PromotionStatus.FAILED]
    incidents += [(row.requested_at, row) for row in rollbacks]
    restores: list[timedelta] = []
    successes = [row for row in rows if row.status in SUCCESSES]
    for started, row in incidents:
        restored = next(
            (
                later.finished_at
                for later in successes
                if later.solution_id == row.solution_id
                and later.target_environment_id == row.target_environment_id
                and later.finished_at > started  # type: ignore[operator]
            ),
            None,
        )
        if restored is not None:
            restores.append(restored - started)  # type: ignore[operator]
    return DeliveryMetrics(
        since=since,
        until=until,
        deployments_per_week=sorted(weeks.items()),
        lead_time_median=_percentile(lead_times, 0.5),
        lead_time_p90=_percentile(lead_times, 0.9),
        change_failure_rate=(len(failed) / len(work)) if work else None,
        failed_or_rolled_back=len(failed),
        production_outcomes=len(work),
        time_to_restore_median=_percentile(restores, 0.5),
        restores=len(restores),
        failures_per_week=sorted(failed_weeks.items()),
    )


def delivery_metrics(
    *,
    promotions: QuerySet[Promotion],
    since: datetime,
    until: datetime,
    solution_id: int | None = None,
    environment_id: int | None = None,
) -> DeliveryMetrics:
    """The four metrics over `promotions` (what the caller may see) into production between since and until."""
    rows, rollbacks = _production_rows(
        promotions=promotions, since=since, until=until, solution_id=solution_id, environment_id=environment_id
    )
    return _metrics_of(rows, rollbacks, since=since, until=until)


@dataclass(frozen=True)
class MetricsGroup:
    """The metrics of one solution or one production environment."""

    id: int
    name: str
    metrics: DeliveryMetrics


def delivery_metrics_by(
    *, promotions: QuerySet[Promotion], since: datetime, until: datetime, by: str
) -> list[MetricsGroup]:
    """The same metrics per solution (`by="solution"`) or per production environment (`by="environment"`),
    for those with an outcome in the window, by name; two queries whatever the number of groups."""
    if by not in ("solution", "environment"):
        raise ValueError(f"cannot group delivery metrics by {by!r}")
    rows, rollbacks = _production_rows(promotions=promotions, since=since, until=until)

    def key(row: Promotion) -> tuple[int, str]:
        if by == "solution":
            return row.solution_id, row.solution.unique_name
        return row.target_environment_id, row.target_environment.name

    grouped_rows: dict[tuple[int, str], list[Promotion]] = {}
    for row in rows:
        grouped_rows.setdefault(key(row), []).append(row)
    grouped_rollbacks: dict[tuple[int, str], list[Promotion]] = {}
    for row in rollbacks:
        grouped_rollbacks.setdefault(key(row), []).append(row)
    groups = []
    for (group_id, name), members in grouped_rows.items():
        metrics = _metrics_of(members, grouped_rollbacks.get((group_id, name), []), since=since, until=until)
        if metrics.production_outcomes:
            groups.append(MetricsGroup(id=group_id, name=name, metrics=metrics))
    return sorted(groups, key=lambda group: (group.name.lower(), group.id))
