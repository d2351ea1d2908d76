"""Settings and timing of the runner: how long to wait, how often to look (the lead adds the ALM_IMPORT_*
settings to the settings module; the defaults are here)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

# Where to look for an operation a lost submit may have started (docs/states.md §3).
ADOPTION_WINDOW = timedelta(minutes=5)
# Each wait is this share of the time already waited (bounded by the two poll settings): a short import is
# seen soon after it ends (within a fifth of its duration), a long one is looked at every
# ALM_IMPORT_POLL_MAX_SECONDS, as often as a fixed 10 s poller would (bench/bench_promotion_overhead.py).
POLL_BACKOFF_SHARE = 0.2
# A target that is unreachable before anything was submitted is tried this many times, then the
# promotion fails; once something runs there, the wait is bounded by ALM_IMPORT_MAX_WAIT instead.
MAX_TRANSIENT_ATTEMPTS = 20
# After a submit whose answer was lost, look for the operation this soon.
ADOPT_AFTER_SECONDS = 2.0


def import_max_wait() -> timedelta:
    """ALM_IMPORT_MAX_WAIT (seconds, default 6 h): after this an operation's outcome is unknown."""
    return timedelta(seconds=float(settings.ALM_IMPORT_MAX_WAIT))


def poll_seconds() -> float:
    """ALM_IMPORT_POLL_SECONDS (default 1): the first wait after a submit and the shortest between looks."""
    return float(settings.ALM_IMPORT_POLL_SECONDS)


def poll_max_seconds() -> float:
    """ALM_IMPORT_POLL_MAX_SECONDS (default 10): the longest wait between two looks."""
    return float(settings.ALM_IMPORT_POLL_MAX_SECONDS)


def busy_retry_seconds() -> float:
    """ALM_IMPORT_BUSY_RETRY_SECONDS (default 10): how soon to try again when the target runs another
    solution operation (CustomizationLock)."""
    return float(settings.ALM_IMPORT_BUSY_RETRY_SECONDS)


def import_job_id_on_async() -> bool:
    """ALM_IMPORT_JOB_ID_ON_ASYNC (default off): send a caller-chosen ImportJobId (UNCONFIRMED, docs/states.md §3)."""
    return bool(settings.ALM_IMPORT_JOB_ID_ON_ASYNC)


def poll_interval(*, waited: timedelta) -> float:
    """Seconds until the next look, given how long the operation has been running."""
    return min(poll_max_seconds(), max(poll_seconds(), waited.total_seconds() * POLL_BACKOFF_SHARE))
