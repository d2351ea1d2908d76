"""At most N exports at a time, per user and overall, shared by every process.

An export holds one of the user's slots (ALM_EXPORT_MAX_CONCURRENT_PER_USER) and one of the portal's
(ALM_EXPORT_MAX_CONCURRENT) while it streams. A slot is a cache key taken with an atomic add (Redis SET NX, or
the database cache's primary key) under a lease: the stream renews it as it goes and deletes it when it ends,
so a worker that dies mid-export frees its slots when the lease runs out. When every slot is taken the export
is refused with 429 `exports_busy` and a Retry-After, before anything is read.
If the cache does not answer, the export runs without a slot (and is logged): a limit must not stop exports.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from alm_portal.errors import DomainError

logger = logging.getLogger(__name__)

# A stream renews its slots at least this often (every page of rows); a slot not renewed for a lease is free.
LEASE_SECONDS = 120
RENEW_EVERY_SECONDS = 15
RETRY_AFTER_SECONDS = 10


class ExportsBusy(DomainError):
    """Every export slot of the user, or of the portal, is in use."""

    status = 429
    code = "exports_busy"


@dataclass
class SlotLease:
    """The slots one export holds; renew() while streaming, release() at the end (safe to call twice)."""

    keys: list[str]
    token: str
    renewed_at: float = field(default_factory=time.monotonic)

    def renew(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.renewed_at < RENEW_EVERY_SECONDS:
            return
        self.renewed_at = now
        try:
            for key in self.keys:
                cache.touch(key, LEASE_SECONDS)
        except Exception:
            logger.warning("export slots could not be renewed", exc_info=True)

    def release(self) -> None:
        keys, self.keys = self.keys, []
        try:
            for key in keys:
                if cache.get(key) == self.token:  # only our own: a lease that ran out may be someone else's now
                    cache.delete(key)
        except Exception:
            logger.warning("export slots could not be released; their lease frees them", exc_info=True)


def _take_one(prefix: str, count: int, token: str) -> str | None:
    for number in range(count):
        key = f"{prefix}:{number}"
        if cache.add(key, token, timeout=LEASE_SECONDS):
            return key
    return None


def export_slots_acquire(*, user_id: int) -> SlotLease:
    """Take one of the user's export slots and one of the portal's, or raise ExportsBusy."""
    token = secrets.token_hex(8)
    lease = SlotLease(keys=[], token=token)
    try:
        mine = _take_one(f"export-slot:user:{user_id}", settings.ALM_EXPORT_MAX_CONCURRENT_PER_USER, token)
        if mine is None:
            raise ExportsBusy(
                f"You already run {settings.ALM_EXPORT_MAX_CONCURRENT_PER_USER} export(s); wait until one ends.",
                details={"retry_after": RETRY_AFTER_SECONDS, "limit": settings.ALM_EXPORT_MAX_CONCURRENT_PER_USER},
            )
        lease.keys.append(mine)
        shared = _take_one("export-slot:all", settings.ALM_EXPORT_MAX_CONCURRENT, token)
        if shared is None:
            raise ExportsBusy(
                f"The portal already runs {settings.ALM_EXPORT_MAX_CONCURRENT} exports; try again shortly.",
                details={"retry_after": RETRY_AFTER_SECONDS, "limit": settings.ALM_EXPORT_MAX_CONCURRENT},
            )
        lease.keys.append(shared)
    except ExportsBusy:
        lease.release()
        raise
    except Exception:
        logger.warning("export slots: the cache did not answer; export let through", exc_info=True)
        lease.release()
    return lease
