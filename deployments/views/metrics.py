"""The delivery metrics page: the four numbers, and charts over time, per solution and per environment.

The charts are drawn by static/js/delivery-metrics.js from data passed with json_script (no inline script,
so the page runs under the production CSP); every number drawn is also in a table.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date

from alm_portal.accounts.identity import portal_user
from deployments import selectors
from deployments.metrics import DeliveryMetrics, MetricsGroup, delivery_metrics, delivery_metrics_by

DEFAULT_DAYS = 90


def _hours(duration: timedelta | None) -> float | None:
    return round(duration.total_seconds() / 3600, 1) if duration is not None else None


def duration_text(duration: timedelta | None) -> str:
    """A duration as people say it, to the two largest units: "52 s", "3 min 12 s", "2 h 5 min", "3 d 4 h"
    (never Python's "0:00:52.644527"); "—" when there is none."""
    if duration is None:
        return "—"
    seconds = max(0, round(duration.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    first = next((index for index, (value, _) in enumerate(units) if value), len(units) - 1)
    shown = [f"{value} {unit}" for value, unit in units[first : first + 2] if value or unit == units[first][1]]
    return " ".join(shown)


def _percent(rate: float | None) -> int | None:
    return round(100 * rate) if rate is not None else None


def _group_rows(groups: list[MetricsGroup]) -> list[dict[str, Any]]:
    return [
        {
            "id": group.id,
            "name": group.name,
            "deployments": sum(count for _, count in group.metrics.deployments_per_week),
            "outcomes": group.metrics.production_outcomes,
            "failure_percent": _percent(group.metrics.change_failure_rate),
            "lead_time_hours": _hours(group.metrics.lead_time_median),
            "lead_time": duration_text(group.metrics.lead_time_median),
            "restore": duration_text(group.metrics.time_to_restore_median),
        }
        for group in groups
    ]


def _weeks(metrics: DeliveryMetrics) -> list[dict[str, Any]]:
    """Every week with a deployment or a failure, in order, with both counts."""
    deployed = dict(metrics.deployments_per_week)
    failed = dict(metrics.failures_per_week)
    peak = max(deployed.values(), default=0)
    return [
        {
            "week": week,
            "count": deployed.get(week, 0),
            "failures": failed.get(week, 0),
            "percent": round(100 * deployed.get(week, 0) / peak) if peak else 0,
        }
        for week in sorted(set(deployed) | set(failed))
    ]


def _chart_data(
    weeks: list[dict[str, Any]], solutions: list[dict[str, Any]], environments: list[dict[str, Any]]
) -> dict[str, Any]:
    """What static/js/delivery-metrics.js draws: the same numbers as the tables."""

    def per_group(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {
            "labels": [row["name"] for row in rows],
            "deployments": [row["deployments"] for row in rows],
            "failure_percent": [row["failure_percent"] for row in rows],
            "lead_time_hours": [row["lead_time_hours"] for row in rows],
        }

    return {
        "over_time": {
            "labels": [row["week"] for row in weeks],
            "deployments": [row["count"] for row in weeks],
            "failures": [row["failures"] for row in weeks],
        },
        "by_solution": per_group(solutions),
        "by_environment": per_group(environments),
    }


@login_required
def delivery_metrics_page(request: HttpRequest) -> HttpResponse:
    """Delivery metrics over what the user may see, for a time range (default the last 90 days)."""
    today = timezone.now().date()
    start = parse_date(request.GET.get("from", "")) or today - timedelta(days=DEFAULT_DAYS)
    end = parse_date(request.GET.get("to", "")) or today
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    promotions = selectors.promotion_rows_visible_to(user=portal_user(request))
    metrics = delivery_metrics(promotions=promotions, since=since, until=until)
    weeks = _weeks(metrics)
    solutions = _group_rows(delivery_metrics_by(promotions=promotions, since=since, until=until, by="solution"))
    environments = _group_rows(delivery_metrics_by(promotions=promotions, since=since, until=until, by="environment"))
    return render(
        request,
        "deployments/metrics.html",
        {
            "metrics": metrics,
            "start": start,
            "end": end,
            "weeks": weeks,
            "failure_percent": _percent(metrics.change_failure_rate),
            "lead_time_median": duration_text(metrics.lead_time_median),
            "lead_time_p90": duration_text(metrics.lead_time_p90),
            "time_to_restore_median": duration_text(metrics.time_to_restore_median),
            "by_solution": solutions,
            "by_environment": environments,
            "chart_data": _chart_data(weeks, solutions, environments),
        },
    )
