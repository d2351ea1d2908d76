from django_filters import rest_framework as filters
from rest_framework import generics

from alm_portal.accounts.choices import Scope
from deployments import selectors
from deployments.api.serializers import JobSerializer
from deployments.models import Job


class JobFilter(filters.FilterSet):
    class Meta:
        model = Job
        fields = ["kind", "status", "environment"]


class JobListView(generics.ListAPIView):
    """Jobs the caller may see, newest first (export, check, sync and import work)."""

    required_scopes = {"GET": Scope.READ}
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "id"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.jobs_visible_to(user=self.request.user).order_by("-created_at", "-id")


class JobDetailView(generics.RetrieveAPIView):
    required_scopes = {"GET": Scope.READ}
    serializer_class = JobSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.jobs_visible_to(user=self.request.user)
