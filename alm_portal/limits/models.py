"""The database cache table, for installations without Redis (settings.CACHES)."""

from __future__ import annotations

from django.db import models


class CacheEntry(models.Model):
    """A row of Django's database cache (django.core.cache.backends.db), which the throttles and export
    slots use when REDIS_URL is unset. Django reads and writes it with its own SQL; this model only makes
    the table part of the migrations, so the migration role creates it and the application role gets DML
    on it like on every other table (docs/security.md "Database roles"). Same columns as
    `manage.py createcachetable`."""

    cache_key = models.CharField(max_length=255, primary_key=True)
    value = models.TextField()
    expires = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "alm_cache"

    def __str__(self) -> str:
        return self.cache_key
