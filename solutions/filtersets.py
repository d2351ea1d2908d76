"""API filters of the solution registry (django-filter)."""

from __future__ import annotations

import django_filters

from solutions.choices import SourceKind
from solutions.models import Solution, SolutionVersion
from solutions.selectors import parse_version


class SolutionFilterSet(django_filters.FilterSet):
    unique_name = django_filters.CharFilter(field_name="unique_name", lookup_expr="iexact")
    search = django_filters.CharFilter(field_name="unique_name", lookup_expr="icontains")

    class Meta:
        model = Solution
        fields = ["unique_name", "team", "pipeline", "home_environment"]


class SolutionVersionFilterSet(django_filters.FilterSet):
    solution = django_filters.NumberFilter(field_name="solution_id")
    unique_name = django_filters.CharFilter(field_name="solution__unique_name", lookup_expr="iexact")
    version = django_filters.CharFilter(method="filter_version")
    source_kind = django_filters.ChoiceFilter(choices=SourceKind.choices)

    class Meta:
        model = SolutionVersion
        fields = ["solution", "unique_name", "version", "source_kind"]

    def filter_version(self, queryset, name, value):  # type: ignore[no-untyped-def]
        parsed = parse_version(value)
        return queryset.filter(version_key=parsed.canonical) if parsed else queryset.none()
