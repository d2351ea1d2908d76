"""API filters of environments (django-filter)."""

from __future__ import annotations

import django_filters

from environments.choices import EnvironmentKind, HealthStatus
from environments.models import Environment


class EnvironmentFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(field_name="name", lookup_expr="iexact")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    kind = django_filters.ChoiceFilter(choices=EnvironmentKind.choices)
    health_status = django_filters.ChoiceFilter(choices=HealthStatus.choices)

    class Meta:
        model = Environment
        fields = ["name", "search", "kind", "team", "is_active", "health_status"]
