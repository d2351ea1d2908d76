"""The one base of every Django admin page: read-only.

Services are the only writers, and each change writes its audit event in the same transaction; an admin
form would change rows around both. So the admin site shows rows and changes none: no add, change or
delete, no bulk actions. (docs/security.md; a test walks the admin registry and holds every model to it.)
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
