"""API filters of deployments (django-filter): promotions, pipelines and jobs."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from alm_portal.job_kinds import JobKind
from alm_portal.jobs.choices import JobStatus
from alm_portal.jobs.models import Job
from deployments.choices import PromotionKind, PromotionStatus
from deployments.models import Pipeline, Promotion

# The API says deploy | rollback; the model keeps promotion | rollback.
API_KIND_TO_MODEL = {"deploy": PromotionKind.PROMOTION, "rollback": PromotionKind.ROLLBACK}
MODEL_KIND_TO_API = {model: api for api, model in API_KIND_TO_MODEL.items()}


class PromotionFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=PromotionStatus.choices)
    kind = django_filters.ChoiceFilter(choices=[(kind, kind) for kind in API_KIND_TO_MODEL], method="filter_kind")
    solution = django_filters.NumberFilter(field_name="solution_id")
    solution_name = django_filters.CharFilter(field_name="solution__unique_name", lookup_expr="iexact")
    version = django_filters.NumberFilter(field_name="version_id")
    stage = django_filters.NumberFilter(field_name="stage_id")
    stage_name = django_filters.CharFilter(field_name="stage__name", lookup_expr="iexact")
    target_environment = django_filters.NumberFilter(field_name="target_environment_id")
    requested_by = django_filters.NumberFilter(field_name="requested_by_id")
    requested_after = django_filters.IsoDateTimeFilter(field_name="requested_at", lookup_expr="gte")
    requested_before = django_filters.IsoDateTimeFilter(field_name="requested_at", lookup_expr="lt")
    attention_required = django_filters.BooleanFilter()
    rollback_of = django_filters.NumberFilter(field_name="rollback_of_id")

    class Meta:
        model = Promotion
        fields: list[str] = []

    def filter_kind(self, queryset: QuerySet[Promotion], name: str, value: Any) -> QuerySet[Promotion]:
        return queryset.filter(kind=API_KIND_TO_MODEL[value])


class PipelineFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(field_name="name", lookup_expr="iexact")
    team = django_filters.NumberFilter(field_name="team_id")

    class Meta:
        model = Pipeline
        fields: list[str] = []


class JobFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=JobKind.choices)
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    environment = django_filters.NumberFilter(field_name="environment_id")

    class Meta:
        model = Job
        fields: list[str] = []
