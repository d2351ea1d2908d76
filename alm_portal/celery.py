"""The Celery app (docs/architecture.md §1): the database is the record, the broker only a nudge.

Publishing is best effort: no retry loop, a short timeout, errors logged and never raised to the
user, because the job row is its own outbox and beat re-dispatches rows nobody picked up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import beat_init, worker_init, worker_ready

from alm_portal import broker_filesystem

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alm_portal.settings")
broker_filesystem.register()

app = Celery("alm_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


def publish_best_effort(task: Task, *, args: tuple[Any, ...] = (), countdown: float | None = None) -> bool:
    """Send `task` without retrying; return whether the broker took it. Call it from on_commit."""
    try:
        if countdown:
            task.apply_async(args=args, countdown=countdown, retry=False)
        else:
            task.apply_async(args=args, retry=False)
    except Exception:  # any broker failure: the dispatcher will pick the row up later
        logger.warning("could not publish %s; the dispatcher will retry from the database", task.name, exc_info=True)
        return False
    return True


def check_time_limits(settings: Any) -> list[str]:
    """Every task's time limit must stay below a quarter of the visibility timeout (docs/architecture.md §1),
    or Redis redelivers a message whose task is still running; and its soft limit may not exceed it."""
    limit = settings.ALM_VISIBILITY_TIMEOUT / 4
    # Tasks are discovered lazily; without this only the task modules imported so far would be checked.
    app.loader.import_default_modules()
    problems = []
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        task_limit = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        if task_limit >= limit:
            problems.append(f"{name}: time limit {task_limit}s is not below {limit:.0f}s")
        # A task's own time limit does not lower the global soft limit it inherits, and Celery refuses to
        # publish a task whose soft limit is above its hard one (beat would fail to schedule it).
        soft_limit = task.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
        if soft_limit and soft_limit > task_limit:
            problems.append(f"{name}: soft time limit {soft_limit}s is above its time limit {task_limit}s")
    return problems


class UnsafeTimeLimits(SystemExit):
    """A task could outlive the broker's visibility timeout and be delivered a second time.

    SystemExit, because Celery logs and swallows ordinary exceptions from signal receivers: this one
    must stop the worker."""


@worker_init.connect
def refuse_unsafe_time_limits(sender: Any = None, **kwargs: Any) -> None:
    """Checked when a worker starts (docs/architecture.md §1): a worker with an unsafe task limit does not start."""
    from django.conf import settings

    problems = check_time_limits(settings)
    if problems:
        raise UnsafeTimeLimits("; ".join(problems) + " (raise ALM_VISIBILITY_TIMEOUT or lower the task's limit)")


@worker_ready.connect
@beat_init.connect
def announce_ready(sender: Any = None, **kwargs: Any) -> None:
    """Touch ALM_READY_FILE when set: `manage.py demo_ready` waits for it before telling people to sign in."""
    from django.conf import settings

    if settings.ALM_READY_FILE:
        path = Path(settings.ALM_READY_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n")
