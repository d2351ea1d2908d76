from typing import Any

from django.core.paginator import Page
from django.core.paginator import Paginator as DjangoPaginator
from django.db.models import QuerySet
from rest_framework import pagination

# From this offset on, a page is read in two steps (see LateRowPaginator).
LATE_ROW_OFFSET = 1000


class LateRowPaginator(DjangoPaginator):
    """Deep pages read the page's primary keys first, then only those rows with their joins.

    `LIMIT 50 OFFSET 45000` over a query with joined references makes PostgreSQL join all 45,050
    rows before it skips 45,000 (almost a second at 50,000 promotions); the keys alone come from the
    ordering index, and the joins then run for 50 rows. Shallow pages keep the single query.
    """

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        rows = self.object_list
        if not isinstance(rows, QuerySet) or bottom < LATE_ROW_OFFSET:
            return self._get_page(rows[bottom:top], number, self)
        keys = list(rows.values_list("pk", flat=True)[bottom:top])
        found = {row.pk: row for row in rows.filter(pk__in=keys)}
        return self._get_page([found[key] for key in keys if key in found], number, self)


class PageNumberPagination(pagination.PageNumberPagination):
    """?page and ?page_size (at most 200); answers count, next, previous, results."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    django_paginator_class = LateRowPaginator
