"""Deep pages are read keys-first (alm_portal/api/pagination.py) and hold exactly what one query gives."""

from __future__ import annotations

import pytest
from django.core.paginator import Paginator
from django.db.models import Value
from django.db.models.functions import Concat

from alm_portal.accounts.models import Team
from alm_portal.api import pagination

pytestmark = pytest.mark.django_db


def test_a_deep_page_holds_the_same_rows_in_the_same_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagination, "LATE_ROW_OFFSET", 10)
    Team.objects.bulk_create(Team(name=f"Team {n % 7}-{n:03d}", slug=f"team-{n:03d}") for n in range(45))
    ordered = Team.objects.annotate(label=Concat("name", Value("!"))).order_by("-name", "pk")
    for number in (1, 2, 3, 5):  # shallow pages (one query) and deep ones (keys first), the short last one
        late = pagination.LateRowPaginator(ordered, 10).page(number)
        plain = Paginator(ordered, 10).page(number)
        assert [team.pk for team in late] == [team.pk for team in plain]
        assert [team.label for team in late] == [team.label for team in plain]  # annotations kept
    assert len(pagination.LateRowPaginator(ordered, 10).page(5)) == 5


def test_a_deep_page_costs_one_query_more_than_a_shallow_one(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries
) -> None:
    monkeypatch.setattr(pagination, "LATE_ROW_OFFSET", 10)
    Team.objects.bulk_create(Team(name=f"Team {n:03d}", slug=f"team-{n:03d}") for n in range(30))
    paginator = pagination.LateRowPaginator(Team.objects.order_by("name"), 10)
    assert paginator.count == 30
    with django_assert_num_queries(1):
        list(paginator.page(1))
    with django_assert_num_queries(2):
        list(paginator.page(3))
